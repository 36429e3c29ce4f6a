"""The indexer on the in-memory bus: batching, acks after publication, dead letters, retries.

This is how the embedded mode runs it: MemoryBus, LocalBlobStore for the
artifacts and the repository, and the signer core in-process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from indexer_support import IndexerFarm, Staging

from apkfarm.apk.signing import SignatureFile
from apkfarm.bus import Delivery, MemoryBus, names
from apkfarm.services.indexer.core import PATTERNS, QUEUE
from apkfarm.services.signer.client import SignerUnavailable
from apkfarm.v1 import bus_pb2

TIMEOUT = 30.0


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait for ``condition`` to hold (bounded): for states no event announces."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def dead_letters(bus: MemoryBus) -> list[str]:
    """The reasons of the indexer queue's dead letters, once there is one (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while not (dead := await bus.dead_letters(QUEUE)):
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a dead letter")
        await asyncio.sleep(0.01)
    return [d.reason for d in dead]


async def watch(bus: MemoryBus) -> asyncio.Queue[bus_pb2.IndexPublished]:
    seen: asyncio.Queue[bus_pb2.IndexPublished] = asyncio.Queue()

    async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
        await seen.put(delivery.message.index_published)

    await bus.subscribe(["index.*"], bus_pb2.Event, collect)
    return seen


def staged_event(staged: bus_pb2.PackageStaged) -> bus_pb2.Event:
    event = bus_pb2.Event(event_id=f"e-{staged.job_id}", emitter="builder-x86_64")
    event.package_staged.CopyFrom(staged)
    return event


async def publish(bus: MemoryBus, staged: bus_pb2.PackageStaged) -> None:
    await bus.publish_event(names.PACKAGE_STAGED, staged_event(staged))


def test_a_burst_of_events_becomes_one_generation_and_every_message_is_acked(
    tmp_path: Path,
) -> None:
    farm = IndexerFarm(tmp_path)
    staged = [farm.stage([f"pkg{n}"]) for n in range(8)]

    async def go() -> tuple[list[bus_pb2.IndexPublished], int]:
        bus = MemoryBus()
        await bus.start()
        seen = await watch(bus)
        indexer = farm.indexer(bus, batch_seconds=0.5)
        await indexer.start()
        for event in staged:
            await publish(bus, event)
        first = await asyncio.wait_for(seen.get(), TIMEOUT)
        subscription = indexer._subscription
        assert subscription is not None
        await until(lambda: subscription.in_flight == 0, "the handlers to return")
        depth = await bus.queue_depth(QUEUE)
        dead = len(await bus.dead_letters(QUEUE))
        await indexer.stop(5.0)
        await bus.close()
        assert dead == 0
        return [first, *[seen.get_nowait() for _ in range(seen.qsize())]], depth

    announced, depth = asyncio.run(go())
    assert depth == 0
    assert len(announced) == 1
    [published] = announced
    assert published.generation == 1
    assert sorted(published.job_ids) == sorted(e.job_id for e in staged)
    assert published.package_count == 8
    assert published.index_key == "main/x86_64/APKINDEX.tar.gz"
    assert len(farm.published_index()) == 8


def test_a_rejected_job_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    bad = farm.stage([Staging("greet", claimed_sha256="1" * 64)])
    good = farm.stage(["hello"])

    rejections: list[bus_pb2.PackageRejected] = []

    async def go() -> tuple[list[str], bus_pb2.IndexPublished]:
        bus = MemoryBus()
        await bus.start()
        seen = await watch(bus)

        async def rejected(delivery: Delivery[bus_pb2.Event]) -> None:
            rejections.append(delivery.message.package_rejected)

        await bus.subscribe([names.PACKAGE_REJECTED], bus_pb2.Event, rejected)
        indexer = farm.indexer(bus)
        await indexer.start()
        await publish(bus, bad)
        await publish(bus, good)
        published = await asyncio.wait_for(seen.get(), TIMEOUT)
        dead = await dead_letters(bus)
        await indexer.stop(5.0)
        await bus.close()
        return dead, published

    dead, published = asyncio.run(go())
    assert len(dead) == 1
    assert "sha256_mismatch" in dead[0] and bad.job_id in dead[0]
    assert list(published.job_ids) == [good.job_id]
    assert [r.name for r in farm.published_index()] == ["hello"]
    # The scheduler hears of it, so the build does not wait for an index forever.
    assert [(r.job_id, "sha256_mismatch" in r.reason) for r in rejections] == [(bad.job_id, True)]


class FlakySigner:
    """The farm's signer, unreachable for the first ``failures`` index signatures."""

    def __init__(self, inner: object, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def sign_index(self, content: bytes, category: str, arch: str) -> list[SignatureFile]:
        if self.failures > 0:
            self.failures -= 1
            raise SignerUnavailable("signer at signer:50051 unavailable (test)")
        return await self.inner.sign_index(content, category, arch)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_signer_outage_hands_the_message_back_until_it_can_be_published(
    tmp_path: Path,
) -> None:
    farm = IndexerFarm(tmp_path)
    staged = farm.stage(["greet"])
    flaky = FlakySigner(farm.signer, failures=2)

    async def go() -> tuple[bus_pb2.IndexPublished, int]:
        bus = MemoryBus(max_deliveries=5)
        await bus.start()
        seen = await watch(bus)
        indexer = farm.indexer(bus, signer=flaky)  # type: ignore[arg-type]
        await indexer.start()
        await publish(bus, staged)
        published = await asyncio.wait_for(seen.get(), TIMEOUT)
        dead = len(await bus.dead_letters(QUEUE))
        await indexer.stop(5.0)
        await bus.close()
        return published, dead

    published, dead = asyncio.run(go())
    assert flaky.failures == 0
    assert dead == 0
    assert list(published.job_ids) == [staged.job_id]
    assert [r.name for r in farm.published_index()] == ["greet"]


def test_other_package_events_are_acked_and_ignored(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)

    async def go() -> tuple[int, int]:
        bus = MemoryBus()
        await bus.start()
        indexer = farm.indexer(bus)
        await indexer.start()
        other = bus_pb2.Event(event_id="x")
        other.build_phase.CopyFrom(bus_pb2.BuildPhase(job_id="job-1", phase="build"))
        await bus.publish_event("package.something", other)
        empty = bus_pb2.Event(event_id="y")  # package.staged without its body
        await bus.publish_event(names.PACKAGE_STAGED, empty)
        await dead_letters(bus)
        subscription = indexer._subscription
        assert subscription is not None
        await until(lambda: subscription.in_flight == 0, "the handlers to return")
        depth = await bus.queue_depth(QUEUE)
        dead = len(await bus.dead_letters(QUEUE))
        await indexer.stop(1.0)
        await bus.close()
        return depth, dead

    depth, dead = asyncio.run(go())
    assert depth == 0
    assert dead == 1
    assert farm.repository.puts() == []


def test_stopping_publishes_what_was_collected_without_waiting_for_the_window(
    tmp_path: Path,
) -> None:
    farm = IndexerFarm(tmp_path)
    staged = farm.stage(["greet"])

    async def go() -> float:
        bus = MemoryBus()
        await bus.start()
        indexer = farm.indexer(bus, batch_seconds=600.0)
        await indexer.start()
        await publish(bus, staged)
        subscription = indexer._subscription
        assert subscription is not None
        await until(lambda: subscription.in_flight == 1, "the event to be taken")
        started = time.monotonic()
        await indexer.stop(30.0)
        took = time.monotonic() - started
        assert await bus.queue_depth(QUEUE) == 0
        await bus.close()
        return took

    assert asyncio.run(go()) < 30.0
    assert [r.name for r in farm.published_index()] == ["greet"]


def test_the_queue_is_durable_and_bound_to_package_events() -> None:
    assert QUEUE == "indexer"
    assert PATTERNS == ("package.*",)
    assert any(names.topic_matches(p, names.PACKAGE_STAGED) for p in PATTERNS)
