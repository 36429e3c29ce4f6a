"""The signer's gRPC face: identity from mTLS, refusals as PERMISSION_DENIED."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from apkfarm.services.common.tls import peer_identity
from apkfarm.services.signer.core import Signed, SignerCore, SignRefused
from apkfarm.v1 import common_pb2, signer_pb2, signer_pb2_grpc

SERVICE_NAME = "apkfarm.v1.Signer"

# Who may call what (identities are client-certificate common names).
ALLOW = {
    f"/{SERVICE_NAME}/SignPackage": ("builder-*",),
    f"/{SERVICE_NAME}/SignIndex": ("indexer",),
    f"/{SERVICE_NAME}/ListKeys": ("builder-*", "indexer", "scheduler", "fetcher", "operator"),
}


def _response(signed: Signed) -> signer_pb2.SignResponse:
    return signer_pb2.SignResponse(
        signatures=[
            common_pb2.SignatureFile(name=s.name, signature=s.signature) for s in signed.signatures
        ],
        audit_sequence=signed.audit_sequence,
    )


class SignerServicer(signer_pb2_grpc.SignerServicer):
    def __init__(self, core: SignerCore) -> None:
        self.core = core

    async def SignPackage(
        self, request: signer_pb2.SignPackageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> signer_pb2.SignResponse:
        requester = peer_identity(context) or "(no client certificate)"
        try:
            signed = await asyncio.to_thread(
                self.core.sign_package, request.control_member, request.token, requester
            )
        except SignRefused as refusal:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{refusal.reason}: {refusal}")
        return _response(signed)

    async def SignIndex(
        self, request: signer_pb2.SignIndexRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> signer_pb2.SignResponse:
        requester = peer_identity(context) or "(no client certificate)"
        try:
            signed = await asyncio.to_thread(
                self.core.sign_index,
                request.content_member,
                request.category,
                request.arch,
                requester,
            )
        except SignRefused as refusal:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{refusal.reason}: {refusal}")
        return _response(signed)

    async def ListKeys(
        self, request: signer_pb2.ListKeysRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> signer_pb2.ListKeysResponse:
        return signer_pb2.ListKeysResponse(
            keys=[
                common_pb2.PublicKey(name=k.name, pem=k.pem, key_id=k.key_id, active=k.active)
                for k in self.core.public_keys()
            ]
        )
