"""Benchmark of the apk format code: writing, indexing, incremental updates, verify memory.

    .venv/bin/python bench/bench_apk.py [--packages 10000] [--large-mb 200]

Goals (2-core machine): full index of 10,000 packages under 3 s, incremental
add of one package under 100 ms, verification memory flat in package size.
Prints each figure and its ratio to the goal (< 1.0 means within the goal).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from apkfarm.apk.assemble import write_signed_package
from apkfarm.apk.keys import Keyring, generate_key_pair
from apkfarm.apk.package import build_package
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.apk.repository import (
    JOURNAL_NAME,
    STATE_NAME,
    Repository,
    update_repository,
)
from apkfarm.apk.signing import LocalKeySigner

FULL_INDEX_GOAL_S = 3.0
CORES = os.cpu_count() or 1
INCREMENTAL_GOAL_S = 0.100

_MEMORY_PROBE = """
import resource, sys, time, tracemalloc
from pathlib import Path
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import verify_package
keyring = Keyring.from_files([Path(sys.argv[2])])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
start = time.perf_counter()
with open(sys.argv[1], "rb") as stream:
    contents = verify_package(stream, keyring, source=sys.argv[1])
elapsed = time.perf_counter() - start
peak_py = tracemalloc.get_traced_memory()[1]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, peak_py, elapsed, contents.data_size)
"""


def make_trees(root: Path, count: int) -> list[Path]:
    trees = []
    for i in range(count):
        tree = root / f"tree{i}"
        (tree / "usr/bin").mkdir(parents=True)
        (tree / "usr/share/doc").mkdir(parents=True)
        (tree / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool %d\n" % i)
        (tree / "usr/share/doc/README").write_bytes(b"documentation %d\n" % i * 20)
        (tree / "usr/bin/tool").chmod(0o755)
        trees.append(tree)
    return trees


def write_package(repo: Path, tree: Path, signer: LocalKeySigner, name: str) -> None:
    info = PkgInfo(
        pkgname=name,
        pkgver="1.0-r0",
        arch="x86_64",
        pkgdesc=f"benchmark package {name}",
        url="https://example.org/bench",
        builddate=1_700_000_000,
        packager="Bench <bench@example.org>",
        origin=name,
        maintainer="Bench <bench@example.org>",
        license="MIT",
        depends=("so:libc.musl-x86_64.so.1",),
        provides=(f"cmd:{name}=1.0-r0",),
    )
    with build_package(tree, info) as unsigned, (repo / info.filename).open("wb") as out:
        write_signed_package(out, unsigned, [signer])


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: a figure other load cannot inflate."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def signing_cost(signer: LocalKeySigner) -> float:
    member = os.urandom(400)
    start = time.perf_counter()
    for _ in range(100):
        signer.sign(member)
    return (time.perf_counter() - start) / 100


def ratio(value: float, goal: float) -> str:
    return f"{value / goal:.2f}x of goal"


def memory_probe(package: Path, public_key: Path) -> tuple[int, int, int, float, int]:
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(package), str(public_key)],
        check=True,
        capture_output=True,
        text=True,
    )
    before, after, peak_py, elapsed, data_size = result.stdout.split()
    return int(before), int(after), int(peak_py), float(elapsed), int(data_size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=10_000)
    parser.add_argument("--large-mb", type=int, default=200)
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-apk-") as temp:
        root = Path(temp)
        pair = generate_key_pair(root / "keys", "bench@example.org", now=0x6553F100)
        signer = LocalKeySigner(pair.private_path)
        keyring = Keyring.from_files([pair.public_path])
        repo = root / "repo"
        repo.mkdir()
        trees = make_trees(root / "trees", 16)

        start = time.perf_counter()
        for i in range(args.packages):
            write_package(repo, trees[i % len(trees)], signer, f"pkg{i:05d}")
        elapsed = time.perf_counter() - start
        print(
            f"write: {args.packages} signed packages in {elapsed:.2f} s = "
            f"{args.packages / elapsed:.0f} packages/s (one core, RSA-2048 SHA-256 signatures)"
        )
        unsigned_dir = root / "unsigned"
        unsigned_dir.mkdir()
        sample = min(args.packages, 1000)
        start = time.perf_counter()
        for i in range(sample):
            info = PkgInfo(pkgname=f"u{i:05d}", pkgver="1.0-r0", arch="x86_64", builddate=1)
            with (
                build_package(trees[i % len(trees)], info) as unsigned,
                (unsigned_dir / info.filename).open("wb") as out,
            ):
                unsigned.write_unsigned(out)
        elapsed = time.perf_counter() - start
        print(
            f"write unsigned (builder side, no key): {sample / elapsed:.0f} packages/s; "
            f"signing one control member: {signing_cost(signer) * 1000:.2f} ms"
        )

        cpu_before = cpu_seconds()
        start = time.perf_counter()
        full = update_repository(repo, signers=[signer], keyring=keyring, description="bench")
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds() - cpu_before
        size = full.index_path.stat().st_size
        print(
            f"full index: {full.packages} packages verified and indexed in {elapsed:.2f} s "
            f"({ratio(elapsed, FULL_INDEX_GOAL_S)}; goal {FULL_INDEX_GOAL_S:.0f} s), "
            f"APKINDEX.tar.gz {size / 1024:.0f} KiB; CPU {cpu:.2f} s over all processes, "
            f"i.e. {cpu / CORES:.2f} s on {CORES} idle cores ({ratio(cpu / CORES, FULL_INDEX_GOAL_S)})"
        )

        # Cold updates, as `apkfarm index` runs them: each a fresh Repository that loads
        # the state file and its journal. Every figure is over several runs, adding and
        # then removing one package; one run in _JOURNAL_MAX_BATCHES also folds the
        # journal into a new state file (the worst case).
        def cold(label: str, scan: bool, rounds: int) -> None:
            results: dict[str, list[tuple[float, float]]] = {"add": [], "remove": []}
            for round_ in range(rounds):
                name = f"zz-{label}{round_:02d}"
                file_name = f"{name}-1.0-r0.apk"
                write_package(repo, trees[round_ % len(trees)], signer, name)
                for step in ("add", "remove"):
                    if step == "remove":
                        (repo / file_name).unlink()
                    cpu_before = time.process_time()
                    start = time.perf_counter()
                    if scan:
                        update = update_repository(
                            repo, signers=[signer], keyring=keyring, description="bench"
                        )
                    else:
                        repository = Repository(
                            repo, signers=[signer], keyring=keyring, description="bench"
                        )
                        if step == "add":
                            update = repository.packages_changed(written=[file_name])
                        else:
                            update = repository.packages_changed(deleted=[file_name])
                    results[step].append(
                        (time.perf_counter() - start, time.process_time() - cpu_before)
                    )
                    expected = (file_name,)
                    assert (update.added if step == "add" else update.removed) == expected
                    assert update.reread == (1 if step == "add" else 0)
            how = "scan + load state" if scan else "--added/--removed: load state, no scan"
            for step, runs in results.items():
                walls = sorted(wall for wall, _ in runs)
                cpus = sorted(cpu for _, cpu in runs)
                median, cpu_median = walls[len(walls) // 2], cpus[len(cpus) // 2]
                print(
                    f"incremental {step} of 1 package, {args.packages} indexed, cold ({how}), "
                    f"{len(runs)} runs: median {median * 1000:.0f} ms "
                    f"({ratio(median, INCREMENTAL_GOAL_S)}; goal {INCREMENTAL_GOAL_S * 1000:.0f} ms), "
                    f"best {walls[0] * 1000:.0f} ms, worst {walls[-1] * 1000:.0f} ms; CPU median "
                    f"{cpu_median * 1000:.0f} ms ({ratio(cpu_median, INCREMENTAL_GOAL_S)}), "
                    f"worst {cpus[-1] * 1000:.0f} ms"
                )

        cold("scan", scan=True, rounds=7)
        cold("named", scan=False, rounds=32)  # 64 updates: one of them folds the journal
        state_size = (repo / STATE_NAME).stat().st_size
        journal_size = (repo / JOURNAL_NAME).stat().st_size
        print(
            f"state file {state_size / 1e6:.2f} MB ({state_size / full.packages:.0f} bytes "
            f"per package), journal {journal_size / 1024:.1f} KiB"
        )

        cpu_before = time.process_time()
        start = time.perf_counter()
        again = update_repository(repo, signers=[signer], keyring=keyring, description="bench")
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_before
        assert not again.wrote_index
        print(
            f"no-change check of {again.packages} packages, cold: {elapsed * 1000:.0f} ms, "
            f"CPU {cpu * 1000:.0f} ms"
        )

        # Warm: what the indexer service does — state in memory, the package named by an event.
        warm = Repository(repo, signers=[signer], keyring=keyring, description="bench")
        timings = []
        cpu_timings = []
        for round_ in range(5):
            name = f"zz-warm{round_}"
            write_package(repo, trees[0], signer, name)
            cpu_before = time.process_time()
            start = time.perf_counter()
            update = warm.packages_changed(written=[f"{name}-1.0-r0.apk"])
            timings.append(time.perf_counter() - start)
            cpu_timings.append(time.process_time() - cpu_before)
            assert update.added == (f"{name}-1.0-r0.apk",) and update.reread == 1
        best = min(timings)
        print(
            f"incremental add of 1 package to {update.packages - 1}, warm (indexer: state in "
            f"memory, package named by an event): best {best * 1000:.0f} ms of 5, median "
            f"{sorted(timings)[2] * 1000:.0f} ms ({ratio(best, INCREMENTAL_GOAL_S)}), "
            f"CPU best {min(cpu_timings) * 1000:.0f} ms"
        )

        # Memory: verify a small and a large package in fresh interpreters.
        small = next(repo.glob("pkg00000-*.apk"))
        large_tree = root / "large"
        (large_tree / "usr/share/big").mkdir(parents=True)
        chunk = os.urandom(1 << 20)
        with (large_tree / "usr/share/big/blob").open("wb") as out:
            for i in range(args.large_mb):
                out.write(chunk[i:] + chunk[:i])  # 1 MiB of random bytes, rotated per MiB
        large_repo = root / "large-repo"
        large_repo.mkdir()
        start = time.perf_counter()
        write_package(large_repo, large_tree, signer, "large")
        print(f"write: {args.large_mb} MiB package in {time.perf_counter() - start:.1f} s")
        large = next(large_repo.glob("*.apk"))
        rows = []
        for label, package in (("small", small), ("large", large)):
            before, after, peak_py, elapsed, data_size = memory_probe(package, pair.public_path)
            rows.append((label, package.stat().st_size, after, peak_py))
            print(
                f"verify {label}: {package.stat().st_size / 1e6:.3f} MB file, {data_size / 1e6:.1f} MB "
                f"of file content, {elapsed:.2f} s, peak RSS {after / 1024:.1f} MiB "
                f"(interpreter baseline {before / 1024:.1f} MiB), peak Python heap "
                f"{peak_py / 1024:.0f} KiB"
            )
        (_, small_size, small_rss, small_py), (_, large_size, large_rss, large_py) = rows
        print(
            f"memory: large/small file size {large_size / small_size:.0f}x, peak RSS "
            f"{large_rss / small_rss:.2f}x, peak Python heap {large_py / max(small_py, 1):.2f}x "
            "(flat means ~1x)"
        )
    print(
        f"load average at end {os.getloadavg()[0]:.2f} (other work on the machine slows every figure)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
