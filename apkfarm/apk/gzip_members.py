"""Gzip members written one at a time, and read back one at a time with bounded expansion.

A v2 package is several gzip members back to back. What is signed and hashed
is each member's exact *compressed* bytes, so the reader must know where one
member ends and the next begins while it inflates. ``GzipMemberReader`` does
that lazily: it starts inflating member N+1 only when its consumer asks for
bytes past the end of member N, which lets the consumer decide (from what it
read in member N) how member N+1 must be hashed.

Writing. The small members (signature, control) are compressed in one call
by zlib at level 9 with zlib's gzip wrapper: header mtime 0, no file name,
XFL 2, OS 3 — the ``gzip -9n`` header abuild and apk produce.

The data member is nearly all of a package's bytes and of its packaging
time, so ``MemberWriter`` compresses it with a chosen deflate engine
(``DataCompression``: ``isal:0..3`` or ``zlib:0..9``) on a background
thread, while the caller's thread reads, hashes and tars the next files.
Both engines release the GIL while they deflate, so on two cores writing and
compressing overlap. The queue between the threads holds at most
``_QUEUE_DEPTH`` chunks of ``CHUNK`` bytes: memory stays flat in the size of
the package. Small members (under one chunk) never start a thread.

Why ISA-L level 2 by default. Packaging 10,000 files (134 MB installed, a
152 MB data tar of C headers; ``bench/bench_build.py``) spent 8.8 s of 10 s
in zlib level 9 on one core. Single-thread figures on that tar, as MB/s of
tar and compressed size relative to zlib -9:

    zlib 9 16.6 (1.00)   zlib 6 31 (1.011)   zlib 1 98 (1.26)
    isal 0 456 (1.31)    isal 1 397 (1.235)  isal 2 372 (1.221)  isal 3 88 (1.177)

(on 44 MB of mixed binaries and text: zlib -9 ratio .355, isal 1 .405,
isal 2 .398, isal 3 .390). ISA-L levels 1-2 are 20x faster than zlib -9,
far faster than the tar writer they run beside, for 14-22 % more bytes;
level 2 is as fast as level 1 and smaller. Level 3 is 4x slower and, unlike
levels 0-2, its output depends on AVX2 (below). zlib -9 stays available for
packages where size matters more (a template's ``compression = "deflate:9"``
or the builder's ``zlib:9``).

Determinism: the same input and ``DataCompression`` give the same bytes.

- The gzip header is ours, the same 10 bytes for every engine and level
  (mtime 0, no name, XFL 2, OS 3: the header of the other members), and
  the trailer (CRC-32, size) is computed here; engines only produce raw
  deflate.
- ISA-L's output depends on how its input is split into calls (five
  chunkings of one input gave five different streams), and so does zlib's
  at level 0 (stored blocks end where calls end); zlib's levels 1-9 do not.
  So the writer always feeds the engine exactly ``CHUNK`` bytes at a time,
  whatever sizes its caller writes: ``CHUNK`` is part of what defines the
  bytes, and changing it changes every ISA-L (and zlib:0) package.
- ISA-L picks code paths by CPU features at run time. Measured by running
  the same compression under qemu-x86_64 with different CPU models: levels
  0-2 give identical bytes with SSE4.2, AVX and AVX2 (Nehalem, SandyBridge,
  Haswell models and the AMD EPYC build host) but different bytes without
  SSE4.2 (the ``qemu64`` model, still the default CPU of many virtual
  machines: ISA-L falls back to C code with another hash); level 3 differs
  between AVX2 and older CPUs. ISA-L's dispatch tables give levels 1-2 no
  AVX-512 variant except the bit writer, which encodes the same symbols;
  that is read, not measured (no AVX-512 here). aarch64 has its own
  implementation: expect different bytes there. Builders of one machine
  class (x86-64 with SSE4.2, i.e. x86-64-v2 or later) reproduce each
  other's ISA-L packages; other machines may not.
- Both engines' output also depends on the library's version (python-isal
  bundles ISA-L; Python's zlib module uses the system zlib): the builder
  image pins both.

An operator who needs packages reproducible on any builder machine
configures the zlib engine: its output depends only on the input, the
level and the zlib version, never on the CPU.
"""

from __future__ import annotations

import queue
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, Protocol

from apkfarm.apk.errors import (
    ApkFormatError,
    ApkIntegrityError,
    ApkLimitError,
    PackageInputError,
)

GZIP_LEVEL = 9
GZIP_MAGIC = b"\x1f\x8b"
# deflate, no flags, mtime 0, XFL 2, OS 3 (Unix): what zlib writes for gzip -9n.
GZIP_HEADER = GZIP_MAGIC + b"\x08\x00\x00\x00\x00\x00\x02\x03"
CHUNK = 1 << 20  # the engine's input unit: part of what defines an ISA-L member's bytes
_QUEUE_DEPTH = 4
_READ_CHUNK = 1 << 16
_INFLATE_CHUNK = 1 << 18


class Hasher(Protocol):
    """The part of a hashlib object the member reader needs."""

    def update(self, data: bytes | memoryview, /) -> None: ...


class Sink(Protocol):
    """Where a member's bytes go: a file, a spool, a socket's writer."""

    def write(self, data: bytes, /) -> object: ...


class Deflater(Protocol):
    """A raw deflate stream (no header or trailer), as zlib's and ISA-L's compress objects are."""

    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self, mode: int = ..., /) -> bytes: ...


_ENGINE_LEVELS = {"isal": range(4), "zlib": range(10)}


@dataclass(frozen=True)
class DataCompression:
    """How a data member is deflated: an engine and its level, written ``isal:2`` or ``zlib:9``."""

    engine: str
    level: int

    def __post_init__(self) -> None:
        levels = _ENGINE_LEVELS.get(self.engine)
        if levels is None:
            raise PackageInputError(
                f"compression {self}: unknown deflate engine {self.engine!r} "
                f"(known: {', '.join(sorted(_ENGINE_LEVELS))})"
            )
        if self.level not in levels:
            raise PackageInputError(
                f"compression {self}: {self.engine} levels are {levels.start}..{levels.stop - 1}"
            )

    def __str__(self) -> str:
        return f"{self.engine}:{self.level}"

    @classmethod
    def parse(cls, spec: str) -> DataCompression:
        """``engine:level`` as an operator writes it (``isal:2``, ``zlib:9``)."""
        engine, colon, level = spec.partition(":")
        if not colon or not (level.isascii() and level.isdigit()):
            raise PackageInputError(
                f"compression {spec!r}: expected ENGINE:LEVEL such as isal:2 or zlib:9"
            )
        return cls(engine, int(level))

    def deflater(self) -> Deflater:
        """A fresh raw deflate stream of this engine and level."""
        if self.engine == "isal":
            from isal import isal_zlib  # noqa: PLC0415 - only packaging needs it

            return isal_zlib.compressobj(self.level, isal_zlib.DEFLATED, -15)
        return zlib.compressobj(self.level, zlib.DEFLATED, -15)


DEFAULT_DATA_COMPRESSION = DataCompression("isal", 2)
_CBUILD_KINDS = ("deflate", "none", "zstd")  # what cbuild's ``comp`` field type allows


def data_compression_for(spec: str | None, default: DataCompression) -> DataCompression:
    """A template's (cbuild's, apk-tools') compression spec for a v2 data member.

    ``None`` and ``deflate`` take ``default``; ``deflate:N`` is zlib at
    level N (the same bytes on every machine with the same zlib); ``none`` is zlib level 0
    (stored blocks: a v2 member is always gzip). ``zstd`` is refused: v2
    packages are gzip only.
    """
    if spec is None:
        return default
    kind, colon, level = spec.partition(":")
    if kind == "deflate" and not colon:
        return default
    if kind == "deflate" and level.isascii() and level.isdigit() and int(level) <= 9:
        return DataCompression("zlib", int(level))
    if spec == "none":
        return DataCompression("zlib", 0)
    if kind == "zstd":
        raise PackageInputError(
            f"compression {spec!r}: apk v2 packages are gzip, zstd needs apk v3 packages, "
            "which apkfarm does not write; use deflate or deflate:0..9"
        )
    raise PackageInputError(
        f"compression {spec!r}: expected one of deflate, deflate:0..9 or none "
        f"(cbuild's kinds are {', '.join(_CBUILD_KINDS)})"
    )


def compressor(level: int = GZIP_LEVEL) -> zlib._Compress:
    """A deflate stream with a gzip header: mtime 0, no name (``gzip -n``)."""
    return zlib.compressobj(level, zlib.DEFLATED, 31)


def compress_member(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """One complete gzip member holding ``data``."""
    deflate = compressor(level)
    return deflate.compress(data) + deflate.flush()


class MemberWriter:
    """Compress a stream of bytes into one gzip member written to ``out``, hashing the output.

    Input is cut into ``CHUNK``-sized pieces whatever the sizes of the
    writes; a background thread deflates them, writes the output to ``out``
    and feeds ``hashers``, so both see exactly the member's bytes. While the
    thread runs, only it touches ``out`` and ``hashers``.
    ``abort()`` (or leaving the ``with`` block by an exception) stops the
    thread without finishing the member. An error of the thread (a full
    disk) is raised in the caller at its next ``write`` or at ``close``.
    """

    def __init__(
        self,
        out: Sink,
        hashers: Sequence[Hasher] = (),
        compression: DataCompression = DEFAULT_DATA_COMPRESSION,
    ) -> None:
        self._out = out
        self._hashers = tuple(hashers)
        self._deflater = compression.deflater()
        self._crc = 0
        self._pending = bytearray()
        self._queue: queue.Queue[bytes | None] = queue.Queue(_QUEUE_DEPTH)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stopping = False
        self._finished = False
        self.compressed_size = 0
        self.uncompressed_size = 0
        self._emit(GZIP_HEADER)

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            for hasher in self._hashers:
                hasher.update(data)
            self.compressed_size += len(data)

    def _deflate(self, chunk: bytes) -> None:
        self._crc = zlib.crc32(chunk, self._crc)
        self._emit(self._deflater.compress(chunk))

    def _run(self) -> None:
        """The compressor thread: deflate chunks in order until ``None``."""
        while (chunk := self._queue.get()) is not None:
            if self._error is not None or self._stopping:
                continue  # keep draining, so the writer never blocks on a full queue
            try:
                self._deflate(chunk)
            except BaseException as error:  # handed to the writer's thread
                self._error = error

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _submit(self, chunk: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="apk-deflate", daemon=True)
            self._thread.start()
        self._raise_error()
        self._queue.put(chunk)  # blocks while the compressor is behind: bounded memory

    def write(self, data: bytes) -> None:
        if self._finished:
            raise ValueError("write to a finished gzip member")
        self.uncompressed_size += len(data)
        pending = self._pending
        pending += data
        if len(pending) >= CHUNK:
            full = len(pending) - len(pending) % CHUNK
            for start in range(0, full, CHUNK):
                self._submit(bytes(pending[start : start + CHUNK]))
            del pending[:full]

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def close(self) -> None:
        """Finish the member: the last chunk, the end of the deflate stream, the trailer."""
        if self._finished:
            return
        self._finished = True
        self._stop_thread()
        self._raise_error()
        if self._pending:
            self._deflate(bytes(self._pending))
            self._pending.clear()
        self._emit(self._deflater.flush())
        self._emit(struct.pack("<II", self._crc, self.uncompressed_size & 0xFFFFFFFF))

    def abort(self) -> None:
        """Stop compressing and drop what is queued; the member stays unfinished."""
        if self._finished:
            return
        self._finished = True
        self._stopping = True
        self._stop_thread()
        self._pending.clear()

    def __enter__(self) -> MemberWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


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
