"""A blob store in a local directory, for the embedded mode.

Key ``a/b/c`` is the file ``ROOT/a/b/c``, so the embedded mode's repository
is an ordinary directory tree that ``apk`` or a web server can use as is.
Writes go to ``ROOT/.apkfarm-tmp/`` first (same file system), are flushed to
disk, and are then renamed into place (``put``) or hard-linked into place
(``put_if_absent``, where ``link`` fails if the name exists — atomic
create-only), so a reader never sees a partial file.

Unlike S3, a directory tree cannot hold both ``a`` and ``a/b`` as objects;
writing one when the other exists raises ``BlobStoreError``. The farm's key
layout never does that.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from apkfarm.blobs.api import (
    CHUNK_SIZE,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    HashingReader,
    PutResult,
    Readable,
    as_reader,
)
from apkfarm.blobs.keys import (
    RESERVED_FIRST_SEGMENT,
    InvalidBlobKey,
    validate_key,
    validate_prefix,
)

_FILE_MODE = 0o644
_INSTALL_ATTEMPTS = 5


class LocalBlobStore(BlobStore):
    """A ``BlobStore`` in the directory ``root`` (created if missing)."""

    def __init__(self, root: Path | str, *, durable: bool = True) -> None:
        self.root = Path(root).absolute()
        self._tmp = self.root / RESERVED_FIRST_SEGMENT
        # fsync files and directories so a write survives a crash once put returns.
        self._durable = durable
        self._tmp.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file that holds ``key`` (validated)."""
        return self.root.joinpath(*validate_key(key).split("/"))

    # --- writing ----------------------------------------------------------

    def _write_temp(self, key: str, stream: Readable, length: int | None) -> tuple[Path, PutResult]:
        reader = HashingReader(stream, key=key, length=length)
        fd, name = tempfile.mkstemp(prefix="put-", dir=self._tmp)
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), _FILE_MODE)
                while chunk := reader.read(CHUNK_SIZE):
                    out.write(chunk)
                out.flush()
                if self._durable:
                    os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        digest = reader.sha256.hexdigest()
        return tmp, PutResult(key=key, size=reader.size, sha256=digest, etag="")

    def _install(self, key: str, tmp: Path, final: Path, *, exclusive: bool) -> bool:
        """Move ``tmp`` to ``final``; with ``exclusive``, only if ``final`` does not exist."""
        try:
            for attempt in range(_INSTALL_ATTEMPTS):
                try:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    if exclusive:
                        os.link(tmp, final)
                    else:
                        tmp.replace(final)
                    break
                except FileExistsError:
                    if exclusive and final.is_file():
                        return False
                    raise self._conflict(key) from None
                except (NotADirectoryError, IsADirectoryError):
                    raise self._conflict(key) from None
                except FileNotFoundError:
                    # A concurrent delete pruned the parent directory; make it again.
                    if attempt == _INSTALL_ATTEMPTS - 1:
                        raise
            self._sync_dir(final.parent)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def _conflict(self, key: str) -> BlobStoreError:
        return BlobStoreError(
            f"blob {key!r} cannot be stored in {self.root}: it collides with an existing "
            "object or key prefix of the same name (a directory store cannot hold both "
            "'a' and 'a/b')"
        )

    def _sync_dir(self, directory: Path) -> None:
        if not self._durable:
            return
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def put_stream(
        self,
        key: str,
        stream: Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> PutResult:
        final = self.path(key)
        tmp, result = self._write_temp(key, stream, length)
        self._install(key, tmp, final, exclusive=False)
        return PutResult(key, result.size, result.sha256, self.stat(key).etag)

    def put_if_absent(
        self,
        key: str,
        data: bytes | Readable,
        length: int | None = None,
        *,
        content_type: str = "application/octet-stream",
    ) -> bool:
        final = self.path(key)
        if final.is_file():
            return False
        stream, known = as_reader(data)
        tmp, _ = self._write_temp(key, stream, known if length is None else length)
        return self._install(key, tmp, final, exclusive=True)

    def copy(self, source: str, destination: str) -> BlobInfo:
        self.path(destination)
        with self.open(source) as stream:
            size = self.stat(source).size
            self.put_stream(destination, stream, size)
        return self.stat(destination)

    def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        self._prune(path.parent)

    def _prune(self, directory: Path) -> None:
        """Remove directories left empty by a delete, up to the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    return
                raise
            directory = directory.parent

    # --- reading ----------------------------------------------------------

    def check(self) -> None:
        if not (self._tmp.is_dir() and os.access(self._tmp, os.W_OK)):
            raise BlobStoreError(f"blob store directory {self.root} is not writable")

    def open(self, key: str) -> AbstractContextManager[Readable]:
        path = self.path(key)
        try:
            return path.open("rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise BlobNotFound(f"blob {key!r} not found in {self.root}") from None

    def stat(self, key: str) -> BlobInfo:
        path = self.path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise BlobNotFound(f"blob {key!r} not found in {self.root}") from None
        if not path.is_file():
            raise BlobNotFound(f"blob {key!r} not found in {self.root}")
        return _info(key, st)

    def list(self, prefix: str = "") -> Iterator[BlobInfo]:
        validate_prefix(prefix)
        directory = self.root.joinpath(*prefix.split("/")[:-1])
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(directory):
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = [d for d in dirnames if d != RESERVED_FIRST_SEGMENT]
            rel = here.relative_to(self.root).as_posix()
            base = "" if rel == "." else rel + "/"
            keys.extend(base + name for name in filenames if (base + name).startswith(prefix))
        for key in sorted(keys, key=lambda k: k.encode()):
            # Files that are not valid keys (put there by hand) are not objects.
            with contextlib.suppress(BlobNotFound, InvalidBlobKey):
                yield self.stat(key)


def _info(key: str, st: os.stat_result) -> BlobInfo:
    return BlobInfo(
        key=key,
        size=st.st_size,
        # A write installs a new inode, so the etag changes with every write.
        etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
        last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
    )
