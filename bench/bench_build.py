"""Benchmark of the builder: what the build sandbox costs, and packaging throughput.

    .venv/bin/python bench/bench_build.py [--runs 7] [--files 10000] [--part packaging]

1. Sandbox overhead: the same real builds of the example tree (libgreet
   with gnu_configure, tally with cmake, wordfreq with meson; sources,
   configure, compile, check, install, split, package) run alternately in
   the bwrap sandbox and in the runner's unsandboxed benchmark-only mode;
   the overhead is the difference of the medians, against the median of
   the unsandboxed build. Goal: under 5 %. As the builds are short and
   their timings noisy, the sandbox's fixed cost is also measured alone:
   starting ``/bin/true`` in a sandbox made like a build's (build root,
   binds, tmpfs, uid drop, limits) against starting it directly.
2. Packaging: a package of 10,000 files (C headers of the build root,
   cycled), taken from its staged tree through scan, lint and the apk
   writer with the default data compression (ISA-L level 2 on a thread
   beside the tar writer). Goal: at least 50 MB/s of installed bytes. The
   data member's size is compared with zlib -9's (what abuild writes, and
   the farm's writer before engines), which is also timed; then where the
   time goes (scanning and linting, the writer with stored blocks, the
   default engine alone on the data tar) and the other engines a template
   or an operator may choose.

Prints each figure and its ratio to the goal (< 1.0 means within the goal
for the overhead; >= 1.0 for the throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path, PurePosixPath

from apkfarm.apk.gzip_members import (
    CHUNK,
    DEFAULT_DATA_COMPRESSION,
    DataCompression,
    MemberWriter,
)
from apkfarm.build.lint import lint_packages
from apkfarm.build.log import MemoryLog, PhaseFinished
from apkfarm.build.packaging import StagedEntry, package_build
from apkfarm.build.result import BuildRequest
from apkfarm.build.runner import (
    EXAMPLES_TREE,
    BuilderSettings,
    run_build,
    run_build_unsandboxed_for_benchmark,
)
from apkfarm.build.scan import ScanEnvironment, scan_packages
from apkfarm.build.staged import StagedPackage
from apkfarm.profiles import resolve_context
from apkfarm.sandbox import Bind, BuildRoot, SandboxSpec, Tmpfs, write_identity_files
from apkfarm.templates.model import Template
from apkfarm.templates.rules import LoadPolicy, apply_rules

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import make_distfiles

OVERHEAD_GOAL = 0.05
THROUGHPUT_GOAL_MB_S = 50.0
TEMPLATES = ("main/libgreet", "main/tally", "main/wordfreq")
EPOCH = 1_704_067_200


def distfiles(directory: Path) -> dict[str, Path]:
    return {name: directory / name for name in make_distfiles.make_distfiles(directory)}


def one_build(
    template: str, sources: dict[str, Path], work: Path, *, sandboxed: bool
) -> tuple[float, float]:
    """Seconds for the whole build, and for its sandboxed part (the driver's phases)."""
    request = BuildRequest(
        tree=EXAMPLES_TREE,
        template=template,
        arch="x86_64",
        sources=sources,
        dependencies=None,
        work_dir=work,
        source_date_epoch=EPOCH,
        timeout=600,
        silence_timeout=300,
    )
    log = MemoryLog()
    settings = BuilderSettings(jobs=os.cpu_count() or 1)
    runner = run_build if sandboxed else run_build_unsandboxed_for_benchmark
    start = time.perf_counter()
    result = asyncio.run(runner(request, log, settings=settings))
    elapsed = time.perf_counter() - start
    result.close()
    ends = {e.phase: e.elapsed for e in log.events if isinstance(e, PhaseFinished)}
    driver = ends["split"] - ends["extract"]  # sandbox start to the last driver phase
    shutil.rmtree(work)
    return elapsed, driver


def sandbox_overhead(root: Path, runs: int) -> bool:
    sources = distfiles(root / "distfiles")
    met = True
    shortest = float("inf")
    counter = itertools.count()
    for template in TEMPLATES:
        timings: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for sandboxed in (True, False):  # warm caches for both
            one_build(template, sources, root / f"w{next(counter)}", sandboxed=sandboxed)
        for _ in range(runs):
            for sandboxed in (True, False):
                timings[sandboxed].append(
                    one_build(template, sources, root / f"w{next(counter)}", sandboxed=sandboxed)
                )
        inside = statistics.median(t for t, _ in timings[True])
        outside = statistics.median(t for t, _ in timings[False])
        inside_driver = statistics.median(d for _, d in timings[True])
        outside_driver = statistics.median(d for _, d in timings[False])
        shortest = min(shortest, outside)
        overhead = inside - outside
        share = overhead / outside
        met &= share < OVERHEAD_GOAL
        print(
            f"{template}: build {outside:.3f} s unsandboxed, {inside:.3f} s in bwrap "
            f"(medians of {runs}); overhead {overhead * 1000:+.0f} ms = {share:+.1%} "
            f"({share / OVERHEAD_GOAL:.2f}x of the 5 % goal); "
            f"phases in the sandbox {inside_driver:.3f} s vs {outside_driver:.3f} s"
        )
    cost = sandbox_start_cost(root)
    print(
        f"sandbox start cost alone: {cost * 1000:.1f} ms per build (median of 20 starts of "
        f"/bin/true in a build-like sandbox vs directly) = {cost / shortest:.1%} of the "
        f"shortest build above ({shortest:.3f} s)"
    )
    return met


def sandbox_start_cost(root: Path, runs: int = 20) -> float:
    """Median seconds a build-like sandbox adds to starting one program."""
    build_root = BuildRoot()
    binds, links = build_root.mounts()
    work = root / "start"
    for name in ("builddir", "destdir", "sysroot", "etc"):
        (work / name).mkdir(parents=True)
    identity = write_identity_files(work / "etc", uid=2_100_000_999, gid=2_100_000_999)
    spec = SandboxSpec(
        binds=(
            *binds,
            *identity,
            Bind(work / "sysroot", PurePosixPath("/sysroot")),
            Bind(work / "builddir", PurePosixPath("/builddir"), writable=True),
            Bind(work / "destdir", PurePosixPath("/destdir"), writable=True),
        ),
        symlinks=links,
        tmpfs=(Tmpfs(PurePosixPath("/tmp"), 1 << 30, mode=0o1777),),
        proc=True,
        uid=2_100_000_999,
        gid=2_100_000_999,
        limits=BuilderSettings().limits,
        read_only_root=True,
    )
    argv = spec.argv(["/bin/true"])

    def timed(command: list[str]) -> float:
        start = time.perf_counter()
        subprocess.run(command, check=True, env=spec.popen_env())
        return time.perf_counter() - start

    sandboxed = statistics.median(timed(argv) for _ in range(runs))
    direct = statistics.median(timed(["/bin/true"]) for _ in range(runs))
    return sandboxed - direct


def staged_tree(root: Path, count: int) -> int:
    headers = sorted(
        p for p in Path("/usr/include").rglob("*.h") if p.is_file() and not p.is_symlink()
    )
    if not headers:
        raise SystemExit("bench_build: no C headers in /usr/include to stage")
    total = 0
    for index, source in zip(range(count), itertools.cycle(headers), strict=False):
        directory = root / "usr/share/bench" / f"d{index // 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        data = source.read_bytes()
        (directory / f"f{index:05d}.h").write_bytes(data)
        total += len(data)
    return total


def bench_template() -> Template:
    raw = {
        "ok": True,
        "fields": {
            "pkgname": "bench",
            "pkgver": "1.0.0",
            "pkgrel": 0,
            "pkgdesc": "Package with many files",
            "license": "BSD-2-Clause",
            "url": "https://apkfarm.example.org/bench",
            "options": ["!autosplit"],
        },
        "subpackages": [],
    }
    outcome = apply_rules(
        raw,
        category="main",
        dirname="bench",
        context=resolve_context("x86_64", host="x86_64"),
        policy=LoadPolicy(),
    )
    assert outcome.template is not None, outcome.errors
    return outcome.template


ZLIB9 = DataCompression("zlib", 9)
STORED = DataCompression("zlib", 0)
OTHER_ENGINES = (DataCompression("isal", 1), DataCompression("zlib", 1), DataCompression("zlib", 6))


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def packaging(root: Path, count: int) -> bool:
    destdir = root / "destdir"
    staged = destdir / "bench-1.0.0"
    total = staged_tree(staged, count)
    template = bench_template()
    template_dir = root / "template"
    template_dir.mkdir()

    def pack(compression: DataCompression, keep: bool = False) -> tuple[float, int, bytes]:
        """Seconds, the data member's size, and (with ``keep``) the data tar."""
        start = time.perf_counter()
        built, _ = package_build(
            template,
            [StagedEntry("bench")],
            arch="x86_64",
            destdir=destdir,
            template_dir=template_dir,
            sysroot_provides={},
            base_libraries=frozenset(),
            source_date_epoch=EPOCH,
            spool_dir=root,
            compression=compression,
        )
        elapsed = time.perf_counter() - start
        (package,) = built
        with package.package as unsigned:
            size = unsigned.data.size
            tar = zlib.decompress(b"".join(unsigned.data.chunks()), wbits=31) if keep else b""
        return elapsed, size, tar

    def rate(seconds: float) -> float:
        return total / 1e6 / seconds

    pack(DEFAULT_DATA_COMPRESSION)  # page cache
    runs = [pack(DEFAULT_DATA_COMPRESSION) for _ in range(3)]
    elapsed = statistics.median(seconds for seconds, _, _ in runs)
    size = runs[0][1]
    zlib9_seconds, zlib9_size, _ = pack(ZLIB9)
    ratio = size / zlib9_size
    print(
        f"packaging: {count} files, {total / 1e6:.1f} MB in {elapsed:.2f} s = "
        f"{rate(elapsed):.1f} MB/s ({rate(elapsed) / THROUGHPUT_GOAL_MB_S:.2f}x of the "
        f"{THROUGHPUT_GOAL_MB_S:.0f} MB/s goal; median of 3, data compression "
        f"{DEFAULT_DATA_COMPRESSION}); data member {size / 1e6:.1f} MB = {ratio:.3f}x "
        f"zlib -9's {zlib9_size / 1e6:.1f} MB (+{ratio - 1:.1%})"
    )
    print(
        f"  with zlib:9 instead (abuild's level, the writer before engines): "
        f"{zlib9_seconds:.2f} s = {rate(zlib9_seconds):.1f} MB/s"
    )

    start = time.perf_counter()
    package = StagedPackage("bench", staged)
    scans = scan_packages([package], ScanEnvironment("x86_64", "1.0.0", 0))
    lint_packages([package], elves={n: s.elves for n, s in scans.items()})
    scan_lint = time.perf_counter() - start
    stored_seconds, _, tar = pack(STORED, keep=True)
    tar_size = len(tar)
    start = time.perf_counter()
    with MemberWriter(_Discard(), [], DEFAULT_DATA_COMPRESSION) as writer:
        for offset in range(0, tar_size, CHUNK):
            writer.write(tar[offset : offset + CHUNK])
    engine_alone = time.perf_counter() - start
    del tar
    print(
        f"  where it goes: scan+lint {scan_lint:.2f} s; the whole packaging with stored "
        f"blocks (zlib:0: no deflate work, but the whole tar to hash and spool) "
        f"{stored_seconds:.2f} s; "
        f"{DEFAULT_DATA_COMPRESSION} alone on {tar_size / 1e6:.0f} MB "
        f"{engine_alone:.2f} s (on its own thread, overlapping the writer)"
    )
    for other in OTHER_ENGINES:
        seconds, other_size, _ = pack(other)
        print(
            f"  other engines: {other}: {seconds:.2f} s = {rate(seconds):.1f} MB/s, data member "
            f"{other_size / zlib9_size:.3f}x zlib -9's"
        )
    return rate(elapsed) >= THROUGHPUT_GOAL_MB_S


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--part", choices=("all", "sandbox", "packaging"), default="all")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}")
    overhead_met = packaging_met = True
    with tempfile.TemporaryDirectory(prefix="bench-build-") as temp:
        root = Path(temp)
        if args.part in ("all", "sandbox"):
            overhead_met = sandbox_overhead(root / "builds", args.runs)
        if args.part in ("all", "packaging"):
            (root / "pack").mkdir()
            packaging_met = packaging(root / "pack", args.files)
    met = overhead_met and packaging_met
    print("goals met" if met else "goals NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
