"""The indexer's pure parts: its state format, the batcher, and the repository-store keys."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from apkfarm.apk.index import IndexRecord
from apkfarm.apk.index_state import FileStamp, IndexState, StateEntry
from apkfarm.blobs import InvalidBlobKey, layout
from apkfarm.services.indexer.batching import Batcher
from apkfarm.services.indexer.state import (
    RepositoryState,
    StateError,
    decode_repository_state,
    encode_repository_state,
)


def entry(name: str, version: str) -> StateEntry:
    record = IndexRecord(
        checksum="Q1" + "A" * 27 + "=",
        name=name,
        version=version,
        arch="x86_64",
        size=1234,
        installed_size=4096,
        build_time=1_700_000_000,
    )
    return StateEntry.from_record(record.filename, FileStamp(1234, "ab" * 32), record)


def test_the_repository_state_round_trips() -> None:
    entries = {e.file_name: e for e in (entry("greet", "1.1-r0"), entry("hello", "2.0-r1"))}
    state = RepositoryState(
        index=IndexState(entries, "main x86_64"),
        generation=7,
        published_at=1_700_000_123.5,
        generations=(5, 6, 7),
        retired={"greet-1.0-r0.apk": 6},
    )
    decoded = decode_repository_state(encode_repository_state(state))
    assert decoded.generation == 7
    assert decoded.published_at == 1_700_000_123.5
    assert decoded.generations == (5, 6, 7)
    assert decoded.retired == {"greet-1.0-r0.apk": 6}
    assert decoded.index.entries == state.index.entries
    assert decoded.index.description == "main x86_64"
    assert decoded.index.apkindex() == state.index.apkindex()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"apkfarm-index-state 2\nD:\n\n", "not an apkfarm repository state"),
        (b"apkfarm-repository-state 1\n{not json\n", "unreadable header"),
        (b'apkfarm-repository-state 1\n{"generation": -1}\n', "generation"),
        (
            b'apkfarm-repository-state 1\n{"generation":1,"published_at":0,'
            b'"generations":[1],"retired":{}}\nnonsense',
            "not an apkfarm index state",
        ),
    ],
)
def test_a_damaged_state_is_refused_with_the_reason(data: bytes, problem: str) -> None:
    with pytest.raises(StateError, match=problem):
        decode_repository_state(data, "main/x86_64/.apkfarm/index.state")


def test_repository_store_keys() -> None:
    assert layout.repository_dir("main/debug", "riscv64") == "main/debug/riscv64/"
    assert (
        layout.repository_package_key("main", "x86_64", "gtk+3-3.24.38-r0.apk")
        == "main/x86_64/gtk+3-3.24.38-r0.apk"
    )
    assert layout.repository_index_key("user", "aarch64") == "user/aarch64/APKINDEX.tar.gz"
    key = layout.repository_generation_key("main", "x86_64", 12)
    assert key == "main/x86_64/.generations/0000000012/APKINDEX.tar.gz"
    assert layout.parse_repository_generation(key) == 12
    assert layout.parse_repository_generation("main/x86_64/APKINDEX.tar.gz") is None
    state_key = layout.repository_state_key("main/debug", "x86_64")
    assert state_key == "main/debug/x86_64/.apkfarm/index.state"
    assert layout.parse_repository_state_key(state_key) == ("main/debug", "x86_64")
    assert layout.parse_repository_state_key("Main/x86_64/.apkfarm/index.state") is None
    assert layout.parse_repository_state_key("main/x86_64/greet-1.0-r0.apk") is None
    for bad in ("../main", "main//x"):
        with pytest.raises(InvalidBlobKey):
            layout.repository_index_key(bad, "x86_64")
    with pytest.raises(InvalidBlobKey):
        layout.repository_package_key("main", "x86_64", "../index.state")


def test_the_batcher_groups_a_burst_and_returns_each_item_its_result() -> None:
    batches: list[list[int]] = []

    async def process(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    async def go() -> list[int]:
        batcher = Batcher[int, int](process, window=0.2, max_items=100)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(n) for n in range(5)))
        await batcher.close()
        return list(results)

    assert asyncio.run(go()) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]


def test_a_full_batch_does_not_wait_for_the_window() -> None:
    batches: list[list[int]] = []

    async def process(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return list(items)

    async def go() -> None:
        batcher = Batcher[int, int](process, window=600.0, max_items=3)
        batcher.start()
        await asyncio.wait_for(asyncio.gather(*(batcher.submit(n) for n in range(6))), 10)
        await batcher.cancel()

    asyncio.run(go())
    assert batches == [[0, 1, 2], [3, 4, 5]]


def test_items_arriving_during_a_batch_go_into_the_next() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def process(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()
        return list(items)

    async def go() -> None:
        batcher = Batcher[int, int](process, window=0.0, max_items=100)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(1))
        while not batches:
            await asyncio.sleep(0)
        later = [asyncio.ensure_future(batcher.submit(n)) for n in (2, 3)]
        await asyncio.sleep(0)
        release.set()
        await asyncio.wait_for(asyncio.gather(first, *later), 10)
        await batcher.close()

    asyncio.run(go())
    assert batches == [[1], [2, 3]]


def test_a_failing_batch_fails_each_of_its_items() -> None:
    async def process(items: Sequence[int]) -> list[int]:
        raise RuntimeError("broken")

    async def go() -> list[BaseException | int]:
        batcher = Batcher[int, int](process, window=0.0, max_items=10)
        batcher.start()
        results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        await batcher.close()
        return list(results)

    results = asyncio.run(go())
    assert all(isinstance(r, RuntimeError) for r in results)
