"""The farm as containers: secrets, images and the containers of one test run.

Each service runs from its own image (``apkfarm/<service>:dev``,
``apkfarm/builder-<arch>:dev``) as compose deploys it: read-only root, all
capabilities dropped, no new privileges, the service user 10001, and only
bwrap's two security options for the builders and the scheduler. Each gets
only its own secrets: its certificate and key from ``apkfarm certs init`` and
the CA; the apk signing key goes only to the signer, the job-token private key
only to the scheduler.

The containers talk to each other by name on a Docker network made for the
run. The host reaches them only through ports published on 127.0.0.1: the
scheduler's mTLS API (for the ``apkfarm`` CLI), each service's plaintext
health port (readiness) and metrics port, the broker's AMQP port and the S3
port. Readiness is always a real call (gRPC health SERVING, an AMQP login,
an S3 request), polled with a deadline; a container that exits while being
waited for fails at once with its log.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from fixtures.servers import (
    S3Server,
    ServerNotReady,
    amqp_login,
    run_coroutine_isolated,
    s3_probe,
)
from fixtures.services import BIN, health_status, metric_values
from grpc_health.v1 import health_pb2
from minio.error import S3Error
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network
from urllib3.exceptions import HTTPError

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
ARCHS = ("x86_64", "aarch64")
SERVICE_UID = 10001
READY_TIMEOUT = 180.0
RUN_LABEL = "org.apkfarm.test-run"

GRPC_PORT = 50051
HEALTH_PORT = 50052
METRICS_PORT = 9100
AMQP_PORT = 5672
S3_PORT = 9000
DISTFILES_PORT = 8000

TLS_MOUNT = "/run/secrets/apkfarm-tls"
KEYS_MOUNT = "/run/secrets/apkfarm-keys"
JOB_TOKEN_MOUNT = "/run/secrets/apkfarm-job-token"

# What every farm service runs with (compose.yaml's x-service).
HARDENING: dict[str, Any] = {
    "read_only": True,
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges:true"],
}
# bwrap's two needs on top (compose.yaml's x-bwrap-security; k8s/README.md):
# seccomp=unconfined here, systempaths=unconfined through SandboxingContainer.
BWRAP_SECURITY = ["seccomp=unconfined", "no-new-privileges:true"]
# A writable directory of the service user on the read-only root.
SERVICE_TMPFS = f"uid={SERVICE_UID},gid={SERVICE_UID},mode=0750"
# A builder runs what it builds (configure checks, test suites) from its work
# directory: Docker mounts a tmpfs noexec unless told otherwise.
BUILDER_WORK_TMPFS = f"{SERVICE_TMPFS},exec"


def apkfarm(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run the host's ``apkfarm`` CLI; fail with its output if it fails."""
    done = subprocess.run(
        [str(BIN / "apkfarm"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"apkfarm {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


# --- secrets ----------------------------------------------------------------------


@dataclass(frozen=True)
class Secrets:
    """What an operator makes with ``apkfarm certs init`` and ``apkfarm keygen``."""

    root: Path
    certs: Path  # ca.crt, <identity>.crt/.key, scheduler-jobtoken.key/.pub (and ca.key)
    keys: Path  # the apk signing key pair

    @property
    def public_keys(self) -> Path:
        """Only the farm's public apk keys, as a mirror trusts them (/etc/apk/keys)."""
        public = self.root / "trusted"
        if not public.is_dir():
            public.mkdir()
            for key in self.keys.glob("*.rsa.pub"):
                shutil.copy2(key, public / key.name)
        return public

    def tls_for(self, identity: str) -> Path:
        """A directory with only ``identity``'s certificate and key and the CA."""
        return self._private_copy(
            f"tls-{identity}",
            [self.certs / "ca.crt", self.certs / f"{identity}.crt", self.certs / f"{identity}.key"],
        )

    def signer_keys(self) -> Path:
        return self._private_copy("signer-keys", sorted(self.keys.iterdir()))

    def job_token_key(self) -> Path:
        return self._private_copy("job-token-key", [self.certs / "scheduler-jobtoken.key"])

    def job_token_public_key(self) -> Path:
        return self._private_copy("job-token-pub", [self.certs / "scheduler-jobtoken.pub"])

    def _private_copy(self, name: str, files: list[Path]) -> Path:
        """Copies owned by the service user; private keys mode 0600 (the signer insists)."""
        directory = self.root / "mounts" / name
        if directory.is_dir():
            return directory
        directory.mkdir(parents=True, mode=0o700)
        for source in files:
            assert source.is_file(), f"{source} missing: did certs init / keygen change?"
            target = directory / source.name
            shutil.copyfile(source, target)
            private = source.suffix in (".key", ".rsa")
            target.chmod(0o600 if private else 0o444)
            shutil.chown(target, SERVICE_UID, SERVICE_UID)
        shutil.chown(directory, SERVICE_UID, SERVICE_UID)
        return directory


def make_secrets(root: Path) -> Secrets:
    made = Secrets(root=root, certs=root / "certs", keys=root / "keys")
    apkfarm("certs", "init", str(made.certs), "--builder-archs", ",".join(ARCHS))
    apkfarm("keygen", "--dir", str(made.keys), "--name", "farm@example.org")
    return made


def readable_by_service(directory: Path) -> Path:
    """Let the service user read ``directory`` (mounted read-only into a container)."""
    for path in [directory, *directory.rglob("*")]:
        shutil.chown(path, SERVICE_UID, SERVICE_UID)
    return directory


# --- containers -------------------------------------------------------------------


class SandboxingContainer(DockerContainer):
    """A container whose /proc is not masked, so that bwrap can mount a fresh one.

    ``--security-opt systempaths=unconfined`` is a docker CLI option: the CLI
    sends it to the engine as empty ``MaskedPaths`` and ``ReadonlyPaths`` in
    the host config, which docker-py has no parameter for. This adds them to
    the create request of this container's own API client, nothing else.
    """

    def start(self) -> SandboxingContainer:
        api = self.get_docker_client().client.api
        create = api.create_container_from_config

        def unmasked(config: dict[str, Any], name: str | None = None, platform: Any = None) -> Any:
            config["HostConfig"]["MaskedPaths"] = []
            config["HostConfig"]["ReadonlyPaths"] = []
            return create(config, name, platform)

        api.create_container_from_config = unmasked
        try:
            super().start()
        finally:
            del api.create_container_from_config  # the class's method again
        return self


@dataclass
class FarmContainer:
    """One started container, known on the run's network as ``alias``."""

    alias: str
    container: DockerContainer
    health_service: str = ""

    @property
    def wrapped(self) -> Any:
        return self.container.get_wrapped_container()

    def host_port(self, port: int) -> int:
        """The 127.0.0.1 port the container's ``port`` is published on."""
        self.wrapped.reload()
        bindings = self.wrapped.attrs["NetworkSettings"]["Ports"].get(f"{port}/tcp") or []
        for binding in bindings:
            if binding["HostIp"] == "127.0.0.1":
                return int(binding["HostPort"])
        raise AssertionError(f"{self.alias}: port {port} is not published on 127.0.0.1")

    def address(self, port: int) -> str:
        return f"127.0.0.1:{self.host_port(port)}"

    def state(self) -> dict[str, Any]:
        self.wrapped.reload()
        state: dict[str, Any] = self.wrapped.attrs["State"]
        return state

    def check_running(self) -> None:
        state = self.state()
        if state["Status"] != "running":
            raise AssertionError(
                f"container {self.alias} is {state['Status']} (exit {state['ExitCode']}):\n"
                f"{self.logs()}"
            )

    def logs(self, tail: int = 60) -> str:
        try:
            return str(self.wrapped.logs(tail=tail).decode(errors="replace"))
        except Exception as error:  # the container may be gone already
            return f"(no log: {error})"

    def kill(self) -> None:
        """SIGKILL: no grace, no handing back — what a crashed node looks like."""
        self.wrapped.kill(signal="SIGKILL")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return metric_values(self.metrics_text())

    def metrics_text(self) -> str:
        url = f"http://{self.address(METRICS_PORT)}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    def remove(self) -> None:
        self.container.stop(force=True, delete_volume=True)


def wait_until(
    what: str,
    probe: Callable[[], bool],
    *,
    timeout: float = READY_TIMEOUT,
    watch: Sequence[FarmContainer] = (),
    interval: float = 0.25,
) -> None:
    """Poll ``probe`` (a real call) until it returns True; fail early if a container died."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        for container in watch:
            container.check_running()
        try:
            if probe():
                return
        except (OSError, ServerNotReady, grpc.RpcError, S3Error, HTTPError) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {c.alias}\n{c.logs()}" for c in watch)
            raise AssertionError(f"{what} not ready after {timeout:.0f}s ({last})\n{logs}")
        time.sleep(interval)  # polling the readiness call itself


def wait_serving(service: FarmContainer, timeout: float = READY_TIMEOUT) -> None:
    """Until the service's own gRPC health (plaintext health port) says SERVING."""
    address = service.address(HEALTH_PORT)

    def serving() -> bool:
        status = health_status(address, service.health_service)
        return status == health_pb2.HealthCheckResponse.SERVING

    wait_until(f"{service.alias} health", serving, timeout=timeout, watch=[service])


@dataclass
class ContainerRun:
    """The network and containers of one test run; ``close`` removes all of them."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    network: Network = field(default_factory=Network)
    containers: list[FarmContainer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.network.create()

    def start(
        self,
        alias: str,
        image: str,
        *,
        env: dict[str, str] | None = None,
        mounts: dict[Path, str] | None = None,
        tmpfs: dict[str, str] | None = None,
        publish: tuple[int, ...] = (),
        command: list[str] | None = None,
        health_service: str = "",
        sandboxing: bool = False,
        **docker_options: Any,
    ) -> FarmContainer:
        kind = SandboxingContainer if sandboxing else DockerContainer
        container = kind(
            image,
            env=dict(env or {}),
            network=self.network,
            network_aliases=[alias],
            name=f"apkfarm-test-{self.run_id}-{alias}",
            labels={RUN_LABEL: self.run_id},
            **docker_options,
        )
        if command is not None:
            container.with_command(command)  # type: ignore[arg-type]
        for host_path, target in (mounts or {}).items():
            container.with_volume_mapping(host_path, target, "ro")
        for path, options in (tmpfs or {}).items():
            container.tmpfs[path] = options
        for port in publish:
            # Published on loopback only, on a port the engine picks.
            container.ports[f"{port}/tcp"] = ("127.0.0.1",)  # type: ignore[assignment]
        started = FarmContainer(alias, container, health_service)
        # Known before it starts, so that close() removes it even if starting fails.
        self.containers.append(started)
        container.start()
        return started

    def leftovers(self) -> list[str]:
        """Names of this run's containers and networks the engine still has."""
        found = subprocess.run(
            [DOCKER, "ps", "-a", "-q", "--filter", f"label={RUN_LABEL}={self.run_id}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        network = subprocess.run(
            [DOCKER, "network", "ls", "-q", "--filter", f"name={self.network.name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return found + network

    def close(self) -> None:
        for started in reversed(self.containers):
            try:
                started.remove()
            except Exception as error:  # remove the rest anyway
                print(f"removing {started.alias}: {error}", file=sys.stderr)
        self.containers.clear()
        self.network.remove()


@contextmanager
def container_run() -> Iterator[ContainerRun]:
    run = ContainerRun()
    try:
        yield run
    finally:
        run.close()
        assert not run.leftovers(), f"containers or networks left behind: {run.leftovers()}"


# --- the infrastructure -------------------------------------------------------------


@dataclass(frozen=True)
class Infra:
    rabbitmq: FarmContainer
    s3: FarmContainer
    amqp_password: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str = "apkfarm"

    @property
    def amqp_url(self) -> str:
        """The broker as the containers reach it."""
        return f"amqp://apkfarm:{self.amqp_password}@rabbitmq:{AMQP_PORT}/"

    @property
    def host_amqp_url(self) -> str:
        """The broker through its published port, for the test's own event watcher."""
        return f"amqp://apkfarm:{self.amqp_password}@{self.rabbitmq.address(AMQP_PORT)}/"

    @property
    def host_s3(self) -> S3Server:
        """The object store through its published port, as a mirror with credentials sees it."""
        return S3Server(
            endpoint=self.s3.address(S3_PORT),
            access_key=self.s3_access_key,
            secret_key=self.s3_secret_key,
            bucket=self.bucket,
        )

    def service_env(self, identity: str, *, amqp: bool = True) -> dict[str, str]:
        """What every farm service is given (compose.yaml's x-common-env, x-amqp-env, x-s3-env)."""
        env = {
            "APKFARM_IDENTITY": identity,
            "APKFARM_LOG_LEVEL": "info",
            "APKFARM_SHUTDOWN_GRACE": "10",
            "APKFARM_S3_ENDPOINT": f"s3:{S3_PORT}",
            "APKFARM_S3_ACCESS_KEY": self.s3_access_key,
            "APKFARM_S3_SECRET_KEY": self.s3_secret_key,
            "APKFARM_S3_BUCKET": self.bucket,
            "APKFARM_S3_SECURE": "false",
            "APKFARM_S3_REGION": "us-east-1",
        }
        if amqp:
            env["APKFARM_AMQP_URL"] = self.amqp_url
        return env


def start_infra(run: ContainerRun) -> Infra:
    """RabbitMQ and S3 (SeaweedFS) from the local stand-in images, with the bucket made."""
    password = secrets.token_hex(12)
    access_key, secret_key = "apkfarm" + secrets.token_hex(4), secrets.token_hex(20)
    rabbitmq = run.start(
        "rabbitmq",
        "apkfarm/rabbitmq:dev",
        env={
            "RABBITMQ_DEFAULT_USER": "apkfarm",
            "RABBITMQ_DEFAULT_PASS": password,
            # A builder holds its job for the whole build (as compose.yaml sets it).
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-rabbit consumer_timeout 86400000",
        },
        publish=(AMQP_PORT,),
    )
    s3 = run.start(
        "s3",
        "apkfarm/seaweedfs:dev",
        env={"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
        publish=(S3_PORT,),
    )
    infra = Infra(rabbitmq, s3, password, access_key, secret_key)

    def bucket_made() -> bool:
        s3_probe(infra.host_s3)
        return True

    wait_until("S3", bucket_made, watch=[s3])

    def logged_in() -> bool:
        run_coroutine_isolated(lambda: amqp_login(infra.host_amqp_url))
        return True

    wait_until("RabbitMQ", logged_in, watch=[rabbitmq], interval=0.5)
    return infra


def start_distfiles(run: ContainerRun, directory: Path) -> FarmContainer:
    """The examples' sources on plain HTTP inside the network, as a source site."""
    server = run.start(
        "distfiles",
        "apkfarm/runtime:dev",
        command=["python3", "-m", "http.server", str(DISTFILES_PORT), "--directory", "/srv"],
        mounts={readable_by_service(directory): "/srv"},
        publish=(DISTFILES_PORT,),
        **HARDENING,
    )
    sample = sorted(p.name for p in directory.iterdir())[0]

    def answers() -> bool:
        url = f"http://{server.address(DISTFILES_PORT)}/{sample}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except urllib.error.URLError as error:
            raise OSError(str(error)) from error

    wait_until("distfiles server", answers, watch=[server])
    return server


# --- the five services --------------------------------------------------------------


def start_builder(
    run: ContainerRun, infra: Infra, secrets_: Secrets, arch: str, alias: str
) -> FarmContainer:
    """A builder for ``arch`` (not yet waited for), reachable for TailLog as ``alias``."""
    identity = f"builder-{arch}"
    env = infra.service_env(identity)
    env.update(
        {
            "APKFARM_ARCH": arch,
            "APKFARM_WORK_DIR": "/var/tmp/apkfarm",
            "APKFARM_SIGNER_ADDRESS": f"signer:{GRPC_PORT}",
            "APKFARM_ADVERTISE_ADDRESS": f"{alias}:{GRPC_PORT}",
        }
    )
    return run.start(
        alias,
        f"apkfarm/builder-{arch}:dev",
        env=env,
        mounts={secrets_.tls_for(identity): TLS_MOUNT},
        tmpfs={"/tmp": "", "/var/tmp/apkfarm": BUILDER_WORK_TMPFS},
        publish=(HEALTH_PORT, METRICS_PORT),
        health_service="apkfarm.v1.Builder",
        sandboxing=True,
        **{**HARDENING, "security_opt": BWRAP_SECURITY},
    )


def start_services(
    run: ContainerRun, infra: Infra, secrets_: Secrets, *, source_sites: str
) -> dict[str, FarmContainer]:
    """Signer, indexer, fetcher, one builder per arch and the scheduler, all SERVING."""
    services: dict[str, FarmContainer] = {}
    signer_env = infra.service_env("signer", amqp=False)
    signer_env.update(
        {
            "APKFARM_KEYS_DIR": KEYS_MOUNT,
            "APKFARM_SCHEDULER_PUBLIC_KEYS": f"{JOB_TOKEN_MOUNT}/scheduler-jobtoken.pub",
        }
    )
    services["signer"] = run.start(
        "signer",
        "apkfarm/signer:dev",
        env=signer_env,
        mounts={
            secrets_.tls_for("signer"): TLS_MOUNT,
            secrets_.signer_keys(): KEYS_MOUNT,
            secrets_.job_token_public_key(): JOB_TOKEN_MOUNT,
        },
        tmpfs={"/tmp": ""},
        publish=(HEALTH_PORT, METRICS_PORT),
        health_service="apkfarm.v1.Signer",
        **HARDENING,
    )
    indexer_env = infra.service_env("indexer")
    indexer_env.update(
        {
            "APKFARM_SIGNER_ADDRESS": f"signer:{GRPC_PORT}",
            "APKFARM_REPO_DESCRIPTION": "apkfarm container test",
        }
    )
    services["indexer"] = run.start(
        "indexer",
        "apkfarm/indexer:dev",
        env=indexer_env,
        mounts={secrets_.tls_for("indexer"): TLS_MOUNT},
        tmpfs={"/tmp": ""},
        publish=(HEALTH_PORT, METRICS_PORT),
        health_service="apkfarm.v1.Indexer",
        **HARDENING,
    )
    fetcher_env = infra.service_env("fetcher")
    fetcher_env["APKFARM_SOURCE_SITES"] = source_sites
    # The distfiles container's address on the test network is a private one.
    fetcher_env["APKFARM_FETCH_PRIVATE_NETWORKS"] = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
    services["fetcher"] = run.start(
        "fetcher",
        "apkfarm/fetcher:dev",
        env=fetcher_env,
        mounts={secrets_.tls_for("fetcher"): TLS_MOUNT},
        tmpfs={"/tmp": ""},
        publish=(HEALTH_PORT, METRICS_PORT),
        health_service="apkfarm.v1.Fetcher",
        **HARDENING,
    )
    for arch in ARCHS:
        services[f"builder-{arch}"] = start_builder(
            run, infra, secrets_, arch, alias=f"builder-{arch}"
        )
    scheduler_env = infra.service_env("scheduler")
    scheduler_env.update(
        {
            "APKFARM_STATE_DIR": "/var/lib/apkfarm",
            "APKFARM_ARCHS": ",".join(ARCHS),
            "APKFARM_CATEGORIES": "main,user",
            "APKFARM_HOST_ARCH": "x86_64",
            "APKFARM_JOB_TOKEN_KEY": f"{JOB_TOKEN_MOUNT}/scheduler-jobtoken.key",
        }
    )
    services["scheduler"] = run.start(
        "scheduler",
        "apkfarm/scheduler:dev",
        env=scheduler_env,
        mounts={
            secrets_.tls_for("scheduler"): TLS_MOUNT,
            secrets_.job_token_key(): JOB_TOKEN_MOUNT,
        },
        tmpfs={"/tmp": "", "/var/lib/apkfarm": SERVICE_TMPFS},
        publish=(GRPC_PORT, HEALTH_PORT, METRICS_PORT),
        health_service="apkfarm.v1.Scheduler",
        sandboxing=True,
        **{**HARDENING, "security_opt": BWRAP_SECURITY},
    )
    # Started together, waited for together: each comes up once what it needs answers.
    for service in services.values():
        wait_serving(service)
    return services
