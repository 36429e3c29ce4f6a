"""``apkfarm-indexer``: the indexer service's configuration and entry point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apkfarm.services.common.app import (
    REPOSITORY_PREFIX,
    BusConfig,
    CommonConfig,
    StoreConfig,
    identity_of,
    open_bus,
    open_store,
    serve,
    service_main,
    tls_files,
)
from apkfarm.services.common.config import ConfigError, setting
from apkfarm.services.indexer.core import Indexer, IndexerSettings
from apkfarm.services.indexer.service import service_parts
from apkfarm.services.signer.client import GrpcSignerClient

SERVICE = "indexer"
DESCRIPTION = (
    "The apkfarm indexer: takes package.staged events from its queue, checks each staged "
    "package (blob key, size, SHA-256, signature by the farm's keys, .PKGINFO against the "
    "job), copies the good ones into repo/<category>/<arch>/ in S3, and publishes a new "
    "APKINDEX.tar.gz signed by the signer — packages first, the index last — keeping "
    "earlier generations for mirrors; then announces index.published."
)


@dataclass(frozen=True)
class IndexerConfig(CommonConfig, BusConfig, StoreConfig):
    signer_address: str = setting(
        "APKFARM_SIGNER_ADDRESS", "signer:50051", "the signer's gRPC address (mTLS)"
    )
    keep_generations: int = setting(
        "APKFARM_KEEP_GENERATIONS",
        5,
        "index generations kept under .generations/ (and the package files they name)",
    )
    batch_seconds: float = setting(
        "APKFARM_BATCH_SECONDS",
        0.0,
        "seconds to collect a burst into one publication (0: publish at once; what "
        "arrives during a publication forms the next batch)",
    )
    batch_max_events: int = setting(
        "APKFARM_BATCH_MAX_EVENTS",
        100,
        "events in one batch at most (also the queue prefetch)",
    )
    repo_description: str = setting(
        "APKFARM_REPO_DESCRIPTION", "", "the DESCRIPTION written into every APKINDEX"
    )
    index_retry_delay: float = setting(
        "APKFARM_INDEX_RETRY_DELAY",
        15.0,
        "seconds before a job that failed for a transient reason (signer or S3 unreachable) "
        "is tried again, doubling per delivery up to 300",
    )
    index_work_dir: Path | None = setting(
        "APKFARM_INDEX_WORK_DIR",
        None,
        "where staged packages wait while they are checked (default: the system "
        "temporary directory); needs room for one batch of packages",
    )

    def __post_init__(self) -> None:
        if self.keep_generations < 1:
            raise ConfigError("APKFARM_KEEP_GENERATIONS must be at least 1")
        if self.batch_seconds < 0:
            raise ConfigError("APKFARM_BATCH_SECONDS must not be negative")
        if not 1 <= self.batch_max_events <= 1000:
            raise ConfigError("APKFARM_BATCH_MAX_EVENTS must be between 1 and 1000")
        if self.index_retry_delay < 0:
            raise ConfigError("APKFARM_INDEX_RETRY_DELAY must not be negative")
        if "\n" in self.repo_description:
            raise ConfigError("APKFARM_REPO_DESCRIPTION must be one line")

    def settings(self) -> IndexerSettings:
        return IndexerSettings(
            keep_generations=self.keep_generations,
            batch_seconds=self.batch_seconds,
            batch_max_events=self.batch_max_events,
            description=self.repo_description,
            work_dir=self.index_work_dir,
            retry_delay=self.index_retry_delay,
        )


async def run(config: IndexerConfig) -> None:
    """Run the indexer until SIGTERM/SIGINT."""
    identity = identity_of(config, SERVICE)
    tls = tls_files(config, SERVICE)
    bus = open_bus(config, f"apkfarm-{identity}", tls)
    signer = GrpcSignerClient(config.signer_address, tls)
    indexer = Indexer(
        bus=bus,
        artifacts=open_store(config),
        repository=open_store(config, prefix=REPOSITORY_PREFIX),
        signer=signer,
        identity=identity,
        settings=config.settings(),
    )
    try:
        await serve(SERVICE, config, service_parts(indexer))
    finally:
        await bus.close(grace=0)
        await signer.close()


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(SERVICE, DESCRIPTION, IndexerConfig, run, argv)
