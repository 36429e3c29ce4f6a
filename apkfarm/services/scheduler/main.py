"""``apkfarm-scheduler``: owns the tree snapshots, the build graph and build state."""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from apkfarm.services.common.app import (
    REPOSITORY_PREFIX,
    BusConfig,
    CommonConfig,
    ServiceParts,
    StoreConfig,
    bus_check,
    identity_of,
    open_bus,
    open_store,
    serve,
    service_main,
    store_check,
    tls_files,
)
from apkfarm.services.common.config import setting
from apkfarm.services.common.jobtokens import TokenIssuer, load_private_key
from apkfarm.services.scheduler.core import SchedulerCore, SchedulerSettings
from apkfarm.services.scheduler.service import ALLOW, SERVICE_NAME, SchedulerServicer
from apkfarm.services.scheduler.state import StateStore
from apkfarm.v1 import scheduler_pb2_grpc

DESCRIPTION = """\
The farm's scheduler: takes a ports tree (uploaded, or a path on its own
filesystem when allowed), evaluates its templates in a sandbox, plans each
architecture, keeps build state in SQLite (WAL) under APKFARM_STATE_DIR, and
dispatches fetch and build jobs over RabbitMQ as their dependencies are
indexed. Operators use its gRPC API through `apkfarm submit/status/logs/
explain/cancel/retry`."""


@dataclass(frozen=True)
class SchedulerConfig(CommonConfig, BusConfig, StoreConfig):
    state_dir: Path = setting(
        "APKFARM_STATE_DIR", Path("/var/lib/apkfarm"), "database, snapshots and caches"
    )
    archs: tuple[str, ...] = setting(
        "APKFARM_ARCHS", ("x86_64", "aarch64"), "architectures the farm has builders for"
    )
    categories: tuple[str, ...] = setting(
        "APKFARM_CATEGORIES", ("main", "user"), "tree categories to build by default"
    )
    host_arch: str = setting(
        "APKFARM_HOST_ARCH",
        platform.machine(),
        "arch of the builders' machines; other archs are cross builds",
    )
    max_attempts: int = setting(
        "APKFARM_MAX_ATTEMPTS",
        3,
        "dispatches of one build before an infrastructure failure is final",
    )
    job_token_key: Path = setting(
        "APKFARM_JOB_TOKEN_KEY",
        Path("/run/secrets/apkfarm-jobtoken/scheduler-jobtoken.key"),
        "Ed25519 private key that signs job tokens (not an apk key)",
    )
    evaluation_jobs: int = setting(
        "APKFARM_EVALUATION_JOBS",
        0,
        "sandboxed template evaluators per category (0: the CPUs this process sees; "
        "set it to the pod's CPU limit)",
    )
    allow_local_trees: bool = setting(
        "APKFARM_ALLOW_LOCAL_TREES", False, "accept SubmitTree with a path on this machine"
    )


async def run(config: SchedulerConfig) -> None:
    tls = tls_files(config, "scheduler")
    bus = open_bus(config, "scheduler", tls)
    artifacts = open_store(config)
    repository = open_store(config, prefix=REPOSITORY_PREFIX)
    state = StateStore(config.state_dir / "scheduler.db")
    core = SchedulerCore(
        SchedulerSettings(
            state_dir=config.state_dir,
            archs=config.archs,
            categories=config.categories,
            host_arch=config.host_arch,
            max_attempts=config.max_attempts,
            allow_local_trees=config.allow_local_trees,
            evaluation_jobs=config.evaluation_jobs,
        ),
        state=state,
        bus=bus,
        artifacts=artifacts,
        repository=repository,
        issuer=TokenIssuer(load_private_key(config.job_token_key)),
        identity=identity_of(config, "scheduler"),
    )

    async def start() -> None:
        await bus.start()
        await core.start()

    async def stop(grace: float) -> None:
        await core.stop(grace)
        await bus.close(grace=grace)
        state.close()

    def register(server: grpc.aio.Server) -> None:
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(
            SchedulerServicer(core, bus, artifacts, tls), server
        )

    await serve(
        "scheduler",
        config,
        ServiceParts(
            register=[register],
            service_names=[SERVICE_NAME],
            allow=ALLOW,
            health_checks={"bus": bus_check(bus), "blob store": store_check(artifacts)},
            start=start,
            stop=stop,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return service_main("scheduler", DESCRIPTION, SchedulerConfig, run, argv)
