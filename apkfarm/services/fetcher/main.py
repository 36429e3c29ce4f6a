"""``apkfarm-fetcher``: the fetcher service's configuration and entry point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from apkfarm.services.common.app import (
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
from apkfarm.services.fetcher.consumer import FetchConsumer
from apkfarm.services.fetcher.core import SourceFetcher
from apkfarm.services.fetcher.destinations import DestinationPolicy, PolicyError
from apkfarm.services.fetcher.download import DownloadLimits
from apkfarm.services.fetcher.events import EventPublisher
from apkfarm.services.fetcher.service import service_parts
from apkfarm.services.fetcher.sites import SiteError, site_table

SERVICE = "fetcher"
DESCRIPTION = (
    "The apkfarm fetcher: takes jobs from the `fetch` queue (and Fetch calls over gRPC), "
    "downloads each source with retries, resume and limits, and stores it under "
    "sources/sha256/<hex> in S3 only if its SHA-256 matches the template's."
)


@dataclass(frozen=True)
class FetcherConfig(CommonConfig, BusConfig, StoreConfig):
    source_sites: str = setting(
        "APKFARM_SOURCE_SITES",
        "",
        "NAME=URL,... for $(NAME) macros in template sources (added to cbuild's "
        "defaults such as GNU_SITE, KERNEL_SITE; same names override them)",
    )
    fetch_max_bytes: int = setting(
        "APKFARM_FETCH_MAX_BYTES", 2 * 1024**3, "largest source accepted, in bytes"
    )
    fetch_timeout: float = setting(
        "APKFARM_FETCH_TIMEOUT", 3600.0, "seconds one fetch may take in all (retries included)"
    )
    fetch_per_host: int = setting(
        "APKFARM_FETCH_PER_HOST", 4, "concurrent requests to one source host"
    )
    allow_file_urls: bool = setting(
        "APKFARM_ALLOW_FILE_URLS", False, "accept file:// sources (embedded mode only)"
    )
    fetch_private_networks: str = setting(
        "APKFARM_FETCH_PRIVATE_NETWORKS",
        "",
        "non-public networks sources may come from, comma-separated (like "
        "10.20.0.0/16 for an internal mirror), or 'any'; other loopback, private, "
        "link-local and reserved addresses are refused, also after a redirect "
        "(connections are direct: HTTP(S)_PROXY is not used)",
    )
    fetch_max_redirects: int = setting(
        "APKFARM_FETCH_MAX_REDIRECTS", 5, "redirects followed per request (to http(s) only)"
    )
    fetch_attempts: int = setting(
        "APKFARM_FETCH_ATTEMPTS",
        5,
        "requests in a row without progress before a fetch fails as transient",
    )
    fetch_stall_timeout: float = setting(
        "APKFARM_FETCH_STALL_TIMEOUT",
        60.0,
        "seconds without data before a connection counts as dropped (then resumed)",
    )
    fetch_concurrency: int = setting(
        "APKFARM_FETCH_CONCURRENCY", 4, "fetch jobs handled at once (queue prefetch)"
    )
    fetch_retry_delay: float = setting(
        "APKFARM_FETCH_RETRY_DELAY",
        30.0,
        "seconds before a transiently failed job is tried again (doubling per attempt)",
    )
    fetch_work_dir: Path | None = setting(
        "APKFARM_FETCH_WORK_DIR",
        None,
        "where downloads wait until verified (default: the system temporary directory); "
        "needs APKFARM_FETCH_CONCURRENCY x APKFARM_FETCH_MAX_BYTES free space at most",
    )

    def __post_init__(self) -> None:
        at_least = {
            "APKFARM_FETCH_MAX_BYTES": (self.fetch_max_bytes, 1),
            "APKFARM_FETCH_PER_HOST": (self.fetch_per_host, 1),
            "APKFARM_FETCH_MAX_REDIRECTS": (self.fetch_max_redirects, 0),
            "APKFARM_FETCH_ATTEMPTS": (self.fetch_attempts, 1),
            "APKFARM_FETCH_CONCURRENCY": (self.fetch_concurrency, 1),
            "APKFARM_FETCH_RETRY_DELAY": (self.fetch_retry_delay, 0),
        }
        for env, (value, least) in at_least.items():
            if value < least:
                raise ConfigError(f"{env} must be at least {least}, got {value}")
        for env, seconds in (
            ("APKFARM_FETCH_TIMEOUT", self.fetch_timeout),
            ("APKFARM_FETCH_STALL_TIMEOUT", self.fetch_stall_timeout),
        ):
            if seconds <= 0:
                raise ConfigError(f"{env} must be a positive number of seconds, got {seconds}")
        if self.fetch_concurrency > 1000:
            raise ConfigError("APKFARM_FETCH_CONCURRENCY must be at most 1000")
        try:
            self.sites()
        except SiteError as exc:
            raise ConfigError(f"APKFARM_SOURCE_SITES: {exc}") from None
        try:
            self.destinations()
        except PolicyError as exc:
            raise ConfigError(f"APKFARM_FETCH_PRIVATE_NETWORKS: {exc}") from None

    def sites(self) -> dict[str, str]:
        return site_table(self.source_sites)

    def destinations(self) -> DestinationPolicy:
        return DestinationPolicy.parse(self.fetch_private_networks)

    def limits(self) -> DownloadLimits:
        return DownloadLimits(
            max_bytes=self.fetch_max_bytes,
            timeout=self.fetch_timeout,
            max_redirects=self.fetch_max_redirects,
            attempts=self.fetch_attempts,
            stall_timeout=self.fetch_stall_timeout,
            per_host=self.fetch_per_host,
        )


async def run(config: FetcherConfig) -> None:
    """Run the fetcher until SIGTERM/SIGINT."""
    identity = identity_of(config, SERVICE)
    bus = open_bus(config, f"apkfarm-{identity}", tls_files(config, SERVICE))
    store = open_store(config)
    fetcher = SourceFetcher(
        store,
        limits=config.limits(),
        sites=config.sites(),
        allow_file_urls=config.allow_file_urls,
        destinations=config.destinations(),
        work_dir=config.fetch_work_dir,
    )
    consumer = FetchConsumer(
        bus,
        fetcher,
        EventPublisher(bus, identity),
        prefetch=config.fetch_concurrency,
        retry_delay=config.fetch_retry_delay,
    )
    try:
        await serve(SERVICE, config, service_parts(fetcher, bus, store, consumer))
    finally:
        await bus.close(grace=0)
        await fetcher.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    return service_main(SERVICE, DESCRIPTION, FetcherConfig, run, argv)
