"""The fetcher's destination policy: which addresses a source download may connect to.

The refusals are proven on real connections to a source server on 127.0.0.1:
with the distributed fetcher's default policy loopback is not a permitted
source, so the server must see no request at all; naming 127.0.0.0/8 lets the
same download through the same guarded transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.ports import free_port
from fixtures.source_server import SourceServer, source_server

from apkfarm.blobs import LocalBlobStore
from apkfarm.services.fetcher.core import FetchResult, SourceFetcher
from apkfarm.services.fetcher.destinations import (
    DestinationPolicy,
    DestinationRefused,
    GuardedBackend,
    IPAddress,
    PolicyError,
)
from apkfarm.services.fetcher.download import DownloadLimits
from apkfarm.services.fetcher.source import FetchError, FetchFailure, SourceSpec

BODY = b"source bytes\n" * 1000
SHA = hashlib.sha256(BODY).hexdigest()
NAME = "greet-1.0.tar.gz"
LIMITS = DownloadLimits(timeout=20.0, attempts=2, stall_timeout=5.0, backoff=0.0)
LOOPBACK = DestinationPolicy.parse("127.0.0.0/8")


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with source_server() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store", durable=False)


def fetch(store: LocalBlobStore, url: str, policy: DestinationPolicy | None) -> FetchResult:
    async def go() -> FetchResult:
        async with SourceFetcher(store, limits=LIMITS, sites={}, destinations=policy) as fetcher:
            return await fetcher.fetch(SourceSpec(url, SHA, NAME))

    return asyncio.run(go())


def refusal(store: LocalBlobStore, url: str, policy: DestinationPolicy | None) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(store, url, policy)
    return caught.value


# --- the policy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "not a public address"),
        ("10.1.2.3", "not a public address"),
        ("172.16.0.1", "not a public address"),
        ("192.168.1.1", "not a public address"),
        ("169.254.169.254", "not a public address"),  # cloud metadata services
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("0.0.0.0", "not a public address"),
        ("224.0.0.1", "a multicast address"),
        ("::1", "not a public address"),
        ("fe80::1", "not a public address"),
        ("fd00::1", "not a public address"),
        ("::ffff:127.0.0.1", "not a public address"),  # IPv4-mapped loopback
        ("ff02::1", "a multicast address"),
    ],
)
def test_the_default_policy_refuses_non_public_addresses(address: str, why: str) -> None:
    assert DestinationPolicy().refusal(ipaddress.ip_address(address)) == why


@pytest.mark.parametrize("address", ["192.0.43.10", "2001:500:88:200::10"])
def test_public_addresses_are_permitted(address: str) -> None:
    assert DestinationPolicy().refusal(ipaddress.ip_address(address)) is None


def test_named_networks_are_permitted_and_nothing_else_is() -> None:
    policy = DestinationPolicy.parse(" 10.20.0.0/16 , fd00:1::/64")
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("fd00:1::5")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) == "not a public address"
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "not a public address"


def test_any_permits_every_address() -> None:
    policy = DestinationPolicy.parse("any")
    assert policy.any_address
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) is None


@pytest.mark.parametrize("text", ["10.0.0.0/33", "intranet", "any,10.0.0.0/8"])
def test_unreadable_networks_are_refused_with_the_item(text: str) -> None:
    with pytest.raises(PolicyError, match="is not a network"):
        DestinationPolicy.parse(text)


# --- real connections ---------------------------------------------------------------


def test_a_loopback_source_is_refused_before_any_request(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY)

    error = refusal(store, url, DestinationPolicy())

    assert error.kind is FetchFailure.DESTINATION and not error.transient
    assert "127.0.0.1 resolves to 127.0.0.1 (not a public address)" in str(error)
    assert server.requests(f"/{NAME}") == []
    assert list(store.list("")) == []


def test_a_host_name_is_checked_by_what_it_resolves_to(
    server: SourceServer, store: LocalBlobStore
) -> None:
    # "localhost" comes from the hosts file: no DNS server is asked.
    url = server.add(f"/{NAME}", body=BODY).replace("127.0.0.1", "localhost")

    error = refusal(store, url, DestinationPolicy())

    assert error.kind is FetchFailure.DESTINATION
    assert "localhost resolves to" in str(error)
    assert server.requests(f"/{NAME}") == []


def test_a_named_network_lets_the_same_download_through(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY)

    result = fetch(store, url, LOOPBACK)

    assert store.get_bytes(result.blob_key) == BODY
    assert [seen.status for seen in server.requests(f"/{NAME}")] == [200]


def test_a_redirect_to_a_refused_address_is_not_followed(
    server: SourceServer, store: LocalBlobStore
) -> None:
    # The first hop is permitted; the redirect points at the IPv6 loopback,
    # which the policy does not name, so no connection is made to it.
    url = server.add("/start", location="http://[::1]:9/secrets.tar.gz")

    error = refusal(store, url, LOOPBACK)

    assert error.kind is FetchFailure.DESTINATION
    assert "::1 resolves to ::1 (not a public address)" in str(error)
    assert [seen.status for seen in server.requests("/start")] == [302]
    assert list(store.list("")) == []


class _Resolver(GuardedBackend):
    """A GuardedBackend whose name lookups return fixed answers (no resolver is asked)."""

    def __init__(self, policy: DestinationPolicy, answers: list[str]) -> None:
        super().__init__(policy)
        self.answers = [ipaddress.ip_address(answer) for answer in answers]

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        return self.answers


def test_one_refused_answer_refuses_the_name_even_next_to_a_public_one() -> None:
    backend = _Resolver(DestinationPolicy(), ["192.0.43.10", "127.0.0.1"])

    with pytest.raises(DestinationRefused, match=re.escape("mirror.invalid resolves to 127.0.0.1")):
        asyncio.run(backend.connect_tcp("mirror.invalid", 80, timeout=1.0))


def test_a_permitted_name_connects_to_the_checked_address(server: SourceServer) -> None:
    backend = _Resolver(LOOPBACK, ["127.0.0.1"])

    async def connect() -> None:
        stream = await backend.connect_tcp("mirror.invalid", server.port, timeout=5.0)
        await stream.aclose()

    asyncio.run(connect())


def test_the_guarded_fetcher_ignores_proxies_from_the_environment(
    server: SourceServer,
    store: LocalBlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy nobody listens on: a fetcher that used it would fail to connect.
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    url = server.add(f"/{NAME}", body=BODY)

    result = fetch(store, url, LOOPBACK)

    assert store.get_bytes(result.blob_key) == BODY
    # Without a policy (the embedded mode) the environment's proxy is used.
    empty = LocalBlobStore(tmp_path / "empty", durable=False)
    unguarded = refusal(empty, url, None)
    assert unguarded.kind is FetchFailure.NETWORK
    assert [seen.status for seen in server.requests(f"/{NAME}")] == [200]
