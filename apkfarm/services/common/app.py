"""How a service process runs: config, logs, metrics, gRPC (mTLS), health, signals.

Each service supplies what is its own — servicers, an allow-list, dependency
checks, and start/stop coroutines for its consumers — and :func:`serve` does
the rest the same way for all five.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from apkfarm.blobs import BlobStore
from apkfarm.bus import Bus
from apkfarm.errors import ApkfarmError
from apkfarm.services.common.config import (
    config_help,
    describe_config,
    load_config,
    setting,
)
from apkfarm.services.common.grpc_server import HealthCheck, HealthTracker, start_grpc_server
from apkfarm.services.common.lifecycle import stop_event_on_signals
from apkfarm.services.common.logs import get_logger, setup_logging
from apkfarm.services.common.metrics import start_metrics_server
from apkfarm.services.common.tls import IdentityAllowList, TlsFiles, server_credentials

log = get_logger(__name__)


@dataclass(frozen=True)
class CommonConfig:
    """Settings every service has."""

    grpc_listen: str = setting("APKFARM_GRPC_LISTEN", "127.0.0.1:50051", "gRPC address (mTLS)")
    health_listen: str = setting(
        "APKFARM_HEALTH_LISTEN", "127.0.0.1:50052", "plaintext gRPC health-only address for probes"
    )
    metrics_listen: str = setting(
        "APKFARM_METRICS_LISTEN", "127.0.0.1:9100", "Prometheus /metrics address"
    )
    log_level: str = setting("APKFARM_LOG_LEVEL", "info", "debug, info, warning or error")
    identity: str = setting(
        "APKFARM_IDENTITY", "", "this service's mTLS identity (default: the service name)"
    )
    tls_dir: Path | None = setting(
        "APKFARM_TLS_DIR", None, "directory with ca.crt, <identity>.crt and <identity>.key"
    )
    insecure_no_tls: bool = setting(
        "APKFARM_INSECURE_NO_TLS",
        False,
        "serve and call gRPC without TLS; an amqps:// URL then trusts the system CAs (tests only)",
    )
    shutdown_grace: float = setting(
        "APKFARM_SHUTDOWN_GRACE", 30.0, "seconds to finish work after SIGTERM"
    )


@dataclass(frozen=True)
class BusConfig:
    amqp_url: str = setting(
        "APKFARM_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/",
        "RabbitMQ URL; amqps://USER:PASSWORD@HOST:5671/ for TLS: the broker's certificate "
        "must come from the farm CA in APKFARM_TLS_DIR and name HOST, and the service "
        "presents its own certificate",
        secret=True,
    )
    max_deliveries: int = setting(
        "APKFARM_MAX_DELIVERIES", 5, "deliveries of one message before it is dead-lettered"
    )


@dataclass(frozen=True)
class StoreConfig:
    s3_endpoint: str = setting("APKFARM_S3_ENDPOINT", "127.0.0.1:9000", "S3 endpoint host:port")
    s3_access_key: str = setting("APKFARM_S3_ACCESS_KEY", "", "S3 access key", secret=True)
    s3_secret_key: str = setting("APKFARM_S3_SECRET_KEY", "", "S3 secret key", secret=True)
    s3_bucket: str = setting("APKFARM_S3_BUCKET", "apkfarm", "S3 bucket")
    s3_secure: bool = setting("APKFARM_S3_SECURE", False, "use HTTPS for S3")
    s3_region: str = setting("APKFARM_S3_REGION", "", "S3 region (empty: the server's default)")


def identity_of(config: CommonConfig, service: str) -> str:
    return config.identity or service


def tls_files(config: CommonConfig, service: str) -> TlsFiles | None:
    """The service's mTLS files; None only when TLS was explicitly switched off."""
    if config.insecure_no_tls:
        return None
    if config.tls_dir is None:
        raise ApkfarmError(
            "APKFARM_TLS_DIR is not set: services talk mTLS (create certificates with "
            "`apkfarm certs init DIR`), or set APKFARM_INSECURE_NO_TLS=true for a test"
        )
    return TlsFiles.in_directory(config.tls_dir, identity_of(config, service))


def amqps_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS client context for the broker: trusts only the farm CA, presents the service's
    certificate, TLS 1.2 or newer, and checks the broker's certificate names the host dialled."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(files.ca))
        context.load_cert_chain(files.certificate, files.key)
    except OSError as exc:  # ssl.SSLError included
        raise ApkfarmError(
            f"TLS for RabbitMQ: cannot load {files.ca}, {files.certificate} or {files.key}: {exc}"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def open_bus(config: BusConfig, name: str, tls: TlsFiles | None) -> Bus:
    """The farm's bus. An ``amqps://`` URL with ``tls`` (the service's mTLS files) trusts
    only the farm CA and presents the service's certificate; without ``tls`` (TLS switched
    off for tests) an ``amqps://`` URL falls back to the system's trust store."""
    from apkfarm.bus.rabbit import RabbitBus  # noqa: PLC0415 - aio-pika only where needed

    secure = config.amqp_url.lower().startswith("amqps://")
    return RabbitBus(
        config.amqp_url,
        max_deliveries=config.max_deliveries,
        connection_name=name,
        ssl_context=amqps_context(tls) if secure and tls is not None else None,
    )


# The public repository lives under this prefix of the farm's bucket; code
# that publishes or reads it addresses keys as <category>/<arch>/<file>.
REPOSITORY_PREFIX = "repo/"


def open_store(config: StoreConfig, *, prefix: str = "") -> BlobStore:
    """The farm's bucket, or with ``prefix`` (e.g. REPOSITORY_PREFIX) one part of it."""
    from apkfarm.blobs.s3 import S3BlobStore  # noqa: PLC0415 - minio only where needed

    return S3BlobStore(
        config.s3_endpoint,
        config.s3_access_key,
        config.s3_secret_key,
        config.s3_bucket,
        secure=config.s3_secure,
        region=config.s3_region or None,
        prefix=prefix,
    )


def bus_check(bus: Bus) -> HealthCheck:
    """Healthy while the broker connection is up."""

    async def check() -> bool:
        return bus.healthy

    return check


def store_check(store: BlobStore) -> HealthCheck:
    """Healthy while the blob store answers a real request."""

    async def check() -> bool:
        await asyncio.to_thread(store.check)
        return True

    return check


@dataclass
class ServiceParts:
    """What a service contributes to :func:`serve`."""

    register: Sequence[Callable[[grpc.aio.Server], None]]
    service_names: Sequence[str]
    allow: Mapping[str, Sequence[str]]
    health_checks: dict[str, HealthCheck]
    start: Callable[[], Awaitable[None]]
    # Called with the grace period after SIGTERM: finish or hand back work.
    stop: Callable[[float], Awaitable[None]]
    # Set by the service itself when it is done (a one-job builder pod): a clean exit.
    finished: asyncio.Event | None = None


async def serve(service: str, config: CommonConfig, parts: ServiceParts) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    files = tls_files(config, service)
    metrics_port = start_metrics_server(config.metrics_listen)
    server = await start_grpc_server(
        config.grpc_listen,
        parts.register,
        parts.service_names,
        credentials=server_credentials(files) if files else None,
        interceptors=[IdentityAllowList(parts.allow)] if files else [],
        health_listen=config.health_listen,
    )
    log.info(
        "listening",
        grpc_port=server.port,
        health_port=server.health_port,
        metrics_port=metrics_port,
        tls=files is not None,
    )
    stop = stop_event_on_signals()
    await parts.start()
    tracker = HealthTracker(server, parts.health_checks)
    await tracker.check_once()
    tracker.start()
    waits = [asyncio.create_task(stop.wait())]
    if parts.finished is not None:
        waits.append(asyncio.create_task(parts.finished.wait()))
    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    reason = "signal" if stop.is_set() else "finished its work"
    log.info("stopping", reason=reason, grace=config.shutdown_grace)
    await tracker.stop()
    await server.set_serving(False)
    await parts.stop(config.shutdown_grace)
    await server.stop(grace=min(config.shutdown_grace, 5.0))
    log.info("stopped")


def service_main[C](
    service: str,
    description: str,
    config_type: type[C],
    run: Callable[[C], Coroutine[Any, Any, None]],
    argv: Sequence[str] | None = None,
    *,
    flags: Mapping[str, str] | None = None,
) -> int:
    """The console-script entry point every service shares.

    ``flags`` maps command-line options to settings (``{"--arch": "APKFARM_ARCH"}``);
    an option given on the command line wins over the environment.
    """
    parser = argparse.ArgumentParser(
        prog=f"apkfarm-{service}",
        description=description,
        epilog=config_help(config_type),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the effective configuration (secrets masked) and exit",
    )
    helps = {
        f.metadata.get("env"): f.metadata.get("help", "")
        for f in dataclasses.fields(config_type)  # type: ignore[arg-type]
    }
    for flag, env in (flags or {}).items():
        parser.add_argument(
            flag, dest=env, metavar="VALUE", help=f"{helps.get(env, '')} (or {env})"
        )
    args = parser.parse_args(argv)
    environ = dict(os.environ)
    for env in (flags or {}).values():
        value = getattr(args, env)
        if value is not None:
            environ[env] = value
    try:
        config = load_config(config_type, environ)
    except ApkfarmError as error:
        print(f"apkfarm-{service}: error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        for env, value in describe_config(config).items():
            print(f"{env}={value}")
        return 0
    level = getattr(config, "log_level", "info")
    setup_logging(service, level)
    log.info("starting", config=describe_config(config))
    try:
        asyncio.run(run(config))
    except ApkfarmError as error:
        log.error("cannot run", error=str(error))
        return 1
    return 0
