"""The gRPC server every service runs: its own servicers plus health and reflection.

Health is not a constant: :class:`HealthTracker` re-checks the service's real
dependencies (broker connection, blob store, keys) and flips the standard
health service between SERVING and NOT_SERVING, so Kubernetes probes and
compose healthchecks see the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from apkfarm.services.common.logs import get_logger

log = get_logger(__name__)

# A health service name that answers SERVING while the process runs at all:
# liveness probes ask for it, so a broker outage makes a pod unready rather
# than restarting it.
LIVENESS_SERVICE = "liveness"

# Big enough for a control member or an index content member, small enough
# that a hostile client cannot make a service buffer gigabytes.
DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024

HealthCheck = Callable[[], Awaitable[bool]]


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    service_names: tuple[str, ...]
    # Plaintext, health-only: Kubernetes gRPC probes cannot present client certificates.
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)


async def start_grpc_server(
    listen: str,
    register: Sequence[Callable[[grpc.aio.Server], None]],
    service_names: Sequence[str],
    *,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    health_listen: str | None = None,
) -> RunningServer:
    """Start a server on ``listen`` ("host:port", port 0 picks a free one).

    With ``health_listen`` a second, plaintext server answers only the health
    service, sharing the status of the main one.
    """
    server = grpc.aio.server(
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    for add in register:
        add(server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (
            *service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if credentials is None:
        port = server.add_insecure_port(listen)
    else:
        port = server.add_secure_port(listen, credentials)
    await server.start()
    running = RunningServer(server, port, health, tuple(service_names))
    await health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    if health_listen is not None:
        running.health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(health, running.health_server)
        running.health_port = running.health_server.add_insecure_port(health_listen)
        await running.health_server.start()
    # Not serving until the first dependency check passes.
    await running.set_serving(False)
    return running


@dataclass
class HealthTracker:
    """Periodically runs dependency checks and publishes the result as gRPC health."""

    server: RunningServer
    checks: dict[str, HealthCheck]
    interval: float = 5.0
    failing: set[str] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None

    async def check_once(self) -> bool:
        failing: set[str] = set()
        for name, check in self.checks.items():
            try:
                ok = await asyncio.wait_for(check(), timeout=self.interval)
            except Exception:  # any failure of a dependency check means not serving
                ok = False
            if not ok:
                failing.add(name)
        if failing != self.failing:
            if failing:
                log.warning("not serving", failing=sorted(failing))
            else:
                log.info("serving", checks=sorted(self.checks))
        self.failing = failing
        await self.server.set_serving(not failing)
        return not failing

    async def _run(self) -> None:
        while True:
            await self.check_once()
            # The period between checks, not a wait standing in for readiness.
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health-tracker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
