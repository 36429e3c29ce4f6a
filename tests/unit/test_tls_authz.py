"""mTLS identities from `apkfarm certs init` and the per-method allow-list, over real gRPC."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from apkfarm.certs import certificate_identity, init_certs
from apkfarm.services.common.grpc_server import start_grpc_server
from apkfarm.services.common.tls import (
    IdentityAllowList,
    TlsFiles,
    open_channel,
    server_credentials,
)
from apkfarm.v1 import fetcher_pb2, fetcher_pb2_grpc

FETCH = "/apkfarm.v1.Fetcher/Fetch"


class EchoFetcher(fetcher_pb2_grpc.FetcherServicer):
    async def Fetch(self, request: Any, context: Any) -> fetcher_pb2.FetchResponse:
        return fetcher_pb2.FetchResponse(blob_key=f"sources/sha256/{request.source.sha256}")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    init_certs(directory, builder_archs=["x86_64"], extra_identities=["intruder"])
    return directory


def test_init_writes_private_keys_0600_and_names_identities(certs: Path) -> None:
    for identity in ("scheduler", "signer", "builder-x86_64", "operator", "intruder"):
        key = certs / f"{identity}.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert certificate_identity((certs / f"{identity}.crt").read_bytes()) == identity
    assert stat.S_IMODE((certs / "ca.key").stat().st_mode) == 0o600


def test_init_reuses_an_existing_ca(certs: Path) -> None:
    before = (certs / "ca.crt").read_bytes()
    init_certs(certs, builder_archs=["riscv64"])
    assert (certs / "ca.crt").read_bytes() == before
    assert (certs / "builder-riscv64.crt").exists()


async def _call(certs: Path, caller: TlsFiles | None, port: int) -> grpc.StatusCode:
    channel = open_channel(f"127.0.0.1:{port}", caller)
    try:
        stub = fetcher_pb2_grpc.FetcherStub(channel)
        await stub.Fetch(fetcher_pb2.FetchRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


async def _scenario(certs: Path) -> dict[str, Any]:
    server = await start_grpc_server(
        "127.0.0.1:0",
        [lambda s: fetcher_pb2_grpc.add_FetcherServicer_to_server(EchoFetcher(), s)],
        ["apkfarm.v1.Fetcher"],
        credentials=server_credentials(TlsFiles.in_directory(certs, "fetcher")),
        interceptors=[IdentityAllowList({FETCH: ["scheduler", "builder-*"]})],
        health_listen="127.0.0.1:0",
    )
    results: dict[str, Any] = {}
    try:
        for identity in ("scheduler", "builder-x86_64", "intruder", "indexer"):
            files = TlsFiles.in_directory(certs, identity)
            results[identity] = await _call(certs, files, server.port)
        results["no client certificate"] = await _call_without_client_cert(certs, server.port)
        results["plaintext"] = await _call(certs, None, server.port)
        await server.set_serving(False)
        results["liveness while not serving"] = await _liveness(server.health_port or 0)
        # Dialled by IP, verified against the identity the certificate names.
        channel = open_channel(
            f"127.0.0.1:{server.port}",
            TlsFiles.in_directory(certs, "intruder"),
            server_identity="fetcher",
        )
        await server.set_serving(True)
        impostor = open_channel(
            f"127.0.0.1:{server.port}",
            TlsFiles.in_directory(certs, "scheduler"),
            server_identity="signer",
        )
        try:
            await fetcher_pb2_grpc.FetcherStub(impostor).Fetch(
                fetcher_pb2.FetchRequest(), timeout=5
            )
            results["expecting signer, reached fetcher"] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            results["expecting signer, reached fetcher"] = error.code()
        await impostor.close()
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="apkfarm.v1.Fetcher"), timeout=5
        )
        results["health"] = health.status
        await channel.close()
        plain = open_channel(f"127.0.0.1:{server.health_port}", None)
        probe = await health_pb2_grpc.HealthStub(plain).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        results["probe port health"] = probe.status
        results["probe port fetch"] = await _call(certs, None, server.health_port or 0)
        results["liveness"] = (
            await health_pb2_grpc.HealthStub(plain).Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=5
            )
        ).status
        await plain.close()
    finally:
        await server.stop(0)
    return results


async def _liveness(port: int) -> int:
    channel = open_channel(f"127.0.0.1:{port}", None)
    try:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="liveness"), timeout=5
        )
    finally:
        await channel.close()
    return response.status


async def _call_without_client_cert(certs: Path, port: int) -> grpc.StatusCode:
    credentials = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.crt").read_bytes())
    channel = grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials)
    try:
        await fetcher_pb2_grpc.FetcherStub(channel).Fetch(fetcher_pb2.FetchRequest(), timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


def test_allow_list_and_mutual_tls(certs: Path) -> None:
    results = asyncio.run(_scenario(certs))
    assert results["scheduler"] == grpc.StatusCode.OK
    assert results["builder-x86_64"] == grpc.StatusCode.OK
    assert results["intruder"] == grpc.StatusCode.PERMISSION_DENIED
    assert results["indexer"] == grpc.StatusCode.PERMISSION_DENIED
    # Without a client certificate or without TLS the handshake itself fails.
    assert results["no client certificate"] == grpc.StatusCode.UNAVAILABLE
    assert results["plaintext"] == grpc.StatusCode.UNAVAILABLE
    # Health answers every authenticated caller and reflects what the service set.
    assert results["health"] == health_pb2.HealthCheckResponse.SERVING
    # The plaintext probe port shares the status but serves nothing else.
    assert results["probe port health"] == health_pb2.HealthCheckResponse.SERVING
    assert results["probe port fetch"] == grpc.StatusCode.UNIMPLEMENTED
    # A client that expects the signer refuses a server whose certificate names another service.
    assert results["expecting signer, reached fetcher"] == grpc.StatusCode.UNAVAILABLE
    # Liveness says only that the process answers, independent of readiness.
    assert results["liveness"] == health_pb2.HealthCheckResponse.SERVING
    assert results["liveness while not serving"] == health_pb2.HealthCheckResponse.SERVING


def test_methods_without_a_rule_are_closed() -> None:
    allow = IdentityAllowList({FETCH: ["scheduler"]})
    assert not allow.allowed("/apkfarm.v1.Fetcher/Other", "scheduler")
    assert not allow.allowed(FETCH, None)
    assert allow.allowed("/grpc.health.v1.Health/Check", None)
