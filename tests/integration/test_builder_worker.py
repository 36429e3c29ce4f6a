"""The builder service's worker on the in-memory bus: a real sandboxed build, and shutdown mid-build.

The worker takes a BuildJob, fetches the tree snapshot from the artifacts
store, builds in the sandbox, gets the packages signed by a real signer core
with the job's token, stages them and announces them. Stopped while a build
runs, it must hand the job back to the queue and announce nothing.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from builder_support import builder_rig

from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import verify_package
from apkfarm.blobs.layout import STAGING_PREFIX
from apkfarm.bus import names

pytestmark = pytest.mark.sandbox


def test_a_job_is_built_signed_staged_and_announced(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with builder_rig(tmp_path, "j-worker-test") as r:
            await r.bus.publish(names.build_queue("x86_64"), r.job)
            finished = (await r.until(names.BUILD_SUCCEEDED)).build_finished
            staged = (await r.until(names.PACKAGE_STAGED)).package_staged
            assert finished.success and finished.log_key == "logs/j-worker-test.log"
            assert [p.name for p in staged.packages] == [p.name for p in finished.packages]
            assert {p.name for p in staged.packages} >= {"slowpoke", "slowpoke-doc"}
            keyring = Keyring.from_files([r.farm.new_key.public_path])
            for package in staged.packages:
                assert package.blob_key.startswith(f"{STAGING_PREFIX}j-worker-test/")
                data = r.artifacts.get_bytes(package.blob_key)
                contents = verify_package(io.BytesIO(data), keyring)
                assert contents.info.pkgname == package.name
                assert contents.signature is not None
            log = r.artifacts.get_bytes(finished.log_key).decode()
            assert "slowpoke: tick 30 of 30" in log and "==> package:" in log
            phases = [e.build_phase.phase for k, e in r.events if k == names.BUILD_PHASE]
            assert phases[0] == "setup" and "build" in phases and "package" in phases
            # The work directory is gone; the unpacked tree stays for the next job.
            assert not (tmp_path / "work" / "j-worker-test").exists()
            assert await r.bus.queue_depth(names.build_queue("x86_64")) == 0

    asyncio.run(scenario())


def test_a_shutdown_mid_build_hands_the_job_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with builder_rig(tmp_path, "j-worker-test") as r:
            await r.bus.publish(names.build_queue("x86_64"), r.job)
            # Wait until the build itself runs (its phase is announced), then stop.
            await r.wait_for(
                lambda: any(
                    k == names.BUILD_PHASE and e.build_phase.phase == "build" for k, e in r.events
                )
            )
            await r.worker.stop(0.5)
            # The job is back in the queue for another builder; nothing was announced as done.
            assert await r.bus.queue_depth(names.build_queue("x86_64")) == 1
            assert not [k for k, _ in r.events if k.startswith(("build.succeeded", "build.failed"))]
            assert not list(r.artifacts.list(STAGING_PREFIX))

    asyncio.run(scenario())
