"""Gzip members written one at a time, and read back one at a time with bounded expansion.

A v2 package is several gzip members back to back. What is signed and hashed
is each member's exact *compressed* bytes, so the reader must know where one
member ends and the next begins while it inflates. ``GzipMemberReader`` does
that lazily: it starts inflating member N+1 only when its consumer asks for
bytes past the end of member N, which lets the consumer decide (from what it
read in member N) how member N+1 must be hashed.

Compressed output uses zlib's gzip wrapper at level 9: header mtime 0, no file
name, OS byte 3 — the ``gzip -9n`` header abuild and apk produce.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from apkfarm.apk.errors import ApkFormatError, ApkIntegrityError, ApkLimitError

GZIP_LEVEL = 9
GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 1 << 16
_INFLATE_CHUNK = 1 << 18


class Hasher(Protocol):
    """The part of a hashlib object the member reader needs."""

    def update(self, data: bytes | memoryview, /) -> None: ...


def compressor(level: int = GZIP_LEVEL) -> zlib._Compress:
    """A deflate stream with a gzip header: mtime 0, no name (``gzip -n``)."""
    return zlib.compressobj(level, zlib.DEFLATED, 31)


def compress_member(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """One complete gzip member holding ``data``."""
    deflate = compressor(level)
    return deflate.compress(data) + deflate.flush()


class MemberWriter:
    """Compress a stream of bytes into one gzip member written to ``out``, hashing the output."""

    def __init__(self, out: BinaryIO, hashers: Sequence[Hasher] = (), level: int = GZIP_LEVEL):
        self._out = out
        self._hashers = tuple(hashers)
        self._deflate = compressor(level)
        self.compressed_size = 0
        self.uncompressed_size = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            for hasher in self._hashers:
                hasher.update(data)
            self.compressed_size += len(data)

    def write(self, data: bytes) -> None:
        self.uncompressed_size += len(data)
        self._emit(self._deflate.compress(data))

    def close(self) -> None:
        self._emit(self._deflate.flush())


def split_members(data: bytes, max_members: int = 16) -> list[bytes]:
    """Split a small in-memory gzip stream into its members' compressed bytes.

    For small inputs (an index, a control member) only; it inflates every
    member to find its end. Use ``GzipMemberReader`` for streams.
    """
    members: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(members) == max_members:
            raise ApkFormatError(f"more than {max_members} gzip members")
        if data[pos : pos + 2] != GZIP_MAGIC:
            raise ApkFormatError(f"byte {pos}: not the start of a gzip member")
        inflater = zlib.decompressobj(31)
        try:
            while not inflater.eof:
                chunk = inflater.unconsumed_tail or data[pos:]
                inflater.decompress(chunk, _INFLATE_CHUNK)
                if not inflater.eof and not inflater.unconsumed_tail:
                    raise ApkFormatError(f"byte {pos}: gzip member is truncated")
        except zlib.error as error:
            raise ApkFormatError(f"byte {pos}: corrupt gzip member ({error})") from None
        end = len(data) - len(inflater.unused_data)
        members.append(data[pos:end])
        pos = end
    return members


@dataclass
class MemberSummary:
    """What the reader learnt about one member it finished."""

    index: int
    compressed_size: int
    uncompressed_size: int


@dataclass
class _Member:
    index: int
    inflater: zlib._Decompress
    hashers: tuple[Hasher, ...]
    limit: int
    compressed: int = 0
    uncompressed: int = 0
    out: bytearray = field(default_factory=bytearray)


class GzipMemberReader:
    """Inflate consecutive gzip members from a binary stream, one member at a time.

    ``hashers_for(i)`` is called when member ``i`` starts and returns the
    hashers that must see that member's compressed bytes. ``limit_for(i)``
    bounds member ``i``'s inflated size; ``describe(i)`` names it in errors.
    Memory stays bounded by the read and inflate chunk sizes.
    """

    def __init__(
        self,
        stream: BinaryIO,
        *,
        source: str,
        hashers_for: Callable[[int], Sequence[Hasher]],
        limit_for: Callable[[int], int],
        describe: Callable[[int], str],
        total_limit: int,
    ) -> None:
        self._stream = stream
        self._source = source
        self._hashers_for = hashers_for
        self._limit_for = limit_for
        self._describe = describe
        self._total_limit = total_limit
        self._total_out = 0
        self._pending = b""  # compressed bytes read but not yet fed to an inflater
        self._stream_eof = False
        self._member: _Member | None = None
        self.finished: list[MemberSummary] = []
        self.bytes_read = 0
        self._stop_before: int | None = None

    @property
    def member_count(self) -> int:
        """Members started so far."""
        return len(self.finished) + (0 if self._member is None else 1)

    def _where(self, index: int) -> str:
        return f"{self._source}: {self._describe(index)}"

    def _fill(self) -> bool:
        """Read more compressed input; False at the end of the stream."""
        if self._stream_eof:
            return False
        data = self._stream.read(_READ_CHUNK)
        if not data:
            self._stream_eof = True
            return False
        self.bytes_read += len(data)
        self._pending = self._pending + data if self._pending else data
        return True

    def stop_before(self, index: int) -> None:
        """Make reads end (as at the end of input) where member ``index`` would start."""
        self._stop_before = index

    def hash_rest_raw(self, hashers: Sequence[Hasher]) -> int:
        """Feed everything after the finished members to ``hashers`` without inflating it.

        Used when only the digest of the remaining member matters (the signed
        ``datahash`` covers it exactly), which makes reading metadata cheap.
        """
        if self._member is not None:
            raise ApkFormatError(f"{self._where(self._member.index)}: not read to its end")
        total = 0
        while self._pending or self._fill():
            for hasher in hashers:
                hasher.update(self._pending)
            total += len(self._pending)
            self._pending = b""
        return total

    def _start_member(self) -> bool:
        """Begin the next member; False when the input has ended cleanly."""
        if self._stop_before is not None and len(self.finished) >= self._stop_before:
            return False
        while len(self._pending) < 2 and self._fill():
            pass
        if not self._pending:
            return False
        index = len(self.finished)
        if len(self._pending) < 2 and GZIP_MAGIC.startswith(self._pending):
            raise ApkFormatError(f"{self._where(index)}: truncated inside the gzip header")
        if self._pending[:2] != GZIP_MAGIC:
            if index == 0:
                raise ApkFormatError(f"{self._source}: not a gzip stream")
            raise ApkFormatError(f"{self._where(index)}: does not start with a gzip header")
        self._member = _Member(
            index=index,
            inflater=zlib.decompressobj(31),
            hashers=tuple(self._hashers_for(index)),
            limit=self._limit_for(index),
        )
        return True

    def _inflate_some(self, member: _Member) -> None:
        """Inflate one chunk of the current member into its output buffer."""
        if not self._pending and not self._fill():
            raise ApkFormatError(
                f"{self._where(member.index)}: truncated (the input ends inside the gzip member)"
            )
        pending = self._pending
        try:
            data = member.inflater.decompress(pending, _INFLATE_CHUNK)
        except zlib.error as error:
            kind = ApkIntegrityError if "check" in str(error) else ApkFormatError
            raise kind(f"{self._where(member.index)}: corrupt gzip data ({error})") from None
        leftover = member.inflater.unconsumed_tail
        if member.inflater.eof:
            leftover = member.inflater.unused_data
        consumed = len(pending) - len(leftover)
        if consumed:
            view = memoryview(pending)[:consumed]
            for hasher in member.hashers:
                hasher.update(view)
            member.compressed += consumed
        self._pending = bytes(leftover) if leftover else b""
        member.uncompressed += len(data)
        self._total_out += len(data)
        if member.uncompressed > member.limit:
            raise ApkLimitError(
                f"{self._where(member.index)}: inflates beyond the limit of "
                f"{member.limit} bytes (gzip bomb?)"
            )
        if self._total_out > self._total_limit:
            raise ApkLimitError(
                f"{self._source}: inflates beyond the total limit of {self._total_limit} bytes"
            )
        member.out += data

    def _end_member(self, member: _Member) -> None:
        self.finished.append(MemberSummary(member.index, member.compressed, member.uncompressed))
        self._member = None

    def read_blocks(self, size: int) -> tuple[bytes, int]:
        """Exactly ``size`` inflated bytes from one member, or ``(b"", -1)`` at the end."""
        member = self._member
        if member is None:
            if not self._start_member():
                return b"", -1
            member = self._member
            assert member is not None
        while len(member.out) < size:
            if member.inflater.eof:
                if not member.out:
                    self._end_member(member)
                    return self.read_blocks(size)
                raise ApkFormatError(
                    f"{self._where(member.index)}: the member ends inside a tar block "
                    f"({len(member.out)} bytes left over)"
                )
            self._inflate_some(member)
        data = bytes(member.out[:size])
        del member.out[:size]
        if not member.out and member.inflater.eof:
            self._end_member(member)
        return data, member.index

    def drain_zeros(self) -> None:
        """After end-of-archive: the rest of the current member must be zeros, as apk demands."""
        member = self._member
        if member is None:
            return
        while True:
            if member.out.count(0) != len(member.out):
                raise ApkFormatError(
                    f"{self._where(member.index)}: non-zero data after the end-of-archive marker"
                )
            member.out.clear()
            if member.inflater.eof:
                self._end_member(member)
                return
            self._inflate_some(member)

    def ensure_end(self) -> None:
        """Refuse anything after the last member: an extra member or trailing garbage."""
        last = len(self.finished) - 1
        if self._member is not None:
            raise ApkFormatError(f"{self._where(self._member.index)}: not read to its end")
        while not self._pending and self._fill():
            pass
        if not self._pending:
            return
        while len(self._pending) < 2 and self._fill():
            pass
        if self._pending[:2] == GZIP_MAGIC:
            raise ApkFormatError(
                f"{self._where(last)}: followed by an unexpected extra gzip member"
            )
        raise ApkFormatError(f"{self._where(last)}: followed by trailing garbage")
