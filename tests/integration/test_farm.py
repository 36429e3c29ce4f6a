"""The whole farm as five kinds of processes on real RabbitMQ and real S3.

Scheduler, fetcher, signer, indexer and two builders (x86_64, aarch64 — the
latter cross-compiling) run from their console scripts with mTLS, exactly as
deployed. An operator submits the example tree with the CLI; the test watches
every event on the bus, waits until every build is done, and then checks the
repository in S3 the way a mirror would: ``apkfarm verify`` with the farm's
public key over each index and every package it names. It also checks that
each service's /metrics shows the work it did and passes ``promtool``, and
that ``apkfarm build`` (the embedded mode) yields the same package set.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixtures.examples import EXAMPLES, ExampleDistfiles
from fixtures.servers import RabbitMQ, S3Server
from fixtures.services import (
    BIN,
    EventWatcher,
    ServiceProcess,
    farm_processes,
    mirror_repository,
    operator_cli,
    promtool_check_metrics,
)

from apkfarm.apk.index import read_index
from apkfarm.apk.keys import generate_key_pair
from apkfarm.certs import init_certs
from apkfarm.v1 import bus_pb2

ARCHS = ("x86_64", "aarch64")
FARM_TIMEOUT = 600.0

pytestmark = [pytest.mark.infra, pytest.mark.sandbox, pytest.mark.cross]


@dataclass
class Farm:
    certs: Path
    keys: Path
    s3: S3Server
    bucket_name: str
    services: dict[str, ServiceProcess]
    watcher: EventWatcher = field(repr=False)

    @property
    def scheduler(self) -> ServiceProcess:
        return self.services["scheduler"]

    @property
    def events(self) -> list[bus_pb2.Event]:
        return self.watcher.events

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return operator_cli(self.scheduler.grpc_address, self.certs, *args)

    def mirror(self, destination: Path) -> dict[str, list[Path]]:
        """Download repo/ as a mirror would; returns the files per <category>/<arch>."""
        return mirror_repository(self.s3, destination, bucket_name=self.bucket_name)


@pytest.fixture(scope="module")
def farm(
    rabbitmq: RabbitMQ,
    s3_server: S3Server,
    example_distfiles_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Farm]:
    workdir = tmp_path_factory.mktemp("farm")
    certs = workdir / "certs"
    init_certs(certs, builder_archs=list(ARCHS))
    keys = workdir / "keys"
    generate_key_pair(keys, "farm@example.org")
    bucket_name = f"farm-{uuid.uuid4().hex[:12]}"
    amqp_url = rabbitmq.vhost_url(f"farm-{uuid.uuid4().hex[:8]}")
    with (
        farm_processes(
            workdir,
            certs,
            keys,
            s3=s3_server,
            amqp_url=amqp_url,
            archs=ARCHS,
            bucket_name=bucket_name,
            source_sites=f"EXAMPLES_SITE={example_distfiles_url}",
            repo_description="apkfarm integration test",
        ) as services,
        EventWatcher(amqp_url, connection_name="test-watcher") as watcher,
    ):
        yield Farm(certs, keys, s3_server, bucket_name, services, watcher)


def _wait_until_built(farm: Farm) -> str:
    deadline = time.monotonic() + FARM_TIMEOUT
    while True:
        status = farm.cli("status")
        lines = status.stdout.splitlines()
        summary = lines[-1] if lines else ""
        active = ("waiting", "fetching", "queued", "building", "built")
        if lines and not any(f" {state}" in summary for state in active):
            return status.stdout
        if time.monotonic() > deadline:
            logs = "\n".join(s.proc.log_tail(20) for s in farm.services.values())
            raise AssertionError(f"farm did not finish:\n{status.stdout}\n{logs}")
        time.sleep(1.0)  # polling the farm's own status, the thing being waited for


def _verify(paths: list[Path], keys: Path) -> subprocess.CompletedProcess[str]:
    public = keys / "public"
    public.mkdir(exist_ok=True)
    for key in keys.glob("*.rsa.pub"):
        (public / key.name).write_bytes(key.read_bytes())
    return subprocess.run(
        [str(BIN / "apkfarm"), "verify", *map(str, paths), "--keys", str(public)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_example_tree_becomes_a_signed_repository_per_arch(farm: Farm, tmp_path: Path) -> None:
    submitted = farm.cli("submit", str(EXAMPLES))
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "uploaded tree" in submitted.stdout

    status = _wait_until_built(farm)
    assert "14 done" in status, status

    repos = farm.mirror(tmp_path / "mirror")
    assert sorted(repos) == ["main/aarch64", "main/x86_64", "user/aarch64", "user/x86_64"]
    names: dict[str, set[str]] = {}
    for repo, files in repos.items():
        verified = _verify(files, farm.keys)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        index = next(p for p in files if p.name == "APKINDEX.tar.gz")
        with index.open("rb") as stream:
            records = read_index(stream, None).records
        # The index names exactly the packages beside it.
        assert {r.filename for r in records} == {p.name for p in files if p.suffix == ".apk"}
        names[repo] = {r.name for r in records}
    assert {"libgreet", "libgreet-devel", "greet", "tally", "wordfreq", "greet-tools"} <= names[
        "main/aarch64"
    ]
    assert names["main/aarch64"] == names["main/x86_64"]
    assert names["user/x86_64"] == {"greet-fortune"}


def test_every_step_was_announced_on_the_bus(farm: Farm) -> None:
    kinds = {event.WhichOneof("kind") for event in farm.events}
    assert {
        "fetch_done",
        "build_started",
        "build_phase",
        "build_finished",
        "package_staged",
        "index_published",
        "build_changed",
    } <= kinds, kinds
    emitters = {event.emitter for event in farm.events}
    assert {"fetcher", "builder-x86_64", "builder-aarch64", "indexer", "scheduler"} <= emitters


def test_explain_and_logs_for_a_finished_build(farm: Farm) -> None:
    explained = farm.cli("explain", "greet", "--arch", "aarch64")
    assert explained.returncode == 0, explained.stderr
    assert "greet 1.0.0-r0 (aarch64" in explained.stdout
    assert "is done" in explained.stdout
    logs = farm.cli("logs", "greet", "--arch", "aarch64")
    assert logs.returncode == 0, logs.stderr
    assert "==> build:" in logs.stdout
    assert "==> package:" in logs.stdout


@pytest.mark.parametrize(
    ("service", "metric"),
    [
        ("scheduler", "apkfarm_builds_total"),
        ("fetcher", "apkfarm_fetch_bytes_total"),
        ("signer", "apkfarm_sign_requests_total"),
        ("indexer", "apkfarm_index_packages"),
        ("scheduler", "apkfarm_queue_depth"),
    ],
)
def test_metrics_show_the_work_and_pass_promtool(farm: Farm, service: str, metric: str) -> None:
    text = farm.services[service].metrics_text()
    values = [
        value
        for (name, _labels), value in farm.services[service].metrics().items()
        if name.startswith(metric)
    ]
    assert values, f"{service} exports no {metric}"
    if metric != "apkfarm_queue_depth":
        assert max(values) > 0, f"{service}: {metric} shows no work"
    checked = promtool_check_metrics(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_embedded_mode_builds_the_same_package_set(
    farm: Farm, example_distfiles: ExampleDistfiles, tmp_path: Path
) -> None:
    out = tmp_path / "repo"
    built = subprocess.run(
        [
            str(BIN / "apkfarm"),
            "build",
            str(EXAMPLES),
            "--all",
            *(arg for arch in ARCHS for arg in ("--arch", arch)),
            "--out",
            str(out),
            "--keys-dir",
            str(tmp_path / "keys"),
            "--site",
            example_distfiles.file_site,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    mirror = farm.mirror(tmp_path / "mirror")
    farm_packages = {
        f"{repo}/{p.name}" for repo, files in mirror.items() for p in files if p.suffix == ".apk"
    }
    embedded_packages = {str(p.relative_to(out)) for p in out.glob("*/*/*.apk")}
    assert farm_packages
    assert embedded_packages == farm_packages
