"""A running job's log, kept in memory for TailLog followers and uploaded when it ends.

Bounded: past ``limit`` bytes the builder has already failed the build for
too much output (the runtime's log limit), so the buffer only needs to hold
what the runtime allows plus markers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class LogBuffer:
    def __init__(self, job_id: str, limit: int = 256 * 1024 * 1024) -> None:
        self.job_id = job_id
        self.limit = limit
        self._data = bytearray()
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._data)

    async def append(self, data: bytes) -> None:
        if self._closed:
            return
        room = self.limit - len(self._data)
        self._data += data[: max(room, 0)]
        async with self._changed:
            self._changed.notify_all()

    async def close(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()

    def getvalue(self) -> bytes:
        return bytes(self._data)

    async def _wait_beyond(self, position: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self._closed or len(self._data) > position)

    async def read(
        self, offset: int = 0, *, follow: bool = False, chunk: int = 64 * 1024
    ) -> AsyncIterator[tuple[int, bytes]]:
        """(offset, bytes) chunks from ``offset``; with ``follow`` until the log closes."""
        position = max(offset, 0)
        while True:
            while position < len(self._data):
                piece = bytes(self._data[position : position + chunk])
                yield position, piece
                position += len(piece)
            if not follow or self._closed:
                return
            await self._wait_beyond(position)
