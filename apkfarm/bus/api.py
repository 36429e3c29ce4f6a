"""What services see of the bus: messages in, handlers, outcomes, dead letters.

Two implementations share this interface and one contract test suite:
``RabbitBus`` (RabbitMQ through aio-pika, for the farm) and ``MemoryBus``
(in-process, for the single-process embedded mode).

Delivery is at least once. A handler receives a ``Delivery`` and the message is
acknowledged only after the handler returned, so a handler stores its outcome
durably before returning and tolerates seeing the same ``message_id`` again
(after a crash, a lost connection, or a publish whose confirm was lost).

A handler steers what happens to its message:

- return normally: done, the message is acknowledged;
- raise ``RetryLater(reason, delay)``: handle it again later (``delay=0``:
  straight back to the head of the queue; ``delay>0``: to the tail after
  ``delay`` seconds, without blocking the consumer meanwhile);
- raise ``RejectMessage(reason)``: never handle it; it goes to the dead-letter
  queue with the reason;
- raise anything else: a crash; the message is delivered again.

Every delivery counts as an attempt. After ``max_deliveries`` attempts a
message that still fails goes to ``<queue>.dead`` with the last reason, so one
bad job cannot loop forever. A message that is not of the consumer's protobuf
type, or whose body does not parse, is poison: it goes to the dead-letter
queue at once, with the reason in the ``x-apkfarm-dead-reason`` header.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from google.protobuf.message import Message

from apkfarm.bus import codec, names
from apkfarm.errors import ApkfarmError

log = logging.getLogger("apkfarm.bus")

DEFAULT_MAX_DELIVERIES = 5
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

# Headers the bus itself puts on messages (besides codec.TYPE_HEADER).
PRIOR_DELIVERIES_HEADER = "x-apkfarm-prior-deliveries"
DEAD_REASON_HEADER = "x-apkfarm-dead-reason"
DEAD_QUEUE_HEADER = "x-apkfarm-dead-queue"
DEAD_ATTEMPTS_HEADER = "x-apkfarm-dead-attempts"
MAX_REASON_LENGTH = 2000


class BusError(ApkfarmError):
    """The bus could not do what was asked (broker unreachable, topology mismatch, ...)."""


class UnknownQueue(BusError):
    """A queue that has not been declared."""


class RetryLater(Exception):
    """Raised by a handler: handle this message again, after ``delay`` seconds."""

    def __init__(self, reason: str, delay: float = 0.0) -> None:
        super().__init__(reason)
        if delay < 0:
            raise ValueError(f"retry delay must not be negative, got {delay}")
        self.reason = reason
        self.delay = delay


class RejectMessage(Exception):
    """Raised by a handler: this message can never succeed; dead-letter it with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Delivery[M: Message]:
    """One delivery of a message to a handler."""

    message: M
    message_id: str
    # The work queue or subscription queue it came from, and the key it was published with.
    queue: str
    routing_key: str
    # 1 on the first delivery; counts crashes, lost consumers and retries.
    attempt: int
    max_deliveries: int
    published_at: datetime | None

    @property
    def last_attempt(self) -> bool:
        """True when failing now sends the message to the dead-letter queue."""
        return self.attempt >= self.max_deliveries


type Handler[M: Message] = Callable[[Delivery[M]], Awaitable[None]]


@dataclass(frozen=True)
class DeadLetter:
    """A message in a dead-letter queue, and why it is there."""

    message_id: str
    type_name: str | None
    body: bytes
    reason: str
    queue: str
    attempts: int | None
    headers: Mapping[str, object] = field(repr=False)


@dataclass
class RawDelivery:
    """A message as a transport hands it over, before it is parsed."""

    body: bytes
    headers: Mapping[str, object]
    message_id: str
    routing_key: str
    published_at: datetime | None
    # Times the transport has returned this message to its queue in this hop.
    returns: int
    # The transport's own handle for settling it.
    token: object = None
    # Set by the transport once acked, requeued or dead-lettered: settling twice is a no-op.
    settled: bool = False

    def claim_settlement(self) -> bool:
        """True for the first caller only; transports call it before settling."""
        if self.settled:
            return False
        self.settled = True
        return True

    @property
    def attempt(self) -> int:
        prior = self.headers.get(PRIOR_DELIVERIES_HEADER, 0)
        return (prior if isinstance(prior, int) else 0) + self.returns + 1


# What the bus does with a delivery once its handler is done with it.
@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Requeue:
    reason: str


@dataclass(frozen=True)
class RetryAfter:
    delay: float
    reason: str


@dataclass(frozen=True)
class DeadLetterIt:
    reason: str


Outcome = Ack | Requeue | RetryAfter | DeadLetterIt


def short_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_LENGTH else reason[: MAX_REASON_LENGTH - 3] + "..."


def dead_letter_headers(
    headers: Mapping[str, object], *, reason: str, queue: str, attempts: int
) -> dict[str, object]:
    """The headers of the dead-letter copy: the original's plus why and where from."""
    out = dict(headers)
    out[DEAD_REASON_HEADER] = short_reason(reason)
    out[DEAD_QUEUE_HEADER] = queue
    out[DEAD_ATTEMPTS_HEADER] = attempts
    return out


def retry_headers(headers: Mapping[str, object], *, attempts_so_far: int) -> dict[str, object]:
    out = dict(headers)
    out[PRIOR_DELIVERIES_HEADER] = attempts_so_far
    return out


async def process[M: Message](
    raw: RawDelivery,
    *,
    queue: str,
    expected: type[M],
    handler: Handler[M],
    max_deliveries: int,
    max_body_bytes: int,
) -> Outcome:
    """Run ``handler`` for one delivery and decide the outcome.

    Shared by every transport so that both implementations behave alike.
    Cancellation (a stop whose grace period ran out) propagates to the caller,
    which returns the message to its queue.
    """
    attempt = raw.attempt
    fields = {"queue": queue, "message_id": raw.message_id, "attempt": attempt}
    if attempt > max_deliveries:
        return DeadLetterIt(
            f"delivery limit reached: delivered {attempt - 1} times "
            f"(limit {max_deliveries}) without being handled"
        )
    try:
        message = codec.decode(raw.body, raw.headers, expected, max_body_bytes=max_body_bytes)
    except codec.PoisonMessage as exc:
        log.warning("poison message refused: %s", exc, extra={"fields": fields})
        return DeadLetterIt(f"poison message: {exc}")
    delivery = Delivery(
        message=message,
        message_id=raw.message_id,
        queue=queue,
        routing_key=raw.routing_key,
        attempt=attempt,
        max_deliveries=max_deliveries,
        published_at=raw.published_at,
    )
    try:
        await handler(delivery)
    except RejectMessage as exc:
        log.warning("handler rejected message: %s", exc.reason, extra={"fields": fields})
        return DeadLetterIt(f"rejected by handler: {exc.reason}")
    except RetryLater as exc:
        if attempt >= max_deliveries:
            return DeadLetterIt(
                f"gave up after {attempt} attempts; last: retry asked: {exc.reason}"
            )
        log.info("handler asked to retry: %s", exc.reason, extra={"fields": fields})
        if exc.delay > 0:
            return RetryAfter(exc.delay, exc.reason)
        return Requeue(exc.reason)
    except Exception as exc:
        reason = f"handler failed: {type(exc).__name__}: {exc}"
        log.exception("handler failed", extra={"fields": fields})
        if attempt >= max_deliveries:
            return DeadLetterIt(f"gave up after {attempt} attempts; last: {reason}")
        return Requeue(reason)
    return Ack()


class SubscriptionTransport(ABC):
    """How a ``Subscription`` talks to its transport (broker channel or memory queue)."""

    @abstractmethod
    async def cancel(self) -> None:
        """Stop new deliveries."""

    @abstractmethod
    async def ack(self, raw: RawDelivery) -> None: ...

    @abstractmethod
    async def requeue(self, raw: RawDelivery, reason: str, *, failed: bool) -> None:
        """Put the message back at the head of its queue; counts as a delivery.

        ``failed``: the message's handling failed (rather than the consumer
        stopping). Brokers from RabbitMQ 4.3 count only failed returns towards
        the delivery limit, so the transport must tell them apart.
        """

    @abstractmethod
    async def retry_later(self, raw: RawDelivery, delay: float, reason: str) -> None: ...

    @abstractmethod
    async def dead_letter(self, raw: RawDelivery, reason: str) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Release what the subscription held (called after ``cancel`` and settling)."""


class Subscription[M: Message]:
    """A running consumer of one queue; ``stop()`` ends it gracefully.

    Handlers run as their own tasks (not tied to the broker channel) so that a
    lost connection does not interrupt a running build; at most ``prefetch``
    handlers run at once.
    """

    def __init__(
        self,
        *,
        queue: str,
        expected: type[M],
        handler: Handler[M],
        prefetch: int,
        max_deliveries: int,
        max_body_bytes: int,
    ) -> None:
        self.queue = queue
        self.prefetch = prefetch
        self._expected = expected
        self._handler = handler
        self._max_deliveries = max_deliveries
        self._max_body_bytes = max_body_bytes
        self._slots = asyncio.Semaphore(prefetch)
        self._waiting: set[asyncio.Task[None]] = set()
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self._stop_task: asyncio.Task[None] | None = None
        self.transport: SubscriptionTransport | None = None

    @property
    def in_flight(self) -> int:
        """Handlers running now."""
        return len(self._running)

    @property
    def stopping(self) -> bool:
        return self._stopping

    def deliver(self, raw: RawDelivery) -> None:
        """Called by the transport, in the event loop, for each message it delivers."""
        task = asyncio.get_running_loop().create_task(self._run(raw))
        self._waiting.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._waiting.discard(task)
        self._running.discard(task)

    async def _run(self, raw: RawDelivery) -> None:
        transport = self.transport
        assert transport is not None
        task = asyncio.current_task()
        assert task is not None
        try:
            async with self._slots:
                if self._stopping:
                    await transport.requeue(raw, "consumer stopping", failed=False)
                    return
                self._waiting.discard(task)
                self._running.add(task)
                outcome = await process(
                    raw,
                    queue=self.queue,
                    expected=self._expected,
                    handler=self._handler,
                    max_deliveries=self._max_deliveries,
                    max_body_bytes=self._max_body_bytes,
                )
        except asyncio.CancelledError:
            # Stopped before the handler finished: the message goes back.
            await transport.requeue(
                raw, "consumer stopped before the handler finished", failed=False
            )
            return
        await self._settle(transport, raw, outcome)

    async def _settle(
        self, transport: SubscriptionTransport, raw: RawDelivery, outcome: Outcome
    ) -> None:
        match outcome:
            case Ack():
                await transport.ack(raw)
            case Requeue(reason):
                await transport.requeue(raw, reason, failed=True)
            case RetryAfter(delay, reason):
                await transport.retry_later(raw, delay, reason)
            case DeadLetterIt(reason):
                await transport.dead_letter(raw, reason)

    async def stop(self, grace: float = 30.0) -> None:
        """Stop taking messages; let running handlers finish for up to ``grace`` seconds.

        Messages not yet handled go back to the queue at once. A handler still
        running after ``grace`` is cancelled and its message returned to the
        queue (it counts as an attempt). Safe to call more than once.
        """
        if self._stop_task is None:
            self._stopping = True  # at once: nothing new starts from here on
            self._stop_task = asyncio.get_running_loop().create_task(self._stop(grace))
        await asyncio.shield(self._stop_task)

    async def _stop(self, grace: float) -> None:
        transport = self.transport
        assert transport is not None
        try:
            await transport.cancel()
        except Exception:
            log.warning(
                "cancelling consumer failed", exc_info=True, extra={"fields": {"queue": self.queue}}
            )
        for task in list(self._waiting):
            task.cancel()
        pending = self._waiting | self._running
        if pending:
            _done, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "handler did not finish within the grace period; its message is returned",
                    extra={"fields": {"queue": self.queue, "grace": grace}},
                )
                await asyncio.wait(late)
        await transport.close()
        self._stopped.set()


class Bus(ABC):
    """Work queues, events and dead letters; see the module docstring for the semantics."""

    def __init__(
        self,
        *,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be at least 1, got {max_deliveries}")
        self.max_deliveries = max_deliveries
        self.max_body_bytes = max_body_bytes
        self._subscriptions: set[Subscription[Any]] = set()

    # --- life cycle -------------------------------------------------------

    @abstractmethod
    async def start(self) -> None:
        """Connect (if the implementation has anything to connect to)."""

    async def close(self, grace: float = 30.0) -> None:
        """Stop every subscription gracefully (see ``Subscription.stop``), then disconnect."""
        subs = list(self._subscriptions)
        if subs:
            await asyncio.gather(*(sub.stop(grace) for sub in subs))
        self._subscriptions.clear()
        await self._disconnect()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    @abstractmethod
    def healthy(self) -> bool:
        """True while the bus can publish and deliver (for health checks)."""

    # --- publishing -------------------------------------------------------

    async def declare_queue(self, queue: str) -> None:
        """Declare a work queue with its dead-letter and retry queues (idempotent)."""
        await self._declare_work_queue(names.queue_name(queue))

    async def publish(self, queue: str, message: Message, *, message_id: str | None = None) -> str:
        """Put a job on a work queue; returns once it is stored durably. Returns its id."""
        body, type_name = codec.encode(message)
        return await self.publish_raw(queue, body, type_name, message_id=message_id)

    async def publish_raw(
        self, queue: str, body: bytes, type_name: str, *, message_id: str | None = None
    ) -> str:
        """Publish bytes as a message of ``type_name`` (for tools and tests)."""
        names.queue_name(queue)
        message_id = message_id or uuid.uuid4().hex
        await self._declare_work_queue(queue)
        await self._publish_work(queue, body, {codec.TYPE_HEADER: type_name}, message_id)
        return message_id

    async def publish_event(
        self, routing_key: str, message: Message, *, message_id: str | None = None
    ) -> str:
        """Publish an event to every subscription whose pattern matches ``routing_key``."""
        names.routing_key(routing_key)
        body, type_name = codec.encode(message)
        message_id = message_id or uuid.uuid4().hex
        await self._publish_event(routing_key, body, {codec.TYPE_HEADER: type_name}, message_id)
        return message_id

    # --- consuming --------------------------------------------------------

    async def consume[M: Message](
        self, queue: str, message_type: type[M], handler: Handler[M], *, prefetch: int = 1
    ) -> Subscription[M]:
        """Handle jobs from a work queue, at most ``prefetch`` at a time."""
        names.queue_name(queue)
        _check_prefetch(prefetch)
        await self._declare_work_queue(queue)
        sub = self._new_subscription(queue, message_type, handler, prefetch)
        sub.transport = await self._open_work_consumer(queue, sub)
        return sub

    async def subscribe[M: Message](
        self,
        patterns: Sequence[str],
        message_type: type[M],
        handler: Handler[M],
        *,
        queue: str | None = None,
        prefetch: int = 1,
    ) -> Subscription[M]:
        """Handle events whose routing key matches any of ``patterns``.

        With ``queue`` set, the subscription is a durable named queue that keeps
        collecting events while its consumer is down (a service's consumer),
        with the same redelivery bound and dead-letter queue as a work queue.
        Without it, the queue is private to this subscription and disappears
        with it (a watcher); a watcher's poison or exhausted messages are
        logged and dropped, and its delayed retries are immediate.
        """
        if not patterns:
            raise names.InvalidName("a subscription needs at least one event pattern")
        for pat in patterns:
            names.pattern(pat)
        if queue is not None:
            names.queue_name(queue)
        _check_prefetch(prefetch)
        label = queue or "watcher:" + ",".join(patterns)
        sub = self._new_subscription(label, message_type, handler, prefetch)
        sub.transport = await self._open_event_consumer(queue, list(patterns), sub)
        return sub

    def _new_subscription[M: Message](
        self, queue: str, message_type: type[M], handler: Handler[M], prefetch: int
    ) -> Subscription[M]:
        sub = Subscription(
            queue=queue,
            expected=message_type,
            handler=handler,
            prefetch=prefetch,
            max_deliveries=self.max_deliveries,
            max_body_bytes=self.max_body_bytes,
        )
        self._subscriptions.add(sub)
        return sub

    # --- inspection -------------------------------------------------------

    async def queue_depth(self, queue: str) -> int:
        """Messages ready for delivery in ``queue`` (not counting those being handled).

        Any declared queue can be asked, including ``<queue>.dead``. Raises
        ``UnknownQueue`` for a queue that was never declared.
        """
        names.any_queue_name(queue)
        return await self._queue_depth(queue)

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """The first ``limit`` messages in ``<queue>.dead``, oldest first, left in place."""
        names.queue_name(queue)
        return await self._dead_letters(queue, limit)

    # --- what an implementation provides ---------------------------------

    @abstractmethod
    async def _disconnect(self) -> None: ...

    @abstractmethod
    async def _declare_work_queue(self, queue: str) -> None: ...

    @abstractmethod
    async def _publish_work(
        self, queue: str, body: bytes, headers: dict[str, object], message_id: str
    ) -> None: ...

    @abstractmethod
    async def _publish_event(
        self, routing_key: str, body: bytes, headers: dict[str, object], message_id: str
    ) -> None: ...

    @abstractmethod
    async def _open_work_consumer(
        self, queue: str, sub: Subscription[Any]
    ) -> SubscriptionTransport: ...

    @abstractmethod
    async def _open_event_consumer(
        self, queue: str | None, patterns: list[str], sub: Subscription[Any]
    ) -> SubscriptionTransport: ...

    @abstractmethod
    async def _queue_depth(self, queue: str) -> int: ...

    @abstractmethod
    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]: ...


def _check_prefetch(prefetch: int) -> None:
    if not 1 <= prefetch <= 1000:
        raise ValueError(f"prefetch must be between 1 and 1000, got {prefetch}")


def dead_letter_from(
    *, body: bytes, headers: Mapping[str, object], message_id: str, queue: str
) -> DeadLetter:
    """Read a dead-lettered message, whichever way it got there.

    The bus's own copies carry ``x-apkfarm-dead-reason``; a message the broker
    dead-lettered itself (its delivery limit ran out because consumers kept
    dying) carries the broker's ``x-death`` record instead.
    """
    reason = codec.header_text(headers, DEAD_REASON_HEADER)
    attempts_value = headers.get(DEAD_ATTEMPTS_HEADER)
    attempts = attempts_value if isinstance(attempts_value, int) else None
    if reason is None:
        broker_reason = codec.header_text(headers, "x-first-death-reason")
        if broker_reason == "delivery_limit":
            reason = (
                "delivery limit reached: consumers kept dying or losing their "
                "connection while handling it"
            )
        else:
            reason = f"dead-lettered by the broker ({broker_reason or 'no reason recorded'})"
    return DeadLetter(
        message_id=message_id,
        type_name=codec.header_text(headers, codec.TYPE_HEADER),
        body=body,
        reason=reason,
        queue=queue,
        attempts=attempts,
        headers=dict(headers),
    )
