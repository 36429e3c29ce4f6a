"""The fetcher's events: ``fetch.done`` and ``fetch.failed`` on the bus's events exchange."""

from __future__ import annotations

from apkfarm.bus import Bus, names
from apkfarm.services.common.events import bounded, new_event
from apkfarm.services.fetcher.core import FetchResult
from apkfarm.services.fetcher.source import SourceSpec
from apkfarm.v1 import bus_pb2, common_pb2


def spec_from_proto(source: common_pb2.Source) -> SourceSpec:
    return SourceSpec(url=source.url, sha256=source.sha256, filename=source.filename)


class EventPublisher:
    """Publishes the outcome of fetches as ``identity``."""

    def __init__(self, bus: Bus, identity: str) -> None:
        self.bus = bus
        self.identity = identity

    async def done(self, source: common_pb2.Source, result: FetchResult) -> bus_pb2.Event:
        event = new_event(self.identity)
        event.fetch_done.CopyFrom(
            bus_pb2.FetchDone(
                source=source,
                blob_key=result.blob_key,
                size=result.size,
                already_present=result.already_present,
            )
        )
        await self.bus.publish_event(names.FETCH_DONE, event, message_id=event.event_id)
        return event

    async def failed(
        self,
        source: common_pb2.Source,
        error: str,
        template: common_pb2.TemplateRef | None = None,
    ) -> bus_pb2.Event:
        event = new_event(self.identity)
        error = bounded(error)
        event.fetch_failed.CopyFrom(
            bus_pb2.FetchFailed(source=source, error=error, template=template)
        )
        await self.bus.publish_event(names.FETCH_FAILED, event, message_id=event.event_id)
        return event
