"""SourceFetcher against a real HTTP server on 127.0.0.1 and a local blob store.

Every behaviour is asserted on both sides: what the fetcher returned or
raised, what the server saw on the wire (requests, Range headers, statuses,
concurrency), and what the store holds afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fixtures.servers import free_port
from fixtures.source_server import SourceServer, source_server
from prometheus_client import REGISTRY

from apkfarm.blobs import LocalBlobStore
from apkfarm.services.fetcher.core import FetchResult, SourceFetcher
from apkfarm.services.fetcher.download import DownloadLimits
from apkfarm.services.fetcher.source import FetchError, FetchFailure, SourceSpec

BODY = bytes(range(256)) * 1024  # 256 KiB
SHA = hashlib.sha256(BODY).hexdigest()
NAME = "greet-1.0.tar.gz"
# Quick limits for tests: no backoff pauses, short stalls.
FAST = DownloadLimits(
    max_bytes=1024 * 1024,
    timeout=20.0,
    max_redirects=3,
    attempts=3,
    stall_timeout=5.0,
    backoff=0.0,
    backoff_max=0.0,
    per_host=4,
)


@pytest.fixture
def server() -> Iterator[SourceServer]:
    with source_server() as running:
        yield running


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store", durable=False)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make(store: LocalBlobStore, server: SourceServer, **overrides: Any) -> SourceFetcher:
    allow_file = overrides.pop("allow_file_urls", False)
    return SourceFetcher(
        store,
        limits=replace(FAST, **overrides),
        sites={"EXAMPLES_SITE": server.url("")},
        allow_file_urls=allow_file,
    )


def fetch(
    store: LocalBlobStore, server: SourceServer, spec: SourceSpec, **overrides: Any
) -> FetchResult:
    async def go() -> FetchResult:
        async with make(store, server, **overrides) as fetcher:
            return await fetcher.fetch(spec)

    return asyncio.run(go())


def fetch_error(
    store: LocalBlobStore, server: SourceServer, spec: SourceSpec, **overrides: Any
) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(store, server, spec, **overrides)
    return caught.value


def stored_keys(store: LocalBlobStore) -> list[str]:
    return [info.key for info in store.list("")]


def statuses(server: SourceServer, path: str) -> list[int]:
    return [seen.status for seen in server.requests(path)]


# --- the normal path and deduplication ---------------------------------------------


def test_downloads_verifies_and_stores_under_the_digest(
    server: SourceServer, store: LocalBlobStore
) -> None:
    server.add(f"/{NAME}", body=BODY)
    bytes_before = sample("apkfarm_fetch_bytes_total")
    downloaded_before = sample("apkfarm_fetches_total", result="downloaded")

    result = fetch(store, server, SourceSpec(f"$(EXAMPLES_SITE)/{NAME}", SHA, NAME))

    assert result.blob_key == f"sources/sha256/{SHA}"
    assert result.url == server.url(f"/{NAME}")
    assert (result.size, result.already_present, result.filename) == (len(BODY), False, NAME)
    assert store.get_bytes(result.blob_key) == BODY
    assert stored_keys(store) == [result.blob_key]
    assert statuses(server, f"/{NAME}") == [200]
    assert sample("apkfarm_fetch_bytes_total") - bytes_before == len(BODY)
    assert sample("apkfarm_fetches_total", result="downloaded") - downloaded_before == 1


def test_a_stored_digest_is_not_downloaded_again(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY)
    spec = SourceSpec(url, SHA, NAME)
    fetch(store, server, spec)
    dedup_before = sample("apkfarm_fetches_total", result="deduplicated")
    bytes_before = sample("apkfarm_fetch_bytes_total")

    # Another fetcher (a restarted or second replica) sees the stored object.
    again = fetch(store, server, spec)
    # Another URL with the same digest (a mirror) is not fetched either.
    mirror = fetch(store, server, SourceSpec(server.url("/mirror/x.tar.gz"), SHA, "x.tar.gz"))

    assert again.already_present and mirror.already_present
    assert again.size == mirror.size == len(BODY)
    assert len(server.requests(f"/{NAME}")) == 1
    assert server.requests("/mirror/x.tar.gz") == []
    assert sample("apkfarm_fetches_total", result="deduplicated") - dedup_before == 2
    assert sample("apkfarm_fetch_bytes_total") == bytes_before


def test_requests_for_one_digest_at_once_share_one_download(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY, chunk_delay=0.01)

    async def go() -> list[FetchResult]:
        async with make(store, server) as fetcher:
            spec = SourceSpec(url, SHA, NAME)
            return list(await asyncio.gather(*(fetcher.fetch(spec) for _ in range(3))))

    results = asyncio.run(go())
    assert sorted(r.already_present for r in results) == [False, True, True]
    assert len(server.requests(f"/{NAME}")) == 1


def test_a_mismatch_stores_nothing_and_says_what_was_expected(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY)
    wrong = hashlib.sha256(b"what the template says").hexdigest()
    mismatches_before = sample("apkfarm_fetches_total", result="mismatch")

    error = fetch_error(store, server, SourceSpec(url, wrong, NAME))

    assert str(error) == f"{NAME} from {url}: sha256 mismatch: expected {wrong}, got {SHA}"
    assert error.kind is FetchFailure.MISMATCH and not error.transient
    assert stored_keys(store) == []
    assert sample("apkfarm_fetches_total", result="mismatch") - mismatches_before == 1


# --- resume, retries, redirects -------------------------------------------------------


def test_a_dropped_connection_resumes_with_range(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY, drop_after=100_000)
    resumes_before = sample("apkfarm_fetch_retries_total", reason="resume")
    bytes_before = sample("apkfarm_fetch_bytes_total")

    result = fetch(store, server, SourceSpec(url, SHA, NAME))

    first, second = server.requests(f"/{NAME}")
    assert (first.status, first.range) == (200, None)
    assert (second.status, second.range, second.if_range) == (206, "bytes=100000-", '"v1"')
    assert store.get_bytes(result.blob_key) == BODY
    # Only the missing bytes came again.
    assert sample("apkfarm_fetch_bytes_total") - bytes_before == len(BODY)
    assert sample("apkfarm_fetch_retries_total", reason="resume") - resumes_before == 1


def test_a_silent_connection_counts_as_dropped_and_resumes(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY, stall_after=100_000, stall_seconds=4.0)

    result = fetch(store, server, SourceSpec(url, SHA, NAME), stall_timeout=1.0)

    first, *resumed = server.requests(f"/{NAME}")
    assert (first.status, first.range) == (200, None)
    # At least one resume (a loaded machine may cause another stall, never a restart).
    assert resumed
    assert all(seen.status == 206 and seen.range for seen in resumed)
    assert store.get_bytes(result.blob_key) == BODY


def test_a_host_that_ignores_range_is_read_again_from_the_start(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY, drop_after=100_000, ranges=False)
    restarts_before = sample("apkfarm_fetch_retries_total", reason="restart")

    result = fetch(store, server, SourceSpec(url, SHA, NAME))

    assert statuses(server, f"/{NAME}") == [200, 200]
    assert store.get_bytes(result.blob_key) == BODY
    assert sample("apkfarm_fetch_retries_total", reason="restart") - restarts_before == 1


def test_a_resume_answered_with_the_wrong_range_starts_again(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY, drop_after=100_000, wrong_range=True)

    result = fetch(store, server, SourceSpec(url, SHA, NAME))

    seen = server.requests(f"/{NAME}")
    assert [s.status for s in seen] == [200, 206, 200]
    # The botched 206 was not spliced in: the third request asks for everything.
    assert seen[2].range is None
    assert store.get_bytes(result.blob_key) == BODY


def test_a_server_error_is_retried(server: SourceServer, store: LocalBlobStore) -> None:
    url = server.add(f"/{NAME}", body=BODY, fail_first=1)
    retries_before = sample("apkfarm_fetch_retries_total", reason="retry")

    result = fetch(store, server, SourceSpec(url, SHA, NAME))

    assert statuses(server, f"/{NAME}") == [500, 200]
    assert not result.already_present
    assert sample("apkfarm_fetch_retries_total", reason="retry") - retries_before == 1


def test_persistent_server_errors_give_up_as_transient(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY, fail_first=100, fail_status=503)

    error = fetch_error(store, server, SourceSpec(url, SHA, NAME), attempts=3)

    assert error.transient and error.kind is FetchFailure.HTTP
    assert "HTTP 503" in str(error) and "gave up after 3 requests" in str(error)
    assert statuses(server, f"/{NAME}") == [503, 503, 503]
    assert stored_keys(store) == []


def test_nothing_listening_is_a_transient_network_failure(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = f"http://127.0.0.1:{free_port()}/{NAME}"
    error = fetch_error(store, server, SourceSpec(url, SHA, NAME), attempts=2)
    assert error.transient and error.kind is FetchFailure.NETWORK
    assert str(error).startswith(f"{NAME} from {url}: connection failed")


def test_not_found_is_permanent_and_not_retried(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.url(f"/{NAME}")
    error = fetch_error(store, server, SourceSpec(url, SHA, NAME))
    assert error.kind is FetchFailure.NOT_FOUND and not error.transient
    assert "HTTP 404" in str(error)
    assert statuses(server, f"/{NAME}") == [404]


def test_other_client_errors_are_permanent(server: SourceServer, store: LocalBlobStore) -> None:
    url = server.add(f"/{NAME}", status=403)
    error = fetch_error(store, server, SourceSpec(url, SHA, NAME))
    assert error.kind is FetchFailure.HTTP and not error.transient
    assert "HTTP 403" in str(error)
    assert len(server.requests(f"/{NAME}")) == 1


def test_redirects_are_followed(server: SourceServer, store: LocalBlobStore) -> None:
    final = server.add("/files/greet.tar.gz", body=BODY)
    hop = server.add("/hop", location=final)
    start = server.add("/start", location="/hop")  # a relative Location

    result = fetch(store, server, SourceSpec(start, SHA, NAME))

    assert store.get_bytes(result.blob_key) == BODY
    assert statuses(server, "/start") == [302]
    assert statuses(server, "/hop") == [302]
    assert statuses(server, "/files/greet.tar.gz") == [200]
    assert hop == server.url("/hop")


def test_redirects_beyond_the_limit_are_refused(
    server: SourceServer, store: LocalBlobStore
) -> None:
    target = server.add("/target", body=BODY)
    for step in range(3, 0, -1):
        server.add(f"/r{step}", location=f"/r{step + 1}" if step < 3 else target)

    error = fetch_error(store, server, SourceSpec(server.url("/r1"), SHA, NAME), max_redirects=2)

    assert error.kind is FetchFailure.REDIRECT and not error.transient
    assert "more than 2 redirects" in str(error)
    assert server.requests("/target") == []
    assert stored_keys(store) == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.tar.gz"])
def test_redirects_to_other_schemes_are_refused(
    server: SourceServer, store: LocalBlobStore, location: str
) -> None:
    url = server.add("/sneaky", location=location)
    error = fetch_error(store, server, SourceSpec(url, SHA, NAME))
    assert error.kind is FetchFailure.REDIRECT
    assert "only http:// and https:// are followed" in str(error)
    assert stored_keys(store) == []


# --- limits ---------------------------------------------------------------------------


def test_the_time_limit_stops_a_slow_body(server: SourceServer, store: LocalBlobStore) -> None:
    # 256 KiB at 1 KiB per 0.1 s would take 25 s.
    url = server.add(f"/{NAME}", body=BODY, chunk_size=1024, chunk_delay=0.1)

    started = time.monotonic()
    error = fetch_error(store, server, SourceSpec(url, SHA, NAME), timeout=1.0)
    elapsed = time.monotonic() - started

    assert error.kind is FetchFailure.TIMEOUT and not error.transient
    assert "took longer than the time limit of 1s" in str(error)
    assert elapsed < 10
    assert stored_keys(store) == []


def test_a_huge_content_length_is_refused_before_reading_the_body(
    server: SourceServer, store: LocalBlobStore
) -> None:
    url = server.add(f"/{NAME}", body=BODY, announce_length=10 * 1024**3)
    bytes_before = sample("apkfarm_fetch_bytes_total")

    error = fetch_error(store, server, SourceSpec(url, SHA, NAME))

    assert error.kind is FetchFailure.TOO_LARGE and not error.transient
    assert f"Content-Length {10 * 1024**3} is larger than the limit of {1024 * 1024} bytes" in str(
        error
    )
    assert sample("apkfarm_fetch_bytes_total") == bytes_before
    assert len(server.requests(f"/{NAME}")) == 1


def test_a_body_over_the_limit_without_a_length_is_cut_off(
    server: SourceServer, store: LocalBlobStore
) -> None:
    big = b"\xab" * (3 * 1024 * 1024)
    url = server.add(f"/{NAME}", body=big, no_length=True)
    bytes_before = sample("apkfarm_fetch_bytes_total")

    error = fetch_error(
        store, server, SourceSpec(url, hashlib.sha256(big).hexdigest(), NAME), max_bytes=1024 * 1024
    )

    assert error.kind is FetchFailure.TOO_LARGE and not error.transient
    assert "larger than the limit of 1048576 bytes" in str(error)
    assert stored_keys(store) == []
    # It stopped reading near the limit, not at the end of the body.
    assert sample("apkfarm_fetch_bytes_total") - bytes_before < 2 * 1024 * 1024


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("per_host", [1, 2, 3])
def test_the_per_host_limit_bounds_concurrent_requests(
    server: SourceServer, store: LocalBlobStore, per_host: int
) -> None:
    # The server holds every response until released. Once all six fetches
    # have reached the host's limiter and the server holds every request the
    # fetcher let through, the count the server sees is what the limit allows.
    specs = []
    for number in range(6):
        body = BODY + bytes([number])
        url = server.add(f"/s{number}.tar.gz", body=body, hold=True)
        specs.append(SourceSpec(url, hashlib.sha256(body).hexdigest(), f"s{number}.tar.gz"))

    async def go() -> list[FetchResult]:
        async with make(store, server, per_host=per_host) as fetcher:
            hosts = fetcher.http.hosts
            running = asyncio.gather(*(fetcher.fetch(spec) for spec in specs))
            await wait_until(
                lambda: (
                    hosts.users("127.0.0.1") == 6
                    and 0 < hosts.holding("127.0.0.1") == server.active
                ),
                "all fetches at the limiter and their requests at the server",
            )
            assert server.active == per_host
            server.release.set()
            return list(await running)

    results = asyncio.run(go())
    assert all(not result.already_present for result in results)
    assert server.max_active == per_host
    assert len(stored_keys(store)) == 6


# --- file:// and validation -----------------------------------------------------------


def test_file_urls_are_refused_unless_allowed(
    server: SourceServer, store: LocalBlobStore, tmp_path: Path
) -> None:
    local = tmp_path / NAME
    local.write_bytes(BODY)
    spec = SourceSpec(local.as_uri(), SHA, NAME)

    refused = fetch_error(store, server, spec)
    assert refused.kind is FetchFailure.INVALID
    assert "file:// URLs are refused here" in str(refused)
    assert stored_keys(store) == []

    result = fetch(store, server, spec, allow_file_urls=True)
    assert store.get_bytes(result.blob_key) == BODY

    missing = SourceSpec((tmp_path / "missing.tar.gz").as_uri(), SHA[::-1], "missing.tar.gz")
    error = fetch_error(store, server, missing, allow_file_urls=True)
    assert error.kind is FetchFailure.NOT_FOUND and "does not exist" in str(error)


def test_a_local_file_over_the_limit_is_refused(
    server: SourceServer, store: LocalBlobStore, tmp_path: Path
) -> None:
    local = tmp_path / NAME
    local.write_bytes(BODY)
    error = fetch_error(
        store,
        server,
        SourceSpec(local.as_uri(), SHA, NAME),
        allow_file_urls=True,
        max_bytes=1000,
    )
    assert error.kind is FetchFailure.TOO_LARGE
    assert stored_keys(store) == []


@pytest.mark.parametrize(
    ("url", "sha256", "filename", "complaint"),
    [
        ("/x", SHA.upper(), NAME, "64 lowercase hex"),
        ("/x", SHA[:-1], NAME, "64 lowercase hex"),
        ("/x", SHA, "../etc/passwd", "one safe path segment"),
        ("/x", SHA, "a/b.tar.gz", "one safe path segment"),
        ("/x", SHA, "", "one safe path segment"),
        ("/x", SHA, ".hidden", "one safe path segment"),
        ("/x", SHA, "-rf", "one safe path segment"),
        ("/x", SHA, "x\x00.tar.gz", "one safe path segment"),
        ("ftp://127.0.0.1/x.tar.gz", SHA, NAME, "ftp://"),
        ("127.0.0.1/x.tar.gz", SHA, NAME, "no scheme"),
        ("http://user:secret@127.0.0.1/x", SHA, NAME, "credentials"),
        ("http:///x.tar.gz", SHA, NAME, "names no host"),
        ("http://127.0.0.1/a b", SHA, NAME, "white space"),
        ("$(UNKNOWN_SITE)/x.tar.gz", SHA, NAME, "unknown site macro"),
    ],
)
def test_invalid_requests_are_refused_before_any_request(
    server: SourceServer,
    store: LocalBlobStore,
    url: str,
    sha256: str,
    filename: str,
    complaint: str,
) -> None:
    full = server.url(url) if url.startswith("/") else url
    error = fetch_error(store, server, SourceSpec(full, sha256, filename))
    assert error.kind is FetchFailure.INVALID and not error.transient
    assert complaint in str(error)
    # A password in a URL never reaches a message (messages go to logs and events).
    assert "secret" not in str(error)
    assert server.seen == []
    assert stored_keys(store) == []
