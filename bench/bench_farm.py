"""Farm overhead: many trivial (meta) packages through the real farm, per-package latency.

Starts a private RabbitMQ and S3 server and the five services as processes
(two builders: x86_64 and aarch64), submits a generated tree of meta
templates for both arches, and follows every event on the bus. For each
build it measures the time from the moment a builder took the job
(``build.started``) until the package is published in the index and the
scheduler knows it (DONE), minus the sandboxed build itself as the builder
reports it: that remainder is the farm's overhead per package (fetching the
tree, signing, staging, indexing, scheduling). Time a job waits in the queue
for a free builder is reported separately: it measures the number of
builders, not the farm. It also checks that no builder sat idle while a job
for its arch was waiting.

Goals (issue 5): median overhead per package < 150 ms; no idle builder while
a job for its arch is ready.

    .venv/bin/python bench/bench_farm.py [--templates 250]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))

from fixtures.servers import rabbitmq_server, s3_server_running  # noqa: E402
from fixtures.services import BIN, EventWatcher, farm_processes  # noqa: E402

from apkfarm.apk.keys import generate_key_pair  # noqa: E402
from apkfarm.certs import init_certs  # noqa: E402
from apkfarm.v1 import bus_pb2, common_pb2  # noqa: E402

ARCHS = ("x86_64", "aarch64")
GOAL_OVERHEAD_MS = 150.0

TEMPLATE = """pkgname = "{name}"
pkgver = "1.0"
pkgrel = 0
build_style = "meta"
pkgdesc = "Trivial package number {n} for the farm benchmark"
license = "BSD-2-Clause"
url = "https://apkfarm.example.org/bench"
"""


def make_tree(root: Path, count: int) -> None:
    for n in range(count):
        name = f"bench{n:04d}"
        directory = root / "main" / name
        directory.mkdir(parents=True)
        (directory / "template.py").write_text(TEMPLATE.format(name=name, n=n))


@dataclass
class Timeline:
    """Which builds are done, as the bus watcher sees them arrive; ``done`` once all are."""

    expected: int
    done: threading.Event = field(default_factory=threading.Event)
    finished_builds: set[str] = field(default_factory=set)

    def record(self, when: float, routing_key: str, event: bus_pb2.Event) -> None:
        """An ``EventWatcher`` callback (on the watcher's thread)."""
        if event.WhichOneof("kind") == "build_changed":
            build = event.build_changed.build
            if build.state == common_pb2.BUILD_STATE_DONE:
                self.finished_builds.add(build.build_id)
                if len(self.finished_builds) >= self.expected:
                    self.done.set()


def analyse(received: Sequence[tuple[float, str, bus_pb2.Event]]) -> dict[str, float]:
    """The figures from every event and when it arrived (monotonic seconds)."""
    queued_at: dict[str, float] = {}  # job -> when the scheduler queued it
    done_at: dict[str, float] = {}  # build -> when the scheduler saw it published
    build_of: dict[str, str] = {}  # job -> build
    started_at: dict[str, float] = {}  # job -> when a builder took it
    build_seconds: dict[str, float] = {}  # job -> the sandboxed build, builder-reported
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)  # arch -> (start, finish)
    for when, _key, event in received:
        kind = event.WhichOneof("kind")
        if kind == "build_changed":
            build = event.build_changed.build
            if build.state == common_pb2.BUILD_STATE_QUEUED:
                queued_at.setdefault(build.job_id, when)
                build_of[build.job_id] = build.build_id
            elif build.state == common_pb2.BUILD_STATE_DONE:
                done_at.setdefault(build.build_id, when)
        elif kind == "build_started":
            started_at[event.build_started.job_id] = when
        elif kind == "build_finished":
            finished = event.build_finished
            build_seconds[finished.job_id] = finished.duration_seconds
            start = started_at.get(finished.job_id)
            if start is not None:
                spans[finished.template.arch].append((start, when))
    overheads, waits = [], []
    for job, build_id in build_of.items():
        if job in started_at and build_id in done_at and job in build_seconds:
            overheads.append(done_at[build_id] - started_at[job] - build_seconds[job])
            waits.append(started_at[job] - queued_at[job])
    idle_gaps = []
    for arch_spans in spans.values():
        arch_spans.sort()
        for (_, end), (next_start, _) in itertools.pairwise(arch_spans):
            idle_gaps.append(max(0.0, next_start - end))
    first = min(queued_at.values())
    last = max(done_at.values())
    return {
        "builds": len(overheads),
        "wall_seconds": last - first,
        "throughput": len(overheads) / (last - first),
        "overhead_median_ms": statistics.median(overheads) * 1000,
        "overhead_p95_ms": statistics.quantiles(overheads, n=20)[-1] * 1000,
        "build_median_ms": statistics.median(build_seconds.values()) * 1000,
        "queue_wait_median_s": statistics.median(waits),
        "idle_gap_median_ms": statistics.median(idle_gaps) * 1000 if idle_gaps else 0.0,
        "idle_gap_max_ms": max(idle_gaps) * 1000 if idle_gaps else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", type=int, default=250, help="meta templates (x2 arches)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="apkfarm-bench-farm-") as tmp:
        run(Path(tmp), args.templates)


def run(workdir: Path, templates: int) -> None:
    tree = workdir / "tree"
    make_tree(tree, templates)
    certs = workdir / "certs"
    init_certs(certs, builder_archs=list(ARCHS))
    keys = workdir / "keys"
    generate_key_pair(keys, "bench@example.org")
    with rabbitmq_server(workdir) as rabbitmq, s3_server_running(workdir) as s3:
        timeline = Timeline(expected=templates * len(ARCHS))
        with (
            farm_processes(
                workdir, certs, keys, s3=s3, amqp_url=rabbitmq.url, archs=ARCHS
            ) as services,
            EventWatcher(
                rabbitmq.url,
                connection_name="bench-watcher",
                prefetch=512,
                on_event=timeline.record,
            ) as watcher,
        ):
            submitted = time.monotonic()
            result = subprocess.run(
                [
                    str(BIN / "apkfarm"),
                    "submit",
                    str(tree),
                    "--scheduler",
                    services["scheduler"].grpc_address,
                    "--tls-dir",
                    str(certs),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                sys.exit(f"submit failed: {result.stderr}")
            accepted = time.monotonic()
            if not timeline.done.wait(timeout=1800):
                sys.exit(f"only {len(timeline.finished_builds)} of {timeline.expected} builds done")
            finished = time.monotonic()
    figures = analyse(watcher.received)
    print(f"farm benchmark: {templates} meta templates x {len(ARCHS)} arches")
    print(f"  submit (upload, evaluate, plan):  {accepted - submitted:8.2f} s")
    print(f"  submit -> all indexed:            {finished - submitted:8.2f} s")
    print(f"  builds measured:                  {figures['builds']:8.0f}")
    print(f"  throughput:                       {figures['throughput']:8.1f} builds/s")
    print(f"  sandboxed build (builder-reported): {figures['build_median_ms']:6.1f} ms median")
    print(f"  waiting for a free builder:       {figures['queue_wait_median_s']:8.2f} s median")
    overhead = figures["overhead_median_ms"]
    print(
        f"  farm overhead per package:        {overhead:8.1f} ms median, "
        f"{figures['overhead_p95_ms']:.1f} ms p95 (goal < {GOAL_OVERHEAD_MS:.0f} ms; "
        f"ratio {overhead / GOAL_OVERHEAD_MS:.2f})"
    )
    print(
        f"  builder idle between jobs:        {figures['idle_gap_median_ms']:8.1f} ms median, "
        f"{figures['idle_gap_max_ms']:.1f} ms max"
    )


if __name__ == "__main__":
    main()
