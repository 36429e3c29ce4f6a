"""The scheduler's gRPC face for operators and the CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from apkfarm.blobs import BlobNotFound, BlobStore
from apkfarm.blobs.layout import log_key
from apkfarm.bus import Bus, Delivery, InvalidName
from apkfarm.services.common.tls import TlsFiles, open_channel
from apkfarm.services.scheduler.core import NotFound, SchedulerCore, SchedulerError, build_message
from apkfarm.services.scheduler.requests import (
    InvalidRequest,
    check_listing,
    check_selector,
    check_submission,
)
from apkfarm.services.scheduler.state import BuildRow, State, state_name
from apkfarm.v1 import (
    builder_pb2,
    builder_pb2_grpc,
    bus_pb2,
    common_pb2,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

SERVICE_NAME = "apkfarm.v1.Scheduler"
OPERATORS = ("operator", "operator-*")
ALLOW = {
    f"/{SERVICE_NAME}/{method}": OPERATORS
    for method in (
        "UploadTree",
        "SubmitTree",
        "GetBuild",
        "ListBuilds",
        "Cancel",
        "Retry",
        "Explain",
        "TailLog",
        "WatchEvents",
    )
}
LOG_CHUNK = 64 * 1024


def _problem(problem: Any) -> scheduler_pb2.TemplateProblem:
    return scheduler_pb2.TemplateProblem(
        template=problem.template,
        arch=problem.arch,
        message=problem.message,
        excluded=problem.excluded,
    )


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(
        self,
        core: SchedulerCore,
        bus: Bus,
        artifacts: BlobStore,
        tls: TlsFiles | None,
    ) -> None:
        self.core = core
        self.bus = bus
        self.artifacts = artifacts
        self.tls = tls

    async def _refuse(self, context: grpc.aio.ServicerContext[Any, Any], error: Exception) -> None:
        if isinstance(error, NotFound):
            code = grpc.StatusCode.NOT_FOUND
        elif isinstance(error, InvalidRequest):
            code = grpc.StatusCode.INVALID_ARGUMENT
        else:
            code = grpc.StatusCode.FAILED_PRECONDITION
        await context.abort(code, str(error))

    async def UploadTree(
        self, request_iterator: AsyncIterator[scheduler_pb2.TreeChunk], context: Any
    ) -> scheduler_pb2.UploadTreeResponse:
        iterator = request_iterator.__aiter__()

        async def next_chunk() -> bytes | None:
            try:
                return (await iterator.__anext__()).data
            except StopAsyncIteration:
                return None

        try:
            key, size = await self.core.store_tree(next_chunk)
        except SchedulerError as error:
            await self._refuse(context, error)
        return scheduler_pb2.UploadTreeResponse(
            tree_key=key, sha256=key.removeprefix("trees/").removesuffix(".tar"), size=size
        )

    async def SubmitTree(
        self, request: scheduler_pb2.SubmitTreeRequest, context: Any
    ) -> scheduler_pb2.SubmitTreeResponse:
        try:
            check_submission(
                local_path=request.local_path,
                archs=list(request.archs),
                categories=list(request.categories),
                packages=list(request.packages),
            )
            submission = await self.core.submit(
                local_path=request.local_path,
                tree_key_=request.tree_key,
                archs=list(request.archs),
                categories=list(request.categories),
                packages=list(request.packages),
                rebuild_dependents=request.rebuild_dependents,
            )
        except (SchedulerError, InvalidRequest) as error:
            await self._refuse(context, error)
        return scheduler_pb2.SubmitTreeResponse(
            tree_id=submission.tree_id,
            builds=[build_message(r) for r in submission.builds],
            problems=[_problem(p) for p in submission.problems],
        )

    async def GetBuild(
        self, request: scheduler_pb2.BuildSelector, context: Any
    ) -> common_pb2.Build:
        try:
            check_selector(request.pkgname, request.arch, request.tree_id)
            row = self.core.get(request.pkgname, request.arch, request.tree_id)
        except (SchedulerError, InvalidRequest) as error:
            await self._refuse(context, error)
        return build_message(row)

    async def ListBuilds(
        self, request: scheduler_pb2.ListBuildsRequest, context: Any
    ) -> scheduler_pb2.ListBuildsResponse:
        try:
            check_listing(request.tree_id, request.arch)
        except InvalidRequest as error:
            await self._refuse(context, error)
        tree, rows = self.core.list_builds(request.tree_id, request.arch, list(request.states))
        return scheduler_pb2.ListBuildsResponse(
            tree_id=tree, builds=[build_message(r) for r in rows]
        )

    async def Cancel(self, request: scheduler_pb2.BuildSelector, context: Any) -> common_pb2.Build:
        try:
            check_selector(request.pkgname, request.arch, request.tree_id)
            row = await self.core.cancel(request.pkgname, request.arch, request.tree_id)
        except (SchedulerError, InvalidRequest) as error:
            await self._refuse(context, error)
        return build_message(row)

    async def Retry(self, request: scheduler_pb2.BuildSelector, context: Any) -> common_pb2.Build:
        try:
            check_selector(request.pkgname, request.arch, request.tree_id)
            row = await self.core.retry(request.pkgname, request.arch, request.tree_id)
        except (SchedulerError, InvalidRequest) as error:
            await self._refuse(context, error)
        return build_message(row)

    async def Explain(
        self, request: scheduler_pb2.BuildSelector, context: Any
    ) -> scheduler_pb2.Explanation:
        try:
            check_selector(request.pkgname, request.arch, request.tree_id)
            row, lines = self.core.explain(request.pkgname, request.arch, request.tree_id)
        except (SchedulerError, InvalidRequest) as error:
            await self._refuse(context, error)
        return scheduler_pb2.Explanation(build=build_message(row), lines=lines)

    async def TailLog(
        self, request: scheduler_pb2.TailLogRequest, context: Any
    ) -> AsyncIterator[common_pb2.LogChunk]:
        selector = request.build
        try:
            check_selector(selector.pkgname, selector.arch, selector.tree_id)
            if request.offset < 0:
                raise InvalidRequest("offset: must not be negative")
            row = self.core.get(selector.pkgname, selector.arch, selector.tree_id)
        except (SchedulerError, InvalidRequest) as error:
            await self._refuse(context, error)
            return
        offset = request.offset
        if row.state == State.BUILD_STATE_BUILDING and row.builder_address:
            async for chunk in self._from_builder(row, request.follow, offset):
                offset = chunk.offset + len(chunk.data)
                yield chunk
            row = self.core.get(row.pkgname, row.arch, row.tree_id)
        if not row.job_id:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"{row.pkgname} has no build log yet"
            )
            return
        key = row.log_key or log_key(row.job_id)
        try:
            data = await asyncio.to_thread(
                self.artifacts.get_bytes, key, max_size=256 * 1024 * 1024
            )
        except BlobNotFound:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"{row.pkgname}: no stored log for job {row.job_id} ({state_name(row.state)})",
            )
            return
        for start in range(offset, len(data), LOG_CHUNK):
            yield common_pb2.LogChunk(offset=start, data=data[start : start + LOG_CHUNK])
        yield common_pb2.LogChunk(offset=len(data), end=True)

    async def _from_builder(
        self, row: BuildRow, follow: bool, offset: int
    ) -> AsyncIterator[common_pb2.LogChunk]:
        channel = open_channel(row.builder_address, self.tls, server_identity=f"builder-{row.arch}")
        try:
            stub = builder_pb2_grpc.BuilderStub(channel)
            stream = stub.TailLog(
                builder_pb2.BuilderTailLogRequest(job_id=row.job_id, follow=follow, offset=offset)
            )
            async for chunk in stream:
                if chunk.end:
                    return
                yield chunk
        except grpc.aio.AioRpcError:
            # The builder went away (finished and exited, or died): the stored log takes over.
            return
        finally:
            await channel.close()

    async def WatchEvents(
        self, request: scheduler_pb2.WatchEventsRequest, context: Any
    ) -> AsyncIterator[bus_pb2.Event]:
        queue: asyncio.Queue[bus_pb2.Event] = asyncio.Queue(maxsize=10_000)

        async def forward(delivery: Delivery[bus_pb2.Event]) -> None:
            if queue.full():
                queue.get_nowait()  # a slow watcher loses the oldest, never blocks the farm
            queue.put_nowait(delivery.message)

        if len(request.patterns) > 32:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "patterns: at most 32")
        try:
            subscription = await self.bus.subscribe(
                list(request.patterns) or ["#"], bus_pb2.Event, forward, prefetch=64
            )
        except InvalidName as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        try:
            while True:
                yield await queue.get()
        finally:
            await subscription.stop(0)
