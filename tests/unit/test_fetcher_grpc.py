"""The Fetch RPC (in-process gRPC server, plaintext) and the service's health checks."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fixtures.servers import free_port
from fixtures.source_server import SourceServer, source_server

from apkfarm.blobs import LocalBlobStore
from apkfarm.bus import Delivery, MemoryBus
from apkfarm.services.common.grpc_server import start_grpc_server
from apkfarm.services.common.tls import open_channel
from apkfarm.services.fetcher.consumer import FetchConsumer
from apkfarm.services.fetcher.core import SourceFetcher
from apkfarm.services.fetcher.download import DownloadLimits
from apkfarm.services.fetcher.events import EventPublisher
from apkfarm.services.fetcher.service import (
    ALLOW,
    FETCH_METHOD,
    SERVICE_NAME,
    FetcherServicer,
    service_parts,
)
from apkfarm.v1 import bus_pb2, common_pb2, fetcher_pb2, fetcher_pb2_grpc

BODY = b"tally source\n" * 3000
SHA = hashlib.sha256(BODY).hexdigest()
NAME = "tally-2.0.tar.gz"
LIMITS = DownloadLimits(
    max_bytes=1024 * 1024, timeout=20, attempts=2, stall_timeout=5, backoff=0, backoff_max=0
)


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with source_server() as running:
        yield running


def request(url: str, sha256: str = SHA, filename: str = NAME) -> fetcher_pb2.FetchRequest:
    return fetcher_pb2.FetchRequest(
        source=common_pb2.Source(url=url, sha256=sha256, filename=filename)
    )


async def call_all(
    store: LocalBlobStore, requests: list[fetcher_pb2.FetchRequest]
) -> tuple[list[Any], list[Delivery[bus_pb2.Event]]]:
    """Each request's response (or its AioRpcError), and the events the calls published."""
    bus = MemoryBus()
    await bus.start()
    seen: asyncio.Queue[Delivery[bus_pb2.Event]] = asyncio.Queue()

    async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
        await seen.put(delivery)

    await bus.subscribe(["fetch.*"], bus_pb2.Event, collect)
    async with SourceFetcher(store, limits=LIMITS) as fetcher:
        servicer = FetcherServicer(fetcher, EventPublisher(bus, "fetcher"))
        server = await start_grpc_server(
            "127.0.0.1:0",
            [lambda s: fetcher_pb2_grpc.add_FetcherServicer_to_server(servicer, s)],
            [SERVICE_NAME],
        )
        channel = open_channel(f"127.0.0.1:{server.port}", None)
        stub = fetcher_pb2_grpc.FetcherStub(channel)
        answers: list[Any] = []
        events = []
        try:
            for one in requests:
                try:
                    answers.append(await stub.Fetch(one, timeout=30))
                except grpc.aio.AioRpcError as error:
                    answers.append(error)
                events.append(await asyncio.wait_for(seen.get(), timeout=10))
        finally:
            await channel.close()
            await server.stop(0)
    await bus.close()
    return answers, events


def test_fetch_stores_the_source_and_reports_it(tmp_path: Path, server: SourceServer) -> None:
    url = server.add(f"/{NAME}", body=BODY)
    store = LocalBlobStore(tmp_path / "store", durable=False)

    answers, events = asyncio.run(call_all(store, [request(url), request(url)]))

    first, second = answers
    assert (first.blob_key, first.size, first.already_present) == (
        f"sources/sha256/{SHA}",
        len(BODY),
        False,
    )
    assert second.already_present and second.size == len(BODY)
    assert store.get_bytes(first.blob_key) == BODY
    assert len(server.requests(f"/{NAME}")) == 1
    assert [e.routing_key for e in events] == ["fetch.done", "fetch.done"]
    assert events[0].message.fetch_done.source.url == url


def test_fetch_errors_map_to_status_codes_with_the_message(
    tmp_path: Path, server: SourceServer
) -> None:
    url = server.add(f"/{NAME}", body=BODY)
    wrong = hashlib.sha256(b"other").hexdigest()
    store = LocalBlobStore(tmp_path / "store", durable=False)
    refused = f"http://127.0.0.1:{free_port()}/{NAME}"

    answers, events = asyncio.run(
        call_all(
            store,
            [
                request(url, sha256=wrong),
                request(url, sha256="ABC"),
                request(refused),
                request(server.url("/missing.tar.gz")),
            ],
        )
    )

    mismatch, invalid, unreachable, missing = answers
    assert mismatch.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert mismatch.details() == f"{NAME} from {url}: sha256 mismatch: expected {wrong}, got {SHA}"
    assert invalid.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "64 lowercase hex" in invalid.details()
    assert unreachable.code() is grpc.StatusCode.UNAVAILABLE
    assert missing.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "HTTP 404" in missing.details()
    assert [e.routing_key for e in events] == ["fetch.failed"] * 4
    assert events[0].message.fetch_failed.error == mismatch.details()
    assert [info.key for info in store.list("")] == []


def test_only_the_scheduler_and_operators_may_call_fetch() -> None:
    assert dict(ALLOW) == {FETCH_METHOD: ("scheduler", "operator")}
    assert FETCH_METHOD == "/apkfarm.v1.Fetcher/Fetch"


def test_health_follows_the_bus_and_the_store(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "store", durable=False)

    async def go() -> list[bool]:
        bus = MemoryBus()
        async with SourceFetcher(store) as fetcher:
            consumer = FetchConsumer(bus, fetcher, EventPublisher(bus, "fetcher"))
            parts = service_parts(fetcher, bus, store, consumer)
            await parts.start()
            bus_check, store_check = parts.health_checks["bus"], parts.health_checks["blob store"]
            states = [await bus_check(), await store_check()]
            shutil.rmtree(tmp_path / "store")
            try:
                await store_check()
                states.append(True)
            except Exception:
                states.append(False)
            await parts.stop(1)
            await bus.close()
            states.append(await bus_check())
        return states

    assert asyncio.run(go()) == [True, True, False, False]
