"""Job tokens: what a build job may get signed, signed by the scheduler with Ed25519.

The scheduler issues one token per dispatch attempt; the signer verifies the
token's signature over the exact bytes it received before parsing them, then
checks expiry. What the token allows is matched against the package's own
``.PKGINFO`` by the signer's policy. The Ed25519 key is the scheduler's, not an
apk key: a stolen token key lets an attacker mint tokens, but the signer still
refuses anything it has seen signed before, and the audit log records it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from google.protobuf.message import DecodeError

from apkfarm.errors import ApkfarmError
from apkfarm.v1 import common_pb2

DEFAULT_TOKEN_TTL_SECONDS = 24 * 3600
MAX_GRANT_BYTES = 16 * 1024


class TokenRefused(ApkfarmError):
    """A job token that must not be honoured; ``reason`` is a short metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_token_key(private_path: Path) -> Path:
    """Write a new Ed25519 key (PEM, mode 0600) and its public half beside it (``.pub``)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path = private_path.with_suffix(".pub")
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise ApkfarmError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ApkfarmError(f"{path}: job tokens need an Ed25519 key")
    return key


def load_public_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys from files, or from ``*.pub`` files in directories, by key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        files = sorted(path.glob("*.pub")) if path.is_dir() else [path]
        for file in files:
            try:
                key = serialization.load_pem_public_key(file.read_bytes())
            except ValueError:
                raise ApkfarmError(f"{file}: not a PEM public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise ApkfarmError(f"{file}: not an Ed25519 public key")
            keys[key_id(key)] = key
    return keys


@dataclass
class TokenIssuer:
    private_key: Ed25519PrivateKey
    ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS

    def issue(
        self,
        job_id: str,
        template: common_pb2.TemplateRef,
        packages: Sequence[str],
        attempt: int,
        *,
        now: float | None = None,
    ) -> common_pb2.JobToken:
        issued_at = time.time() if now is None else now
        grant = common_pb2.JobGrant(
            job_id=job_id,
            token_id=secrets.token_hex(16),
            template=template,
            packages=list(packages),
            expires_at=int(issued_at + self.ttl_seconds),
            attempt=attempt,
        )
        payload = grant.SerializeToString(deterministic=True)
        return common_pb2.JobToken(
            grant=payload,
            signature=self.private_key.sign(payload),
            key_id=key_id(self.private_key.public_key()),
        )


@dataclass
class TokenVerifier:
    public_keys: dict[str, Ed25519PublicKey]

    def verify(
        self, token: common_pb2.JobToken, *, now: float | None = None
    ) -> common_pb2.JobGrant:
        """The grant a genuine, unexpired token carries; :class:`TokenRefused` otherwise."""
        if not token.grant or not token.signature:
            raise TokenRefused("missing_token", "no job token in the request")
        if len(token.grant) > MAX_GRANT_BYTES:
            raise TokenRefused("malformed_token", "job token grant is oversized")
        key = self.public_keys.get(token.key_id)
        if key is None:
            raise TokenRefused(
                "unknown_token_key", f"job token signed by unknown key {token.key_id!r}"
            )
        try:
            key.verify(token.signature, token.grant)
        except InvalidSignature:
            raise TokenRefused("forged_token", "job token signature does not verify") from None
        grant = common_pb2.JobGrant()
        try:
            grant.ParseFromString(token.grant)
        except DecodeError:
            raise TokenRefused("malformed_token", "job token grant does not parse") from None
        current = time.time() if now is None else now
        if grant.expires_at <= current:
            raise TokenRefused(
                "expired_token", f"job token for job {grant.job_id} expired at {grant.expires_at}"
            )
        return grant
