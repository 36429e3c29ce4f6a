"""mTLS for gRPC and the per-method identity allow-list.

Every service presents ``<identity>.crt`` signed by the farm CA and requires
the same of its callers. The caller's identity is the certificate's common
name; :class:`IdentityAllowList` refuses any call whose identity the method's
rule does not name, before the servicer runs.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import Counter

from apkfarm.errors import ApkfarmError
from apkfarm.services.common.logs import get_logger

log = get_logger(__name__)

RPC_DENIED = Counter(
    "apkfarm_rpc_denied_total",
    "RPCs refused because the caller's identity is not allowed to call the method",
    ["method"],
)

# Health checks and reflection answer any caller that passed the TLS handshake.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    certificate: Path
    key: Path

    @classmethod
    def in_directory(cls, directory: Path, identity: str) -> TlsFiles:
        files = cls(
            directory / "ca.crt", directory / f"{identity}.crt", directory / f"{identity}.key"
        )
        for path in (files.ca, files.certificate, files.key):
            if not path.is_file():
                raise ApkfarmError(
                    f"TLS: {path} is missing (create it with `apkfarm certs init {directory}`)"
                )
        return files


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(files.key.read_bytes(), files.certificate.read_bytes())],
        root_certificates=files.ca.read_bytes(),
        require_client_auth=True,
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key.read_bytes(),
        certificate_chain=files.certificate.read_bytes(),
    )


def open_channel(
    address: str,
    files: TlsFiles | None,
    *,
    server_identity: str | None = None,
    max_message_bytes: int = 8 * 1024 * 1024,
) -> grpc.aio.Channel:
    """An aio channel to ``address``: mTLS with ``files``, plaintext when ``None``.

    With ``server_identity`` the server's certificate must name that identity
    whatever address was dialled — the scheduler reaches builders by pod IP,
    which no certificate names.
    """
    options: list[tuple[str, str | int]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    if files is not None and server_identity is not None:
        options.append(("grpc.ssl_target_name_override", server_identity))
    if files is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, channel_credentials(files), options=options)


def peer_identity(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The caller's identity from its client certificate, or None without TLS."""
    names = list(context.auth_context().get("x509_common_name", ()))
    if not names:
        return None
    return names[0].decode("utf-8", "replace")


Handler = Callable[..., Any]
# The stubs make RpcMethodHandler generic; at run time it is a plain class,
# so the alias must stay lazy.
type MethodHandler = grpc.RpcMethodHandler[Any, Any]


class IdentityAllowList(grpc.aio.ServerInterceptor):
    """Refuse calls whose caller identity the method's rule does not allow.

    ``rules`` maps full method names ("/apkfarm.v1.Signer/SignIndex") to
    identity patterns ("indexer", "builder-*"). Methods without a rule are
    refused: a new RPC is closed until someone decides who may call it.
    """

    def __init__(self, rules: Mapping[str, Sequence[str]]) -> None:
        self.rules = {method: tuple(patterns) for method, patterns in rules.items()}

    def allowed(self, method: str, identity: str | None) -> bool:
        if method.startswith(OPEN_METHOD_PREFIXES):
            return True
        patterns = self.rules.get(method, ())
        return identity is not None and any(fnmatch.fnmatchcase(identity, p) for p in patterns)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[MethodHandler | None]],
        details: grpc.HandlerCallDetails,
    ) -> MethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        return _wrap_handler(handler, lambda identity: self.allowed(method, identity), method)


def _wrap_handler(
    handler: MethodHandler, allowed: Callable[[str | None], bool], method: str
) -> MethodHandler:
    async def refuse(context: grpc.aio.ServicerContext[Any, Any]) -> None:
        identity = peer_identity(context)
        RPC_DENIED.labels(method=method).inc()
        log.warning("rpc refused", method=method, identity=identity)
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"identity {identity or '(none)'} may not call {method}",
        )

    def guard_unary(behaviour: Handler) -> Handler:
        async def guarded(request: Any, context: Any) -> Any:
            if not allowed(peer_identity(context)):
                await refuse(context)
            return await behaviour(request, context)

        return guarded

    def guard_streaming(behaviour: Handler) -> Handler:
        async def guarded(request: Any, context: Any) -> Any:
            if not allowed(peer_identity(context)):
                await refuse(context)
            async for item in behaviour(request, context):
                yield item

        return guarded

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            guard_unary(handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            guard_streaming(handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            guard_unary(handler.stream_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    assert handler.stream_stream is not None  # one of the four kinds is always set
    return grpc.stream_stream_rpc_method_handler(
        guard_streaming(handler.stream_stream),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
