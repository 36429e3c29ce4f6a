"""The farm's private CA and one mTLS identity per service.

``apkfarm certs init DIR`` writes ``ca.crt`` and, per identity,
``<identity>.crt`` and ``<identity>.key``. The identity is the certificate's
common name (also a ``spiffe://apkfarm/<identity>`` URI SAN); every RPC checks it
against the method's allow-list. Keys are ECDSA P-256: cheap to make and to
handshake, and unrelated to the RSA apk signing keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from apkfarm.errors import ApkfarmError
from apkfarm.services.common.jobtokens import generate_token_key

SERVICE_IDENTITIES = ("scheduler", "fetcher", "signer", "indexer", "operator")
JOB_TOKEN_KEY = "scheduler-jobtoken.key"  # noqa: S105 - a file name
JOB_TOKEN_PUBLIC_KEY = "scheduler-jobtoken.pub"  # noqa: S105 - a file name
DEFAULT_BUILDER_ARCHS = ("x86_64", "aarch64")
_IDENTITY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
CA_NAME = "apkfarm farm CA"


@dataclass(frozen=True)
class IdentityFiles:
    identity: str
    certificate: Path
    key: Path


def builder_identity(arch: str) -> str:
    return f"builder-{arch}"


def identity_dns_names(identity: str, extra: Iterable[str] = ()) -> list[str]:
    """Names a service is reached by in compose and Kubernetes, plus localhost.

    Kubernetes runs the farm in two namespaces: ``apkfarm`` and, for the pods
    that start bwrap (scheduler and builders), ``apkfarm-build``.
    """
    service = identity
    names = [service, f"apkfarm-{service}"]
    for namespace in ("apkfarm", "apkfarm-build"):
        names += [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]
    names.append("localhost")
    names.extend(extra)
    return list(dict.fromkeys(names))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ApkfarmError(f"{directory / 'ca.key'}: not an EC private key")
    return cert, key


def _create_ca(directory: Path, days: int) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        # Key identifiers: strict X.509 verification (Python >= 3.13, OpenSSL) wants them.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / "ca.key", _key_pem(key))
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def issue_identity(
    directory: Path,
    identity: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    days: int,
    extra_dns: Iterable[str] = (),
) -> IdentityFiles:
    if not _IDENTITY.match(identity):
        raise ApkfarmError(f"identity {identity!r}: use lowercase letters, digits, '-' and '_'")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    san: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(f"spiffe://apkfarm/{identity}"),
        *(x509.DNSName(name) for name in identity_dns_names(identity, extra_dns)),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = IdentityFiles(identity, directory / f"{identity}.crt", directory / f"{identity}.key")
    _write_private(files.key, _key_pem(key))
    files.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def init_certs(
    directory: Path,
    *,
    builder_archs: Sequence[str] = DEFAULT_BUILDER_ARCHS,
    extra_identities: Sequence[str] = (),
    extra_dns: Iterable[str] = (),
    days: int = 825,
) -> list[IdentityFiles]:
    """Create the CA (or reuse the one in ``directory``) and every identity's files."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.crt").exists() and (directory / "ca.key").exists():
        ca_cert, ca_key = _load_ca(directory)
    else:
        ca_cert, ca_key = _create_ca(directory, days)
    identities = [
        *SERVICE_IDENTITIES,
        *(builder_identity(arch) for arch in builder_archs),
        *extra_identities,
    ]
    extra = list(extra_dns)
    issued = [
        issue_identity(directory, identity, ca_cert, ca_key, days=days, extra_dns=extra)
        for identity in dict.fromkeys(identities)
    ]
    # The scheduler's job-token key pair (Ed25519, not a TLS or apk key) belongs to
    # the same bootstrap: the scheduler gets the private half, the signer the public.
    token_key = directory / JOB_TOKEN_KEY
    if not token_key.exists():
        generate_token_key(token_key)
    return issued


def certificate_identity(pem: bytes) -> str:
    """The identity (common name) a certificate carries."""
    cert = x509.load_pem_x509_certificate(pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ApkfarmError("certificate has no common name")
    value = names[0].value
    return value if isinstance(value, str) else value.decode()
