"""The builder's gRPC face: a job's live log and what the builder is doing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from apkfarm.services.builder.worker import BuildWorker
from apkfarm.v1 import builder_pb2, builder_pb2_grpc, common_pb2

SERVICE_NAME = "apkfarm.v1.Builder"
ALLOW = {
    f"/{SERVICE_NAME}/TailLog": ("scheduler", "operator", "operator-*"),
    f"/{SERVICE_NAME}/GetStatus": ("scheduler", "operator", "operator-*"),
}


class BuilderServicer(builder_pb2_grpc.BuilderServicer):
    def __init__(self, worker: BuildWorker) -> None:
        self.worker = worker

    async def TailLog(
        self, request: builder_pb2.BuilderTailLogRequest, context: Any
    ) -> AsyncIterator[common_pb2.LogChunk]:
        buffer = self.worker.logs.get(request.job_id)
        if buffer is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"this builder has no log of job {request.job_id!r}"
            )
            return
        end = request.offset
        async for offset, data in buffer.read(request.offset, follow=request.follow):
            yield common_pb2.LogChunk(offset=offset, data=data)
            end = offset + len(data)
        if buffer.closed:
            yield common_pb2.LogChunk(offset=end, end=True)

    async def GetStatus(
        self, request: builder_pb2.GetStatusRequest, context: Any
    ) -> builder_pb2.BuilderStatus:
        worker = self.worker
        status = builder_pb2.BuilderStatus(
            arch=worker.settings.arch,
            identity=worker.settings.identity,
            builds_done=worker.builds_done,
        )
        current = worker.current
        if current is not None:
            status.job_id = current.job_id
            status.template.CopyFrom(current.template)
            status.phase = current.phase
        return status
