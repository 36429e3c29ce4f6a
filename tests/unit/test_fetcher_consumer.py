"""The fetch queue consumer on the in-memory bus: one event per job, acks, retries.

This is also how the embedded mode runs the fetcher: MemoryBus, LocalBlobStore,
SourceFetcher and FetchConsumer in one process, no gRPC.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.source_server import SourceServer, source_server

from apkfarm.blobs import LocalBlobStore
from apkfarm.bus import Delivery, MemoryBus, names
from apkfarm.services.fetcher.consumer import FetchConsumer
from apkfarm.services.fetcher.core import SourceFetcher
from apkfarm.services.fetcher.download import DownloadLimits
from apkfarm.services.fetcher.events import EventPublisher
from apkfarm.v1 import bus_pb2, common_pb2

BODY = b"greet source\n" * 5000
SHA = hashlib.sha256(BODY).hexdigest()
NAME = "greet-1.0.tar.gz"
TEMPLATE = common_pb2.TemplateRef(category="main", pkgname="greet", version="1.0-r0", arch="x86_64")
LIMITS = DownloadLimits(
    max_bytes=1024 * 1024, timeout=20, attempts=2, stall_timeout=5, backoff=0, backoff_max=0
)


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with source_server() as running:
        yield running


@dataclass
class Outcome:
    events: list[Delivery[bus_pb2.Event]]
    fetch_depth: int
    dead: int
    stored: list[str]


def run_jobs(
    tmp_path: Path,
    server: SourceServer,
    jobs: list[bus_pb2.FetchJob],
    *,
    max_deliveries: int = 3,
) -> Outcome:
    """Publish ``jobs``, wait for one event per job, and report what the bus and store hold."""
    store = LocalBlobStore(tmp_path / "store", durable=False)

    async def go() -> Outcome:
        bus = MemoryBus(max_deliveries=max_deliveries)
        await bus.start()
        seen: asyncio.Queue[Delivery[bus_pb2.Event]] = asyncio.Queue()

        async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
            await seen.put(delivery)

        await bus.subscribe(["fetch.*"], bus_pb2.Event, collect)
        async with SourceFetcher(
            store, limits=LIMITS, sites={"EXAMPLES_SITE": server.url("")}
        ) as fetcher:
            consumer = FetchConsumer(
                bus, fetcher, EventPublisher(bus, "fetcher"), prefetch=1, retry_delay=0
            )
            await consumer.start()
            events = []
            for job in jobs:
                await bus.publish(names.FETCH_QUEUE, job)
                events.append(await asyncio.wait_for(seen.get(), timeout=30))
            await consumer.stop(5)
        outcome = Outcome(
            events=events,
            fetch_depth=await bus.queue_depth(names.FETCH_QUEUE),
            dead=len(await bus.dead_letters(names.FETCH_QUEUE)),
            stored=[info.key for info in store.list("")],
        )
        # Nothing else was published: exactly one event per job.
        assert seen.empty()
        await bus.close()
        return outcome

    return asyncio.run(go())


def job(url: str, sha256: str = SHA, filename: str = NAME) -> bus_pb2.FetchJob:
    return bus_pb2.FetchJob(
        source=common_pb2.Source(url=url, sha256=sha256, filename=filename), template=TEMPLATE
    )


def test_a_job_ends_in_fetch_done_and_is_acknowledged(tmp_path: Path, server: SourceServer) -> None:
    server.add(f"/{NAME}", body=BODY)
    fetch_job = job(f"$(EXAMPLES_SITE)/{NAME}")

    outcome = run_jobs(tmp_path, server, [fetch_job, fetch_job])

    first, second = outcome.events
    assert first.routing_key == names.FETCH_DONE
    event = first.message
    assert event.WhichOneof("kind") == "fetch_done"
    assert event.emitter == "fetcher"
    assert re.fullmatch(r"[0-9a-f]{32}", event.event_id)
    assert first.message_id == event.event_id
    assert abs(event.time.ToSeconds() - time.time()) < 60
    done = event.fetch_done
    # The source travels back as the scheduler sent it (macro and all).
    assert done.source == fetch_job.source
    assert (done.blob_key, done.size, done.already_present) == (
        f"sources/sha256/{SHA}",
        len(BODY),
        False,
    )
    # The same job again (a redelivery, another template) downloads nothing.
    assert second.message.fetch_done.already_present
    assert len(server.requests(f"/{NAME}")) == 1
    assert second.message.event_id != event.event_id
    assert (outcome.fetch_depth, outcome.dead) == (0, 0)
    assert outcome.stored == [f"sources/sha256/{SHA}"]


def test_a_mismatch_ends_in_fetch_failed_and_stores_nothing(
    tmp_path: Path, server: SourceServer
) -> None:
    url = server.add(f"/{NAME}", body=BODY)
    wrong = hashlib.sha256(b"not it").hexdigest()

    outcome = run_jobs(tmp_path, server, [job(url, sha256=wrong)])

    (delivery,) = outcome.events
    assert delivery.routing_key == names.FETCH_FAILED
    failed = delivery.message.fetch_failed
    assert failed.error == f"{NAME} from {url}: sha256 mismatch: expected {wrong}, got {SHA}"
    assert failed.template == TEMPLATE
    assert failed.source.sha256 == wrong
    # Permanent: handled once, acknowledged, not dead-lettered.
    assert len(server.requests(f"/{NAME}")) == 1
    assert (outcome.fetch_depth, outcome.dead, outcome.stored) == (0, 0, [])


def test_an_invalid_job_fails_at_once(tmp_path: Path, server: SourceServer) -> None:
    outcome = run_jobs(tmp_path, server, [job(server.url("/x"), filename="../../etc/passwd")])
    (delivery,) = outcome.events
    assert delivery.routing_key == names.FETCH_FAILED
    assert "is not one safe path segment" in delivery.message.fetch_failed.error
    assert server.seen == []
    assert (outcome.dead, outcome.stored) == (0, [])


def test_a_transient_failure_is_retried_by_the_bus_then_reported(
    tmp_path: Path, server: SourceServer
) -> None:
    url = server.add(f"/{NAME}", body=BODY, fail_first=1000, fail_status=502)

    outcome = run_jobs(tmp_path, server, [job(url)], max_deliveries=3)

    (delivery,) = outcome.events
    assert delivery.routing_key == names.FETCH_FAILED
    error = delivery.message.fetch_failed.error
    assert "HTTP 502" in error and "gave up after 3 attempts" in error
    # 3 deliveries x 2 requests each (LIMITS.attempts).
    assert len(server.requests(f"/{NAME}")) == 6
    assert (outcome.fetch_depth, outcome.dead, outcome.stored) == (0, 0, [])


def test_a_transient_failure_that_clears_ends_in_fetch_done_only(
    tmp_path: Path, server: SourceServer
) -> None:
    # The first delivery sees two 500s and asks for a retry; the second succeeds.
    url = server.add(f"/{NAME}", body=BODY, fail_first=2)

    outcome = run_jobs(tmp_path, server, [job(url)], max_deliveries=3)

    (delivery,) = outcome.events
    assert delivery.routing_key == names.FETCH_DONE
    assert [seen.status for seen in server.requests(f"/{NAME}")] == [500, 500, 200]
    assert outcome.stored == [f"sources/sha256/{SHA}"]
