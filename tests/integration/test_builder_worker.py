"""The builder service's worker on the in-memory bus: a real sandboxed build, and shutdown mid-build.

The worker takes a BuildJob, fetches the tree snapshot from the artifacts
store, builds in the sandbox, gets the packages signed by a real signer core
with the job's token, stages them and announces them. Stopped while a build
runs, it must hand the job back to the queue and announce nothing.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from signer_support import Farm

from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import verify_package
from apkfarm.blobs import LocalBlobStore
from apkfarm.blobs.layout import STAGING_PREFIX, tree_key
from apkfarm.bus import Delivery, MemoryBus, names
from apkfarm.services.builder.worker import BuildWorker, WorkerSettings
from apkfarm.services.signer.client import LocalSignerClient
from apkfarm.templates import TreeLoader
from apkfarm.templates.snapshot import make_snapshot, unpack_snapshot
from apkfarm.v1 import bus_pb2, common_pb2

PORTS = Path(__file__).resolve().parents[1] / "data" / "ports-containers"
pytestmark = pytest.mark.sandbox
TIMEOUT = 120.0


@dataclass
class Rig:
    bus: MemoryBus
    worker: BuildWorker
    artifacts: LocalBlobStore
    farm: Farm
    job: bus_pb2.BuildJob
    events: list[tuple[str, bus_pb2.Event]] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)


def _job(farm: Farm, tree_id: str, tree: Path) -> bus_pb2.BuildJob:
    loader = TreeLoader(tree)
    try:
        template = loader.load("x86_64", host_arch="x86_64").templates["main/slowpoke"]
    finally:
        loader.close()
    ref = common_pb2.TemplateRef(
        category="main", pkgname="slowpoke", version=template.version, arch="x86_64"
    )
    return bus_pb2.BuildJob(
        job_id="j-worker-test",
        template=ref,
        tree_id=tree_id,
        tree_key=tree_key(tree_id),
        token=farm.issuer.issue("j-worker-test", ref, template.possible_packages, 1),
        attempt=1,
    )


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    (tmp_path / "signer").mkdir()
    farm = Farm(tmp_path / "signer")
    artifacts = LocalBlobStore(tmp_path / "artifacts", durable=False)
    snapshot = make_snapshot(PORTS, tmp_path / "snapshots")
    artifacts.put_file(tree_key(snapshot.tree_id), snapshot.tar_path)
    bus = MemoryBus()
    await bus.start()
    worker = BuildWorker(
        WorkerSettings(arch="x86_64", work_dir=tmp_path / "work", identity="builder-x86_64"),
        bus=bus,
        artifacts=artifacts,
        repository=LocalBlobStore(tmp_path / "repo", durable=False),
        signer=LocalSignerClient(farm.core, "builder-x86_64"),
    )
    tree = unpack_snapshot(snapshot.tar_path, snapshot.tree_id, tmp_path / "tree")
    made = Rig(bus, worker, artifacts, farm, _job(farm, snapshot.tree_id, tree))

    async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
        made.events.append((delivery.routing_key, delivery.message))
        made.seen.set()

    await bus.subscribe(["#"], bus_pb2.Event, collect)
    await worker.start()
    try:
        yield made
    finally:
        await worker.stop(1.0)
        await bus.close(grace=1.0)


async def _until(rig: Rig, routing_key: str) -> bus_pb2.Event:
    async def wait() -> bus_pb2.Event:
        while True:
            for key, event in rig.events:
                if key == routing_key:
                    return event
            rig.seen.clear()
            await rig.seen.wait()

    return await asyncio.wait_for(wait(), TIMEOUT)


def test_a_job_is_built_signed_staged_and_announced(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await r.bus.publish(names.build_queue("x86_64"), r.job)
            finished = (await _until(r, names.BUILD_SUCCEEDED)).build_finished
            staged = (await _until(r, names.PACKAGE_STAGED)).package_staged
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
        async with rig(tmp_path) as r:
            await r.bus.publish(names.build_queue("x86_64"), r.job)
            # Wait until the build itself runs (its phase is announced), then stop.
            while not any(
                k == names.BUILD_PHASE and e.build_phase.phase == "build" for k, e in r.events
            ):
                r.seen.clear()
                await asyncio.wait_for(r.seen.wait(), TIMEOUT)
            await r.worker.stop(0.5)
            # The job is back in the queue for another builder; nothing was announced as done.
            assert await r.bus.queue_depth(names.build_queue("x86_64")) == 1
            assert not [k for k, _ in r.events if k.startswith(("build.succeeded", "build.failed"))]
            assert not list(r.artifacts.list(STAGING_PREFIX))

    asyncio.run(scenario())
