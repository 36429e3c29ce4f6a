"""The indexer's gRPC side: ``apkfarm.v1.Indexer/ListRepositories``, and its part of ``serve()``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from apkfarm.services.common.app import ServiceParts, bus_check, store_check
from apkfarm.services.indexer.core import Indexer
from apkfarm.v1 import indexer_pb2, indexer_pb2_grpc

SERVICE_NAME = "apkfarm.v1.Indexer"
LIST_METHOD = f"/{SERVICE_NAME}/ListRepositories"
# Operators look at the repositories; the scheduler compares them with its plans.
ALLOW: Mapping[str, Sequence[str]] = {LIST_METHOD: ("operator", "scheduler")}


class IndexerServicer(indexer_pb2_grpc.IndexerServicer):
    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    async def ListRepositories(
        self,
        request: indexer_pb2.ListRepositoriesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> indexer_pb2.ListRepositoriesResponse:
        response = indexer_pb2.ListRepositoriesResponse()
        for repo in await self.indexer.repositories():
            published_at = Timestamp()
            published_at.FromNanoseconds(int(repo.published_at * 1e9))
            response.repositories.append(
                indexer_pb2.Repository(
                    category=repo.category,
                    arch=repo.arch,
                    generation=repo.generation,
                    package_count=repo.package_count,
                    index_key=repo.index_key,
                    published_at=published_at,
                )
            )
        return response


def service_parts(indexer: Indexer) -> ServiceParts:
    """Servicer, allow-list, health checks and the consumer's life cycle for ``serve()``."""
    servicer = IndexerServicer(indexer)

    async def signer_healthy() -> bool:
        # ListKeys: the signer answers, and this service may talk to it.
        await indexer.signer.public_keys()
        return True

    async def start() -> None:
        await indexer.bus.start()
        await indexer.start()

    async def stop(grace: float) -> None:
        await indexer.stop(grace)

    return ServiceParts(
        register=[lambda server: indexer_pb2_grpc.add_IndexerServicer_to_server(servicer, server)],
        service_names=[SERVICE_NAME],
        allow=ALLOW,
        health_checks={
            "bus": bus_check(indexer.bus),
            "artifacts store": store_check(indexer.artifacts),
            "repository store": store_check(indexer.repository),
            "signer": signer_healthy,
        },
        start=start,
        stop=stop,
    )
