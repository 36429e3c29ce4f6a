"""The indexer's gRPC face over mTLS (allow-list, ListRepositories), its health checks
and its settings."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from indexer_support import IndexerFarm

from apkfarm.bus import MemoryBus
from apkfarm.certs import init_certs
from apkfarm.services.common.config import ConfigError, load_config
from apkfarm.services.common.grpc_server import start_grpc_server
from apkfarm.services.common.tls import (
    IdentityAllowList,
    TlsFiles,
    open_channel,
    server_credentials,
)
from apkfarm.services.indexer.main import IndexerConfig
from apkfarm.services.indexer.service import SERVICE_NAME, service_parts
from apkfarm.services.signer.client import SignerUnavailable
from apkfarm.v1 import indexer_pb2, indexer_pb2_grpc


def test_list_repositories_over_mtls_for_operators_only(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    certs = tmp_path / "certs"
    init_certs(certs, builder_archs=["x86_64"])

    async def go() -> tuple[indexer_pb2.ListRepositoriesResponse, grpc.StatusCode, bool]:
        bus = MemoryBus()
        indexer = farm.indexer(bus)
        await indexer.index_events([farm.stage(["greet", "greet-doc"])])
        parts = service_parts(indexer)
        await parts.start()
        server = await start_grpc_server(
            "127.0.0.1:0",
            parts.register,
            parts.service_names,
            credentials=server_credentials(TlsFiles.in_directory(certs, "indexer")),
            interceptors=[IdentityAllowList(parts.allow)],
        )
        address = f"127.0.0.1:{server.port}"
        try:
            async with open_channel(address, TlsFiles.in_directory(certs, "operator")) as channel:
                listed = await indexer_pb2_grpc.IndexerStub(channel).ListRepositories(
                    indexer_pb2.ListRepositoriesRequest(), timeout=30
                )
            async with open_channel(
                address, TlsFiles.in_directory(certs, "builder-x86_64")
            ) as channel:
                try:
                    await indexer_pb2_grpc.IndexerStub(channel).ListRepositories(
                        indexer_pb2.ListRepositoriesRequest(), timeout=30
                    )
                    denied = grpc.StatusCode.OK
                except grpc.aio.AioRpcError as error:
                    denied = error.code()
            healthy = all([await check() for check in parts.health_checks.values()])
        finally:
            await server.stop(0)
            await parts.stop(1.0)
        return listed, denied, healthy

    listed, denied, healthy = asyncio.run(go())
    [repo] = listed.repositories
    assert (repo.category, repo.arch, repo.generation, repo.package_count) == (
        "main",
        "x86_64",
        1,
        2,
    )
    assert repo.index_key == "main/x86_64/APKINDEX.tar.gz"
    assert repo.published_at.seconds > 1_700_000_000
    assert denied == grpc.StatusCode.PERMISSION_DENIED
    assert healthy
    assert SERVICE_NAME == "apkfarm.v1.Indexer"


class DownSigner:
    async def public_keys(self) -> object:
        raise SignerUnavailable("signer at signer:50051 unavailable (test)")


def test_health_fails_while_the_signer_does_not_answer(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)

    async def go() -> dict[str, bool]:
        indexer = farm.indexer(MemoryBus(), signer=DownSigner())  # type: ignore[arg-type]
        results: dict[str, bool] = {}
        for name, check in service_parts(indexer).health_checks.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        return results

    assert asyncio.run(go()) == {
        "bus": True,
        "artifacts store": True,
        "repository store": True,
        "signer": False,
    }


def test_settings_come_from_the_environment() -> None:
    config = load_config(
        IndexerConfig,
        {
            "APKFARM_SIGNER_ADDRESS": "127.0.0.1:6000",
            "APKFARM_KEEP_GENERATIONS": "3",
            "APKFARM_BATCH_SECONDS": "0.25",
            "APKFARM_REPO_DESCRIPTION": "example distro main",
            "APKFARM_INDEX_RETRY_DELAY": "2.5",
        },
    )
    settings = config.settings()
    assert config.signer_address == "127.0.0.1:6000"
    assert (settings.keep_generations, settings.batch_seconds) == (3, 0.25)
    assert settings.description == "example distro main"
    assert settings.retry_delay == 2.5
    assert load_config(IndexerConfig, {}).settings().keep_generations == 5


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"APKFARM_KEEP_GENERATIONS": "0"}, "APKFARM_KEEP_GENERATIONS"),
        ({"APKFARM_BATCH_SECONDS": "-1"}, "APKFARM_BATCH_SECONDS"),
        ({"APKFARM_BATCH_MAX_EVENTS": "5000"}, "APKFARM_BATCH_MAX_EVENTS"),
        ({"APKFARM_KEEP_GENERATIONS": "many"}, "APKFARM_KEEP_GENERATIONS"),
        ({"APKFARM_INDEX_RETRY_DELAY": "-1"}, "APKFARM_INDEX_RETRY_DELAY"),
    ],
)
def test_bad_settings_are_refused_naming_them(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(IndexerConfig, env)
