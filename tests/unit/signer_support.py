"""A signer with real keys, a token issuer and a local store, for signer tests; and that
signer served over gRPC with mTLS and its allow-list, as the service serves it."""

from __future__ import annotations

from pathlib import Path

from apkfarm.apk.keys import generate_key_pair
from apkfarm.apk.package import build_package
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.audit import AuditLog, read_records
from apkfarm.blobs import LocalBlobStore
from apkfarm.services.common.grpc_server import RunningServer, start_grpc_server
from apkfarm.services.common.jobtokens import (
    TokenIssuer,
    TokenVerifier,
    generate_token_key,
    load_private_key,
    load_public_keys,
)
from apkfarm.services.common.tls import IdentityAllowList, TlsFiles, server_credentials
from apkfarm.services.signer.core import SignerCore
from apkfarm.services.signer.keys import SigningKeys
from apkfarm.services.signer.ledger import TokenLedger
from apkfarm.services.signer.service import ALLOW, SERVICE_NAME, SignerServicer
from apkfarm.v1 import common_pb2, signer_pb2_grpc

TEMPLATE = common_pb2.TemplateRef(category="main", pkgname="greet", version="1.0-r0", arch="x86_64")


class Farm:
    def __init__(self, tmp_path: Path) -> None:
        self.keys_dir = tmp_path / "keys"
        self.keys_dir.mkdir()
        self.old_key = generate_key_pair(self.keys_dir, "farm@example.org", now=0x1000)
        self.new_key = generate_key_pair(self.keys_dir, "farm@example.org", now=0x2000)
        token_key = tmp_path / "jobtoken.key"
        public = generate_token_key(token_key)
        self.issuer = TokenIssuer(load_private_key(token_key), ttl_seconds=600)
        self.store = LocalBlobStore(tmp_path / "store", durable=False)
        self.core = SignerCore(
            SigningKeys(self.keys_dir),
            TokenVerifier(load_public_keys([public])),
            AuditLog(self.store),
            TokenLedger(self.store),
        )
        self.staged = tmp_path / "staged"
        (self.staged / "usr/bin").mkdir(parents=True)
        (self.staged / "usr/bin/greet").write_text("#!/bin/sh\necho hello\n")

    def control(
        self,
        name: str = "greet",
        version: str = "1.0-r0",
        arch: str = "x86_64",
        origin: str = "greet",
        text: str = "hello",
    ) -> bytes:
        (self.staged / "usr/bin/greet").write_text(f"#!/bin/sh\necho {text}\n")
        info = PkgInfo(
            pkgname=name,
            pkgver=version,
            arch=arch,
            origin=origin,
            pkgdesc="Greeting program",
            builddate=1_700_000_000,
        )
        with build_package(self.staged, info) as unsigned:
            return unsigned.control_member

    def token(
        self,
        packages: tuple[str, ...] = ("greet", "greet-doc"),
        template: common_pb2.TemplateRef = TEMPLATE,
    ) -> common_pb2.JobToken:
        return self.issuer.issue("job-1", template, packages, attempt=1)

    def audit(self) -> list[tuple[str, bytes]]:
        return list(read_records(self.store))


async def start_signer_server(farm: Farm, certs: Path) -> RunningServer:
    """``farm``'s signer on a free port of 127.0.0.1, as the identity ``signer`` of
    ``certs``, refusing callers its allow-list does not name."""
    return await start_grpc_server(
        "127.0.0.1:0",
        [lambda s: signer_pb2_grpc.add_SignerServicer_to_server(SignerServicer(farm.core), s)],
        [SERVICE_NAME],
        credentials=server_credentials(TlsFiles.in_directory(certs, "signer")),
        interceptors=[IdentityAllowList(ALLOW)],
    )
