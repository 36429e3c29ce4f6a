"""``apkfarm-signer``: the only process that holds the farm's apk private keys."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from apkfarm.audit import AuditLog
from apkfarm.services.common.app import (
    CommonConfig,
    ServiceParts,
    StoreConfig,
    open_store,
    serve,
    service_main,
    store_check,
)
from apkfarm.services.common.config import setting
from apkfarm.services.common.jobtokens import TokenVerifier, load_public_keys
from apkfarm.services.common.logs import get_logger
from apkfarm.services.signer.core import SignerCore
from apkfarm.services.signer.hardening import disable_core_dumps
from apkfarm.services.signer.keys import SigningKeys
from apkfarm.services.signer.ledger import TokenLedger
from apkfarm.services.signer.service import ALLOW, SERVICE_NAME, SignerServicer
from apkfarm.v1 import signer_pb2_grpc

log = get_logger(__name__)

DESCRIPTION = """\
The farm's signer: signs a package's control member for builders that present
a job token from the scheduler, and an index's content member for the indexer;
records every signature and refusal in a hash-chained audit log in S3. It is
the only process that loads the apk private keys; it opens no port but its
gRPC (mTLS) and metrics endpoints and needs no message broker."""


@dataclass(frozen=True)
class SignerConfig(CommonConfig, StoreConfig):
    keys_dir: Path = setting(
        "APKFARM_KEYS_DIR",
        Path("/run/secrets/apkfarm-keys"),
        "active keys <name>.rsa (mode 0600, owned by this user) and retired/<name>.rsa.pub",
    )
    scheduler_public_keys: tuple[str, ...] = setting(
        "APKFARM_SCHEDULER_PUBLIC_KEYS",
        (),
        "files or directories of the scheduler's Ed25519 job-token public keys",
    )


def build_core(config: SignerConfig) -> SignerCore:
    keys = SigningKeys(config.keys_dir)
    verifier = TokenVerifier(load_public_keys(Path(p) for p in config.scheduler_public_keys))
    store = open_store(config)
    return SignerCore(keys, verifier, AuditLog(store), TokenLedger(store))


async def run(config: SignerConfig) -> None:
    disable_core_dumps()
    core = await asyncio.to_thread(build_core, config)
    log.info("keys loaded", active=[s.key_name for s in core.keys.active])
    store = core.audit.store

    async def nothing() -> None:
        return None

    async def stop(grace: float) -> None:
        return None

    def register(server: grpc.aio.Server) -> None:
        signer_pb2_grpc.add_SignerServicer_to_server(SignerServicer(core), server)

    await serve(
        "signer",
        config,
        ServiceParts(
            register=[register],
            service_names=[SERVICE_NAME],
            allow=ALLOW,
            health_checks={"blob store": store_check(store)},
            start=nothing,
            stop=stop,
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return service_main("signer", DESCRIPTION, SignerConfig, run, argv)
