"""One contract for both buses: the same assertions run on MemoryBus and on RabbitBus.

The RabbitMQ runs use a private broker (tests/fixtures/servers.py). Each test
uses its own queue names and its own exchange prefix, so tests do not see
each other's messages. Tests at the end run on RabbitMQ only: they stop the
broker or cut its connections, which the in-memory bus has no equivalent of.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import require
from fixtures.servers import RabbitMQ
from google.protobuf import struct_pb2, wrappers_pb2

from apkfarm.bus import (
    Bus,
    Delivery,
    InvalidName,
    MemoryBus,
    RejectMessage,
    RetryLater,
    UnknownQueue,
    names,
)
from apkfarm.bus.rabbit import RabbitBus

TEST_TIMEOUT = 90.0
WAIT = 20.0

StringValue = wrappers_pb2.StringValue


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), TEST_TIMEOUT))


def unique(stem: str = "q") -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@dataclass
class BusFactory:
    kind: str
    url: str | None = None
    prefix: str = field(default_factory=lambda: unique("t"))

    def __call__(self, *, max_deliveries: int = 3, max_body_bytes: int = 4 * 1024 * 1024) -> Bus:
        if self.kind == "memory":
            return MemoryBus(max_deliveries=max_deliveries, max_body_bytes=max_body_bytes)
        assert self.url is not None
        return RabbitBus(
            self.url,
            exchange_prefix=self.prefix,
            max_deliveries=max_deliveries,
            max_body_bytes=max_body_bytes,
            connect_timeout=30,
            publish_timeout=30,
            connection_name="apkfarm-contract-test",
        )


@pytest.fixture(params=["memory", pytest.param("rabbit", marks=pytest.mark.infra)])
def new_bus(request: pytest.FixtureRequest) -> BusFactory:
    if request.param == "memory":
        return BusFactory("memory")
    broker: RabbitMQ = request.getfixturevalue("rabbitmq")
    broker.ensure_running()  # in case a failed restart test left it down
    return BusFactory("rabbit", broker.url)


class Recorder:
    """A handler that records deliveries; optional behaviour per delivery."""

    def __init__(self, behaviour: Callable[[Delivery[Any]], Awaitable[None]] | None = None) -> None:
        self.deliveries: list[Delivery[Any]] = []
        self._arrived: asyncio.Queue[Delivery[Any]] = asyncio.Queue()
        self._behaviour = behaviour

    async def __call__(self, delivery: Delivery[Any]) -> None:
        self.deliveries.append(delivery)
        self._arrived.put_nowait(delivery)
        if self._behaviour is not None:
            await self._behaviour(delivery)

    async def next(self, timeout: float = WAIT) -> Delivery[Any]:
        return await asyncio.wait_for(self._arrived.get(), timeout)

    async def take(self, count: int, timeout: float = WAIT) -> list[Delivery[Any]]:
        return [await self.next(timeout) for _ in range(count)]

    def values(self) -> list[str]:
        return [d.message.value for d in self.deliveries]


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT
) -> None:
    """Poll ``check`` until it holds (for state the broker settles asynchronously)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


def sv(text: str) -> wrappers_pb2.StringValue:
    return StringValue(value=text)


# --- work queues ------------------------------------------------------------


def test_round_trip_keeps_message_and_metadata(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            rec = Recorder()
            await bus.consume(queue, StringValue, rec)
            sent_id = await bus.publish(queue, sv("hello"), message_id="job-1")
            got = await rec.next()
            assert got.message == sv("hello")
            assert sent_id == "job-1"
            assert got.message_id == "job-1"
            assert got.queue == queue
            assert got.attempt == 1
            assert got.max_deliveries == bus.max_deliveries
            assert got.published_at is not None
            assert bus.healthy
            await eventually(lambda: _depth_is(bus, queue, 0), "queue drained")
        assert not bus.healthy

    run(body)


async def _depth_is(bus: Bus, queue: str, expected: int) -> bool:
    return await bus.queue_depth(queue) == expected


def test_messages_of_a_queue_are_handled_in_publish_order(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            for i in range(20):
                await bus.publish(queue, sv(f"m{i:02d}"))
            rec = Recorder()
            await bus.consume(queue, StringValue, rec)
            await rec.take(20)
            assert rec.values() == [f"m{i:02d}" for i in range(20)]

    run(body)


def test_prefetch_one_holds_back_the_second_message(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            gate = asyncio.Event()

            async def block_first(d: Delivery[Any]) -> None:
                if d.message.value == "first":
                    await gate.wait()

            rec = Recorder(block_first)
            await bus.consume(queue, StringValue, rec, prefetch=1)
            await bus.publish(queue, sv("first"))
            await rec.next()
            await bus.publish(queue, sv("second"))
            # Confirmed by the broker, yet still waiting in the queue: not delivered.
            await eventually(lambda: _depth_is(bus, queue, 1), "second message ready")
            assert rec.values() == ["first"]
            assert await bus.queue_depth(queue) == 1
            gate.set()
            second = await rec.next()
            assert second.message.value == "second"

    run(body)


def test_prefetch_two_runs_two_handlers_at_once(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            both_running = asyncio.Event()
            running = 0

            async def overlap(d: Delivery[Any]) -> None:
                nonlocal running
                running += 1
                if running == 2:
                    both_running.set()
                await asyncio.wait_for(both_running.wait(), WAIT)

            rec = Recorder(overlap)
            await bus.consume(queue, StringValue, rec, prefetch=2)
            await bus.publish(queue, sv("a"))
            await bus.publish(queue, sv("b"))
            await asyncio.wait_for(both_running.wait(), WAIT)
            assert sorted(rec.values()) == ["a", "b"]

    run(body)


def test_a_crashed_handler_gets_the_message_again(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()

            async def crash_once(d: Delivery[Any]) -> None:
                if d.attempt == 1:
                    raise RuntimeError("disk full")

            rec = Recorder(crash_once)
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("job"), message_id="m-1")
            first, second = await rec.take(2)
            assert (first.attempt, second.attempt) == (1, 2)
            assert first.message_id == second.message_id == "m-1"
            assert second.message == sv("job")
            assert not second.last_attempt
            await eventually(lambda: _depth_is(bus, queue, 0), "queue drained")
            assert await bus.dead_letters(queue) == []

    run(body)


def test_redelivery_is_bounded_then_the_message_is_dead_lettered(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus(max_deliveries=3) as bus:
            queue = unique()

            async def always_crash(d: Delivery[Any]) -> None:
                raise RuntimeError(f"boom on attempt {d.attempt}")

            rec = Recorder(always_crash)
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("doomed"), message_id="m-doomed")
            await rec.take(3)
            await eventually(lambda: _dead_count_is(bus, queue, 1), "dead letter")
            assert [d.attempt for d in rec.deliveries] == [1, 2, 3]
            assert rec.deliveries[-1].last_attempt
            (dead,) = await bus.dead_letters(queue)
            assert dead.message_id == "m-doomed"
            assert dead.type_name == "google.protobuf.StringValue"
            assert StringValue.FromString(dead.body) == sv("doomed")
            assert "boom on attempt 3" in dead.reason
            assert "3 attempts" in dead.reason
            assert dead.attempts == 3
            assert dead.queue == queue
            assert await bus.queue_depth(queue) == 0
            assert await bus.queue_depth(queue + ".dead") == 1
            # Nothing more arrives: the message is gone from the work queue.
            await bus.publish(queue, sv("after"))
            later = await rec.next()
            assert later.message.value == "after"

    run(body)


async def _dead_count_is(bus: Bus, queue: str, expected: int) -> bool:
    return len(await bus.dead_letters(queue)) == expected


def test_poison_messages_are_dead_lettered_with_the_reason(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            rec = Recorder()
            await bus.consume(queue, struct_pb2.Struct, rec)
            await bus.publish_raw(
                queue, b"\x0a\xff", "google.protobuf.Struct", message_id="garbage"
            )
            await bus.publish(queue, sv("wrong type"), message_id="wrong-type")
            good = struct_pb2.Struct()
            good.update({"ok": True})
            await bus.publish(queue, good, message_id="good")
            handled = await rec.next()
            assert handled.message_id == "good"
            await eventually(lambda: _dead_count_is(bus, queue, 2), "two dead letters")
            by_id = {d.message_id: d for d in await bus.dead_letters(queue)}
            assert set(by_id) == {"garbage", "wrong-type"}
            assert "does not parse as google.protobuf.Struct" in by_id["garbage"].reason
            assert by_id["garbage"].body == b"\x0a\xff"
            assert "google.protobuf.StringValue" in by_id["wrong-type"].reason
            assert "expects google.protobuf.Struct" in by_id["wrong-type"].reason
            # Poison is refused on the first delivery, never retried, never handled.
            assert all(d.attempts == 1 for d in by_id.values())
            assert [d.message_id for d in rec.deliveries] == ["good"]
            assert await bus.queue_depth(queue) == 0

    run(body)


def test_an_oversized_message_is_poison(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus(max_body_bytes=1024) as bus:
            queue = unique()
            rec = Recorder()
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("x" * 2000), message_id="huge")
            await bus.publish(queue, sv("small"), message_id="small")
            assert (await rec.next()).message_id == "small"
            await eventually(lambda: _dead_count_is(bus, queue, 1), "dead letter")
            (dead,) = await bus.dead_letters(queue)
            assert dead.message_id == "huge"
            assert "more than the limit of 1024" in dead.reason

    run(body)


def test_a_handler_can_reject_a_message_with_a_reason(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()

            async def reject(d: Delivery[Any]) -> None:
                raise RejectMessage("template foo does not exist")

            rec = Recorder(reject)
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("build foo"), message_id="r-1")
            await rec.next()
            await eventually(lambda: _dead_count_is(bus, queue, 1), "dead letter")
            (dead,) = await bus.dead_letters(queue)
            assert dead.reason == "rejected by handler: template foo does not exist"
            assert len(rec.deliveries) == 1

    run(body)


def test_retry_later_returns_the_message_after_the_delay_without_blocking(
    new_bus: BusFactory,
) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            delay = 0.5

            async def not_yet(d: Delivery[Any]) -> None:
                if d.message.value == "early" and d.attempt == 1:
                    raise RetryLater("dependency not indexed yet", delay=delay)

            rec = Recorder(not_yet)
            await bus.consume(queue, StringValue, rec)
            start = time.monotonic()
            await bus.publish(queue, sv("early"))
            await rec.next()
            await bus.publish(queue, sv("other"))
            other = await rec.next()
            assert other.message.value == "other"
            again = await rec.next()
            assert (again.message.value, again.attempt) == ("early", 2)
            assert time.monotonic() - start >= delay

    run(body)


def test_retry_now_puts_the_message_back_at_the_head(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            await bus.publish(queue, sv("a"))
            await bus.publish(queue, sv("b"))

            async def retry_a_once(d: Delivery[Any]) -> None:
                if d.message.value == "a" and d.attempt == 1:
                    raise RetryLater("try again")

            rec = Recorder(retry_a_once)
            await bus.consume(queue, StringValue, rec)
            await rec.take(3)
            assert [(d.message.value, d.attempt) for d in rec.deliveries] == [
                ("a", 1),
                ("a", 2),
                ("b", 1),
            ]

    run(body)


def test_retries_count_towards_the_bound(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus(max_deliveries=3) as bus:
            queue = unique()

            async def always_later(d: Delivery[Any]) -> None:
                raise RetryLater(f"still waiting ({d.attempt})", delay=0.05)

            rec = Recorder(always_later)
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("x"))
            await rec.take(3)
            await eventually(lambda: _dead_count_is(bus, queue, 1), "dead letter")
            (dead,) = await bus.dead_letters(queue)
            assert "still waiting (3)" in dead.reason
            assert [d.attempt for d in rec.deliveries] == [1, 2, 3]

    run(body)


def test_queue_depth_counts_ready_messages(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            await bus.declare_queue(queue)
            assert await bus.queue_depth(queue) == 0
            for i in range(3):
                await bus.publish(queue, sv(str(i)))
            assert await bus.queue_depth(queue) == 3
            assert await bus.queue_depth(queue + ".dead") == 0
            with pytest.raises(UnknownQueue):
                await bus.queue_depth(unique("never-declared"))
            with pytest.raises(UnknownQueue):
                await bus.dead_letters(unique("never-declared"))

    run(body)


def test_names_are_validated(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:

            async def ignore(d: Delivery[Any]) -> None:
                return None

            for bad in ["Build.x86_64", "build x86", "", "a..b", "../etc", "q.dead", "q.retry"]:
                with pytest.raises(InvalidName, match="invalid"):
                    await bus.publish(bad, sv("x"))
                with pytest.raises(InvalidName):
                    await bus.consume(bad, StringValue, ignore)
            for bad_key in ["build.*", "build.#", "Build", "a b"]:
                with pytest.raises(InvalidName):
                    await bus.publish_event(bad_key, sv("x"))
            for bad_pattern in ["build.**", "a..b", "", "x#"]:
                with pytest.raises(InvalidName):
                    await bus.subscribe([bad_pattern], StringValue, ignore)
            with pytest.raises(InvalidName):
                await bus.subscribe([], StringValue, ignore)

    run(body)


# --- events -------------------------------------------------------------------


def test_topic_patterns_route_events(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            builds, everything, fetch_done = Recorder(), Recorder(), Recorder()
            await bus.subscribe(["build.*"], StringValue, builds)
            await bus.subscribe(["#"], StringValue, everything)
            await bus.subscribe(["fetch.done"], StringValue, fetch_done, queue=unique("svc"))
            events = [
                ("build.started", "bs"),
                ("build.x86_64.phase", "deep"),
                ("fetch.done", "fd"),
                ("fetch.failed", "ff"),
                ("index.published", "ip"),
                ("build.succeeded", "bok"),
            ]
            for key, value in events:
                await bus.publish_event(key, sv(value))
            # Sentinels: once a subscription sees its sentinel(s), it has seen all before.
            await bus.publish_event("build.end", sv("sentinel"))
            await bus.publish_event("fetch.done", sv("sentinel"))
            await builds.take(3)
            await fetch_done.take(2)
            await everything.take(8)
            assert builds.values() == ["bs", "bok", "sentinel"]
            assert fetch_done.values() == ["fd", "sentinel"]
            assert everything.values() == [v for _, v in events] + ["sentinel", "sentinel"]
            assert [d.routing_key for d in builds.deliveries] == [
                "build.started",
                "build.succeeded",
                "build.end",
            ]

    run(body)


def test_a_durable_subscription_keeps_events_while_its_consumer_is_down(
    new_bus: BusFactory,
) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique("scheduler")
            first = Recorder()
            sub = await bus.subscribe(["build.*", "index.*"], StringValue, first, queue=queue)
            await bus.publish_event("build.started", sv("one"))
            await first.next()
            await sub.stop()
            await bus.publish_event("build.failed", sv("two"))
            await bus.publish_event("index.published", sv("three"))
            await bus.publish_event("fetch.done", sv("not for us"))
            assert await bus.queue_depth(queue) == 2
            second = Recorder()
            await bus.subscribe(["build.*", "index.*"], StringValue, second, queue=queue)
            await second.take(2)
            assert second.values() == ["two", "three"]

    run(body)


def test_event_subscriptions_dead_letter_poison_like_work_queues(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique("indexer")
            rec = Recorder()
            await bus.subscribe(["package.*"], struct_pb2.Struct, rec, queue=queue)
            await bus.publish_event("package.staged", sv("wrong type"), message_id="p-1")
            await eventually(lambda: _dead_count_is(bus, queue, 1), "dead letter")
            (dead,) = await bus.dead_letters(queue)
            assert "expects google.protobuf.Struct" in dead.reason
            assert rec.deliveries == []

    run(body)


# --- stopping -----------------------------------------------------------------


def test_stop_lets_the_running_handler_finish_and_takes_nothing_new(
    new_bus: BusFactory,
) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            gate = asyncio.Event()
            finished: list[str] = []

            async def slow(d: Delivery[Any]) -> None:
                await gate.wait()
                finished.append(d.message.value)

            rec = Recorder(slow)
            sub = await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("in flight"))
            await rec.next()
            stopping = asyncio.create_task(sub.stop(grace=WAIT))
            await asyncio.sleep(0)
            assert sub.stopping
            await bus.publish(queue, sv("after stop"))
            gate.set()
            await stopping
            assert finished == ["in flight"]
            assert rec.values() == ["in flight"]
            # The finished one was acked; the new one waits for the next consumer.
            await eventually(lambda: _depth_is(bus, queue, 1), "one message waiting")
            rec2 = Recorder()
            await bus.consume(queue, StringValue, rec2)
            nxt = await rec2.next()
            assert (nxt.message.value, nxt.attempt) == ("after stop", 1)

    run(body)


def test_stop_returns_the_message_when_the_grace_period_runs_out(new_bus: BusFactory) -> None:
    async def body() -> None:
        async with new_bus() as bus:
            queue = unique()
            cancelled = asyncio.Event()

            async def stuck(d: Delivery[Any]) -> None:
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

            rec = Recorder(stuck)
            sub = await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("long build"), message_id="long")
            await rec.next()
            await sub.stop(grace=0.2)
            assert cancelled.is_set()
            await eventually(lambda: _depth_is(bus, queue, 1), "message returned")
            rec2 = Recorder()
            await bus.consume(queue, StringValue, rec2)
            again = await rec2.next()
            assert (again.message_id, again.attempt) == ("long", 2)

    run(body)


def test_close_stops_all_subscriptions(new_bus: BusFactory) -> None:
    async def body() -> None:
        bus = new_bus()
        await bus.start()
        queue = unique()
        rec = Recorder()
        sub = await bus.consume(queue, StringValue, rec)
        await bus.publish(queue, sv("x"))
        await rec.next()
        await bus.close(grace=5)
        assert sub.stopping
        assert not bus.healthy

    run(body)


# --- RabbitMQ only: broker restarts and lost connections --------------------------


def _controllable(broker: RabbitMQ) -> None:
    require(
        broker.controllable,
        "the broker comes from APKFARM_TEST_AMQP_URL and cannot be restarted",
    )
    broker.ensure_running()


@pytest.mark.infra
def test_messages_survive_a_broker_restart_and_the_bus_reconnects(rabbitmq: RabbitMQ) -> None:
    _controllable(rabbitmq)
    factory = BusFactory("rabbit", rabbitmq.url)

    async def body() -> None:
        async with factory() as bus:
            queue = unique()
            for i in range(3):
                await bus.publish(queue, sv(f"before-{i}"))
            await asyncio.to_thread(rabbitmq.stop)
            # Publishing while the broker is down waits for it to come back.
            late = asyncio.create_task(bus.publish(queue, sv("during")))
            await asyncio.to_thread(rabbitmq.start)
            await asyncio.wait_for(late, WAIT)
            rec = Recorder()
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("after"))
            await rec.take(5, timeout=60)
            assert rec.values() == ["before-0", "before-1", "before-2", "during", "after"]

    run(body)


@pytest.mark.infra
def test_consuming_and_publishing_resume_after_connections_are_cut(rabbitmq: RabbitMQ) -> None:
    _controllable(rabbitmq)
    factory = BusFactory("rabbit", rabbitmq.url)

    async def body() -> None:
        async with factory() as bus:
            queue = unique()
            rec = Recorder()
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("one"))
            await rec.next()
            await asyncio.to_thread(rabbitmq.close_all_connections)
            for i in range(5):
                await bus.publish(queue, sv(f"after-{i}"))
            await rec.take(5, timeout=60)
            assert rec.values() == ["one"] + [f"after-{i}" for i in range(5)]
            await eventually(lambda: _depth_is(bus, queue, 0), "queue drained")
            assert bus.healthy

    run(body)


@pytest.mark.infra
def test_a_message_in_flight_when_the_connection_dies_is_delivered_again(
    rabbitmq: RabbitMQ,
) -> None:
    _controllable(rabbitmq)
    factory = BusFactory("rabbit", rabbitmq.url)

    async def body() -> None:
        async with factory() as bus:
            queue = unique()
            gate = asyncio.Event()

            async def first_blocks(d: Delivery[Any]) -> None:
                if d.attempt == 1:
                    await gate.wait()

            rec = Recorder(first_blocks)
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("job"), message_id="inflight")
            await rec.next()
            await asyncio.to_thread(rabbitmq.close_all_connections)
            # The first handler keeps running (a lost connection does not kill a
            # build); its ack cannot reach the broker, which hands the message out
            # again once the first handler has freed the prefetch slot.
            gate.set()
            again = await rec.next(timeout=60)
            assert (again.message_id, again.attempt) == ("inflight", 2)
            await eventually(lambda: _depth_is(bus, queue, 0), "queue drained")

    run(body)


@pytest.mark.infra
def test_consumer_death_counts_towards_the_limit(rabbitmq: RabbitMQ) -> None:
    """A consumer whose connection dies holding a message uses up an attempt.

    This is what bounds redelivery when a builder is killed mid-build (quorum
    queues count such returns on RabbitMQ 3.10): after ``max_deliveries``
    lost deliveries the broker dead-letters the message by itself.
    """
    _controllable(rabbitmq)
    factory = BusFactory("rabbit", rabbitmq.url)

    async def body() -> None:
        async with factory(max_deliveries=2) as bus:
            queue = unique()
            gates = {1: asyncio.Event(), 2: asyncio.Event()}

            async def hold_until_connection_dies(d: Delivery[Any]) -> None:
                await gates[d.attempt].wait()

            rec = Recorder(hold_until_connection_dies)
            await bus.consume(queue, StringValue, rec)
            await bus.publish(queue, sv("kills its builder"), message_id="killer")
            for attempt in (1, 2):
                held = await rec.next(timeout=60)
                assert (held.message_id, held.attempt) == ("killer", attempt)
                await asyncio.to_thread(rabbitmq.close_all_connections)
                # The handler ends only after its connection died: its ack is lost.
                gates[attempt].set()
            await eventually(lambda: _dead_count_is(bus, queue, 1), "dead letter", 60)
            (dead,) = await bus.dead_letters(queue)
            assert dead.message_id == "killer"
            assert "delivery limit reached" in dead.reason
            assert await bus.queue_depth(queue) == 0
            assert len(rec.deliveries) == 2

    run(body)


@pytest.mark.infra
def test_a_mismatched_delivery_limit_is_reported_clearly(rabbitmq: RabbitMQ) -> None:
    async def body() -> None:
        queue = unique()
        async with BusFactory("rabbit", rabbitmq.url)(max_deliveries=3) as bus:
            await bus.declare_queue(queue)
        async with BusFactory("rabbit", rabbitmq.url)(max_deliveries=4) as other:
            with pytest.raises(Exception, match=f"queue '{queue}' already exists"):
                await other.declare_queue(queue)

    run(body)


def test_repr_hides_the_password() -> None:
    bus = RabbitBus("amqp://farm:s3cret-pw@127.0.0.1:5672/")
    assert "s3cret-pw" not in repr(bus)
    assert "127.0.0.1:5672" in repr(bus)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("#", "a", True),
        ("#", "a.b.c", True),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("a.*", "a", False),
        ("a.*", "a.b", True),
        ("a.*", "a.b.c", False),
        ("*.b", "a.b", True),
        ("#.c", "a.b.c", True),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.x.y.c", True),
        ("a.#.c", "a.x.y", False),
        ("build.started", "build.started", True),
        ("build.started", "build.start", False),
    ],
)
def test_topic_matching_follows_amqp(pattern: str, key: str, matches: bool) -> None:
    """The in-memory bus routes with the same rules as a RabbitMQ topic exchange."""
    assert names.topic_matches(pattern, key) is matches


def test_the_farm_queue_names() -> None:
    assert names.build_queue("x86_64") == "build.x86_64"
    assert names.queue_name("fetch") == names.FETCH_QUEUE
    for bad in ["x86-64.a", "../x", "X86", ""]:
        with pytest.raises(InvalidName, match="invalid arch"):
            names.build_queue(bad)
