"""The fetcher's gRPC side: ``apkfarm.v1.Fetcher/Fetch``, and what it adds to ``serve()``.

``Fetch`` does what a ``fetch`` job does, synchronously: the caller gets the
blob key or a status whose details are the error message. Its outcome is
published as an event too (best effort: the caller already has the answer),
so that watchers of ``fetch.*`` see every fetch however it was asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from apkfarm.blobs import BlobStore
from apkfarm.bus import Bus
from apkfarm.services.common.app import ServiceParts, bus_check, store_check
from apkfarm.services.common.logs import get_logger
from apkfarm.services.fetcher.consumer import FetchConsumer
from apkfarm.services.fetcher.core import SourceFetcher
from apkfarm.services.fetcher.events import EventPublisher, spec_from_proto
from apkfarm.services.fetcher.source import FetchError, FetchFailure
from apkfarm.v1 import fetcher_pb2, fetcher_pb2_grpc

log = get_logger(__name__)

SERVICE_NAME = "apkfarm.v1.Fetcher"
FETCH_METHOD = f"/{SERVICE_NAME}/Fetch"
# Who may ask for a fetch over gRPC: the scheduler, and operators by hand.
ALLOW: Mapping[str, Sequence[str]] = {FETCH_METHOD: ("scheduler", "operator")}


def status_for(error: FetchError) -> grpc.StatusCode:
    if error.kind is FetchFailure.INVALID:
        return grpc.StatusCode.INVALID_ARGUMENT
    if error.transient:
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.FAILED_PRECONDITION


class FetcherServicer(fetcher_pb2_grpc.FetcherServicer):
    def __init__(self, fetcher: SourceFetcher, events: EventPublisher | None) -> None:
        self.fetcher = fetcher
        self.events = events

    async def Fetch(
        self, request: fetcher_pb2.FetchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> fetcher_pb2.FetchResponse:
        try:
            result = await self.fetcher.fetch(spec_from_proto(request.source))
        except FetchError as exc:
            if self.events is not None:
                await self._publish(self.events.failed(request.source, str(exc)))
            await context.abort(status_for(exc), str(exc))
        if self.events is not None:
            await self._publish(self.events.done(request.source, result))
        return fetcher_pb2.FetchResponse(
            blob_key=result.blob_key, size=result.size, already_present=result.already_present
        )

    @staticmethod
    async def _publish(publishing: Any) -> None:
        try:
            await publishing
        except Exception as exc:  # the caller has its answer; a lost event is only logged
            log.warning("could not publish the outcome of a Fetch call", error=str(exc))


def service_parts(
    fetcher: SourceFetcher, bus: Bus, store: BlobStore, consumer: FetchConsumer
) -> ServiceParts:
    """Servicer, allow-list, health checks and the consumer's life cycle for ``serve()``."""
    servicer = FetcherServicer(fetcher, consumer.events)

    async def start() -> None:
        await bus.start()
        await consumer.start()

    async def stop(grace: float) -> None:
        await consumer.stop(grace)

    return ServiceParts(
        register=[lambda server: fetcher_pb2_grpc.add_FetcherServicer_to_server(servicer, server)],
        service_names=[SERVICE_NAME],
        allow=ALLOW,
        health_checks={"bus": bus_check(bus), "blob store": store_check(store)},
        start=start,
        stop=stop,
    )
