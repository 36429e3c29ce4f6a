"""Hostile requests against the farm's gRPC services: each is refused and leaves no trace but its record.

The refusals of the job-token policy itself (forged, expired, replayed,
other job's packages, digest-only) are in test_signer_core.py; identities
without a certificate or with the wrong one in test_tls_authz.py and
test_signer_grpc.py. Here: oversized messages, path traversal in names, and
request fields the scheduler must refuse before anything uses them.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import tarfile
from pathlib import Path
from typing import Any

import grpc
import pytest
from signer_support import Farm, start_signer_server

from apkfarm.audit import read_records
from apkfarm.blobs import LocalBlobStore
from apkfarm.bus import MemoryBus
from apkfarm.certs import init_certs
from apkfarm.services.common.grpc_server import start_grpc_server
from apkfarm.services.common.jobtokens import TokenIssuer, generate_token_key, load_private_key
from apkfarm.services.common.tls import (
    IdentityAllowList,
    TlsFiles,
    open_channel,
    server_credentials,
)
from apkfarm.services.scheduler.core import SchedulerCore, SchedulerSettings
from apkfarm.services.scheduler.service import ALLOW as SCHEDULER_ALLOW
from apkfarm.services.scheduler.service import SchedulerServicer
from apkfarm.services.scheduler.state import StateStore
from apkfarm.services.signer.ledger import LEDGER_PREFIX
from apkfarm.v1 import scheduler_pb2, scheduler_pb2_grpc, signer_pb2, signer_pb2_grpc


def _control_member(pkginfo: str) -> bytes:
    """A cut control tar (no end-of-archive blocks), gzip-compressed, as a builder sends it."""
    data = pkginfo.encode()
    header = tarfile.TarInfo(".PKGINFO")
    header.size = len(data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(header, io.BytesIO(data))
    cut = 512 + -(-len(data) // 512) * 512
    return gzip.compress(buffer.getvalue()[:cut], mtime=0)


async def _signer_call(farm: Farm, certs: Path, request: signer_pb2.SignPackageRequest) -> Any:
    server = await start_signer_server(farm, certs)
    # The client allows a large message, so it is the server's limit that refuses it.
    channel = open_channel(
        f"127.0.0.1:{server.port}",
        TlsFiles.in_directory(certs, "builder-x86_64"),
        server_identity="signer",
        max_message_bytes=64 * 1024 * 1024,
    )
    try:
        await signer_pb2_grpc.SignerStub(channel).SignPackage(request, timeout=30)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details()
    finally:
        await channel.close()
        await server.stop(0)
    return grpc.StatusCode.OK, ""


@pytest.fixture
def signer_farm(tmp_path: Path) -> tuple[Farm, Path]:
    certs = tmp_path / "certs"
    init_certs(certs, builder_archs=["x86_64"])
    return Farm(tmp_path), certs


def test_an_oversized_sign_request_is_refused_before_the_signer_reads_it(
    signer_farm: tuple[Farm, Path],
) -> None:
    farm, certs = signer_farm
    request = signer_pb2.SignPackageRequest(
        control_member=bytes(9 * 1024 * 1024), token=farm.token()
    )
    code, _ = asyncio.run(_signer_call(farm, certs, request))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The request never reached the signer: no audit record, no ledger entry.
    assert list(read_records(farm.store)) == []
    assert list(farm.store.list(LEDGER_PREFIX)) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "greet/../../x", "/greet"])
def test_a_package_name_with_a_path_is_refused_and_recorded(
    signer_farm: tuple[Farm, Path], name: str
) -> None:
    farm, certs = signer_farm
    member = _control_member(f"pkgname = {name}\npkgver = 1.0-r0\narch = x86_64\norigin = greet\n")
    request = signer_pb2.SignPackageRequest(control_member=member, token=farm.token())
    code, details = asyncio.run(_signer_call(farm, certs, request))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details.startswith("malformed_package")
    # No signature was given and nothing but the refusal's audit record was stored.
    records = list(read_records(farm.store))
    assert len(records) == 1 and b'"result":"refused"' in records[0][1]
    assert list(farm.store.list(LEDGER_PREFIX)) == []


async def _scheduler_calls(tmp_path: Path, certs: Path) -> dict[str, grpc.StatusCode]:
    bus = MemoryBus()
    await bus.start()
    key = tmp_path / "token.key"
    generate_token_key(key)
    artifacts = LocalBlobStore(tmp_path / "artifacts", durable=False)
    core = SchedulerCore(
        SchedulerSettings(
            state_dir=tmp_path / "state",
            archs=("x86_64",),
            categories=("main",),
            host_arch="x86_64",
            allow_local_trees=True,
        ),
        state=StateStore(tmp_path / "state" / "db"),
        bus=bus,
        artifacts=artifacts,
        repository=LocalBlobStore(tmp_path / "repo", durable=False),
        issuer=TokenIssuer(load_private_key(key)),
    )
    servicer = SchedulerServicer(core, bus, artifacts, None)
    server = await start_grpc_server(
        "127.0.0.1:0",
        [lambda s: scheduler_pb2_grpc.add_SchedulerServicer_to_server(servicer, s)],
        ["apkfarm.v1.Scheduler"],
        credentials=server_credentials(TlsFiles.in_directory(certs, "scheduler")),
        interceptors=[IdentityAllowList(SCHEDULER_ALLOW)],
    )
    operator = open_channel(
        f"127.0.0.1:{server.port}",
        TlsFiles.in_directory(certs, "operator"),
        server_identity="scheduler",
    )
    builder = open_channel(
        f"127.0.0.1:{server.port}",
        TlsFiles.in_directory(certs, "builder-x86_64"),
        server_identity="scheduler",
    )
    calls = {
        "traversal in packages": scheduler_pb2.SubmitTreeRequest(
            local_path="/nonexistent", packages=["../../etc"]
        ),
        "shell in arch": scheduler_pb2.SubmitTreeRequest(
            local_path="/nonexistent", archs=["x86_64; rm -rf /"]
        ),
        "too many packages": scheduler_pb2.SubmitTreeRequest(
            local_path="/nonexistent", packages=["p"] * 10_001
        ),
        "traversal in category": scheduler_pb2.SubmitTreeRequest(
            local_path="/nonexistent", categories=["../main"]
        ),
    }
    codes: dict[str, grpc.StatusCode] = {}
    try:
        stub = scheduler_pb2_grpc.SchedulerStub(operator)
        for label, request in calls.items():
            try:
                await stub.SubmitTree(request, timeout=30)
                codes[label] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                codes[label] = error.code()
        try:
            await stub.GetBuild(scheduler_pb2.BuildSelector(pkgname="../x"), timeout=30)
        except grpc.aio.AioRpcError as error:
            codes["traversal in a selector"] = error.code()
        try:
            await scheduler_pb2_grpc.SchedulerStub(builder).Cancel(
                scheduler_pb2.BuildSelector(pkgname="greet"), timeout=30
            )
        except grpc.aio.AioRpcError as error:
            codes["a builder cancelling"] = error.code()
        codes["trees stored"] = (
            grpc.StatusCode.OK if core.state.latest_tree() is None else (grpc.StatusCode.UNKNOWN)
        )
    finally:
        await operator.close()
        await builder.close()
        await server.stop(0)
        await bus.close(grace=1)
        core.state.close()
    return codes


def test_the_scheduler_refuses_out_of_bounds_requests_before_using_them(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    init_certs(certs, builder_archs=["x86_64"])
    codes = asyncio.run(_scheduler_calls(tmp_path, certs))
    for label in (
        "traversal in packages",
        "shell in arch",
        "too many packages",
        "traversal in category",
        "traversal in a selector",
    ):
        assert codes[label] == grpc.StatusCode.INVALID_ARGUMENT, label
    assert codes["a builder cancelling"] == grpc.StatusCode.PERMISSION_DENIED
    # Nothing was snapshotted or planned.
    assert codes["trees stored"] == grpc.StatusCode.OK
