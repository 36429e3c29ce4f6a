"""The blob store interface: named immutable-ish byte objects, streamed in and out.

Two implementations pass one contract suite: ``S3BlobStore`` (any S3 server,
through the minio SDK) and ``LocalBlobStore`` (a directory, for the embedded
mode). The interface is synchronous; async services call it through
``asyncio.to_thread``.

Semantics every store keeps:

- Writes are atomic: a reader sees the old object, or the whole new one,
  never a part. A failed write leaves nothing behind.
- Writes stream: memory use does not grow with object size.
- ``put_if_absent`` creates an object only if the key is free, atomically
  (two racing writers: exactly one wins); it is how immutable records (audit
  log) and content-addressed objects are written.
- Keys are validated (``keys.validate_key``); a bad key raises
  ``InvalidBlobKey`` naming it, before anything is touched.
- A missing object raises ``BlobNotFound`` naming the key; ``delete`` of a
  missing key is not an error.
- ``list`` returns objects in lexicographic (UTF-8 byte) order of their keys.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from apkfarm.errors import ApkfarmError

CHUNK_SIZE = 1024 * 1024


class Readable(Protocol):
    """Anything with ``read(n)`` returning bytes (``b""`` at the end)."""

    def read(self, size: int = -1, /) -> bytes: ...


class BlobStoreError(ApkfarmError):
    """A store operation failed (I/O, the server, a length mismatch)."""


class BlobNotFound(BlobStoreError):
    """No object under the key."""


@dataclass(frozen=True)
class BlobInfo:
    """What a store knows about an object without reading it."""

    key: str
    size: int
    # Opaque: changes whenever the object is written again. Not a content hash.
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class PutResult:
    """What a write stored: the bytes were hashed on their way through."""

    key: str
    size: int
    sha256: str
    etag: str


@dataclass(frozen=True)
class Digest:
    """Size and SHA-256 of bytes that went through a download."""

    size: int
    sha256: str


class HashingReader:
    """Wraps a stream: hashes and counts what is read, and enforces an exact length.

    With ``length`` given, a stream that ends early or holds more raises
    ``BlobStoreError`` from ``read`` — before the store commits the object.
    """

    def __init__(self, stream: Readable, *, key: str, length: int | None = None) -> None:
        if length is not None and length < 0:
            raise BlobStoreError(f"negative length {length} given for blob {key!r}")
        self._stream = stream
        self._key = key
        self._length = length
        self._end_checked = False
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._length is not None:
            remaining = self._length - self.size
            if remaining == 0:
                self._check_end()
                return b""
            size = remaining if size < 0 else min(size, remaining)
        data = self._stream.read(size)
        if not data:
            if self._length is not None and self.size < self._length:
                raise BlobStoreError(
                    f"stream for blob {self._key!r} ended after {self.size} bytes, "
                    f"expected {self._length}; nothing was stored"
                )
            return b""
        self.sha256.update(data)
        self.size += len(data)
        if self._length is not None and self.size == self._length:
            self._check_end()
        return data

    def _check_end(self) -> None:
        if self._end_checked:
            return
        self._end_checked = True
        if self._stream.read(1):
            raise BlobStoreError(
                f"stream for blob {self._key!r} holds more than the {self._length} "
                "bytes announced; nothing was stored"
            )


class BlobStore(ABC):
    """See the module docstring for the guarantees every implementation keeps."""

    # --- writing ----------------------------------------------------------

    @abstractmethod
    def put_stream(
        self,
        key: str,
        stream: Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> PutResult:
        """Store everything ``stream`` yields (exactly ``length`` bytes if given).

        With ``length`` given, a stream that ends early or holds more raises
        ``BlobStoreError`` and stores nothing.
        """

    def put_bytes(
        self, key: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> PutResult:
        return self.put_stream(key, _BytesReader(data), len(data), content_type=content_type)

    def put_file(
        self, key: str, path: Path, *, content_type: str = "application/octet-stream"
    ) -> PutResult:
        with path.open("rb") as handle:
            return self.put_stream(
                key, handle, os.fstat(handle.fileno()).st_size, content_type=content_type
            )

    @abstractmethod
    def put_if_absent(
        self,
        key: str,
        data: bytes | Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> bool:
        """Create the object only if ``key`` is free: True if this call created it."""

    @abstractmethod
    def copy(self, source: str, destination: str) -> BlobInfo:
        """Copy an object within the store (server-side where the store can)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; a missing key is not an error."""

    # --- reading ----------------------------------------------------------

    @abstractmethod
    def open(self, key: str) -> AbstractContextManager[Readable]:
        """A stream of the object's bytes, closed when the ``with`` block ends."""

    def iter_chunks(self, key: str, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        """The object's bytes in chunks of at most ``chunk_size``."""
        with self.open(key) as stream:
            while chunk := stream.read(chunk_size):
                yield chunk

    def get_bytes(self, key: str, *, max_size: int | None = None) -> bytes:
        """The whole object in memory; ``max_size`` guards against surprises."""
        parts: list[bytes] = []
        total = 0
        with self.open(key) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                total += len(chunk)
                if max_size is not None and total > max_size:
                    raise BlobStoreError(
                        f"blob {key!r} is larger than the {max_size} bytes allowed here"
                    )
                parts.append(chunk)
        return b"".join(parts)

    def get_file(self, key: str, destination: Path) -> Digest:
        """Download to ``destination`` atomically (temp file + rename); returns size and sha256."""
        destination.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".download-", dir=destination.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in self.iter_chunks(key):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            tmp.replace(destination)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Digest(size=size, sha256=digest.hexdigest())

    @abstractmethod
    def stat(self, key: str) -> BlobInfo: ...

    @abstractmethod
    def check(self) -> None:
        """Raise ``BlobStoreError`` unless the store is usable now (for health checks)."""

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except BlobNotFound:
            return False
        return True

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Objects whose key starts with ``prefix`` (a plain string prefix), in key order."""


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    def read(self, size: int = -1, /) -> bytes:
        end = len(self._view) if size < 0 else min(len(self._view), self._pos + size)
        chunk = bytes(self._view[self._pos : end])
        self._pos = end
        return chunk


def as_reader(data: bytes | Readable) -> tuple[Readable, int | None]:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        return _BytesReader(raw), len(raw)
    return data, None
