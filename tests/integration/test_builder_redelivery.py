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
from builder_support import builder_rig
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "unit"))
from signer_support import Farm, start_signer_server

from apkfarm.bus import names
from apkfarm.certs import init_certs
from apkfarm.services.common.tls import TlsFiles
from apkfarm.services.signer.client import GrpcSignerClient, SigningRefused
from apkfarm.v1 import bus_pb2


@pytest.mark.sandbox
def test_a_job_delivered_again_after_signing_fails_retryably(tmp_path: Path) -> None:
    async def scenario() -> list[bus_pb2.BuildFinished]:
        async with builder_rig(tmp_path, "j-redelivered") as r:
            # The first delivery builds, signs, stages and announces; the same
            # job again is what the broker hands out after a builder died
            # between signing and acknowledging.
            await r.bus.publish(names.build_queue("x86_64"), r.job)
            await r.wait_for(lambda: len(r.finished()) >= 1)
            await r.bus.publish(names.build_queue("x86_64"), r.job)
            await r.wait_for(lambda: len(r.finished()) >= 2)
            return r.finished()

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
        server = await start_signer_server(farm, certs)
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
