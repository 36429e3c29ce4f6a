"""Signatures: the ``Signer`` protocol, the local-key signer and signature verification.

A v2 signature is a file named ``.SIGN.<TYPE>.<keyname>`` holding a raw RSA
PKCS#1 v1.5 signature of the digest of the exact compressed bytes of the
member that follows (the control member of a package, the content member of
an index). ``<keyname>`` is the public key's file name as a client installs
it in ``/etc/apk/keys``. Producing a package never needs the private key:
the writer hands the compressed control member to a ``Signer`` and gets a
``SignatureFile`` back, so the key can live in another process or service.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

from apkfarm.apk.errors import ApkSignatureError
from apkfarm.apk.keys import load_private_key, public_key_name

SIGNATURE_PREFIX = ".SIGN."


class SignatureAlgorithm(enum.Enum):
    """Signature types apk reads; the value is the type in the file name."""

    RSA = "RSA"  # SHA-1: still read everywhere, never the default for new signatures
    RSA256 = "RSA256"
    RSA512 = "RSA512"

    @property
    def hash_name(self) -> str:
        return {"RSA": "sha1", "RSA256": "sha256", "RSA512": "sha512"}[self.value]

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        if self is SignatureAlgorithm.RSA:
            return hashes.SHA1()  # noqa: S303 - apk's RSA signature type is SHA-1
        if self is SignatureAlgorithm.RSA256:
            return hashes.SHA256()
        return hashes.SHA512()

    def new_hash(self) -> hashlib._Hash:
        return hashlib.new(self.hash_name)


DEFAULT_ALGORITHM = SignatureAlgorithm.RSA256


def signature_file_name(algorithm: SignatureAlgorithm, key_name: str) -> str:
    """``.SIGN.RSA256.<key_name>``: the name of the signature file inside the tar."""
    if not key_name or "/" in key_name or "\x00" in key_name:
        raise ApkSignatureError(f"invalid key name {key_name!r}")
    return f"{SIGNATURE_PREFIX}{algorithm.value}.{key_name}"


def parse_signature_name(name: str) -> tuple[SignatureAlgorithm, str]:
    """Split ``.SIGN.<TYPE>.<keyname>``; an unknown type is an ``ApkSignatureError``."""
    if not name.startswith(SIGNATURE_PREFIX):
        raise ApkSignatureError(f"{name}: not a signature file name")
    kind, sep, key_name = name[len(SIGNATURE_PREFIX) :].partition(".")
    if not sep or not key_name:
        raise ApkSignatureError(f"{name}: signature file name has no key name")
    try:
        return SignatureAlgorithm(kind), key_name
    except ValueError:
        raise ApkSignatureError(f"{name}: unknown signature type {kind!r}") from None


@dataclass(frozen=True)
class SignatureFile:
    """One signature file: its tar name and the raw signature bytes."""

    name: str
    signature: bytes

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return parse_signature_name(self.name)[0]

    @property
    def key_name(self) -> str:
        return parse_signature_name(self.name)[1]


class Signer(Protocol):
    """Something that signs a member's compressed bytes (a local key, the signer service)."""

    def sign(self, member: bytes) -> SignatureFile: ...


def sign_digest(
    private_key: rsa.RSAPrivateKey, algorithm: SignatureAlgorithm, digest: bytes
) -> bytes:
    """RSA PKCS#1 v1.5 over an already computed digest."""
    return private_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm.hash_algorithm()))


def verify_digest(
    public_key: rsa.RSAPublicKey,
    algorithm: SignatureAlgorithm,
    signature: bytes,
    digest: bytes,
) -> bool:
    """True when ``signature`` is the key's PKCS#1 v1.5 signature of ``digest``."""
    try:
        public_key.verify(
            signature, digest, padding.PKCS1v15(), utils.Prehashed(algorithm.hash_algorithm())
        )
    except InvalidSignature:
        return False
    return True


class LocalKeySigner:
    """Signs with a PEM private key file read into this process (embedded mode, tests, CLI)."""

    def __init__(
        self,
        private_key_path: Path,
        *,
        algorithm: SignatureAlgorithm = DEFAULT_ALGORITHM,
        key_name: str | None = None,
    ) -> None:
        self._key = load_private_key(private_key_path)
        self.algorithm = algorithm
        self.key_name = key_name or public_key_name(private_key_path)
        self._file_name = signature_file_name(algorithm, self.key_name)

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def sign(self, member: bytes) -> SignatureFile:
        digest = hashlib.new(self.algorithm.hash_name, member).digest()
        return SignatureFile(self._file_name, sign_digest(self._key, self.algorithm, digest))
