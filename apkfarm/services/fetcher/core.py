"""The fetcher's core: one source in, one verified object in the source cache out.

``SourceFetcher.fetch`` validates the request, skips the download when the
cache already holds the SHA-256 (content addressing makes that safe), downloads
into a temporary file while hashing, and stores the file under
``sources/sha256/<hex>`` with ``put_if_absent`` only if its digest is the one
the template declared. A mismatch stores nothing. Two requests for the same
digest in one process share one download.

It knows nothing of gRPC or the bus: the service and the embedded mode wrap it.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from apkfarm.blobs import BlobNotFound, BlobStore, BlobStoreError
from apkfarm.blobs.layout import source_key
from apkfarm.services.common.logs import get_logger
from apkfarm.services.fetcher.destinations import DestinationPolicy
from apkfarm.services.fetcher.download import (
    Downloaded,
    DownloadError,
    DownloadLimits,
    HttpDownloader,
    KeyedLimiter,
    copy_local_file,
)
from apkfarm.services.fetcher.metrics import FETCH_DURATION, FETCHES
from apkfarm.services.fetcher.sites import site_table
from apkfarm.services.fetcher.source import (
    FetchError,
    FetchFailure,
    ResolvedSource,
    SourceSpec,
    resolve,
)

log = get_logger(__name__)


@dataclass(frozen=True)
class FetchResult:
    """A source that is now in the cache."""

    filename: str
    sha256: str
    # The URL after site macros were expanded.
    url: str
    blob_key: str
    size: int
    # True when the cache held it already (nothing was downloaded or written).
    already_present: bool


class SourceFetcher:
    """Fetches sources into ``store``; use as ``async with`` (it owns an HTTP connection pool).

    ``destinations`` limits the addresses downloads connect to; None allows any
    (the embedded mode, and tests of everything else).
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        limits: DownloadLimits | None = None,
        sites: Mapping[str, str] | None = None,
        allow_file_urls: bool = False,
        destinations: DestinationPolicy | None = None,
        work_dir: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.store = store
        self.limits = limits or DownloadLimits()
        self.sites = dict(sites) if sites is not None else site_table()
        self.allow_file_urls = allow_file_urls
        self.work_dir = work_dir
        self.http = HttpDownloader(self.limits, destinations=destinations, transport=transport)
        self._same_digest = KeyedLimiter(1)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    def resolve(self, spec: SourceSpec) -> ResolvedSource:
        """Validate ``spec`` and expand its URL without fetching (raises ``FetchError``)."""
        return resolve(spec, self.sites, allow_file=self.allow_file_urls)

    async def fetch(self, spec: SourceSpec) -> FetchResult:
        """Make sure the source is in the cache; raises ``FetchError`` saying why not."""
        started = time.monotonic()
        try:
            result = await self._fetch(spec)
        except FetchError as exc:
            FETCHES.labels(
                result="mismatch" if exc.kind is FetchFailure.MISMATCH else "failed"
            ).inc()
            FETCH_DURATION.observe(time.monotonic() - started)
            log.warning(
                "fetch failed",
                filename=spec.filename,
                kind=str(exc.kind),
                transient=exc.transient,
                error=str(exc),
            )
            raise
        seconds = time.monotonic() - started
        FETCHES.labels(result="deduplicated" if result.already_present else "downloaded").inc()
        FETCH_DURATION.observe(seconds)
        log.info(
            "fetched",
            filename=result.filename,
            url=result.url,
            sha256=result.sha256,
            size=result.size,
            already_present=result.already_present,
            seconds=round(seconds, 3),
        )
        return result

    async def _fetch(self, spec: SourceSpec) -> FetchResult:
        source = self.resolve(spec)
        key = source_key(source.sha256)
        async with self._same_digest.slot(source.sha256):
            stored = await self._stored_size(source, key)
            if stored is not None:
                return self._result(source, key, stored, already_present=True)
            with tempfile.TemporaryFile(prefix="apkfarm-fetch-", dir=self.work_dir) as out:
                downloaded = await self._download(source, out)
                if downloaded.sha256 != source.sha256:
                    raise FetchError(
                        f"{source.label}: sha256 mismatch: expected {source.sha256}, "
                        f"got {downloaded.sha256}",
                        kind=FetchFailure.MISMATCH,
                    )
                out.seek(0)
                created = await self._store(source, key, out, downloaded.size)
            return self._result(source, key, downloaded.size, already_present=not created)

    @staticmethod
    def _result(
        source: ResolvedSource, key: str, size: int, *, already_present: bool
    ) -> FetchResult:
        return FetchResult(
            filename=source.filename,
            sha256=source.sha256,
            url=source.url,
            blob_key=key,
            size=size,
            already_present=already_present,
        )

    async def _stored_size(self, source: ResolvedSource, key: str) -> int | None:
        try:
            info = await asyncio.to_thread(self.store.stat, key)
        except BlobNotFound:
            return None
        except BlobStoreError as exc:
            raise FetchError(
                f"{source.label}: cannot look up {key} in the blob store: {exc}",
                kind=FetchFailure.STORE,
                transient=True,
            ) from exc
        return info.size

    async def _download(self, source: ResolvedSource, out: IO[bytes]) -> Downloaded:
        try:
            if source.scheme == "file":
                return await asyncio.to_thread(
                    copy_local_file, source.url, out, self.limits.max_bytes
                )
            return await self.http.download(source.url, out)
        except DownloadError as exc:
            raise FetchError(
                f"{source.label}: {exc.reason}", kind=exc.kind, transient=exc.transient
            ) from None

    async def _store(self, source: ResolvedSource, key: str, data: IO[bytes], size: int) -> bool:
        try:
            return await asyncio.to_thread(self.store.put_if_absent, key, data, size)
        except BlobStoreError as exc:
            raise FetchError(
                f"{source.label}: cannot store it as {key}: {exc}",
                kind=FetchFailure.STORE,
                transient=True,
            ) from exc
