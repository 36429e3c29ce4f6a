"""Benchmark of the bus: what one hop costs the farm's per-package overhead.

    .venv/bin/python bench/bench_bus.py [--messages 500]

The farm's goal is under 150 ms of overhead per package from submit to
indexed; a package crosses the bus about five times (fetch job, build job,
build events, package.staged, index.published). This prints, for MemoryBus
and for RabbitBus on a private broker:

- hop latency: publish one job (confirmed), wait until its handler ran, repeat
  (sequential; median and p95) — the bus's share of one step;
- throughput: publish N jobs, one consumer with prefetch 1 (a builder);
- event fan-out: one event to three subscriptions.

Ratio printed: five hops' median against the 150 ms budget (< 1.0 is within).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from google.protobuf import wrappers_pb2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from apkfarm.bus import Bus, Delivery, MemoryBus  # noqa: E402
from apkfarm.bus.rabbit import RabbitBus  # noqa: E402

BUDGET_S = 0.150
HOPS_PER_PACKAGE = 5


async def hop_latency(bus: Bus, rounds: int) -> list[float]:
    queue = f"bench-hop-{uuid.uuid4().hex[:8]}"
    done: asyncio.Queue[None] = asyncio.Queue()

    async def handler(d: Delivery[Any]) -> None:
        done.put_nowait(None)

    await bus.consume(queue, wrappers_pb2.StringValue, handler)
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        await bus.publish(queue, wrappers_pb2.StringValue(value=str(i)))
        await done.get()
        samples.append(time.perf_counter() - start)
    return samples


async def throughput(bus: Bus, count: int) -> float:
    queue = f"bench-tp-{uuid.uuid4().hex[:8]}"
    finished = asyncio.Event()
    seen = 0

    async def handler(d: Delivery[Any]) -> None:
        nonlocal seen
        seen += 1
        if seen == count:
            finished.set()

    await bus.consume(queue, wrappers_pb2.StringValue, handler, prefetch=1)
    start = time.perf_counter()
    await asyncio.gather(
        *(bus.publish(queue, wrappers_pb2.StringValue(value=str(i))) for i in range(count))
    )
    await asyncio.wait_for(finished.wait(), 300)
    return count / (time.perf_counter() - start)


async def fan_out(bus: Bus, rounds: int) -> list[float]:
    arrivals: asyncio.Queue[None] = asyncio.Queue()

    async def handler(d: Delivery[Any]) -> None:
        arrivals.put_nowait(None)

    await bus.subscribe(["build.*"], wrappers_pb2.StringValue, handler)
    await bus.subscribe(["#"], wrappers_pb2.StringValue, handler)
    await bus.subscribe(
        ["build.finished"], wrappers_pb2.StringValue, handler, queue=f"bench-{uuid.uuid4().hex[:8]}"
    )
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        await bus.publish_event("build.finished", wrappers_pb2.StringValue(value=str(i)))
        for _ in range(3):
            await arrivals.get()
        samples.append(time.perf_counter() - start)
    return samples


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


async def measure(name: str, bus: Bus, messages: int) -> None:
    async with bus:
        hops = await hop_latency(bus, min(messages, 200))
        rate = await throughput(bus, messages)
        events = await fan_out(bus, min(messages, 200))
    median = statistics.median(hops)
    p95 = statistics.quantiles(hops, n=20)[18]
    per_package = median * HOPS_PER_PACKAGE
    print(f"{name}:")
    print(f"  job hop (publish confirmed -> handler ran): median {ms(median)}  p95 {ms(p95)}")
    print(f"  throughput, one prefetch-1 consumer: {rate:8.0f} jobs/s")
    print(f"  event to 3 subscriptions: median {ms(statistics.median(events))}")
    print(
        f"  {HOPS_PER_PACKAGE} hops per package: {ms(per_package)} "
        f"(budget {ms(BUDGET_S)}, ratio {per_package / BUDGET_S:.3f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    args = parser.parse_args()

    from fixtures.servers import rabbitmq_server  # noqa: PLC0415 - test helpers

    asyncio.run(measure("MemoryBus", MemoryBus(), args.messages))
    with rabbitmq_server() as broker:
        asyncio.run(
            measure("RabbitBus (quorum queues, confirms)", RabbitBus(broker.url), args.messages)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
