"""Building the farm's bus events (bus.proto ``Event``)."""

from __future__ import annotations

import uuid

from google.protobuf.timestamp_pb2 import Timestamp

from apkfarm.v1 import bus_pb2

# Error texts travel in events and logs: long enough to explain, bounded for hostile input.
MAX_ERROR_LENGTH = 4000


def new_event(emitter: str) -> bus_pb2.Event:
    """An event with a fresh id, the current time and the emitting identity."""
    now = Timestamp()
    now.GetCurrentTime()
    return bus_pb2.Event(event_id=uuid.uuid4().hex, time=now, emitter=emitter)


def bounded(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
