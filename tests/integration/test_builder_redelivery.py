"""A build job delivered again after its packages were signed fails retryably, not for good.

RabbitMQ delivers a job again when its builder dies before acknowledging it.
If the builder died after the signer had signed with the job's token, the
new delivery's signing is refused (a spent token): that must come back as a
retryable ``build.failed`` so the scheduler dispatches a new attempt with a
fresh token, instead of failing the template. The container tier kills a
builder mid-build (before signing); this is the narrow window after it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from signer_support import Farm

from apkfarm.blobs import LocalBlobStore
from apkfarm.blobs.layout import tree_key
from apkfarm.bus import Delivery, MemoryBus, names
from apkfarm.certs import init_certs
from apkfarm.services.builder.worker import BuildWorker, WorkerSettings
from apkfarm.services.common.grpc_server import start_grpc_server
from apkfarm.services.common.tls import IdentityAllowList, TlsFiles, server_credentials
from apkfarm.services.signer.client import GrpcSignerClient, LocalSignerClient, SigningRefused
from apkfarm.services.signer.service import ALLOW, SERVICE_NAME, SignerServicer
from apkfarm.templates import TreeLoader
from apkfarm.templates.snapshot import make_snapshot
from apkfarm.v1 import bus_pb2, common_pb2, signer_pb2_grpc

PORTS = Path(__file__).resolve().parents[1] / "data" / "ports-containers"
TIMEOUT = 120.0


def _slowpoke_job(farm: Farm, tree_id: str) -> bus_pb2.BuildJob:
    loader = TreeLoader(PORTS)
    try:
        template = loader.load("x86_64", host_arch="x86_64").templates["main/slowpoke"]
    finally:
        loader.close()
    ref = common_pb2.TemplateRef(
        category="main", pkgname="slowpoke", version=template.version, arch="x86_64"
    )
    return bus_pb2.BuildJob(
        job_id="j-redelivered",
        template=ref,
        tree_id=tree_id,
        tree_key=tree_key(tree_id),
        token=farm.issuer.issue("j-redelivered", ref, template.possible_packages, 1),
        attempt=1,
    )


@pytest.mark.sandbox
def test_a_job_delivered_again_after_signing_fails_retryably(tmp_path: Path) -> None:
    async def scenario() -> list[bus_pb2.BuildFinished]:
        (tmp_path / "signer").mkdir()
        farm = Farm(tmp_path / "signer")
        artifacts = LocalBlobStore(tmp_path / "artifacts", durable=False)
        snapshot = make_snapshot(PORTS, tmp_path / "snapshots")
        artifacts.put_file(tree_key(snapshot.tree_id), snapshot.tar_path)
        job = _slowpoke_job(farm, snapshot.tree_id)
        bus = MemoryBus()
        await bus.start()
        worker = BuildWorker(
            WorkerSettings(arch="x86_64", work_dir=tmp_path / "work", identity="builder-x86_64"),
            bus=bus,
            artifacts=artifacts,
            repository=LocalBlobStore(tmp_path / "repo", durable=False),
            signer=LocalSignerClient(farm.core, "builder-x86_64"),
        )
        finished: list[bus_pb2.BuildFinished] = []
        arrived = asyncio.Event()

        async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
            if delivery.message.WhichOneof("kind") == "build_finished":
                finished.append(delivery.message.build_finished)
                arrived.set()

        await bus.subscribe(["build.*"], bus_pb2.Event, collect)
        await worker.start()
        try:
            # The first delivery builds, signs, stages and announces; the same
            # job again is what the broker hands out after a builder died
            # between signing and acknowledging.
            for count in (1, 2):
                await bus.publish(names.build_queue("x86_64"), job)
                while len(finished) < count:
                    arrived.clear()
                    await asyncio.wait_for(arrived.wait(), TIMEOUT)
        finally:
            await worker.stop(1.0)
            await bus.close(grace=1.0)
        return finished

    first, again = asyncio.run(scenario())
    assert first.success
    assert not again.success
    assert again.retryable, again
    assert again.failed_phase == "sign"
    assert "replayed_token" in again.error


def test_the_grpc_client_names_the_signers_refusal(tmp_path: Path) -> None:
    """Builders decide on the refusal code; over gRPC it travels in the error details."""
    farm = Farm(tmp_path)
    certs = tmp_path / "certs"
    init_certs(certs, builder_archs=["x86_64"])

    async def scenario() -> dict[str, str]:
        server = await start_grpc_server(
            "127.0.0.1:0",
            [lambda s: signer_pb2_grpc.add_SignerServicer_to_server(SignerServicer(farm.core), s)],
            [SERVICE_NAME],
            credentials=server_credentials(TlsFiles.in_directory(certs, "signer")),
            interceptors=[IdentityAllowList(ALLOW)],
        )
        client = GrpcSignerClient(
            f"127.0.0.1:{server.port}",
            TlsFiles.in_directory(certs, "builder-x86_64"),
            attempts=1,
        )
        token = farm.token()
        reasons: dict[str, str] = {}

        async def refusal(what: str, control: bytes) -> None:
            try:
                await client.sign_package(control, token)
            except SigningRefused as refused:
                reasons[what] = refused.reason
                assert refused.reason in str(refused)

        try:
            assert await client.sign_package(farm.control(), token)
            await refusal("same package again", farm.control())
            await refusal("other content", farm.control(text="changed"))
            await refusal("other package", farm.control(name="openssh"))
        finally:
            await client.close()
            await server.stop(0)
        return reasons

    assert asyncio.run(scenario()) == {
        "same package again": "replayed_token",
        "other content": "different_content",
        "other package": "package_not_in_job",
    }
