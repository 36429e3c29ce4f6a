"""apkfarm-indexer and apkfarm-signer as their own processes, on real RabbitMQ and real S3.

Both services run exactly as deployed (console scripts, environment settings,
mTLS certificates from ``init_certs``). The test stages real packages in S3,
signed by the farm's key as a builder gets them signed, publishes
``package.staged`` events on the broker, waits for ``index.published``, and
then checks the repository in S3 the way a mirror would: ``apkfarm verify``
with the farm's public keys over the index and every package it names.
"""

from __future__ import annotations

import asyncio
import io
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from fixtures.servers import RabbitMQ, S3Server
from fixtures.services import (
    BIN,
    ServiceProcess,
    bucket,
    promtool_check_metrics,
    service_env,
    start_service,
)

# The staging helpers live beside the unit tests (they sign with a real signer core).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))
from indexer_support import IndexerFarm, Staging

from apkfarm.apk.index import read_index
from apkfarm.blobs import layout
from apkfarm.bus import Delivery, names
from apkfarm.bus.rabbit import RabbitBus
from apkfarm.certs import init_certs
from apkfarm.services.common.tls import TlsFiles, open_channel
from apkfarm.v1 import bus_pb2, indexer_pb2, indexer_pb2_grpc

EVENT_TIMEOUT = 90.0


@dataclass
class Cluster:
    farm: IndexerFarm
    certs: Path
    workdir: Path
    rabbitmq: RabbitMQ
    s3: S3Server
    signer: ServiceProcess
    indexer: ServiceProcess
    indexer_env: dict[str, str]


@pytest.fixture(scope="module")
def cluster(
    rabbitmq: RabbitMQ, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("indexer")
    certs = workdir / "certs"
    init_certs(certs, builder_archs=["x86_64"])
    farm_dir = workdir / "farm"
    farm_dir.mkdir()
    farm = IndexerFarm(farm_dir)
    signer_env = service_env(workdir, certs, "signer", s3=s3_server)
    signer_env["APKFARM_KEYS_DIR"] = str(farm.farm.keys_dir)
    signer_env["APKFARM_SCHEDULER_PUBLIC_KEYS"] = str(farm_dir / "jobtoken.pub")
    signer = start_service("signer", signer_env, workdir, "apkfarm.v1.Signer")
    indexer_env = service_env(workdir, certs, "indexer", s3=s3_server, amqp_url=rabbitmq.url)
    indexer_env.update(
        {
            "APKFARM_SIGNER_ADDRESS": signer.grpc_address,
            "APKFARM_BATCH_SECONDS": "0.5",
            "APKFARM_KEEP_GENERATIONS": "2",
            "APKFARM_REPO_DESCRIPTION": "apkfarm test main",
            "APKFARM_INDEX_WORK_DIR": str(workdir),
        }
    )
    try:
        indexer = start_service("indexer", indexer_env, workdir, "apkfarm.v1.Indexer")
    except BaseException:
        signer.stop(grace=10)
        raise
    made = Cluster(farm, certs, workdir, rabbitmq, s3_server, signer, indexer, indexer_env)
    # Staged packages go where builders put them: staging/<job>/ in the farm's bucket.
    farm.artifacts = bucket(s3_server)
    try:
        yield made
    finally:
        made.indexer.stop(grace=20)
        signer.stop(grace=20)


async def _announce(bus: RabbitBus, staged: list[bus_pb2.PackageStaged]) -> None:
    """Publish ``package.staged`` events as the x86_64 builder announces its jobs."""
    for event in staged:
        wrapped = bus_pb2.Event(event_id=f"staged-{event.job_id}", emitter="builder-x86_64")
        wrapped.package_staged.CopyFrom(event)
        await bus.publish_event(names.PACKAGE_STAGED, wrapped)


async def _publish_and_wait(
    cluster: Cluster, staged: list[bus_pb2.PackageStaged], *, expect_jobs: set[str]
) -> list[bus_pb2.IndexPublished]:
    """Publish ``staged`` events; collect index.published until ``expect_jobs`` are named."""
    bus = RabbitBus(cluster.rabbitmq.url, connection_name="indexer-test")
    await bus.start()
    try:
        seen: asyncio.Queue[bus_pb2.IndexPublished] = asyncio.Queue()

        async def collect(delivery: Delivery[bus_pb2.Event]) -> None:
            await seen.put(delivery.message.index_published)

        await bus.subscribe(["index.*"], bus_pb2.Event, collect)
        await _announce(bus, staged)
        announced: list[bus_pb2.IndexPublished] = []
        named: set[str] = set()
        while not expect_jobs <= named:
            published = await asyncio.wait_for(seen.get(), timeout=EVENT_TIMEOUT)
            announced.append(published)
            named.update(published.job_ids)
        return announced
    finally:
        await bus.close(grace=1)


async def _dead_letters_after_publish(cluster: Cluster, staged: bus_pb2.PackageStaged) -> list[str]:
    """Publish ``staged``; the reasons the indexer dead-lettered it with, once there are any."""
    bus = RabbitBus(cluster.rabbitmq.url, connection_name="indexer-test-dead")
    await bus.start()
    try:
        await _announce(bus, [staged])
        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            found = []
            for letter in await bus.dead_letters("indexer"):
                event = bus_pb2.Event.FromString(letter.body)
                if event.package_staged.job_id == staged.job_id:
                    found.append(letter.reason)
            if found or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)
    finally:
        await bus.close(grace=1)


def _mirror(cluster: Cluster, destination: Path) -> tuple[Path, list[Path]]:
    """Download the repository as a mirror would: the index, then every package it names."""
    store = bucket(cluster.s3)
    destination.mkdir(parents=True, exist_ok=True)
    index_path = destination / "APKINDEX.tar.gz"
    index_path.write_bytes(store.get_bytes(layout.repo_index_key("main", "x86_64")))
    records = read_index(io.BytesIO(index_path.read_bytes()), None).records
    packages = []
    for record in records:
        path = destination / record.filename
        path.write_bytes(
            store.get_bytes(layout.repo_package_key("main", "x86_64", record.filename))
        )
        packages.append(path)
    return index_path, packages


def _verify(cluster: Cluster, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    keys = cluster.workdir / "trusted-keys"
    keys.mkdir(exist_ok=True)
    for name, pem in cluster.farm.keyring().to_pem().items():
        (keys / name).write_bytes(pem)
    return subprocess.run(
        [str(BIN / "apkfarm"), "verify", "--keys", str(keys), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


REPO_LABELS = (("arch", "x86_64"), ("category", "main"))


# --- the tests (in file order: the last one stops and restarts the indexer) -----------


@pytest.mark.infra
def test_staged_jobs_become_a_signed_repository_that_mirrors_can_verify(cluster: Cluster) -> None:
    staged = [
        cluster.farm.stage(["greet", "greet-doc"]),
        cluster.farm.stage(["hello"]),
        cluster.farm.stage(["tally"], version="2.1-r3"),
    ]
    announced = asyncio.run(
        _publish_and_wait(cluster, staged, expect_jobs={e.job_id for e in staged})
    )

    last = announced[-1]
    assert (last.category, last.arch) == ("main", "x86_64")
    assert last.index_key == "main/x86_64/APKINDEX.tar.gz"
    assert last.package_count == 4
    assert {job for a in announced for job in a.job_ids} == {e.job_id for e in staged}
    index_path, packages = _mirror(cluster, cluster.workdir / "mirror-1")
    assert sorted(p.name for p in packages) == [
        "greet-1.0-r0.apk",
        "greet-doc-1.0-r0.apk",
        "hello-1.0-r0.apk",
        "tally-2.1-r3.apk",
    ]
    verified = _verify(cluster, [index_path, *packages])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(": ok (") == 5
    index = read_index(io.BytesIO(index_path.read_bytes()), cluster.farm.keyring())
    assert index.description == "apkfarm test main"
    generation_key = layout.index_generation_key("main", "x86_64", last.generation)
    assert bucket(cluster.s3).get_bytes(generation_key) == index_path.read_bytes()


@pytest.mark.infra
def test_a_package_signed_by_another_key_is_dead_lettered_and_not_published(
    cluster: Cluster,
) -> None:
    bad = cluster.farm.stage([Staging("intruder", signing="other")])
    reasons = asyncio.run(_dead_letters_after_publish(cluster, bad))
    assert len(reasons) == 1
    assert "signature" in reasons[0] and bad.job_id in reasons[0]
    store = bucket(cluster.s3)
    assert not store.exists(layout.repo_package_key("main", "x86_64", "intruder-1.0-r0.apk"))
    index = read_index(io.BytesIO(store.get_bytes(layout.repo_index_key("main", "x86_64"))), None)
    assert "intruder" not in {r.name for r in index.records}


@pytest.mark.infra
def test_list_repositories_for_operators_over_mtls(cluster: Cluster) -> None:
    async def call(identity: str) -> indexer_pb2.ListRepositoriesResponse | grpc.StatusCode:
        files = TlsFiles.in_directory(cluster.certs, identity)
        async with open_channel(cluster.indexer.grpc_address, files) as channel:
            try:
                return await indexer_pb2_grpc.IndexerStub(channel).ListRepositories(
                    indexer_pb2.ListRepositoriesRequest(), timeout=30
                )
            except grpc.aio.AioRpcError as error:
                return error.code()

    listed = asyncio.run(call("operator"))
    assert isinstance(listed, indexer_pb2.ListRepositoriesResponse)
    [repo] = listed.repositories
    assert (repo.category, repo.arch, repo.package_count) == ("main", "x86_64", 4)
    assert repo.generation >= 1
    assert asyncio.run(call("builder-x86_64")) == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.infra
def test_metrics_show_the_published_repository(cluster: Cluster) -> None:
    values = cluster.indexer.metrics()
    assert values[("apkfarm_index_packages", REPO_LABELS)] == 4
    assert values[("apkfarm_index_generation", REPO_LABELS)] >= 1
    assert values[("apkfarm_index_published_timestamp_seconds", REPO_LABELS)] > time.time() - 3600
    assert values[("apkfarm_index_publish_duration_seconds_count", ())] >= 1
    assert values[("apkfarm_index_rejected_total", (("reason", "signature"),))] == 1
    checked = promtool_check_metrics(cluster.indexer.metrics_text())
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.infra
def test_after_sigterm_a_new_indexer_continues_from_the_published_state(
    cluster: Cluster,
) -> None:
    popen = cluster.indexer.proc.popen
    assert popen is not None
    before = cluster.indexer.metrics()[("apkfarm_index_generation", REPO_LABELS)]
    popen.send_signal(signal.SIGTERM)
    assert popen.wait(timeout=60) == 0
    log = cluster.indexer.proc.log_path.read_text()
    assert '"message": "stopped"' in log
    assert cluster.s3.secret_key not in log

    cluster.indexer = start_service(
        "indexer", cluster.indexer_env, cluster.workdir, "apkfarm.v1.Indexer"
    )
    newer = cluster.farm.stage(["hello"], version="1.1-r0")
    [published] = asyncio.run(_publish_and_wait(cluster, [newer], expect_jobs={newer.job_id}))

    assert published.generation == before + 1
    assert list(published.added) == ["hello-1.1-r0"]
    assert list(published.removed) == ["hello-1.0-r0"]
    index_path, packages = _mirror(cluster, cluster.workdir / "mirror-2")
    assert sorted(p.name for p in packages) == [
        "greet-1.0-r0.apk",
        "greet-doc-1.0-r0.apk",
        "hello-1.1-r0.apk",
        "tally-2.1-r3.apk",
    ]
    verified = _verify(cluster, [index_path, *packages])
    assert verified.returncode == 0, verified.stdout + verified.stderr
