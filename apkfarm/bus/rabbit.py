"""The bus on RabbitMQ (aio-pika, robust connection).

Topology, declared idempotently by whoever uses it (``P`` is the exchange
prefix, ``apkfarm`` by default):

- ``P.work`` (direct): each work queue ``Q`` is bound to it with key ``Q``.
- ``Q``: a **quorum** queue, durable, with ``x-delivery-limit`` and a
  dead-letter route to ``Q.dead`` through ``P.dead`` (at-least-once
  dead-lettering, which RabbitMQ requires to go with ``x-overflow:
  reject-publish``).
- ``Q.dead`` (classic, durable): dead letters. The bus's own copies carry the
  reason in ``x-apkfarm-dead-reason``; the broker's carry ``x-death``.
- ``Q.retry`` (classic, durable): delayed retries wait here with a
  per-message TTL and then dead-letter back to ``P.work`` → ``Q``. Classic
  queues expire messages only at their head, so a retry waits at most behind
  earlier retries of the same queue (retry delays of one queue are similar).
- ``P.events`` (topic): events; a durable subscription is a quorum queue like
  ``Q`` (with its own ``.dead``/``.retry``), bound with its patterns; a watcher
  is an exclusive auto-delete classic queue.

Why quorum queues for the redelivery bound: RabbitMQ 3.10 quorum queues count
every return of a message in ``x-delivery-count`` — a ``reject`` or ``nack`` with
requeue *and* a consumer whose channel or connection died while holding it (checked
on this project's machines, and by the contract suite) — and dead-letter it
themselves once the count passes ``x-delivery-limit``. So the bound holds
even when a builder is killed in the middle of every attempt, which a counter
kept by consumers could not guarantee. The bus sets the limit to
``max_deliveries - 1`` returns (``max_deliveries`` deliveries in all) and
dead-letters a message that fails on its last attempt itself, so that the
reason travels with it. Classic queues cannot count deliveries; watchers
(which are classic, being exclusive) count returns in the consumer, which is
enough because nobody else consumes their queue.

The limit is a queue argument: all users of a queue must agree on
``max_deliveries`` (a mismatch is refused by the broker with
PRECONDITION_FAILED, reported as a ``BusError`` naming the queue). RabbitMQ
4.3 counts only failed returns (``basic.reject`` with requeue, and a consumer
that dies holding the message) and lets ``basic.nack`` return a message for
free; the bus therefore rejects what failed and nacks what a stopping consumer
hands back. The contract suite (``test_consumer_death_counts_towards_the_limit``
and the requeue tests) pins the behaviour on the broker it runs against.

Over ``amqps://`` the connection uses the ``ssl_context`` given (the farm CA
and the service's client certificate, see ``open_bus``), or the system's
trust store without one. A certificate refused by either side is a
configuration error, not an outage: it is reported at once instead of being
retried.

Publishing waits for the broker's confirm and is retried across reconnections
until ``publish_timeout``; a retried publish may be stored twice, which is why
handlers tolerate a repeated ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)
from yarl import URL

from apkfarm.bus import codec, names
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

# Errors that mean "the broker connection is not usable right now": worth
# retrying once the robust connection is back. (aio-pika raises RuntimeError
# for a channel opened on a connection that just closed.)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    RuntimeError,
)
# Connection errors that retrying cannot fix.
_FATAL_CONNECT_ERRORS: tuple[type[BaseException], ...] = (
    aiormq.exceptions.AuthenticationError,
    aiormq.exceptions.ProbableAuthenticationError,
    aiormq.exceptions.IncompatibleProtocolError,
)
_SETTLE_TIMEOUT = 10.0


def _mask(url: str) -> str:
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


# TLS errors that only say the link went away (a broker restarting mid-handshake)
# are outages like any other; the rest (a refused certificate, an alert from the
# broker) are configuration errors.
_TRANSIENT_TLS_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS configuration error behind a failed connect (aiormq wraps it), if any."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return None if isinstance(seen, _TRANSIENT_TLS_ERRORS) else seen
        seen = seen.__cause__ or seen.__context__
    return None


class RabbitBus(Bus):
    """A ``Bus`` on RabbitMQ; see the module docstring for the topology and guarantees."""

    def __init__(
        self,
        url: str,
        *,
        exchange_prefix: str = "apkfarm",
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        connect_timeout: float = 60.0,
        publish_timeout: float = 60.0,
        reconnect_interval: float = 1.0,
        heartbeat: int = 30,
        connection_name: str = "apkfarm",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context`` applies to ``amqps://`` URLs; without it aio-pika trusts the
        system's CAs and presents no client certificate."""
        super().__init__(max_deliveries=max_deliveries, max_body_bytes=max_body_bytes)
        names.queue_name(exchange_prefix)
        self._url = url
        self._prefix = exchange_prefix
        self._connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        self._heartbeat = heartbeat
        self._connection_name = connection_name
        self._ssl_context = ssl_context
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractRobustExchange] = {}
        self._declared: set[str] = set()
        self._declare_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RabbitBus({_mask(self._url)!r}, exchange_prefix={self._prefix!r})"

    @property
    def work_exchange(self) -> str:
        return f"{self._prefix}.work"

    @property
    def events_exchange(self) -> str:
        return f"{self._prefix}.events"

    @property
    def dead_exchange(self) -> str:
        return f"{self._prefix}.dead"

    @property
    def healthy(self) -> bool:
        conn = self._connection
        return (
            conn is not None
            and not conn.is_closed
            and conn.connected.is_set()
            and self._channel is not None
            and not self._channel.is_closed
        )

    # --- connection -------------------------------------------------------

    async def start(self) -> None:
        if self._connection is not None:
            return
        retrying = AsyncRetrying(
            stop=stop_after_delay(self._connect_timeout),
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(_CONNECTION_ERRORS)
            & retry_if_not_exception_type(_FATAL_CONNECT_ERRORS)
            & retry_if_exception(lambda exc: _tls_failure(exc) is None),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    self._connection = await aio_pika.connect_robust(
                        self._url,
                        reconnect_interval=self._reconnect_interval,
                        heartbeat=self._heartbeat,
                        client_properties={"connection_name": self._connection_name},
                        timeout=10,
                        ssl_context=self._ssl_context,
                    )
        except _CONNECTION_ERRORS as exc:
            tls_error = _tls_failure(exc)
            if tls_error is not None:
                raise BusError(
                    f"TLS handshake with RabbitMQ at {_mask(self._url)} failed: {tls_error} "
                    "(the client must trust the CA that issued the broker's certificate, "
                    "for this host name, and the broker the CA of the client's certificate)"
                ) from exc
            hint = ""
            if URL(self._url).scheme == "amqps":
                hint = (
                    " (over TLS, a broker that requires client certificates drops "
                    "connections that present none or one it does not trust)"
                )
            raise BusError(
                f"cannot connect to RabbitMQ at {_mask(self._url)} within "
                f"{self._connect_timeout:.0f}s: {exc}{hint}"
            ) from exc
        assert self._connection is not None
        self._channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        for name, kind in (
            (self.work_exchange, aio_pika.ExchangeType.DIRECT),
            (self.events_exchange, aio_pika.ExchangeType.TOPIC),
            (self.dead_exchange, aio_pika.ExchangeType.DIRECT),
        ):
            self._exchanges[name] = await self._channel.declare_exchange(name, kind, durable=True)

    async def _disconnect(self) -> None:
        conn, self._connection = self._connection, None
        self._channel = None
        self._exchanges.clear()
        self._declared.clear()
        if conn is not None:
            await conn.close()

    def _require_connection(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise BusError("the RabbitMQ bus is not started (call start() first)")
        return self._connection

    @contextlib.asynccontextmanager
    async def _temporary_channel(self) -> AsyncIterator[AbstractRobustChannel]:
        channel = await self._require_connection().channel(publisher_confirms=False)
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_SETTLE_TIMEOUT):
                    await channel.close()

    async def _retrying[T](self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``, retrying while the connection recovers, for up to ``publish_timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        delay = 0.1
        while True:
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                    return await op()
            except (
                aiormq.exceptions.ChannelNotFoundEntity,
                aiormq.exceptions.ChannelPreconditionFailed,
                aiormq.exceptions.DeliveryError,
            ):
                raise
            except _CONNECTION_ERRORS as exc:
                if loop.time() + delay >= deadline:
                    raise BusError(
                        f"{what} failed for {self.publish_timeout:.0f}s "
                        f"(RabbitMQ at {_mask(self._url)}): {type(exc).__name__}: {exc}"
                    ) from exc
                log.warning(
                    "%s failed, retrying after reconnection: %s: %s",
                    what,
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    # --- topology ---------------------------------------------------------

    def _quorum_arguments(self, queue: str) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.max_deliveries - 1,
            "x-dead-letter-exchange": self.dead_exchange,
            "x-dead-letter-routing-key": names.dead_letter_queue(queue),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    async def _declare_durable(self, queue: str) -> None:
        """Declare ``queue`` with its companions, once per connection lifetime."""
        if queue in self._declared:
            return
        async with self._declare_lock:
            if queue in self._declared:
                return

            async def declare() -> None:
                async with self._temporary_channel() as ch:
                    dead = names.dead_letter_queue(queue)
                    dead_q = await ch.declare_queue(dead, durable=True)
                    await dead_q.bind(self.dead_exchange, dead)
                    await ch.declare_queue(
                        names.retry_queue(queue),
                        durable=True,
                        arguments={
                            "x-dead-letter-exchange": self.work_exchange,
                            "x-dead-letter-routing-key": queue,
                        },
                    )
                    main = await ch.declare_queue(
                        queue, durable=True, arguments=self._quorum_arguments(queue)
                    )
                    # Delayed retries come back through the work exchange, so
                    # every durable queue is bound there under its own name.
                    await main.bind(self.work_exchange, queue)

            try:
                await self._retrying(f"declaring queue {queue!r}", declare)
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                raise BusError(
                    f"queue {queue!r} already exists with other arguments than this bus "
                    f"declares (max_deliveries={self.max_deliveries}, quorum type): {exc}"
                ) from exc
            self._declared.add(queue)

    async def _declare_work_queue(self, queue: str) -> None:
        self._require_connection()
        await self._declare_durable(queue)

    # --- publishing -------------------------------------------------------

    def _message(
        self,
        body: bytes,
        headers: dict[str, object],
        message_id: str,
        *,
        published_at: datetime | None = None,
        expiration: float | None = None,
    ) -> aio_pika.Message:
        return aio_pika.Message(
            body,
            headers=headers,  # type: ignore[arg-type]
            content_type=codec.CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            timestamp=published_at or datetime.now(UTC),
            expiration=expiration,
        )

    async def _send(
        self,
        exchange: str,
        routing_key: str,
        make: Callable[[], aio_pika.Message],
        *,
        mandatory: bool,
        on_unroutable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Publish and wait for the confirm, retrying across reconnections."""
        self._require_connection()

        async def publish() -> None:
            if exchange:
                target = self._exchanges[exchange]
            else:
                assert self._channel is not None
                target = self._channel.default_exchange  # type: ignore[assignment]
            await target.publish(make(), routing_key=routing_key, mandatory=mandatory)

        what = f"publishing to {exchange or 'the default exchange'}/{routing_key}"
        try:
            await self._retrying(what, publish)
        except aiormq.exceptions.DeliveryError as exc:
            # Returned as unroutable: the queue vanished (a broker that lost its
            # state). Declare it again once, then give up loudly.
            if on_unroutable is None:
                raise BusError(f"RabbitMQ refused {what}: {exc}") from exc
            await on_unroutable()
            try:
                await self._retrying(what, publish)
            except aiormq.exceptions.DeliveryError as again:
                raise BusError(f"RabbitMQ refused {what}: {again}") from again

    async def _publish_work(
        self, queue: str, body: bytes, headers: dict[str, object], message_id: str
    ) -> None:
        async def redeclare() -> None:
            self._declared.clear()
            await self._declare_work_queue(queue)

        await self._send(
            self.work_exchange,
            queue,
            lambda: self._message(body, headers, message_id),
            mandatory=True,
            on_unroutable=redeclare,
        )

    async def _publish_event(
        self, routing_key: str, body: bytes, headers: dict[str, object], message_id: str
    ) -> None:
        # Not mandatory: an event nobody subscribed to is simply not needed.
        await self._send(
            self.events_exchange,
            routing_key,
            lambda: self._message(body, headers, message_id),
            mandatory=False,
        )

    # --- consuming --------------------------------------------------------

    async def _open_consumer(
        self,
        sub: Subscription[Any],
        *,
        queue: str | None,
        patterns: list[str],
    ) -> _RabbitConsumer:
        conn = self._require_connection()

        async def open_channel() -> _RabbitConsumer:
            channel = await conn.channel(publisher_confirms=False)
            try:
                await channel.set_qos(prefetch_count=sub.prefetch)
                if queue is None:
                    amqp_queue = await channel.declare_queue(None, exclusive=True, auto_delete=True)
                else:
                    amqp_queue = await channel.declare_queue(
                        queue, durable=True, arguments=self._quorum_arguments(queue)
                    )
                for pat in patterns:
                    await amqp_queue.bind(self.events_exchange, pat)
                consumer = _RabbitConsumer(self, sub, channel, amqp_queue, watcher=queue is None)
                # Deliveries may arrive as soon as the consumer exists.
                sub.transport = consumer
                consumer.tag = await amqp_queue.consume(consumer.on_message)
            except BaseException:
                with contextlib.suppress(Exception):
                    await channel.close()
                raise
            return consumer

        return await self._retrying(f"subscribing to {queue or patterns}", open_channel)

    async def _open_work_consumer(
        self, queue: str, sub: Subscription[Any]
    ) -> SubscriptionTransport:
        return await self._open_consumer(sub, queue=queue, patterns=[])

    async def _open_event_consumer(
        self, queue: str | None, patterns: list[str], sub: Subscription[Any]
    ) -> SubscriptionTransport:
        if queue is not None:
            await self._declare_durable(queue)
        return await self._open_consumer(sub, queue=queue, patterns=patterns)

    # Used by consumers to hand a message on (dead letters, delayed retries).
    async def send_copy(
        self,
        raw: RawDelivery,
        headers: dict[str, object],
        *,
        dead_letter_of: str | None = None,
        retry_of: str | None = None,
        delay: float | None = None,
    ) -> None:
        """Publish a copy of ``raw`` to a queue's dead-letter or retry queue (confirmed)."""
        if dead_letter_of is not None:
            exchange, key = self.dead_exchange, names.dead_letter_queue(dead_letter_of)
        else:
            assert retry_of is not None
            exchange, key = "", names.retry_queue(retry_of)
        await self._send(
            exchange,
            key,
            lambda: self._message(
                raw.body,
                headers,
                raw.message_id,
                published_at=raw.published_at,
                expiration=delay,
            ),
            mandatory=True,
        )

    # --- inspection -------------------------------------------------------

    async def _queue_depth(self, queue: str) -> int:
        async def depth() -> int:
            async with self._temporary_channel() as ch:
                declared = await ch.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)

        try:
            return await self._retrying(f"reading the depth of {queue!r}", depth)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise UnknownQueue(f"queue {queue!r} does not exist on the broker") from exc

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        dead = names.dead_letter_queue(queue)

        async def peek() -> list[DeadLetter]:
            letters: list[DeadLetter] = []
            async with self._temporary_channel() as ch:
                amqp_queue = await ch.declare_queue(dead, passive=True)
                # Take without acking; closing the channel puts them all back in order.
                for _ in range(limit):
                    message = await amqp_queue.get(no_ack=False, fail=False)
                    if message is None:
                        break
                    letters.append(
                        dead_letter_from(
                            body=message.body,
                            headers=dict(message.headers),
                            message_id=message.message_id or "",
                            queue=queue,
                        )
                    )
            return letters

        try:
            return await self._retrying(f"reading dead letters of {queue!r}", peek)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            raise UnknownQueue(f"queue {dead!r} does not exist on the broker") from exc


def give_back(message: AbstractIncomingMessage, *, failed: bool) -> Callable[[], Awaitable[None]]:
    """How to return ``message`` to its queue: ``basic.reject`` for a failure and
    ``basic.nack`` otherwise. RabbitMQ before 4.3 counts both towards the
    delivery limit; 4.3 and later count only the reject (rabbitmq-server
    #15387), so a consumer that stops is not charged an attempt there."""
    if failed:
        return lambda: message.reject(requeue=True)
    return lambda: message.nack(requeue=True)


class _RabbitConsumer(SubscriptionTransport):
    """One subscription's channel, queue and consumer tag on the broker."""

    def __init__(
        self,
        bus: RabbitBus,
        sub: Subscription[Any],
        channel: AbstractRobustChannel,
        queue: AbstractRobustQueue,
        *,
        watcher: bool,
    ) -> None:
        self._bus = bus
        self._sub = sub
        self._channel = channel
        self._queue = queue
        self._watcher = watcher
        self.tag: str | None = None
        # Watchers' classic queues do not count deliveries; count returns here.
        self._returns: dict[str, int] = {}

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        message_id = message.message_id or ""
        if self._watcher:
            returns = self._returns.get(message_id, 0)
        else:
            count = headers.get("x-delivery-count", 0)
            returns = count if isinstance(count, int) else 0
        published = message.timestamp
        if published is not None and published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        self._sub.deliver(
            RawDelivery(
                body=message.body,
                headers=headers,
                message_id=message_id,
                routing_key=message.routing_key or "",
                published_at=published,
                returns=returns,
                token=message,
            )
        )

    @staticmethod
    def _message(raw: RawDelivery) -> AbstractIncomingMessage:
        assert isinstance(raw.token, AbstractIncomingMessage)
        return raw.token

    async def _settle(self, raw: RawDelivery, what: str, op: Callable[[], Awaitable[None]]) -> None:
        try:
            async with asyncio.timeout(_SETTLE_TIMEOUT):
                await op()
        except Exception as exc:
            # The channel this came on is gone: the broker returns the message
            # to the queue by itself, and it will be delivered again.
            log.warning(
                "could not %s a message (its channel is gone; it will be redelivered): %s: %s",
                what,
                type(exc).__name__,
                exc,
                extra={"fields": {"queue": self._sub.queue, "message_id": raw.message_id}},
            )

    async def cancel(self) -> None:
        if self.tag is None:
            return
        tag, self.tag = self.tag, None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SETTLE_TIMEOUT):
                await self._queue.cancel(tag)

    async def ack(self, raw: RawDelivery) -> None:
        if raw.claim_settlement():
            self._returns.pop(raw.message_id, None)
            await self._settle(raw, "ack", self._message(raw).ack)

    async def requeue(self, raw: RawDelivery, reason: str, *, failed: bool) -> None:
        if not raw.claim_settlement():
            return
        message = self._message(raw)
        if self._watcher:
            returns = self._returns.get(raw.message_id, 0) + 1
            if returns > self._bus.max_deliveries - 1:
                self._returns.pop(raw.message_id, None)
                log.warning(
                    "watcher dropped a message after its delivery limit: %s",
                    reason,
                    extra={"fields": {"message_id": raw.message_id}},
                )
                await self._settle(raw, "ack", message.ack)
                return
            self._returns[raw.message_id] = returns
        await self._settle(raw, "requeue", give_back(message, failed=failed))

    async def retry_later(self, raw: RawDelivery, delay: float, reason: str) -> None:
        if self._watcher:
            await self.requeue(raw, reason, failed=True)
            return
        if not raw.claim_settlement():
            return
        message = self._message(raw)
        try:
            await self._bus.send_copy(
                raw,
                retry_headers(_forwardable(raw.headers), attempts_so_far=raw.attempt),
                retry_of=self._sub.queue,
                delay=delay,
            )
        except BusError as exc:
            log.warning("could not schedule a retry: %s", exc)
            await self._settle(raw, "requeue", give_back(message, failed=True))
            return
        await self._settle(raw, "ack", message.ack)

    async def dead_letter(self, raw: RawDelivery, reason: str) -> None:
        if not raw.claim_settlement():
            return
        message = self._message(raw)
        if self._watcher:
            self._returns.pop(raw.message_id, None)
            log.warning(
                "watcher dropped a message it cannot handle: %s",
                reason,
                extra={"fields": {"message_id": raw.message_id}},
            )
            await self._settle(raw, "ack", message.ack)
            return
        try:
            await self._bus.send_copy(
                raw,
                dead_letter_headers(
                    _forwardable(raw.headers),
                    reason=reason,
                    queue=self._sub.queue,
                    attempts=raw.attempt,
                ),
                dead_letter_of=self._sub.queue,
            )
        except BusError as exc:
            # Left unacked: the broker redelivers it and the bus tries again.
            log.warning("could not dead-letter a message: %s", exc)
            return
        await self._settle(raw, "ack", message.ack)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SETTLE_TIMEOUT):
                await self._channel.close()


def _forwardable(headers: dict[str, object] | Any) -> dict[str, object]:
    """Headers worth keeping on a copy: the broker's own bookkeeping is dropped."""
    return {
        key: value
        for key, value in dict(headers).items()
        if key not in ("x-delivery-count", "x-death")
        and not key.startswith("x-first-death")
        and not key.startswith("x-last-death")
    }
