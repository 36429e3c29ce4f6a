"""The in-process bus for the single-process embedded mode.

It keeps the RabbitMQ implementation's semantics so that services behave the
same in both modes (one contract test suite runs against both): FIFO work
queues, per-consumer prefetch, immediate retries to the head of the queue and
delayed retries to its tail, delivery counting with the same bound, a
``<queue>.dead`` queue with reasons, topic patterns, durable named
subscriptions that collect events while no consumer is attached, and watcher
subscriptions that vanish with their consumer. Nothing survives the process:
the embedded mode's durable state lives in its blob store and database.

Messages are stored as bytes, exactly as on the broker, so a handler can never
mutate a publisher's object and poison messages look the same.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from apkfarm.bus import names
from apkfarm.bus.api import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_DELIVERIES,
    Bus,
    BusError,
    DeadLetter,
    RawDelivery,
    Subscription,
    SubscriptionTransport,
    UnknownQueue,
    dead_letter_from,
    dead_letter_headers,
    retry_headers,
)

log = logging.getLogger("apkfarm.bus")

# The header RabbitMQ puts on a message it dead-letters itself; mirrored here.
BROKER_DEATH_REASON = "x-first-death-reason"


@dataclass
class _Envelope:
    body: bytes
    headers: dict[str, object]
    message_id: str
    routing_key: str
    published_at: datetime
    returns: int = 0


@dataclass(eq=False)
class _Queue:
    name: str
    # Returns allowed before the queue dead-letters (or, for a watcher, drops) a message.
    delivery_limit: int
    dead: _Queue | None
    retry: _Queue | None
    watcher: bool = False
    ready: deque[_Envelope] = field(default_factory=deque)
    consumers: list[_MemoryConsumer] = field(default_factory=list)
    patterns: set[str] = field(default_factory=set)
    _turn: int = 0

    def put(self, env: _Envelope, *, front: bool = False) -> None:
        if front:
            self.ready.appendleft(env)
        else:
            self.ready.append(env)
        self.dispatch()

    def dispatch(self) -> None:
        """Hand ready messages to consumers with free prefetch slots, in turn."""
        while self.ready:
            consumer = self._next_consumer()
            if consumer is None:
                return
            consumer.give(self.ready.popleft())

    def _next_consumer(self) -> _MemoryConsumer | None:
        count = len(self.consumers)
        for offset in range(count):
            consumer = self.consumers[(self._turn + offset) % count]
            if consumer.has_capacity():
                self._turn = (self._turn + offset + 1) % count
                return consumer
        return None

    def returned(self, env: _Envelope) -> None:
        """A delivery came back unhandled: count it, as a quorum queue does."""
        env.returns += 1
        if env.returns <= self.delivery_limit:
            self.put(env, front=True)
            return
        if self.dead is None:
            log.warning(
                "watcher dropped a message after its delivery limit",
                extra={"fields": {"queue": self.name, "message_id": env.message_id}},
            )
            return
        headers = dict(env.headers)
        headers[BROKER_DEATH_REASON] = "delivery_limit"
        self.dead.put(
            _Envelope(env.body, headers, env.message_id, self.dead.name, env.published_at)
        )


class _MemoryConsumer(SubscriptionTransport):
    def __init__(self, bus: MemoryBus, queue: _Queue, sub: Subscription[Any]) -> None:
        self._bus = bus
        self._queue = queue
        self._sub = sub
        self._tags = itertools.count(1)
        self._unacked: dict[int, _Envelope] = {}
        self._active = True

    def has_capacity(self) -> bool:
        return self._active and len(self._unacked) < self._sub.prefetch

    def give(self, env: _Envelope) -> None:
        tag = next(self._tags)
        self._unacked[tag] = env
        self._sub.deliver(
            RawDelivery(
                body=env.body,
                headers=dict(env.headers),
                message_id=env.message_id,
                routing_key=env.routing_key,
                published_at=env.published_at,
                returns=env.returns,
                token=tag,
            )
        )

    def _take(self, raw: RawDelivery) -> _Envelope | None:
        if not raw.claim_settlement():
            return None
        assert isinstance(raw.token, int)
        return self._unacked.pop(raw.token, None)

    async def cancel(self) -> None:
        self._active = False
        if self in self._queue.consumers:
            self._queue.consumers.remove(self)

    async def ack(self, raw: RawDelivery) -> None:
        if self._take(raw) is not None:
            self._queue.dispatch()

    async def requeue(self, raw: RawDelivery, reason: str, *, failed: bool) -> None:
        # Every return counts, failed or not, as on the RabbitMQ the contract suite runs on.
        env = self._take(raw)
        if env is not None:
            self._queue.returned(env)
            self._queue.dispatch()

    async def retry_later(self, raw: RawDelivery, delay: float, reason: str) -> None:
        retry = self._queue.retry
        if retry is None:  # watchers have no retry queue: retry at once
            await self.requeue(raw, reason, failed=True)
            return
        env = self._take(raw)
        if env is None:
            return
        later = _Envelope(
            env.body,
            retry_headers(env.headers, attempts_so_far=raw.attempt),
            env.message_id,
            env.routing_key,
            env.published_at,
        )
        retry.ready.append(later)
        self._bus.schedule(delay, self._queue, retry, later)
        self._queue.dispatch()

    async def dead_letter(self, raw: RawDelivery, reason: str) -> None:
        env = self._take(raw)
        if env is None:
            return
        dead = self._queue.dead
        if dead is None:
            log.warning(
                "watcher dropped a message it cannot handle: %s",
                reason,
                extra={"fields": {"queue": self._queue.name, "message_id": env.message_id}},
            )
        else:
            headers = dead_letter_headers(
                env.headers, reason=reason, queue=self._queue.name, attempts=raw.attempt
            )
            dead.put(_Envelope(env.body, headers, env.message_id, dead.name, env.published_at))
        self._queue.dispatch()

    async def close(self) -> None:
        await self.cancel()
        # Whatever is still unsettled goes back, as when a broker channel closes.
        for tag in sorted(self._unacked):
            self._queue.returned(self._unacked.pop(tag))
        if self._queue.watcher:
            self._bus.drop_queue(self._queue)


class MemoryBus(Bus):
    """An in-process ``Bus``: same interface and semantics as ``RabbitBus``, no broker."""

    def __init__(
        self,
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(max_deliveries=max_deliveries, max_body_bytes=max_body_bytes)
        self._queues: dict[str, _Queue] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._watcher_ids = itertools.count(1)
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryBus(queues={len(self._queues)}, max_deliveries={self.max_deliveries})"

    @property
    def healthy(self) -> bool:
        return not self._closed

    async def start(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the in-memory bus is closed")

    async def _disconnect(self) -> None:
        self._closed = True
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def schedule(self, delay: float, target: _Queue, retry: _Queue, env: _Envelope) -> None:
        """Move ``env`` from ``retry`` back to the tail of ``target`` after ``delay`` seconds."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            if env in retry.ready:
                retry.ready.remove(env)
            target.put(env)

        timer = loop.call_later(delay, fire)
        self._timers.add(timer)

    def drop_queue(self, queue: _Queue) -> None:
        self._queues.pop(queue.name, None)

    def _durable_queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            dead = _Queue(names.dead_letter_queue(name), delivery_limit=0, dead=None, retry=None)
            retry = _Queue(names.retry_queue(name), delivery_limit=0, dead=None, retry=None)
            queue = _Queue(name, delivery_limit=self.max_deliveries - 1, dead=dead, retry=retry)
            self._queues[name] = queue
            self._queues[dead.name] = dead
            self._queues[retry.name] = retry
        return queue

    async def _declare_work_queue(self, queue: str) -> None:
        self._check_open()
        self._durable_queue(queue)

    async def _publish_work(
        self, queue: str, body: bytes, headers: dict[str, object], message_id: str
    ) -> None:
        self._check_open()
        self._durable_queue(queue).put(
            _Envelope(body, dict(headers), message_id, queue, datetime.now(UTC))
        )

    async def _publish_event(
        self, routing_key: str, body: bytes, headers: dict[str, object], message_id: str
    ) -> None:
        self._check_open()
        now = datetime.now(UTC)
        for queue in list(self._queues.values()):
            if any(names.topic_matches(pat, routing_key) for pat in queue.patterns):
                queue.put(_Envelope(body, dict(headers), message_id, routing_key, now))

    async def _open_work_consumer(
        self, queue: str, sub: Subscription[Any]
    ) -> SubscriptionTransport:
        self._check_open()
        return self._attach(self._durable_queue(queue), sub)

    async def _open_event_consumer(
        self, queue: str | None, patterns: list[str], sub: Subscription[Any]
    ) -> SubscriptionTransport:
        self._check_open()
        if queue is None:
            name = f"watcher.{next(self._watcher_ids)}"
            target = _Queue(
                name, delivery_limit=self.max_deliveries - 1, dead=None, retry=None, watcher=True
            )
            self._queues[name] = target
        else:
            target = self._durable_queue(queue)
        target.patterns.update(patterns)
        return self._attach(target, sub)

    def _attach(self, queue: _Queue, sub: Subscription[Any]) -> _MemoryConsumer:
        consumer = _MemoryConsumer(self, queue, sub)
        sub.transport = consumer
        queue.consumers.append(consumer)
        # Deliver what is already waiting once the caller has the subscription.
        asyncio.get_running_loop().call_soon(queue.dispatch)
        return consumer

    async def _queue_depth(self, queue: str) -> int:
        found = self._queues.get(queue)
        if found is None:
            raise UnknownQueue(f"queue {queue!r} has not been declared on this bus")
        return len(found.ready)

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        found = self._queues.get(names.dead_letter_queue(queue))
        if found is None:
            raise UnknownQueue(f"queue {queue!r} has not been declared on this bus")
        return [
            dead_letter_from(
                body=env.body, headers=env.headers, message_id=env.message_id, queue=queue
            )
            for env in itertools.islice(found.ready, limit)
        ]
