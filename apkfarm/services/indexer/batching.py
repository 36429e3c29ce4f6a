"""Collecting bursts: items submitted close together are processed as one batch.

A batch closes ``window`` seconds after its first item arrived, or at once
when it holds ``max_items``. Batches are processed one after the other; items
that arrive meanwhile wait for the next one. Each submitter gets its own
item's result (or exception) back once its batch is done, which is how a bus
handler holds its message unacknowledged until its packages are published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass


@dataclass
class _Pending[T, R]:
    item: T
    future: asyncio.Future[R]
    arrived: float


class Batcher[T, R]:
    def __init__(
        self,
        process: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        *,
        window: float,
        max_items: int,
    ) -> None:
        if window < 0 or max_items < 1:
            raise ValueError("a batch needs a non-negative window and room for one item")
        self._process = process
        self.window = window
        self.max_items = max_items
        self._pending: list[_Pending[T, R]] = []
        self._changed = asyncio.Event()
        self._hurry = False
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, item: T) -> R:
        """Add ``item`` to the open batch and wait for its result."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running")
        loop = asyncio.get_running_loop()
        pending = _Pending[T, R](item, loop.create_future(), loop.time())
        self._pending.append(pending)
        self._changed.set()
        try:
            return await pending.future
        except asyncio.CancelledError:
            # Not taken yet: leave it out of the batch (its message goes back to the queue).
            if pending in self._pending:
                self._pending.remove(pending)
            raise

    def hurry(self) -> None:
        """Stop waiting for more items: process what is pending now (shutdown)."""
        self._hurry = True
        self._changed.set()

    async def close(self) -> None:
        """Process what is pending, then stop."""
        self._closing = True
        self.hurry()
        if self._task is not None:
            await self._task

    async def cancel(self) -> None:
        """Stop now; submitters still waiting see ``CancelledError``."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in self._pending:
            pending.future.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._changed.clear()
                await self._changed.wait()
            deadline = self._pending[0].arrived + self.window
            while len(self._pending) < self.max_items and not self._hurry:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
            batch = self._pending[: self.max_items]
            del self._pending[: self.max_items]
            await self._settle(batch)

    async def _settle(self, batch: list[_Pending[T, R]]) -> None:
        try:
            results = await self._process([p.item for p in batch])
        except asyncio.CancelledError:
            # Stopped mid-batch: the submitters give up too (their messages go back).
            for pending in (*batch, *self._pending):
                pending.future.cancel()
            raise
        except Exception as error:  # process() reports per item; this is a bug's safety net
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        for pending, result in zip(batch, results, strict=True):
            if not pending.future.done():
                pending.future.set_result(result)
