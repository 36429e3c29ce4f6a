"""Downloading one URL into a file, hashing on the way, within the fetcher's limits.

What a source host can do wrong, and what happens:

- announce or send more than ``max_bytes``: refused (up front when the
  Content-Length or Content-Range says so, else as soon as the limit is passed);
- take longer than ``timeout`` in all (every request, pause and retry of one
  download included): refused; a connection silent for ``stall_timeout``
  counts as dropped;
- redirect more than ``max_redirects`` times, or to anything but http(s), or to
  a URL with credentials: refused;
- drop the connection or answer 5xx/408/429: retried with exponential backoff
  (tenacity); after a drop the next request asks only for the missing bytes
  (``Range``, with ``If-Range`` so a changed file is not spliced), and the part
  is used only if the answer is 206 with a ``Content-Range`` starting exactly
  there — otherwise the download starts again from zero. Retries stop after
  ``attempts`` requests in a row that brought no new byte;
- answer 404/410 or another 4xx: refused at once, not retried;
- resolve (or redirect) to an address the ``DestinationPolicy`` does not allow
  (loopback, private, link-local... unless the operator allows that network):
  refused at once, before anything is sent (see ``destinations``).

Each request holds a slot of its host's semaphore (``per_host``) for as long as
it runs, so one busy site is never hit by more than ``per_host`` connections
from this process, however many jobs want it. The body is read raw (no
content decoding): the hash is over the bytes as served, as cbuild does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from apkfarm.services.common.logs import get_logger
from apkfarm.services.fetcher.destinations import (
    DestinationPolicy,
    DestinationRefused,
    GuardedTransport,
)
from apkfarm.services.fetcher.metrics import FETCH_BYTES, FETCH_RETRIES
from apkfarm.services.fetcher.source import NETWORK_SCHEMES, FetchFailure

log = get_logger(__name__)

USER_AGENT = "apkfarm-fetcher/0.1"
CHUNK_SIZE = 256 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class DownloadLimits:
    """How much one download may take; see the module docstring."""

    max_bytes: int = 2 * 1024**3
    timeout: float = 3600.0
    max_redirects: int = 5
    attempts: int = 5
    stall_timeout: float = 60.0
    # First pause between attempts (doubling each time, at most backoff_max).
    backoff: float = 0.5
    backoff_max: float = 30.0
    per_host: int = 4

    def __post_init__(self) -> None:
        for name in ("max_bytes", "attempts", "per_host"):
            if getattr(self, name) < 1:
                raise ValueError(f"fetch limit {name} must be at least 1")
        for name in ("timeout", "stall_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"fetch limit {name} must be positive")
        if self.max_redirects < 0 or self.backoff < 0 or self.backoff_max < 0:
            raise ValueError(
                "fetch limits max_redirects, backoff and backoff_max must not be negative"
            )


class DownloadError(Exception):
    """A download that produced no usable file; ``reason`` is for people."""

    def __init__(self, reason: str, kind: FetchFailure, *, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.transient = transient


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str
    # Where the bytes came from in the end (after redirects).
    url: str


class _Retry(Exception):
    """A failed request worth repeating."""

    def __init__(self, reason: str, kind: FetchFailure) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


@dataclass
class _KeyedSlots:
    semaphore: asyncio.Semaphore
    # Holders and waiters together; holders alone.
    users: int = 0
    holding: int = 0


class KeyedLimiter:
    """At most ``limit`` holders per key at once; keys nobody holds or waits for are forgotten."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._slots: dict[str, _KeyedSlots] = {}

    @contextlib.asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        entry = self._slots.get(key)
        if entry is None:
            entry = self._slots[key] = _KeyedSlots(asyncio.Semaphore(self.limit))
        entry.users += 1
        try:
            async with entry.semaphore:
                entry.holding += 1
                try:
                    yield
                finally:
                    entry.holding -= 1
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._slots[key]

    def users(self, key: str) -> int:
        """Holders of a slot of ``key`` plus those waiting for one."""
        entry = self._slots.get(key)
        return entry.users if entry else 0

    def holding(self, key: str) -> int:
        entry = self._slots.get(key)
        return entry.holding if entry else 0


@dataclass
class _Partial:
    """The bytes of one download received so far, kept across its requests."""

    out: IO[bytes]
    max_bytes: int
    hasher: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    # The whole length, when the server said it (Content-Length or Content-Range).
    total: int | None = None
    # ETag or Last-Modified of the first answer, for If-Range.
    validator: str | None = None
    url: str = ""
    # Bytes received in all (restarted transfers included), requests sent,
    # requests in a row that brought no new byte, restarts from zero.
    received: int = 0
    requests: int = 0
    fruitless: int = 0
    restarts: int = 0

    def add(self, chunk: bytes) -> None:
        FETCH_BYTES.inc(len(chunk))
        self.received += len(chunk)
        if self.size + len(chunk) > self.max_bytes:
            raise DownloadError(
                f"the body is larger than the limit of {self.max_bytes} bytes",
                FetchFailure.TOO_LARGE,
            )
        self.out.write(chunk)
        self.hasher.update(chunk)
        self.size += len(chunk)

    def restart(self) -> None:
        self.out.seek(0)
        self.out.truncate()
        self.hasher = hashlib.sha256()
        self.size = 0
        self.total = None
        self.validator = None
        self.restarts += 1
        FETCH_RETRIES.labels(reason="restart").inc()


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def _validator(response: httpx.Response) -> str | None:
    """What If-Range may carry: a strong ETag, else Last-Modified."""
    etag = response.headers.get("etag")
    if etag and not etag.startswith("W/"):
        return str(etag)
    modified = response.headers.get("last-modified")
    return str(modified) if modified else None


def _phrase(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()


class HttpDownloader:
    """Downloads http(s) URLs into files; one instance (one connection pool) per process."""

    def __init__(
        self,
        limits: DownloadLimits,
        *,
        destinations: DestinationPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.limits = limits
        self.hosts = KeyedLimiter(limits.per_host)
        pool_limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
        if transport is None and destinations is not None:
            transport = GuardedTransport(destinations, pool_limits)
        self._client = httpx.AsyncClient(
            # The total limit is enforced around the whole download; these bound silence.
            timeout=httpx.Timeout(limits.stall_timeout, pool=None),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=pool_limits,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def download(self, url: str, out: IO[bytes]) -> Downloaded:
        """Write the body of ``url`` to ``out`` (an empty binary file); raise ``DownloadError``."""
        limits = self.limits
        partial = _Partial(out, limits.max_bytes, url=url)

        def give_up(state: RetryCallState) -> bool:
            return partial.fruitless >= limits.attempts or partial.restarts > limits.attempts

        retrying = AsyncRetrying(
            stop=give_up,
            wait=wait_exponential(multiplier=limits.backoff, max=limits.backoff_max),
            retry=retry_if_exception_type(_Retry),
            reraise=True,
        )
        deadline = asyncio.timeout(limits.timeout)
        try:
            async with deadline:
                async for attempt in retrying:
                    with attempt:
                        await self._request(url, partial)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise DownloadError(
                f"took longer than the time limit of {limits.timeout:g}s "
                f"({partial.size} bytes received)",
                FetchFailure.TIMEOUT,
            ) from None
        except _Retry as exc:
            raise DownloadError(
                f"{exc.reason} (gave up after {partial.requests} requests)",
                exc.kind,
                transient=True,
            ) from None
        return Downloaded(partial.size, partial.hasher.hexdigest(), partial.url)

    async def _request(self, url: str, partial: _Partial) -> None:
        received_before = partial.received
        partial.requests += 1
        try:
            await self._transfer(url, partial)
        except _Retry as exc:
            progressed = partial.received > received_before
            partial.fruitless = 0 if progressed else partial.fruitless + 1
            FETCH_RETRIES.labels(reason="retry").inc()
            log.info(
                "download request failed",
                url=url,
                reason=exc.reason,
                received=partial.size,
                total=partial.total,
            )
            raise

    async def _transfer(self, url: str, partial: _Partial) -> None:
        headers = {"Accept-Encoding": "identity"}
        resuming = partial.size > 0
        if resuming:
            headers["Range"] = f"bytes={partial.size}-"
            if partial.validator:
                headers["If-Range"] = partial.validator
        try:
            async with self._open(url, headers) as response:
                self._check_status(response, resuming, partial)
                if resuming:
                    self._resume_or_restart(response, partial)
                else:
                    self._begin(response, partial)
                # No chunk size: a buffered chunker would lose what it holds when the link drops.
                async for chunk in response.aiter_raw():
                    partial.add(chunk)
        except DestinationRefused as exc:
            raise DownloadError(str(exc), FetchFailure.DESTINATION) from None
        except httpx.TimeoutException as exc:
            raise _Retry(
                f"no data for {self.limits.stall_timeout:g}s ({type(exc).__name__})",
                FetchFailure.NETWORK,
            ) from None
        except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            raise _Retry(
                f"connection failed: {exc or type(exc).__name__}", FetchFailure.NETWORK
            ) from None
        except httpx.HTTPError as exc:
            raise DownloadError(f"request failed: {exc}", FetchFailure.HTTP) from None
        if partial.total is not None and partial.size < partial.total:
            # A 206 that covered only part of the rest: ask for the remainder.
            raise _Retry(
                f"the answer ended at byte {partial.size} of {partial.total}",
                FetchFailure.NETWORK,
            )

    @contextlib.asynccontextmanager
    async def _open(self, url: str, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """Send GET and follow redirects by hand, so each hop's host slot and target are checked."""
        current = httpx.URL(url)
        redirects = 0
        while True:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(self.hosts.slot(current.host))
                request = self._client.build_request("GET", current, headers=headers)
                response = await self._client.send(request, stream=True)
                stack.push_async_callback(response.aclose)
                if not response.has_redirect_location:
                    yield response
                    return
                location = response.headers["location"]
            # The redirect's connection and host slot are released before the next hop.
            redirects += 1
            if redirects > self.limits.max_redirects:
                raise DownloadError(
                    f"more than {self.limits.max_redirects} redirects", FetchFailure.REDIRECT
                )
            current = self._redirect_target(current, location)

    @staticmethod
    def _redirect_target(current: httpx.URL, location: str) -> httpx.URL:
        try:
            target = current.join(location)
        except httpx.InvalidURL as exc:
            raise DownloadError(
                f"redirected to an invalid URL {location[:200]!r}: {exc}", FetchFailure.REDIRECT
            ) from None
        if target.scheme not in NETWORK_SCHEMES or not target.host:
            raise DownloadError(
                f"redirected to {location[:200]!r}; only http:// and https:// are followed",
                FetchFailure.REDIRECT,
            )
        if target.userinfo:
            raise DownloadError(
                "redirected to a URL with credentials; refused", FetchFailure.REDIRECT
            )
        return target

    def _check_status(self, response: httpx.Response, resuming: bool, partial: _Partial) -> None:
        status = response.status_code
        if status == 200 or (status == 206 and resuming):
            return
        if status in (404, 410):
            raise DownloadError(_phrase(response), FetchFailure.NOT_FOUND)
        if status == 416 and resuming:
            partial.restart()
            raise _Retry("the server refused the resumed range (416)", FetchFailure.HTTP)
        if status in (408, 425, 429) or status >= 500:
            raise _Retry(_phrase(response), FetchFailure.HTTP)
        raise DownloadError(f"unexpected answer {_phrase(response)}", FetchFailure.HTTP)

    def _begin(self, response: httpx.Response, partial: _Partial) -> None:
        length = _content_length(response)
        if length is not None and length > self.limits.max_bytes:
            raise DownloadError(
                f"Content-Length {length} is larger than the limit of "
                f"{self.limits.max_bytes} bytes",
                FetchFailure.TOO_LARGE,
            )
        partial.total = length
        partial.validator = _validator(response)
        partial.url = str(response.url)

    def _resume_or_restart(self, response: httpx.Response, partial: _Partial) -> None:
        if response.status_code == 200:
            # Range ignored, or If-Range found the file changed: the whole body follows.
            log.info("resume not honoured; starting again", url=str(response.url))
            partial.restart()
            self._begin(response, partial)
            return
        found = _CONTENT_RANGE.fullmatch(response.headers.get("content-range", "").strip())
        start = int(found[1]) if found else None
        total = int(found[3]) if found and found[3] != "*" else None
        if (
            found is None
            or start != partial.size
            or (partial.total is not None and total not in (None, partial.total))
        ):
            partial.restart()
            raise _Retry(
                "the server answered the resume with the wrong range "
                f"({response.headers.get('content-range', 'no Content-Range')!r}); "
                "starting again",
                FetchFailure.HTTP,
            )
        if total is not None:
            if total > self.limits.max_bytes:
                raise DownloadError(
                    f"Content-Range total {total} is larger than the limit of "
                    f"{self.limits.max_bytes} bytes",
                    FetchFailure.TOO_LARGE,
                )
            partial.total = total
        FETCH_RETRIES.labels(reason="resume").inc()
        log.info("resuming download", url=str(response.url), offset=partial.size, total=total)


def copy_local_file(url: str, out: IO[bytes], max_bytes: int) -> Downloaded:
    """Copy a file:// URL's file into ``out`` with the same hashing and size limit (blocking)."""
    path = Path(unquote(urlsplit(url).path))
    hasher = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as source:
            info = os.fstat(source.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DownloadError(f"{path} is not a regular file", FetchFailure.NOT_FOUND)
            if info.st_size > max_bytes:
                raise DownloadError(
                    f"{path} is {info.st_size} bytes, larger than the limit of {max_bytes}",
                    FetchFailure.TOO_LARGE,
                )
            while chunk := source.read(CHUNK_SIZE):
                size += len(chunk)
                FETCH_BYTES.inc(len(chunk))
                if size > max_bytes:
                    raise DownloadError(
                        f"{path} grew larger than the limit of {max_bytes} bytes",
                        FetchFailure.TOO_LARGE,
                    )
                out.write(chunk)
                hasher.update(chunk)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise DownloadError(f"{path} does not exist", FetchFailure.NOT_FOUND) from None
    except PermissionError:
        raise DownloadError(f"{path} is not readable", FetchFailure.NOT_FOUND) from None
    except OSError as exc:
        raise DownloadError(
            f"reading {path} failed: {exc.strerror or exc}", FetchFailure.NETWORK, transient=True
        ) from None
    return Downloaded(size, hasher.hexdigest(), url)
