"""How much apk version handling costs: sorting 100k versions, comparing, parsing deps.

Run: .venv/bin/python bench/bench_version.py

The figure that matters for planning is the per-version cost against the plan
budget: the issue's goal is a full load + graph of 3,300 templates in 1.5 s, so
one version comparison per template (rebuild decision) must stay a small share.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from apkfarm import version
from apkfarm.version import compare, parse_dependency, sort_key

COUNT = 100_000
TEMPLATES = 3_300
PLAN_BUDGET_S = 1.5


def _versions(rng: random.Random, count: int) -> list[str]:
    suffixes = ["", "", "", "_rc1", "_beta2", "_p3", "_git20240101", "_pre1_p2"]
    found: set[str] = set()
    while len(found) < count:
        parts = [str(rng.randint(0, 30)) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.1:
            parts.append("0" + str(rng.randint(0, 9)))
        letter = rng.choice(["", "", "", "", "a", "b"])
        found.add(".".join(parts) + letter + rng.choice(suffixes) + f"-r{rng.randint(0, 12)}")
    return sorted(found)  # plain string order, so the version sort has real work to do


def _timed(label: str, operations: int, action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    print(f"{label:<58} {elapsed * 1e3:9.1f} ms  {elapsed / operations * 1e6:7.2f} us/op")
    return elapsed


def main() -> None:
    rng = random.Random(1)
    versions = _versions(rng, COUNT)
    pairs = [(rng.choice(versions), rng.choice(versions)) for _ in range(COUNT)]
    tree = versions[:: COUNT // TEMPLATES][:TEMPLATES]
    tree_pairs = [(rng.choice(tree), rng.choice(tree)) for _ in range(COUNT)]
    deps = [f"pkg{i}>={v}" if i % 3 else f"so:libx{i}.so.1!pkg{i}" for i, v in enumerate(versions)]

    version._key.cache_clear()  # measure parsing, not the cache
    cold = _timed(
        f"sorted({COUNT:,} distinct versions), cold", COUNT, lambda: sorted(versions, key=sort_key)
    )
    version._key.cache_clear()
    _timed(
        f"sort_key x {COUNT:,}, cold (parse + key)", COUNT, lambda: [sort_key(v) for v in versions]
    )
    _timed(
        f"compare x {COUNT:,} pairs of 100k versions (cache misses)",
        COUNT,
        lambda: [compare(a, b) for a, b in pairs],
    )
    _timed(
        f"compare x {COUNT:,} pairs of {TEMPLATES:,} versions (warm)",
        COUNT,
        lambda: [compare(a, b) for a, b in tree_pairs],
    )
    _timed(f"parse_dependency x {COUNT:,}", COUNT, lambda: [parse_dependency(d) for d in deps])

    per_version = cold / COUNT
    share = per_version * TEMPLATES / PLAN_BUDGET_S
    print(
        f"\n{TEMPLATES:,} cold version keys ~ {per_version * TEMPLATES * 1e3:.1f} ms = "
        f"{share:.1%} of the {PLAN_BUDGET_S} s load+graph budget"
    )


if __name__ == "__main__":
    main()
