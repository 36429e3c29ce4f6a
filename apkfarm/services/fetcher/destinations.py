"""Which addresses the fetcher may connect to, checked where the connection is made.

A template names its source URLs, so whoever can submit a tree can point the
fetcher at any host it can reach: the cloud's metadata service, the farm's own
RabbitMQ or S3, an admin page on the cluster network. The checksum keeps such
bytes out of the store, but the request itself, its timing and the "got sha256
X" of a mismatch still leak. So the distributed fetcher connects only to
public addresses, plus the networks an operator names (an internal mirror).

The check sits in the connection layer (an httpcore network backend), not in
URL parsing: every name is resolved once, each address it resolves to is
checked, and the connection goes to a checked address. A DNS answer that
changes between a check and the connect (rebinding) therefore cannot slip
through, and every redirect hop and resumed request is checked the same way.
With the guarded transport httpx uses no proxy from the environment either: a
proxy would reach addresses this module never sees.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore
import httpx

type IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
type IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class DestinationRefused(Exception):
    """A source host that resolves to an address the policy does not allow."""

    def __init__(self, host: str, address: str, why: str) -> None:
        super().__init__(f"{host} resolves to {address} ({why}); not a permitted source address")
        self.host = host
        self.address = address


class PolicyError(ValueError):
    """A network list that cannot be read."""


@dataclass(frozen=True)
class DestinationPolicy:
    """Public addresses, and the non-public ``networks`` an operator allows."""

    networks: tuple[IPNetwork, ...] = ()
    # Every address (the embedded mode: a packager's own machine and network).
    any_address: bool = False

    @classmethod
    def parse(cls, text: str) -> DestinationPolicy:
        """``"any"``, or comma-separated networks like ``10.0.0.0/8,fd00::/8`` (may be empty)."""
        items = [item.strip() for item in text.split(",") if item.strip()]
        if items == ["any"]:
            return cls(any_address=True)
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise PolicyError(f"{item!r} is not a network (like 10.0.0.0/8): {exc}") from None
        return cls(tuple(networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be connected to, or None when it may."""
        if self.any_address:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return None
        if address.is_multicast:
            return "a multicast address"
        if not address.is_global:
            return "not a public address"
        return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves each host itself and connects only to addresses ``policy`` allows."""

    def __init__(
        self, policy: DestinationPolicy, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._resolve(host, port, timeout)
        for address in addresses:
            why = self.policy.refusal(address)
            if why is not None:
                # One refused answer refuses the name: a resolver that mixes a
                # public and a private address must not get a second chance.
                raise DestinationRefused(host, str(address), why)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        assert last_error is not None  # _resolve returns at least one address
        raise last_error

    async def _resolve(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            # Drop an IPv6 scope ("fe80::1%eth0"); the address decides.
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}: no addresses")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise DestinationRefused(path, path, "a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (its error mapping, TLS and pooling) on a ``GuardedBackend``."""

    def __init__(self, policy: DestinationPolicy, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        # httpx offers no network-backend argument; its pool is replaced with the
        # one it would make, on the guarded backend (tests prove the guard holds).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy),
        )
