"""The data member's deflate engines: fixed bytes per setting, our own gzip header, a bounded
pipeline whose errors reach the writer, and the template spellings it accepts."""

from __future__ import annotations

import errno
import hashlib
import io
import itertools
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path

import pytest
from conftest import require

from apkfarm.apk.errors import PackageInputError
from apkfarm.apk.gzip_members import (
    CHUNK,
    DEFAULT_DATA_COMPRESSION,
    GZIP_HEADER,
    DataCompression,
    MemberWriter,
    compress_member,
    data_compression_for,
)

ENGINES = [*(DataCompression("isal", level) for level in range(4)), DataCompression("zlib", 1)]
ENGINES += [DataCompression("zlib", 6), DataCompression("zlib", 9), DataCompression("zlib", 0)]


def sample(size: int, seed: int = 1) -> bytes:
    """Text-like lines with stretches of random bytes: compressible, not trivially."""
    rng = random.Random(seed)
    words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(400)]
    out = bytearray()
    while len(out) < size:
        if rng.random() < 0.2:
            out += rng.randbytes(rng.randint(16, 512))
        else:
            out += b" ".join(rng.choices(words, k=rng.randint(5, 40))) + b"\n"
    return bytes(out[:size])


def member(data: bytes, compression: DataCompression, cuts: list[int] | None = None) -> bytes:
    """The member of ``data`` written in pieces ending at ``cuts``; checks the hashers' view."""
    out = io.BytesIO()
    sha = hashlib.sha256()
    bounds = [0, *(cuts or []), len(data)]
    with MemberWriter(out, [sha], compression) as writer:
        for start, end in itertools.pairwise(bounds):
            writer.write(data[start:end])
    result = out.getvalue()
    assert sha.digest() == hashlib.sha256(result).digest()
    assert writer.compressed_size == len(result)
    assert writer.uncompressed_size == len(data)
    return result


def deflate_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "apk-deflate" and t.is_alive()]


DATA = sample(2 * CHUNK + 12_345)


@pytest.mark.parametrize("compression", ENGINES, ids=str)
def test_member_bytes_do_not_depend_on_how_the_input_is_written(
    compression: DataCompression,
) -> None:
    """ISA-L's own output changes with its call sizes; the writer's fixed chunks hide that."""
    whole = member(DATA, compression)
    rng = random.Random(5)
    ragged = sorted(rng.sample(range(1, len(DATA)), 300))
    around_chunks = [1, 7, CHUNK - 1, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 3]
    assert member(DATA, compression, ragged) == whole
    assert member(DATA, compression, around_chunks) == whole
    assert whole[:10] == GZIP_HEADER
    assert zlib.decompress(whole, wbits=31) == DATA  # checks the trailer's CRC and size


def test_engines_and_levels_give_different_streams_of_the_same_content() -> None:
    members = {str(c): member(DATA, c) for c in ENGINES}
    assert len(set(members.values())) == len(members)
    assert {zlib.decompress(m, wbits=31) for m in members.values()} == {DATA}
    # Stored blocks: zlib level 0 keeps the size (plus block headers).
    assert len(members["zlib:0"]) > len(DATA) > len(members["isal:2"]) > len(members["zlib:9"])


@pytest.mark.parametrize("level", [1, 6, 9])
def test_zlib_engine_writes_what_zlibs_gzip_wrapper_writes(level: int) -> None:
    """At level 9 byte for byte the member the writer produced before engines existed."""
    ours = member(DATA, DataCompression("zlib", level))
    theirs = compress_member(DATA, level)
    assert ours[10:] == theirs[10:]
    if level == 9:
        assert ours == theirs  # zlib writes XFL 2 for level 9 itself
    else:
        assert theirs[8] != ours[8] == 2  # zlib's XFL says the level; ours is fixed


def test_small_members_are_compressed_without_a_thread() -> None:
    before = threading.active_count()
    small = member(b"small" * 1000, DEFAULT_DATA_COMPRESSION)
    assert threading.active_count() == before
    assert zlib.decompress(small, wbits=31) == b"small" * 1000
    empty = member(b"", DEFAULT_DATA_COMPRESSION)
    assert empty[:10] == GZIP_HEADER and zlib.decompress(empty, wbits=31) == b""


class FullDisk:
    """A sink that accepts ``room`` bytes, then fails like a full file system."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def test_an_error_of_the_compressor_thread_reaches_the_writer_and_stops_it() -> None:
    noise = random.Random(2).randbytes(CHUNK)  # incompressible: fills the sink quickly
    writer = MemberWriter(FullDisk(3 * CHUNK), [], DEFAULT_DATA_COMPRESSION)
    with pytest.raises(OSError, match="No space left"), writer:
        for _ in range(64):
            writer.write(noise)
    assert deflate_threads() == []
    with pytest.raises(ValueError, match="finished"):
        writer.write(b"more")


def test_an_error_of_the_caller_stops_the_thread_without_finishing() -> None:
    out = io.BytesIO()
    with pytest.raises(RuntimeError, match="input went away"), MemberWriter(out) as writer:
        writer.write(DATA)
        raise RuntimeError("input went away")
    assert deflate_threads() == []
    written = out.getvalue()
    with pytest.raises(zlib.error):  # no end of stream, no trailer
        zlib.decompress(written, wbits=31)


class Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def test_memory_stays_flat_when_the_compressor_is_slower_than_the_writer() -> None:
    """64 MiB through zlib (~100 MB/s) written as fast as memory copies: the queue must block."""
    block = random.Random(3).randbytes(256 << 10)
    tracemalloc.start()
    try:
        with MemberWriter(Discard(), [], DataCompression("zlib", 1)) as writer:
            for _ in range(256):
                writer.write(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert writer.uncompressed_size == 64 << 20
    assert peak < 12 * CHUNK, f"peak {peak / CHUNK:.1f} MiB"


# ----------------------------------------------------------------------------- settings


def test_template_specs_map_onto_deflate() -> None:
    default = DataCompression("isal", 1)
    assert data_compression_for(None, default) is default
    assert data_compression_for("deflate", default) is default
    assert data_compression_for("deflate:9", default) == DataCompression("zlib", 9)
    assert data_compression_for("deflate:0", default) == DataCompression("zlib", 0)
    assert data_compression_for("none", default) == DataCompression("zlib", 0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("zstd", "apk v2 packages are gzip, zstd needs apk v3"),
        ("zstd:19", "zstd needs apk v3 packages"),
        ("deflate:10", "expected one of deflate, deflate:0..9 or none"),
        ("deflate:x", "expected one of deflate"),
        ("none:1", "expected one of deflate"),
        ("deflate:\u00b2", "expected one of deflate"),
        ("lz4", "expected one of deflate"),
    ],
)
def test_template_specs_that_a_v2_package_cannot_hold_are_refused(spec: str, message: str) -> None:
    with pytest.raises(PackageInputError, match=message):
        data_compression_for(spec, DEFAULT_DATA_COMPRESSION)


def test_operator_settings_parse_and_check_levels() -> None:
    assert DataCompression.parse("isal:2") == DEFAULT_DATA_COMPRESSION
    assert str(DataCompression.parse("zlib:9")) == "zlib:9"
    with pytest.raises(PackageInputError, match=r"compression isal:4: isal levels are 0\.\.3"):
        DataCompression.parse("isal:4")
    with pytest.raises(PackageInputError, match="unknown deflate engine 'zstd'"):
        DataCompression.parse("zstd:3")
    for spec in ("isal", "isal:", "zlib:\u00b2", "zlib:-1"):
        with pytest.raises(PackageInputError, match="expected ENGINE:LEVEL"):
            DataCompression.parse(spec)


# ----------------------------------------------------------------------------- CPU paths

_DIGEST_SCRIPT = """
import hashlib, io, sys
from apkfarm.apk.gzip_members import DataCompression, MemberWriter
data = open(sys.argv[1], "rb").read()
for spec in sys.argv[2:]:
    out = io.BytesIO()
    with MemberWriter(out, [], DataCompression.parse(spec)) as writer:
        writer.write(data)
    print(spec, hashlib.sha256(out.getvalue()).hexdigest())
"""
_SPECS = ["isal:1", "isal:2", "isal:3", "zlib:9"]


def _digests(tmp_path: Path, cpu: str | None) -> dict[str, str]:
    import isal  # noqa: PLC0415

    data_file = tmp_path / "data.bin"
    if not data_file.exists():
        data_file.write_bytes(DATA)
    roots = [str(Path(__file__).resolve().parents[2]), str(Path(isal.__file__).parents[1])]
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(roots)}
    interpreter = os.path.realpath(sys.executable)
    emulator = [] if cpu is None else ["qemu-x86_64-static", "-cpu", cpu]
    run = subprocess.run(
        [*emulator, interpreter, "-c", _DIGEST_SCRIPT, str(data_file), *_SPECS],
        env=env,
        capture_output=True,
        check=True,
        timeout=600,
    )
    return dict(line.split() for line in run.stdout.decode().splitlines())


@pytest.mark.cross
def test_isal_bytes_depend_on_the_cpu_class_as_the_docstring_says(tmp_path: Path) -> None:
    """Run the writer under qemu-x86_64 with older CPU models and compare with this machine.

    Documents (and watches for changes in) what ``gzip_members`` states: ISA-L
    levels 1-2 are the same from SSE4.2 up to AVX2, differ without SSE4.2;
    level 3 differs between AVX2 and older; zlib is the same everywhere.
    """
    require(platform.machine() == "x86_64", "the CPU models emulated here are x86-64 ones")
    require(shutil.which("qemu-x86_64-static") is not None, "qemu-x86_64-static is missing")
    with open("/proc/cpuinfo") as cpuinfo:
        flags = cpuinfo.read()
    require(" avx2" in flags, "this comparison needs an AVX2 host")
    native = _digests(tmp_path, None)
    nehalem = _digests(tmp_path, "Nehalem")  # SSE4.2, no AVX
    haswell = _digests(tmp_path, "Haswell")  # AVX2
    baseline = _digests(tmp_path, "qemu64")  # x86-64 without SSE4.2
    for spec in ("isal:1", "isal:2"):
        assert native[spec] == nehalem[spec] == haswell[spec] != baseline[spec]
    assert native["isal:3"] == haswell["isal:3"] != nehalem["isal:3"]
    assert native["zlib:9"] == nehalem["zlib:9"] == haswell["zlib:9"] == baseline["zlib:9"]
