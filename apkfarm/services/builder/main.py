"""``apkfarm-builder``: one architecture's builds in bwrap sandboxes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from apkfarm.apk.gzip_members import DataCompression
from apkfarm.build.runner import BuilderSettings
from apkfarm.build.toolchain import Compiler
from apkfarm.errors import ApkfarmError
from apkfarm.services.builder.service import ALLOW, SERVICE_NAME, BuilderServicer
from apkfarm.services.builder.worker import BuildWorker, WorkerSettings
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
from apkfarm.services.signer.client import GrpcSignerClient
from apkfarm.v1 import builder_pb2_grpc

DESCRIPTION = """\
A builder for one target architecture: takes jobs from build.<arch> one at a
time, builds each template in a bwrap sandbox (no network, read-only root,
unprivileged), gets its packages signed by the signer with the job's token,
stages them in S3 for the indexer and streams its live log over gRPC. On
SIGTERM it finishes the running build within APKFARM_SHUTDOWN_GRACE or hands
the job back to the queue."""


@dataclass(frozen=True)
class BuilderConfig(CommonConfig, BusConfig, StoreConfig):
    arch: str = setting("APKFARM_ARCH", "", "the target architecture this builder serves")
    work_dir: Path = setting(
        "APKFARM_WORK_DIR", Path("/var/lib/apkfarm-builder"), "scratch space for builds and trees"
    )
    signer_address: str = setting(
        "APKFARM_SIGNER_ADDRESS", "signer:50051", "the signer's gRPC address"
    )
    advertise_address: str = setting(
        "APKFARM_ADVERTISE_ADDRESS", "", "address the scheduler dials for live logs (host:port)"
    )
    build_timeout: float = setting(
        "APKFARM_BUILD_TIMEOUT", 3 * 3600.0, "seconds one build may take"
    )
    silence_timeout: float = setting(
        "APKFARM_SILENCE_TIMEOUT", 1800.0, "seconds a build may go without output"
    )
    max_jobs: int = setting("APKFARM_MAX_JOBS", 0, "exit after this many jobs (0: never)")
    idle_exit_seconds: float = setting(
        "APKFARM_IDLE_EXIT_SECONDS", 0.0, "exit when no job came for this long (0: never)"
    )
    compiler: str = setting("APKFARM_COMPILER", "gcc", "gcc or clang")
    jobs: int = setting("APKFARM_JOBS", 0, "parallel make jobs per build (0: the CPU count)")
    package_compression: str = setting(
        "APKFARM_PACKAGE_COMPRESSION",
        "isal:2",
        "data member deflate, isal:0-3 or zlib:0-9 (zlib: same bytes on every CPU)",
    )


def worker_settings(config: BuilderConfig) -> WorkerSettings:
    if not config.arch:
        raise ApkfarmError("APKFARM_ARCH (or --arch) is required: a builder serves one arch")
    if config.compiler not in ("gcc", "clang"):
        raise ApkfarmError(f"APKFARM_COMPILER: {config.compiler!r} is neither gcc nor clang")
    compiler: Compiler = "clang" if config.compiler == "clang" else "gcc"
    try:
        compression = DataCompression.parse(config.package_compression)
    except ApkfarmError as error:
        raise ApkfarmError(f"APKFARM_PACKAGE_COMPRESSION: {error}") from None
    runtime = BuilderSettings(compiler=compiler, data_compression=compression)
    if config.jobs > 0:
        runtime = replace(runtime, jobs=config.jobs)
    return WorkerSettings(
        arch=config.arch,
        work_dir=config.work_dir,
        identity=identity_of(config, f"builder-{config.arch}"),
        advertise_address=config.advertise_address or config.grpc_listen,
        build_timeout=config.build_timeout,
        silence_timeout=config.silence_timeout,
        max_jobs=config.max_jobs,
        idle_exit_seconds=config.idle_exit_seconds,
        runtime=runtime,
    )


async def run(config: BuilderConfig) -> None:
    settings = worker_settings(config)
    service = f"builder-{config.arch}"
    tls = tls_files(config, service)
    bus = open_bus(config, service, tls)
    artifacts = open_store(config)
    repository = open_store(config, prefix=REPOSITORY_PREFIX)
    signer = GrpcSignerClient(config.signer_address, tls, server_identity="signer")
    worker = BuildWorker(
        settings, bus=bus, artifacts=artifacts, repository=repository, signer=signer
    )

    async def start() -> None:
        await bus.start()
        await worker.start()

    async def stop(grace: float) -> None:
        await worker.stop(grace)
        await bus.close(grace=grace)
        await signer.close()

    def register(server: grpc.aio.Server) -> None:
        builder_pb2_grpc.add_BuilderServicer_to_server(BuilderServicer(worker), server)

    await serve(
        service,
        config,
        ServiceParts(
            register=[register],
            service_names=[SERVICE_NAME],
            allow=ALLOW,
            health_checks={"bus": bus_check(bus), "blob store": store_check(artifacts)},
            start=start,
            stop=stop,
            finished=worker.finished,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(
        "builder", DESCRIPTION, BuilderConfig, run, argv, flags={"--arch": "APKFARM_ARCH"}
    )
