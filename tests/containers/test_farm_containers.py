"""The farm as containers: the images, not just the processes, build a signed repository.

RabbitMQ and S3 (local stand-in images), the signer, indexer, fetcher,
scheduler and one builder per arch (x86_64 native, aarch64 cross) run from
their images on a network of their own, each with only its own secrets.
The host's ``apkfarm`` CLI talks to the scheduler's published mTLS port as
the ``operator``; the test mirrors the repository through the published S3
port and checks it with ``apkfarm verify`` and the farm's public key.

The farm is shared by the tests of this module; they run in file order.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from fixtures.examples import EXAMPLES, ExampleDistfiles
from fixtures.services import (
    BIN,
    EventWatcher,
    mirror_repository,
    operator_cli,
    promtool_check_metrics,
)

from apkfarm.apk.index import read_index
from apkfarm.v1 import bus_pb2
from containers.container_farm import (
    ARCHS,
    DISTFILES_PORT,
    GRPC_PORT,
    ContainerRun,
    FarmContainer,
    Infra,
    Secrets,
    container_run,
    make_secrets,
    start_builder,
    start_distfiles,
    start_infra,
    start_services,
    wait_serving,
    wait_until,
)

# One template whose build runs for ~15 s printing a tick every half second.
SLOW_TREE = REPO_ROOT / "tests" / "data" / "ports-containers"
FARM_TIMEOUT = 900.0

# Cold image builds (debootstrap, toolchains) happen inside the first test's setup.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(3600)]


@dataclass
class ContainerFarm:
    run: ContainerRun
    infra: Infra
    secrets: Secrets
    services: dict[str, FarmContainer]
    watcher: EventWatcher = field(repr=False)

    @property
    def scheduler(self) -> FarmContainer:
        return self.services["scheduler"]

    @property
    def events(self) -> list[bus_pb2.Event]:
        return self.watcher.events

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The operator's CLI on the host, over mTLS to the scheduler's published port."""
        done = operator_cli(self.scheduler.address(GRPC_PORT), self.secrets.certs, *args)
        if check:
            assert done.returncode == 0, f"apkfarm {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done

    def service_logs(self) -> str:
        return "\n".join(f"--- {name}\n{c.logs(20)}" for name, c in self.services.items())


@pytest.fixture(scope="module")
def farm(
    images: object, example_distfiles: ExampleDistfiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ContainerFarm]:
    started = time.monotonic()
    secrets = make_secrets(tmp_path_factory.mktemp("secrets"))
    with container_run() as run:
        infra = start_infra(run)
        start_distfiles(run, example_distfiles.directory)
        services = start_services(
            run, infra, secrets, source_sites=f"EXAMPLES_SITE=http://distfiles:{DISTFILES_PORT}"
        )
        print(f"container farm up in {time.monotonic() - started:.1f}s")
        with EventWatcher(infra.host_amqp_url, connection_name="container-test-watcher") as watcher:
            yield ContainerFarm(run, infra, secrets, services, watcher)


def _summary(status: str) -> str:
    lines = status.splitlines()
    return lines[-1] if lines else ""


def _wait_until_built(farm: ContainerFarm) -> str:
    """Poll ``apkfarm status`` until no build of the latest tree is still on its way."""
    result: dict[str, str] = {}
    active = ("waiting", "fetching", "queued", "building", "built")

    def finished() -> bool:
        status = farm.cli("status", check=False).stdout
        result["status"] = status
        summary = _summary(status)
        return bool(summary) and not any(f" {state}" in summary for state in active)

    try:
        wait_until("the farm's builds", finished, timeout=FARM_TIMEOUT, interval=1.0)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{result.get('status')}\n{farm.service_logs()}") from None
    return result["status"]


def _verified_index(farm: ContainerFarm, files: list[Path]) -> list[str]:
    """``apkfarm verify`` every file with the farm's public key; the index's package names."""
    verified = subprocess.run(
        [str(BIN / "apkfarm"), "verify", *map(str, files), "--keys", str(farm.secrets.public_keys)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert len(verified.stdout.splitlines()) >= len(files)
    index = next(p for p in files if p.name == "APKINDEX.tar.gz")
    with index.open("rb") as stream:
        records = read_index(stream, None).records
    # The index names exactly the packages beside it.
    assert sorted(r.filename for r in records) == sorted(
        p.name for p in files if p.suffix == ".apk"
    )
    return [r.name for r in records]


def test_the_example_tree_becomes_a_signed_repository_per_arch(
    farm: ContainerFarm, tmp_path: Path
) -> None:
    submitted = farm.cli("submit", str(EXAMPLES))
    assert "uploaded tree" in submitted.stdout

    status = _wait_until_built(farm)
    assert "14 done" in _summary(status), status

    repos = mirror_repository(farm.infra.host_s3, tmp_path / "mirror")
    assert sorted(repos) == ["main/aarch64", "main/x86_64", "user/aarch64", "user/x86_64"]
    names = {repo: _verified_index(farm, files) for repo, files in repos.items()}
    for repo, listed in names.items():
        assert len(listed) == len(set(listed)), f"{repo} lists a package twice: {listed}"
    assert {"libgreet", "libgreet-devel", "greet", "tally", "wordfreq", "greet-tools"} <= set(
        names["main/aarch64"]
    )
    assert sorted(names["main/aarch64"]) == sorted(names["main/x86_64"])
    assert names["user/x86_64"] == ["greet-fortune"]


def test_explain_and_stored_logs_through_the_scheduler(farm: ContainerFarm) -> None:
    explained = farm.cli("explain", "greet", "--arch", "aarch64").stdout
    assert "greet 1.0.0-r0 (aarch64" in explained
    assert "is done" in explained
    logs = farm.cli("logs", "greet", "--arch", "aarch64").stdout
    assert "==> build:" in logs
    assert "==> package:" in logs


@pytest.mark.parametrize(
    ("service", "metric"),
    [
        ("scheduler", "apkfarm_builds_total"),
        ("fetcher", "apkfarm_fetch_bytes_total"),
        ("signer", "apkfarm_sign_requests_total"),
        ("indexer", "apkfarm_index_packages"),
    ],
)
def test_published_metrics_show_the_work(farm: ContainerFarm, service: str, metric: str) -> None:
    container = farm.services[service]
    values = [v for (name, _labels), v in container.metrics().items() if name.startswith(metric)]
    assert values and max(values) > 0, f"{service} shows no {metric}"
    checked = promtool_check_metrics(container.metrics_text())
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _events(farm: ContainerFarm, kind: str, job_id: str) -> list[bus_pb2.Event]:
    return [
        e
        for e in list(farm.events)
        if e.WhichOneof("kind") == kind and getattr(e, kind).job_id == job_id
    ]


def test_a_killed_builders_job_is_redelivered_to_a_new_builder(
    farm: ContainerFarm, tmp_path: Path
) -> None:
    """SIGKILL the aarch64 builder in the middle of a build; a new container finishes the job.

    The job is acknowledged only after its results are announced, so the
    broker hands the unacknowledged job (same job id, same token, nothing
    signed yet) to the next consumer of ``build.aarch64`` once the dead
    builder's connection is gone; the scheduler sees a second ``build.started``
    for the same job and then its one ``build.succeeded``.
    """
    victim = farm.services["builder-aarch64"]
    farm.cli("submit", str(SLOW_TREE))
    seen: dict[str, str] = {}

    def building_on_the_victim() -> bool:
        explained = farm.cli("explain", "slowpoke", "--arch", "aarch64").stdout
        match = re.search(r"building as job (\S+) on (\S+)", explained)
        if match is None:
            return False
        seen["job"], seen["builder"] = match[1], match[2]
        # The live log, proxied by the scheduler container from the builder container.
        live = farm.cli("logs", "slowpoke", "--arch", "aarch64", check=False).stdout
        return "slowpoke: tick 3 of" in live

    wait_until("slowpoke building on aarch64", building_on_the_victim, timeout=300, watch=[victim])
    job = seen["job"]
    assert seen["builder"] == f"builder-aarch64:{GRPC_PORT}"

    victim.kill()
    state = victim.state()
    assert state["Status"] == "exited" and state["ExitCode"] == 137, state
    # Nothing finished the job: the scheduler still has it on the dead builder.
    explained = farm.cli("explain", "slowpoke", "--arch", "aarch64").stdout
    assert f"building as job {job}" in explained, explained

    replacement = start_builder(
        farm.run, farm.infra, farm.secrets, "aarch64", alias="builder-aarch64-2"
    )
    farm.services["builder-aarch64"] = replacement
    wait_serving(replacement)

    status = _wait_until_built(farm)
    assert _summary(status).strip() == "2 done", status
    explained = farm.cli("explain", "slowpoke", "--arch", "aarch64").stdout
    assert "is done" in explained, explained

    # The same job went to the new builder: redelivered, not dispatched again.
    started = _events(farm, "build_started", job)
    assert [e.build_started.builder_address for e in started] == [
        f"builder-aarch64:{GRPC_PORT}",
        f"builder-aarch64-2:{GRPC_PORT}",
    ]
    assert {e.build_started.attempt for e in started} == {1}
    finished = _events(farm, "build_finished", job)
    assert len(finished) == 1 and finished[0].build_finished.success, finished
    assert len(_events(farm, "package_staged", job)) == 1
    slowpoke_jobs = {
        e.build_started.job_id
        for e in list(farm.events)
        if e.WhichOneof("kind") == "build_started"
        and e.build_started.template.pkgname == "slowpoke"
        and e.build_started.template.arch == "aarch64"
    }
    assert slowpoke_jobs == {job}
    logs = farm.cli("logs", "slowpoke", "--arch", "aarch64").stdout
    assert "slowpoke: tick 30 of 30" in logs

    # Nothing lost, nothing twice: each package once in each index, all verified.
    repos = mirror_repository(farm.infra.host_s3, tmp_path / "mirror")
    for arch in ARCHS:
        listed = _verified_index(farm, repos[f"main/{arch}"])
        assert listed.count("slowpoke") == 1, listed
        assert listed.count("slowpoke-doc") == 1, listed
        assert len(listed) == len(set(listed)), listed
