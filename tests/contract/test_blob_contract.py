"""One contract for both blob stores: the same assertions on LocalBlobStore and S3BlobStore.

The S3 runs use a private ``weed mini`` (tests/fixtures/servers.py); each test
gets its own key prefix in the session's bucket.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import tracemalloc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fixtures.servers import S3Server, free_port

from apkfarm.blobs import (
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    InvalidBlobKey,
    LocalBlobStore,
)
from apkfarm.blobs.s3 import S3BlobStore

MiB = 1024 * 1024


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.infra)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    s3: S3Server = request.getfixturevalue("s3_server")
    return S3BlobStore(
        s3.endpoint,
        s3.access_key,
        s3.secret_key,
        s3.bucket,
        secure=s3.secure,
        region=s3.region,
        prefix=f"t-{uuid.uuid4().hex[:12]}/",
    )


class PatternStream:
    """``size`` pseudo-random bytes produced on demand (never held in memory at once)."""

    def __init__(self, size: int, seed: int = 1) -> None:
        self.remaining = size
        self._block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB
        self._offset = 0
        self.digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = self.remaining
        size = min(size, self.remaining, 256 * 1024)
        if size <= 0:
            return b""
        start = self._offset % len(self._block)
        chunk = (self._block[start:] + self._block + self._block)[:size]
        assert len(chunk) == size
        self._offset += size
        self.remaining -= size
        self.digest.update(chunk)
        return chunk


def sha256_of(chunks: Iterator[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


# --- writing and reading -------------------------------------------------------


def test_bytes_round_trip(store: BlobStore) -> None:
    data = b"hello, farm\n" * 100
    result = store.put_bytes("logs/job-1.log", data)
    assert (result.key, result.size) == ("logs/job-1.log", len(data))
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.etag
    assert store.get_bytes("logs/job-1.log") == data
    with store.open("logs/job-1.log") as stream:
        assert stream.read(5) == b"hello"
        assert stream.read() == data[5:]
    assert b"".join(store.iter_chunks("logs/job-1.log", chunk_size=7)) == data


def test_empty_object(store: BlobStore) -> None:
    result = store.put_bytes("empty", b"")
    assert result.size == 0
    assert result.sha256 == hashlib.sha256(b"").hexdigest()
    assert store.get_bytes("empty") == b""
    assert store.stat("empty").size == 0


def test_stream_of_unknown_length_goes_up_in_parts(store: BlobStore) -> None:
    source = PatternStream(20 * MiB + 12345)
    result = store.put_stream("sources/big", source)
    assert result.size == 20 * MiB + 12345
    assert result.sha256 == source.digest.hexdigest()
    assert sha256_of(store.iter_chunks("sources/big")) == (result.size, result.sha256)
    assert store.stat("sources/big").size == result.size


def test_stream_of_known_length(store: BlobStore) -> None:
    data = os.urandom(9 * MiB + 1)
    result = store.put_stream("staging/j/a-1.0-r0.apk", io.BytesIO(data), len(data))
    assert result.size == len(data)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes("staging/j/a-1.0-r0.apk") == data


@pytest.mark.parametrize("actual", [10, 9 * MiB - 1, 9 * MiB + 1, 12])
def test_a_stream_that_does_not_match_its_length_stores_nothing(
    store: BlobStore, actual: int
) -> None:
    announced = 9 * MiB if actual > 100 else 11
    with pytest.raises(BlobStoreError, match="'wrong-length'"):
        store.put_stream("wrong-length", io.BytesIO(b"x" * actual), announced)
    assert not store.exists("wrong-length")
    assert list(store.list("wrong")) == []


def test_overwrite_replaces_content_and_changes_the_etag(store: BlobStore) -> None:
    first = store.put_bytes("repo/main/x86_64/APKINDEX.tar.gz", b"generation 1")
    info1 = store.stat("repo/main/x86_64/APKINDEX.tar.gz")
    second = store.put_bytes("repo/main/x86_64/APKINDEX.tar.gz", b"generation 2!")
    info2 = store.stat("repo/main/x86_64/APKINDEX.tar.gz")
    assert store.get_bytes("repo/main/x86_64/APKINDEX.tar.gz") == b"generation 2!"
    assert info1.etag != info2.etag
    assert first.sha256 != second.sha256
    assert info2.size == len(b"generation 2!")


def test_stat_reports_size_etag_and_time(store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    store.put_bytes("a/b.txt", b"12345")
    info = store.stat("a/b.txt")
    assert (info.key, info.size) == ("a/b.txt", 5)
    assert info.etag
    assert info.last_modified.tzinfo is not None
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=5)


def test_missing_objects(store: BlobStore) -> None:
    for call in (
        lambda: store.get_bytes("no/such/key"),
        lambda: store.stat("no/such/key"),
        lambda: store.open("no/such/key").__enter__(),
        lambda: list(store.iter_chunks("no/such/key")),
        lambda: store.copy("no/such/key", "elsewhere"),
    ):
        with pytest.raises(BlobNotFound, match="'no/such/key'"):
            call()
    assert not store.exists("no/such/key")
    store.delete("no/such/key")  # not an error


def test_a_key_prefix_is_not_an_object(store: BlobStore) -> None:
    store.put_bytes("dir/file", b"x")
    assert not store.exists("dir")
    with pytest.raises(BlobNotFound):
        store.get_bytes("dir")
    store.delete("dir")
    assert store.exists("dir/file")


def test_delete(store: BlobStore) -> None:
    store.put_bytes("staging/job-9/x-1-r0.apk", b"x")
    store.put_bytes("staging/job-9/y-1-r0.apk", b"y")
    store.delete("staging/job-9/x-1-r0.apk")
    assert not store.exists("staging/job-9/x-1-r0.apk")
    assert [i.key for i in store.list("staging/job-9/")] == ["staging/job-9/y-1-r0.apk"]
    store.delete("staging/job-9/y-1-r0.apk")
    assert list(store.list("staging/")) == []


def test_list_by_prefix_in_key_order(store: BlobStore) -> None:
    keys = [
        "repo/main/x86_64/foo-1.0-r0.apk",
        "repo/main/x86_64/APKINDEX.tar.gz",
        "repo/main/x86_64/.generations/0000000001/APKINDEX.tar.gz",
        "repo/main/aarch64/foo-1.0-r0.apk",
        "repo/user/x86_64/bar-2-r1.apk",
        "repo/main/x86_64/bar-2-r1.apk",
        "logs/j1.log",
    ]
    for n, key in enumerate(keys):
        store.put_bytes(key, b"x" * n)
    listed = list(store.list("repo/main/x86_64/"))
    expected = sorted((k for k in keys if k.startswith("repo/main/x86_64/")), key=str.encode)
    assert [i.key for i in listed] == expected
    assert {i.key: i.size for i in listed} == {k: keys.index(k) for k in expected}
    # A prefix can end inside a segment, like S3's.
    assert [i.key for i in store.list("repo/main/x")] == expected
    assert [i.key for i in store.list("repo/main/x86_64/b")] == ["repo/main/x86_64/bar-2-r1.apk"]
    assert [i.key for i in store.list("")] == sorted(keys, key=str.encode)
    assert list(store.list("nothing/here/")) == []
    assert list(store.list("repo/main/x86_64/.generations/0000000002")) == []


def test_copy(store: BlobStore) -> None:
    data = os.urandom(3 * MiB)
    store.put_bytes("staging/job-1/foo-1-r0.apk", data)
    info = store.copy("staging/job-1/foo-1-r0.apk", "repo/main/x86_64/foo-1-r0.apk")
    assert info.key == "repo/main/x86_64/foo-1-r0.apk"
    assert info.size == len(data)
    assert store.get_bytes("repo/main/x86_64/foo-1-r0.apk") == data
    assert store.get_bytes("staging/job-1/foo-1-r0.apk") == data


def test_get_file_downloads_atomically(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(2 * MiB + 3)
    store.put_bytes("sources/file", data)
    target = tmp_path / "out" / "file.tar.gz"
    digest = store.get_file("sources/file", target)
    assert target.read_bytes() == data
    assert (digest.size, digest.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.tar.gz"]
    with pytest.raises(BlobNotFound):
        store.get_file("sources/missing", tmp_path / "out" / "missing")
    assert not (tmp_path / "out" / "missing").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.tar.gz"]


def test_get_bytes_refuses_more_than_max_size(store: BlobStore) -> None:
    store.put_bytes("big", b"x" * 1000)
    assert store.get_bytes("big", max_size=1000) == b"x" * 1000
    with pytest.raises(BlobStoreError, match="'big' is larger than the 999 bytes"):
        store.get_bytes("big", max_size=999)


def test_check(store: BlobStore) -> None:
    store.check()


# --- atomicity ----------------------------------------------------------------


class GatedStream:
    """Yields ``first`` bytes, then blocks until released, then the rest."""

    def __init__(self, data: bytes, first: int) -> None:
        self._data = io.BytesIO(data)
        self._first = first
        self.paused = threading.Event()
        self.release = threading.Event()

    def read(self, size: int = -1, /) -> bytes:
        pos = self._data.tell()
        if pos >= self._first and not self.release.is_set():
            self.paused.set()
            assert self.release.wait(60)
        if pos < self._first:
            size = self._first - pos if size < 0 else min(size, self._first - pos)
        return self._data.read(size)


@pytest.mark.parametrize("size", [1 * MiB, 20 * MiB])
def test_readers_never_see_a_partial_object(store: BlobStore, size: int) -> None:
    """While a write is half done, readers see the old object (or none), then the new one."""
    store.put_bytes("repo/main/x86_64/APKINDEX.tar.gz", b"old index")
    new = os.urandom(size)
    gated = GatedStream(new, first=size // 2)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.put_stream("repo/main/x86_64/APKINDEX.tar.gz", gated)
            store.put_stream("repo/main/x86_64/fresh.apk", io.BytesIO(b"fresh"))
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert gated.paused.wait(60)
    assert store.get_bytes("repo/main/x86_64/APKINDEX.tar.gz") == b"old index"
    assert store.stat("repo/main/x86_64/APKINDEX.tar.gz").size == len(b"old index")
    gated.release.set()
    writer.join(120)
    assert not errors
    assert store.get_bytes("repo/main/x86_64/APKINDEX.tar.gz") == new


def test_a_failed_write_leaves_nothing_behind(store: BlobStore) -> None:
    class Broken:
        def __init__(self) -> None:
            self.sent = 0

        def read(self, size: int = -1, /) -> bytes:
            if self.sent > 12 * MiB:
                raise OSError("network source went away")
            self.sent += 1 * MiB
            return b"z" * MiB

    with pytest.raises((OSError, BlobStoreError)):
        store.put_stream("sources/broken", Broken())
    assert not store.exists("sources/broken")
    assert list(store.list("")) == []


# --- create-only writes ----------------------------------------------------------


def test_put_if_absent_creates_only_once(store: BlobStore) -> None:
    assert store.put_if_absent("audit/000000000001.json", b'{"seq": 1}') is True
    assert store.put_if_absent("audit/000000000001.json", b'{"seq": "forged"}') is False
    assert store.get_bytes("audit/000000000001.json") == b'{"seq": 1}'


def test_put_if_absent_from_a_stream(store: BlobStore) -> None:
    data = os.urandom(1000)
    assert store.put_if_absent("sources/sha256/x", io.BytesIO(data)) is True
    assert store.put_if_absent("sources/sha256/x", io.BytesIO(b"other")) is False
    assert store.get_bytes("sources/sha256/x") == data


def test_put_if_absent_with_a_large_stream(store: BlobStore) -> None:
    first = PatternStream(19 * MiB, seed=1)
    assert store.put_if_absent("trees/big.tar", first) is True
    assert sha256_of(store.iter_chunks("trees/big.tar")) == (19 * MiB, first.digest.hexdigest())
    assert store.put_if_absent("trees/big.tar", PatternStream(19 * MiB, seed=2)) is False
    assert sha256_of(store.iter_chunks("trees/big.tar"))[1] == first.digest.hexdigest()


def test_put_if_absent_checks_the_length(store: BlobStore) -> None:
    with pytest.raises(BlobStoreError, match=re.escape("'audit/000000000009.json'")):
        store.put_if_absent("audit/000000000009.json", io.BytesIO(b"short"), 100)
    assert not store.exists("audit/000000000009.json")


def test_racing_creators_exactly_one_wins(store: BlobStore) -> None:
    """The atomicity check: the existence pre-check cannot decide the race."""
    writers = 8
    start = threading.Barrier(writers)
    results: dict[int, bool] = {}
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            start.wait(30)
            results[n] = store.put_if_absent("audit/000000000042.json", f"writer {n}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    winners = [n for n, created in results.items() if created]
    assert len(results) == writers
    assert len(winners) == 1
    assert store.get_bytes("audit/000000000042.json") == f"writer {winners[0]}".encode()


# --- hostile keys ---------------------------------------------------------------

HOSTILE_KEYS = [
    "",
    "/etc/passwd",
    "../escape",
    "a/../../b",
    "..",
    "a/./b",
    ".",
    "a//b",
    "trailing/",
    "back\\slash",
    "nul\x00byte",
    "new\nline",
    "tab\there",
    "del\x7f",
    "bidi\u202etxt.apk",
    "zero\u200bwidth",
    "x" * 1025,
    "a/" + "s" * 256,
    ".apkfarm-tmp/put-123",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=lambda k: repr(k)[:30])
def test_hostile_keys_are_refused_everywhere(store: BlobStore, key: str) -> None:
    store.put_bytes("fine", b"fine")
    shown = repr(key)[:20]
    for call in (
        lambda: store.put_bytes(key, b"x"),
        lambda: store.put_stream(key, io.BytesIO(b"x")),
        lambda: store.put_if_absent(key, b"x"),
        lambda: store.get_bytes(key),
        lambda: store.open(key),
        lambda: store.stat(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.copy("fine", key),
        lambda: store.copy(key, "fine2"),
    ):
        with pytest.raises(InvalidBlobKey) as caught:
            call()
        assert "invalid blob key" in str(caught.value)
        assert shown[:10] in str(caught.value)
    assert [i.key for i in store.list("")] == ["fine"]


@pytest.mark.parametrize("prefix", ["/", "/abs", "../", "a/../", "..", "a//", "a\\b", "x\x00"])
def test_hostile_list_prefixes_are_refused(store: BlobStore, prefix: str) -> None:
    with pytest.raises(InvalidBlobKey):
        list(store.list(prefix))


def test_unusual_but_valid_keys_round_trip(store: BlobStore) -> None:
    keys = [
        "repo/main/x86_64/gtk+3-3.24.38-r0.apk",
        "repo/main/x86_64/.generations/0000000007/APKINDEX.tar.gz",
        "sources/naïve file (1).tar.gz",
        "logs/a b c.log",
        "x" * 255,
    ]
    for key in keys:
        store.put_bytes(key, key.encode())
    for key in keys:
        assert store.get_bytes(key) == key.encode()
    assert sorted(i.key for i in store.list("")) == sorted(keys)


# --- memory stays flat --------------------------------------------------------------


def test_a_200_mb_object_streams_with_flat_memory(store: BlobStore) -> None:
    """Upload and download 200 MiB; Python's peak allocation stays a few parts' worth."""
    size = 200 * MiB
    source = PatternStream(size, seed=7)
    tracemalloc.start()
    try:
        result = store.put_stream("trees/huge.tar", source)
        _, upload_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got_size, got_sha = sha256_of(store.iter_chunks("trees/huge.tar"))
        _, download_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.size == size == got_size
    assert result.sha256 == source.digest.hexdigest() == got_sha
    # Bounded by the multipart part size (8 MiB) times the parts in flight,
    # not by the object: a store that buffered the object would use > 200 MiB.
    assert upload_peak < 64 * MiB, f"upload peak {upload_peak / MiB:.1f} MiB"
    assert download_peak < 16 * MiB, f"download peak {download_peak / MiB:.1f} MiB"


@pytest.mark.infra
def test_repr_hides_the_secret_key(s3_server: S3Server) -> None:
    s3 = S3BlobStore(
        s3_server.endpoint,
        s3_server.access_key,
        s3_server.secret_key,
        s3_server.bucket,
        secure=s3_server.secure,
        region=s3_server.region,
    )
    assert s3_server.secret_key not in repr(s3)
    assert s3_server.secret_key not in str(vars(s3))
    assert s3_server.bucket in repr(s3)


def test_an_unreachable_server_is_a_clear_error() -> None:
    port = free_port()
    with pytest.raises(BlobStoreError, match=f"cannot reach 127.0.0.1:{port}"):
        S3BlobStore(f"http://127.0.0.1:{port}", "k", "s", "bucket-x", region="us-east-1")
