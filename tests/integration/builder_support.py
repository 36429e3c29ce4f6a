"""The builder service's worker on the in-memory bus, for the builder's integration tests.

``builder_rig`` starts a ``BuildWorker`` for x86_64 with a real signer core
(``signer_support.Farm``), local artifacts and repository stores, and the
tree snapshot of tests/data/ports-containers uploaded as the farm's
scheduler would; its ``job`` builds that tree's ``slowpoke`` (about 15 s,
a tick every half second) with a token the signer accepts. Every event on
the bus is recorded with its routing key.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tests" / "unit"))
from signer_support import Farm

from apkfarm.blobs import LocalBlobStore
from apkfarm.blobs.layout import tree_key
from apkfarm.bus import Delivery, MemoryBus
from apkfarm.services.builder.worker import BuildWorker, WorkerSettings
from apkfarm.services.signer.client import LocalSignerClient
from apkfarm.templates import TreeLoader
from apkfarm.templates.snapshot import make_snapshot, unpack_snapshot
from apkfarm.v1 import bus_pb2, common_pb2

PORTS = REPO_ROOT / "tests" / "data" / "ports-containers"
TIMEOUT = 120.0


@dataclass
class BuilderRig:
    """A started worker, what it works with, and the events it announced."""

    bus: MemoryBus
    worker: BuildWorker
    artifacts: LocalBlobStore
    farm: Farm
    job: bus_pb2.BuildJob
    events: list[tuple[str, bus_pb2.Event]] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds, checking after each event; at most TIMEOUT s."""

        async def wait() -> None:
            while not condition():
                self.seen.clear()
                await self.seen.wait()

        await asyncio.wait_for(wait(), TIMEOUT)

    async def until(self, routing_key: str) -> bus_pb2.Event:
        """The first event published with ``routing_key``, once there is one."""
        await self.wait_for(lambda: any(key == routing_key for key, _ in self.events))
        return next(event for key, event in self.events if key == routing_key)

    def finished(self) -> list[bus_pb2.BuildFinished]:
        """Every ``build_finished`` announced so far (succeeded or failed), in order."""
        return [
            e.build_finished for _, e in self.events if e.WhichOneof("kind") == "build_finished"
        ]


def slowpoke_job(farm: Farm, tree_id: str, tree: Path, job_id: str) -> bus_pb2.BuildJob:
    """The x86_64 job for ``main/slowpoke`` of ``tree``, with a token ``farm`` issued."""
    loader = TreeLoader(tree)
    try:
        template = loader.load("x86_64", host_arch="x86_64").templates["main/slowpoke"]
    finally:
        loader.close()
    ref = common_pb2.TemplateRef(
        category="main", pkgname="slowpoke", version=template.version, arch="x86_64"
    )
    return bus_pb2.BuildJob(
        job_id=job_id,
        template=ref,
        tree_id=tree_id,
        tree_key=tree_key(tree_id),
        token=farm.issuer.issue(job_id, ref, template.possible_packages, 1),
        attempt=1,
    )


@asynccontextmanager
async def builder_rig(tmp_path: Path, job_id: str) -> AsyncIterator[BuilderRig]:
    """A started worker whose ``job`` (named ``job_id``) is not yet published."""
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
    rig = BuilderRig(
        bus, worker, artifacts, farm, slowpoke_job(farm, snapshot.tree_id, tree, job_id)
    )

    async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
        rig.events.append((delivery.routing_key, delivery.message))
        rig.seen.set()

    await bus.subscribe(["#"], bus_pb2.Event, collect)
    await worker.start()
    try:
        yield rig
    finally:
        await worker.stop(1.0)
        await bus.close(grace=1.0)
