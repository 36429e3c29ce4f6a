"""The bus over AMQPS: the farm CA on both sides, a client certificate required.

The broker is a private RabbitMQ (``rabbitmq_tls`` in tests/fixtures/servers.py)
whose TLS listener presents the ``rabbitmq`` identity from the farm CA and,
like a production AMQPS broker, refuses clients without a certificate from
that CA. Services reach it through ``open_bus`` with their own mTLS files.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fixtures.servers import RabbitMQ
from google.protobuf import wrappers_pb2

from apkfarm.bus import Bus, BusError, Delivery
from apkfarm.bus.rabbit import RabbitBus
from apkfarm.certs import init_certs
from apkfarm.errors import ApkfarmError
from apkfarm.services.common.app import BusConfig, amqps_context, open_bus
from apkfarm.services.common.tls import TlsFiles

TEST_TIMEOUT = 90.0
WAIT = 20.0
# Long enough that a retried failure would show; a refused handshake must end far sooner.
SLOW_CONNECT = 30.0

StringValue = wrappers_pb2.StringValue


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), TEST_TIMEOUT))


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def other_farm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another farm's CA and identities: same names, a CA the broker does not trust."""
    directory = tmp_path_factory.mktemp("other-farm")
    init_certs(directory, builder_archs=[])
    return directory


@pytest.fixture
def tls_url(rabbitmq_tls: RabbitMQ) -> str:
    """The amqps:// URL of the TLS broker's listener."""
    assert rabbitmq_tls.tls_url is not None
    return rabbitmq_tls.tls_url


async def round_trip(bus: Bus) -> Delivery[Any]:
    queue = unique("tls")
    arrived: asyncio.Queue[Delivery[Any]] = asyncio.Queue()

    async def handler(delivery: Delivery[Any]) -> None:
        arrived.put_nowait(delivery)

    await bus.consume(queue, StringValue, handler)
    await bus.publish(queue, StringValue(value="hello broker"), message_id="tls-1")
    return await asyncio.wait_for(arrived.get(), WAIT)


async def connect_fails(bus: Bus, url: str) -> tuple[str, float]:
    """Start ``bus``, which must fail; the error message (checked for what every refusal
    says) and how long it took."""
    started = time.monotonic()
    with pytest.raises(BusError) as refused:
        await bus.start()
    elapsed = time.monotonic() - started
    assert not bus.healthy
    message = str(refused.value)
    parsed = urlsplit(url)
    assert f"RabbitMQ at amqps://{parsed.username}:***@127.0.0.1:{parsed.port}/" in message
    assert parsed.password is not None
    assert parsed.password not in message
    return message, elapsed


def connection_of(broker: RabbitMQ, name: str, *info: str) -> dict[str, Any]:
    """What the broker knows of the client connection called ``name``."""
    listed = broker.connections("client_properties", *info)
    ours = [c for c in listed if ["connection_name", "longstr", name] in c["client_properties"]]
    assert len(ours) == 1, listed
    return ours[0]


@pytest.mark.infra
def test_a_farm_identity_publishes_and_consumes_over_amqps(
    rabbitmq_tls: RabbitMQ, tls_url: str, farm_certs: Path
) -> None:
    name = unique("apkfarm-indexer")
    bus = open_bus(BusConfig(amqp_url=tls_url), name, TlsFiles.in_directory(farm_certs, "indexer"))

    async def body() -> None:
        async with bus:
            got = await round_trip(bus)
            assert got.message == StringValue(value="hello broker")
            assert got.message_id == "tls-1"
            assert bus.healthy
            # The broker's side: a TLS connection that presented the indexer's certificate.
            seen = await asyncio.to_thread(
                connection_of, rabbitmq_tls, name, "ssl", "peer_cert_subject"
            )
            assert seen["ssl"] is True
            assert seen["peer_cert_subject"] == "CN=indexer"

    run(body)


@pytest.mark.infra
def test_a_client_without_a_certificate_cannot_connect(tls_url: str, farm_certs: Path) -> None:
    # Trusts the broker (the farm CA) but has no certificate of its own to show.
    anonymous = ssl.create_default_context(cafile=str(farm_certs / "ca.crt"))
    bus = RabbitBus(tls_url, ssl_context=anonymous, connect_timeout=3)

    async def body() -> None:
        message, _ = await connect_fails(bus, tls_url)
        # Over TLS 1.3 the broker's refusal reaches the client as an alert or as a
        # reset connection; either way the error points at certificates.
        assert "certificate" in message

    run(body)


@pytest.mark.infra
def test_a_certificate_from_another_ca_cannot_connect(
    tls_url: str, farm_certs: Path, other_farm: Path
) -> None:
    # The right CA to check the broker with, but an identity another CA issued.
    impostor = TlsFiles(
        ca=farm_certs / "ca.crt",
        certificate=other_farm / "indexer.crt",
        key=other_farm / "indexer.key",
    )
    bus = RabbitBus(tls_url, ssl_context=amqps_context(impostor), connect_timeout=3)

    async def body() -> None:
        message, _ = await connect_fails(bus, tls_url)
        assert "certificate" in message

    run(body)


@pytest.mark.infra
def test_a_client_of_another_farm_refuses_the_broker_at_once(
    tls_url: str, other_farm: Path
) -> None:
    context = amqps_context(TlsFiles.in_directory(other_farm, "indexer"))
    bus = RabbitBus(tls_url, ssl_context=context, connect_timeout=SLOW_CONNECT)

    async def body() -> None:
        message, elapsed = await connect_fails(bus, tls_url)
        assert "TLS handshake with RabbitMQ" in message
        assert "CERTIFICATE_VERIFY_FAILED" in message
        # A configuration error, not an outage: reported without retrying.
        assert elapsed < SLOW_CONNECT / 3

    run(body)


@pytest.mark.infra
def test_amqps_without_farm_files_uses_the_system_trust_store(tls_url: str) -> None:
    """With TLS switched off for the services, amqps:// still verifies the broker — against
    the system's CAs, which do not include the farm CA."""
    bus = open_bus(BusConfig(amqp_url=tls_url), "apkfarm-no-farm-tls", None)

    async def body() -> None:
        message, _ = await connect_fails(bus, tls_url)
        assert "CERTIFICATE_VERIFY_FAILED" in message

    run(body)


@pytest.mark.infra
def test_a_plain_amqp_url_stays_plain(rabbitmq_tls: RabbitMQ, farm_certs: Path) -> None:
    """The farm files matter only for amqps://: the same service on an amqp:// URL
    talks plain AMQP to the broker's other listener."""
    name = unique("apkfarm-scheduler")
    files = TlsFiles.in_directory(farm_certs, "scheduler")
    bus = open_bus(BusConfig(amqp_url=rabbitmq_tls.url), name, files)

    async def body() -> None:
        async with bus:
            got = await round_trip(bus)
            assert got.message == StringValue(value="hello broker")
            seen = await asyncio.to_thread(connection_of, rabbitmq_tls, name, "ssl")
            assert seen["ssl"] is False

    run(body)


def test_the_amqps_context_checks_the_broker(farm_certs: Path) -> None:
    context = amqps_context(TlsFiles.in_directory(farm_certs, "scheduler"))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    # Only the farm CA: nothing from the system store.
    assert [ca["subject"] for ca in context.get_ca_certs()] == [
        ((("commonName", "apkfarm farm CA"),),)
    ]


def test_a_key_that_does_not_match_the_certificate_is_a_clear_error(farm_certs: Path) -> None:
    mixed = TlsFiles(
        ca=farm_certs / "ca.crt",
        certificate=farm_certs / "scheduler.crt",
        key=farm_certs / "indexer.key",
    )
    with pytest.raises(ApkfarmError, match=r"TLS for RabbitMQ: cannot load .*scheduler\.crt"):
        amqps_context(mixed)
