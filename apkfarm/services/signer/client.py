"""How builders and the indexer ask for signatures: over gRPC, or in-process.

Both implementations raise :class:`SigningRefused` when the signer said no
(a build or index problem, not worth retrying) and :class:`SignerUnavailable`
when it could not be reached (retry later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import grpc
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from apkfarm.apk.keys import Keyring
from apkfarm.apk.signing import SignatureFile
from apkfarm.errors import ApkfarmError
from apkfarm.services.common.tls import TlsFiles, open_channel
from apkfarm.services.signer.core import Signed, SignerCore, SignRefused
from apkfarm.v1 import common_pb2, signer_pb2, signer_pb2_grpc

RPC_TIMEOUT_SECONDS = 60.0


class SigningRefused(ApkfarmError):
    """The signer refused; ``reason`` is its refusal code (``replayed_token``, ...)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


def _refusal_reason(details: str | None) -> str:
    """The refusal code the signer puts before the first colon of its error details."""
    code, sep, _rest = (details or "").partition(":")
    return code.strip() if sep and code.strip().isidentifier() else ""


class SignerUnavailable(ApkfarmError):
    """The signer could not be reached; the request may be retried later."""


class SignerClient(Protocol):
    async def sign_package(
        self, control_member: bytes, token: common_pb2.JobToken
    ) -> list[SignatureFile]: ...

    async def sign_index(
        self, content_member: bytes, category: str, arch: str
    ) -> list[SignatureFile]: ...

    async def public_keys(self) -> Keyring:
        """Every published key (active and retired), for verifying what the farm signed."""
        ...


class LocalSignerClient:
    """The embedded mode's signer: the same core, called in-process."""

    def __init__(self, core: SignerCore, identity: str) -> None:
        self.core = core
        self.identity = identity

    async def sign_package(
        self, control_member: bytes, token: common_pb2.JobToken
    ) -> list[SignatureFile]:
        return await self._sign(
            lambda: self.core.sign_package(control_member, token, self.identity)
        )

    async def sign_index(
        self, content_member: bytes, category: str, arch: str
    ) -> list[SignatureFile]:
        return await self._sign(
            lambda: self.core.sign_index(content_member, category, arch, self.identity)
        )

    @staticmethod
    async def _sign(sign: Callable[[], Signed]) -> list[SignatureFile]:
        try:
            signed = await asyncio.to_thread(sign)
        except SignRefused as refusal:
            raise SigningRefused(
                f"signer refused: {refusal.reason}: {refusal}", refusal.reason
            ) from None
        return list(signed.signatures)

    async def public_keys(self) -> Keyring:
        return Keyring.from_pem({key.name: key.pem.encode() for key in self.core.public_keys()})


class GrpcSignerClient:
    """The signer service over mTLS; transient failures are retried a few times."""

    def __init__(
        self,
        address: str,
        tls: TlsFiles | None,
        *,
        attempts: int = 4,
        server_identity: str | None = "signer",
    ) -> None:
        self.address = address
        # The signer must prove it is the signer, whatever address reached it.
        self._channel = open_channel(
            address, tls, server_identity=server_identity, max_message_bytes=16 * 1024 * 1024
        )
        self._stub = signer_pb2_grpc.SignerStub(self._channel)
        self._attempts = attempts

    async def close(self) -> None:
        await self._channel.close()

    async def _call[R](self, what: str, call: Callable[[], Awaitable[R]]) -> R:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=0.5, max=8),
            retry=retry_if_exception_type(SignerUnavailable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                try:
                    return await call()
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                        raise SigningRefused(
                            f"signer refused: {error.details()}", _refusal_reason(error.details())
                        ) from None
                    if error.code() in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                    ):
                        raise SignerUnavailable(
                            f"signer at {self.address} unavailable for {what}: {error.details()}"
                        ) from None
                    raise SigningRefused(
                        f"signer failed {what}: {error.code().name}: {error.details()}"
                    ) from None
        raise AssertionError("unreachable: tenacity reraises")

    async def sign_package(
        self, control_member: bytes, token: common_pb2.JobToken
    ) -> list[SignatureFile]:
        request = signer_pb2.SignPackageRequest(control_member=control_member, token=token)
        response: signer_pb2.SignResponse = await self._call(
            "a package signature",
            lambda: self._stub.SignPackage(request, timeout=RPC_TIMEOUT_SECONDS),
        )
        return [SignatureFile(s.name, s.signature) for s in response.signatures]

    async def sign_index(
        self, content_member: bytes, category: str, arch: str
    ) -> list[SignatureFile]:
        request = signer_pb2.SignIndexRequest(
            content_member=content_member, category=category, arch=arch
        )
        response: signer_pb2.SignResponse = await self._call(
            "an index signature",
            lambda: self._stub.SignIndex(request, timeout=RPC_TIMEOUT_SECONDS),
        )
        return [SignatureFile(s.name, s.signature) for s in response.signatures]

    async def public_keys(self) -> Keyring:
        response: signer_pb2.ListKeysResponse = await self._call(
            "the public keys",
            lambda: self._stub.ListKeys(signer_pb2.ListKeysRequest(), timeout=RPC_TIMEOUT_SECONDS),
        )
        return Keyring.from_pem({key.name: key.pem.encode() for key in response.keys})
