"""The signer over gRPC with mTLS: the allow-list, refusals and the client's error mapping."""

from __future__ import annotations

import asyncio
from pathlib import Path

from signer_support import Farm, start_signer_server

from apkfarm.certs import init_certs
from apkfarm.services.common.tls import (
    RPC_DENIED,
    TlsFiles,
)
from apkfarm.services.signer.client import GrpcSignerClient, SigningRefused


async def _scenario(farm: Farm, certs: Path) -> dict[str, object]:
    server = await start_signer_server(farm, certs)
    address = f"127.0.0.1:{server.port}"
    outcome: dict[str, object] = {}

    async def attempt(identity: str, what: str, call: object) -> None:
        client = GrpcSignerClient(address, TlsFiles.in_directory(certs, identity), attempts=1)
        try:
            outcome[f"{identity} {what}"] = await call(client)  # type: ignore[operator]
        except SigningRefused as refusal:
            outcome[f"{identity} {what}"] = f"refused: {refusal}"
        finally:
            await client.close()

    try:
        control = farm.control()
        await attempt(
            "builder-x86_64",
            "package",
            lambda c: c.sign_package(control, farm.token()),
        )
        await attempt("indexer", "package", lambda c: c.sign_package(control, farm.token()))
        await attempt(
            "builder-x86_64", "index", lambda c: c.sign_index(b"anything", "main", "x86_64")
        )
        await attempt(
            "builder-x86_64",
            "other job's package",
            lambda c: c.sign_package(farm.control(name="openssh"), farm.token()),
        )
        await attempt("operator", "keys", lambda c: c.public_keys())
    finally:
        await server.stop(0)
    return outcome


def test_signer_over_mtls(tmp_path: Path) -> None:
    farm = Farm(tmp_path)
    certs = tmp_path / "certs"
    init_certs(certs, builder_archs=["x86_64"])
    outcome = asyncio.run(_scenario(farm, certs))

    signatures = outcome["builder-x86_64 package"]
    assert isinstance(signatures, list)
    assert len(signatures) == 1
    assert "may not call /apkfarm.v1.Signer/SignPackage" in str(outcome["indexer package"])
    assert "may not call /apkfarm.v1.Signer/SignIndex" in str(outcome["builder-x86_64 index"])
    assert "package_not_in_job" in str(outcome["builder-x86_64 other job's package"])
    keys = outcome["operator keys"]
    assert sorted(keys) == sorted([farm.old_key.key_name, farm.new_key.key_name])  # type: ignore[call-overload]


def test_the_requester_in_the_audit_log_is_the_certificate_identity(tmp_path: Path) -> None:
    farm = Farm(tmp_path)
    certs = tmp_path / "certs"
    init_certs(certs, builder_archs=["x86_64"])
    denied = RPC_DENIED.labels(method="/apkfarm.v1.Signer/SignPackage")._value.get()
    asyncio.run(_scenario(farm, certs))
    records = [data for _, data in farm.audit()]
    assert any(b'"requester":"builder-x86_64"' in r and b'"signed"' in r for r in records)
    # The allow-list stops the indexer before the signer core: no audit record, a metric.
    assert not any(b'"requester":"indexer"' in r for r in records)
    assert RPC_DENIED.labels(method="/apkfarm.v1.Signer/SignPackage")._value.get() == denied + 1
