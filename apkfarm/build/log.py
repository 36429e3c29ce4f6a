"""The build log: every line of output as it is produced, with phase markers and timings.

A build emits ``LogEvent``s to a ``BuildLog`` — anything with an async
``emit(event)``. Events are:

* ``LogLine`` — one line of output (``source="build"``: the build's own
  programs and template; ``"builder"``: what the builder itself reports,
  such as the dependencies it installed);
* ``PhaseStarted`` / ``PhaseFinished`` — a phase's boundaries, with its
  duration and status (``ok``, ``skipped`` with a reason, ``failed``).

Each event renders as one text line (``render``), which is what a stored
log holds: output lines as they are, markers as ``==> phase ...`` lines.
Markers come from the builder and the driver on a channel of their own, so
the events are authoritative even if the build prints lines that look
like markers.

Implementations here: ``MemoryLog`` (keeps everything), ``QueueLog`` (an
async iterator for a consumer that streams), ``StreamLog`` (writes text to
a binary stream), ``CallbackLog`` (wraps an async function), ``TeeLog``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

__all__ = [
    "BuildLog",
    "CallbackLog",
    "LogEvent",
    "LogLine",
    "MemoryLog",
    "PhaseFinished",
    "PhaseStarted",
    "QueueLog",
    "StreamLog",
    "TeeLog",
    "render",
]

PhaseStatus = Literal["ok", "skipped", "failed"]


@dataclass(frozen=True)
class LogLine:
    """One line (without its newline); `elapsed` is seconds since the build started."""

    text: str
    phase: str
    elapsed: float
    source: Literal["build", "builder"] = "build"


@dataclass(frozen=True)
class PhaseStarted:
    phase: str
    elapsed: float


@dataclass(frozen=True)
class PhaseFinished:
    phase: str
    elapsed: float
    seconds: float
    status: PhaseStatus
    reason: str = ""


LogEvent = LogLine | PhaseStarted | PhaseFinished


def render(event: LogEvent) -> str:
    """The event as one line of a stored log."""
    if isinstance(event, LogLine):
        return event.text if event.source == "build" else f"--- {event.text}"
    if isinstance(event, PhaseStarted):
        return f"==> {event.phase}: started at {event.elapsed:.2f}s"
    detail = f" ({event.reason})" if event.reason else ""
    return f"==> {event.phase}: {event.status}{detail} in {event.seconds:.2f}s"


class BuildLog(Protocol):
    async def emit(self, event: LogEvent) -> None: ...


class MemoryLog:
    """Keeps every event; ``text()`` is the log as it would be stored."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    async def emit(self, event: LogEvent) -> None:
        self.events.append(event)

    def lines(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, LogLine)]

    def text(self) -> str:
        return "".join(render(e) + "\n" for e in self.events)


class StreamLog:
    """Writes each rendered event to a binary stream (a file, a spool to upload)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    async def emit(self, event: LogEvent) -> None:
        self.stream.write(render(event).encode("utf-8", "replace") + b"\n")


class CallbackLog:
    def __init__(self, callback: Callable[[LogEvent], Awaitable[None]]) -> None:
        self.callback = callback

    async def emit(self, event: LogEvent) -> None:
        await self.callback(event)


class TeeLog:
    def __init__(self, *logs: BuildLog) -> None:
        self.logs = logs

    async def emit(self, event: LogEvent) -> None:
        for log in self.logs:
            await log.emit(event)


class QueueLog:
    """A log to consume with ``async for event in log``; ``close()`` ends the iteration.

    With a bounded queue a slow consumer slows the build's log reading (and
    so, through the pipe, the build) instead of growing memory.
    """

    _END = object()

    def __init__(self, maxsize: int = 10_000) -> None:
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)

    async def emit(self, event: LogEvent) -> None:
        await self._queue.put(event)

    async def close(self) -> None:
        await self._queue.put(self._END)

    async def __aiter__(self) -> AsyncIterator[LogEvent]:
        while True:
            item = await self._queue.get()
            if item is self._END:
                return
            assert isinstance(item, LogLine | PhaseStarted | PhaseFinished)
            yield item
