"""The indexer core publishing real signed packages into a local repository store.

Events are handed to ``Indexer.index_events`` (what one batch does), with a
real signer core behind a ``LocalSignerClient``, as in the embedded mode.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from indexer_support import IndexerFarm, Staging

from apkfarm.apk.keys import Keyring, generate_key_pair
from apkfarm.apk.signing import LocalKeySigner, SignatureFile
from apkfarm.audit import AuditLog
from apkfarm.blobs import layout
from apkfarm.bus import MemoryBus
from apkfarm.services.indexer import metrics
from apkfarm.services.indexer.core import Indexer, JobOutcome
from apkfarm.services.signer.client import LocalSignerClient
from apkfarm.services.signer.core import SignerCore
from apkfarm.services.signer.keys import SigningKeys
from apkfarm.services.signer.ledger import TokenLedger
from apkfarm.v1 import bus_pb2


def index(
    farm: IndexerFarm, events: Sequence[bus_pb2.PackageStaged], **settings: Any
) -> list[JobOutcome]:
    async def go() -> list[JobOutcome]:
        return await farm.indexer(MemoryBus(), **settings).index_events(events)

    return asyncio.run(go())


def names_in(records: Sequence[object]) -> list[str]:
    return [f"{r.name}-{r.version}" for r in records]  # type: ignore[attr-defined]


def test_a_job_is_published_with_an_index_signed_by_the_farm(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    event = farm.stage(["greet", "greet-doc"])
    [outcome] = index(farm, [event])

    assert outcome.published is not None, outcome
    assert outcome.published.generation == 1
    assert outcome.published.added == ("greet-1.0-r0", "greet-doc-1.0-r0")
    records = farm.published_index()
    assert names_in(records) == ["greet-1.0-r0", "greet-doc-1.0-r0"]
    for staged, record in zip(event.packages, records, strict=True):
        key = layout.repository_package_key("main", "x86_64", staged.filename)
        data = farm.repository.inner.get_bytes(key)
        assert hashlib.sha256(data).hexdigest() == staged.sha256
        assert record.size == len(data)
    # The kept generation is the same index.
    assert names_in(farm.generation_index(1)) == names_in(records)


def test_packages_are_uploaded_before_the_index_and_the_state_last(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    index(farm, [farm.stage(["greet", "greet-doc"])])
    index(farm, [farm.stage(["hello"])])

    puts = farm.repository.puts()
    index_key = layout.repository_index_key("main", "x86_64")
    for generation, package in ((1, "greet-doc-1.0-r0.apk"), (2, "hello-1.0-r0.apk")):
        generation_key = layout.repository_generation_key("main", "x86_64", generation)
        # The n-th upload of the index comes after its packages and its generation copy.
        index_at = [i for i, key in enumerate(puts) if key == index_key][generation - 1]
        assert puts.index(f"main/x86_64/{package}") < puts.index(generation_key) < index_at
    package_puts = [i for i, key in enumerate(puts) if key.endswith(".apk")]
    first_index = puts.index(index_key)
    assert [i for i in package_puts if i < first_index] == [0, 1]
    assert puts[-1] == layout.repository_state_key("main", "x86_64")


def test_the_same_event_twice_changes_nothing(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    event = farm.stage(["greet"])
    [first] = index(farm, [event])
    writes = len(farm.repository.puts())
    [again, twice_in_a_batch] = index(farm, [event, event])

    assert first.published is not None and again.published is not None
    assert again.published.generation == 1
    assert not again.published.new_generation
    assert twice_in_a_batch.published == again.published
    assert len(farm.repository.puts()) == writes
    assert names_in(farm.published_index()) == ["greet-1.0-r0"]


def test_a_duplicate_within_one_batch_is_indexed_once(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    event = farm.stage(["greet"])
    outcomes = index(farm, [event, event])
    assert [o.published.generation for o in outcomes if o.published] == [1, 1]
    assert names_in(farm.published_index()) == ["greet-1.0-r0"]


def test_a_newer_version_replaces_the_older(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    index(farm, [farm.stage(["greet", "greet-doc"], version="1.0-r0")])
    [newer] = index(farm, [farm.stage(["greet"], version="1.1-r0")])

    assert newer.published is not None
    assert newer.published.added == ("greet-1.1-r0",)
    assert newer.published.removed == ("greet-1.0-r0",)
    assert names_in(farm.published_index()) == ["greet-1.1-r0", "greet-doc-1.0-r0"]
    # The older file stays while a kept generation names it.
    assert farm.has("main/x86_64/greet-1.0-r0.apk")


def test_an_older_version_than_the_indexed_one_is_refused(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    index(farm, [farm.stage(["greet"], version="1.1-r0")])
    [older] = index(farm, [farm.stage(["greet"], version="1.0-r0")])
    assert older.rejected is not None and older.rejected.reason == "superseded"
    assert "greet-1.1-r0" in str(older.rejected)
    assert names_in(farm.published_index()) == ["greet-1.1-r0"]


def test_in_one_batch_the_newest_version_wins(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    new = farm.stage(["greet"], version="2.0-r0")
    old = farm.stage(["greet"], version="1.9-r3")
    outcomes = index(farm, [new, old])
    assert outcomes[0].published is not None
    assert outcomes[1].rejected is not None and outcomes[1].rejected.reason == "superseded"
    assert names_in(farm.published_index()) == ["greet-2.0-r0"]


REFUSALS = {
    "wrong sha256": (Staging("greet", claimed_sha256="0" * 64), "sha256_mismatch", "SHA-256"),
    "wrong size": (Staging("greet", claimed_size=12345), "size_mismatch", "12345"),
    "wrong name": (
        Staging("openssh", claimed_name="greet"),
        "name_mismatch",
        "the package inside is 'openssh'",
    ),
    "unsigned": (Staging("greet", signing="none"), "signature", "not signed"),
    "signed by another key": (
        Staging("greet", signing="other"),
        "signature",
        "intruder@example.org",
    ),
    "blob key of another job": (
        Staging("greet", blob_key="staging/job-999/greet-1.0-r0.apk"),
        "blob_key",
        "not an object under 'staging/job-1/'",
    ),
    "blob key outside staging": (
        Staging("greet", blob_key="sources/sha256/" + "a" * 64),
        "blob_key",
        "not an object under 'staging/job-1/'",
    ),
    "blob key climbing out": (
        Staging("greet", blob_key="staging/job-1/../job-2/greet-1.0-r0.apk"),
        "blob_key",
        "'..' segments are not allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_staged_package_failing_a_check_is_rejected_and_nothing_published(
    tmp_path: Path, case: str
) -> None:
    spoiled, reason, detail = REFUSALS[case]
    farm = IndexerFarm(tmp_path)
    before = metrics.REJECTED.labels(reason=reason)._value.get()
    event = farm.stage([Staging("greet-doc"), spoiled], pkgname="greet", job_id="job-1")
    [outcome] = index(farm, [event])

    assert outcome.rejected is not None, outcome
    assert outcome.rejected.reason == reason
    assert detail in str(outcome.rejected)
    assert "job-1" in str(outcome.rejected)
    assert farm.repository.puts() == []  # not even the good package of the same job
    assert not farm.has(layout.repository_index_key("main", "x86_64"))
    assert metrics.REJECTED.labels(reason=reason)._value.get() == before + 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: setattr(e, "job_id", "../job"), "malformed_event"),
        (lambda e: setattr(e.template, "arch", "x86/64"), "malformed_event"),
        (lambda e: setattr(e.packages[0], "filename", "other-1.0-r0.apk"), "malformed_event"),
        (lambda e: setattr(e.packages[0], "version", "9.9-r0"), "version_mismatch"),
        (lambda e: setattr(e.packages[0], "arch", "aarch64"), "arch_mismatch"),
        (lambda e: setattr(e.packages[0], "sha256", "XYZ"), "malformed_event"),
        (lambda e: e.ClearField("packages"), "malformed_event"),
    ],
)
def test_malformed_events_are_rejected_before_any_download(
    tmp_path: Path, change: object, reason: str
) -> None:
    farm = IndexerFarm(tmp_path)
    event = farm.stage(["greet"])
    change(event)  # type: ignore[operator]
    [outcome] = index(farm, [event])
    assert outcome.rejected is not None and outcome.rejected.reason == reason, outcome
    assert farm.repository.puts() == []


def test_one_bad_job_does_not_hold_back_the_others_of_its_batch(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    good = farm.stage(["greet"])
    bad = farm.stage([Staging("hello", signing="other")])
    outcomes = index(farm, [good, bad])
    assert outcomes[0].published is not None
    assert outcomes[1].rejected is not None
    assert names_in(farm.published_index()) == ["greet-1.0-r0"]
    assert not farm.has("main/x86_64/hello-1.0-r0.apk")


def test_a_batch_publishes_one_generation_per_repository(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    events = [farm.stage([f"pkg{n}"]) for n in range(6)]
    events.append(farm.stage(["greet"], arch="aarch64"))
    outcomes = index(farm, events)

    generations = {(o.published.arch, o.published.generation) for o in outcomes if o.published}
    assert generations == {("x86_64", 1), ("aarch64", 1)}
    assert len(names_in(farm.published_index())) == 6
    assert names_in(farm.published_index(arch="aarch64")) == ["greet-1.0-r0"]
    assert farm.repository.puts().count(layout.repository_index_key("main", "x86_64")) == 1


def test_generations_are_kept_and_pruned_with_the_files_only_they_name(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    for minor in range(5):
        index(farm, [farm.stage(["greet"], version=f"1.{minor}-r0")], keep_generations=2)

    prefix = layout.repository_generations_prefix("main", "x86_64")
    kept = [
        layout.parse_repository_generation(info.key) for info in farm.repository.inner.list(prefix)
    ]
    assert kept == [4, 5]
    # 1.3 was in generation 4 (kept); 1.0-1.2 were named only by pruned generations.
    for minor, present in [(0, False), (1, False), (2, False), (3, True), (4, True)]:
        assert farm.has(f"main/x86_64/greet-1.{minor}-r0.apk") is present, minor
    for generation in kept:
        assert generation is not None
        for record in farm.generation_index(generation):
            assert farm.has(f"main/x86_64/{record.filename}")
    assert names_in(farm.published_index()) == ["greet-1.4-r0"]


def test_a_restart_reloads_the_state_and_keeps_publishing(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    index(farm, [farm.stage(["greet"])])
    [second] = index(farm, [farm.stage(["hello"])])  # a new Indexer: state read from the store
    assert second.published is not None and second.published.generation == 2
    assert names_in(farm.published_index()) == ["greet-1.0-r0", "hello-1.0-r0"]


def test_a_crash_between_index_and_state_is_redone_without_duplicates(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    index(farm, [farm.stage(["greet"])])
    event = farm.stage(["hello"])
    farm.repository.fail_puts.add(layout.repository_state_key("main", "x86_64"))
    [crashed] = index(farm, [event])
    assert crashed.retry is not None and "injected failure" in crashed.retry
    # The index of generation 2 is out; the state still describes generation 1.
    assert names_in(farm.published_index()) == ["greet-1.0-r0", "hello-1.0-r0"]

    [redone] = index(farm, [event])  # after a restart, the message comes again
    assert redone.published is not None
    assert redone.published.generation == 3  # never a second, different generation 2
    assert names_in(farm.published_index()) == ["greet-1.0-r0", "hello-1.0-r0"]
    [again] = index(farm, [event])
    assert again.published is not None and not again.published.new_generation


def test_a_lost_state_is_rebuilt_from_the_verified_published_index(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    index(farm, [farm.stage(["greet", "greet-doc"])])
    farm.repository.inner.delete(layout.repository_state_key("main", "x86_64"))
    [outcome] = index(farm, [farm.stage(["hello"])])
    assert outcome.published is not None and outcome.published.generation == 2
    assert names_in(farm.published_index()) == ["greet-1.0-r0", "greet-doc-1.0-r0", "hello-1.0-r0"]


def test_a_package_signed_by_a_key_added_later_is_accepted_after_a_refresh(
    tmp_path: Path,
) -> None:
    farm = IndexerFarm(tmp_path)

    async def go() -> tuple[JobOutcome, JobOutcome]:
        indexer = farm.indexer(MemoryBus(), keyring_refresh_seconds=0.0)
        [first] = await indexer.index_events([farm.stage(["greet"])])
        # Rotation: the signer gets a newer key, which becomes the primary.
        generate_key_pair(farm.farm.keys_dir, "farm@example.org", now=0x4000)
        farm.signer.core = SignerCore(
            SigningKeys(farm.farm.keys_dir),
            farm.farm.core.verifier,
            AuditLog(farm.farm.store),
            TokenLedger(farm.farm.store),
        )
        [second] = await indexer.index_events([farm.stage(["hello"])])
        return first, second

    first, second = asyncio.run(go())
    assert first.published is not None
    assert second.published is not None, second
    records = farm.published_index()
    assert names_in(records) == ["greet-1.0-r0", "hello-1.0-r0"]


def test_list_of_repositories_after_a_restart(tmp_path: Path) -> None:
    farm = IndexerFarm(tmp_path)
    index(farm, [farm.stage(["greet"]), farm.stage(["greet"], arch="aarch64", category="user")])

    async def go() -> list[tuple[str, str, int, int, str]]:
        indexer: Indexer = farm.indexer(MemoryBus())
        await indexer.start()
        try:
            found = await indexer.repositories()
        finally:
            await indexer.stop(1.0)
        return [(r.category, r.arch, r.generation, r.package_count, r.index_key) for r in found]

    assert asyncio.run(go()) == [
        ("main", "x86_64", 1, 1, "main/x86_64/APKINDEX.tar.gz"),
        ("user", "aarch64", 1, 1, "user/aarch64/APKINDEX.tar.gz"),
    ]
    assert metrics.INDEX_PACKAGES.labels(category="user", arch="aarch64")._value.get() == 1


class LyingSigner:
    """Answers index signature requests with another key's signature, named ``key_name``."""

    def __init__(self, inner: LocalSignerClient, other_key: Path, *, key_name: str) -> None:
        self.inner = inner
        self.other = LocalKeySigner(other_key)
        self.key_name = key_name

    async def sign_index(self, content: bytes, category: str, arch: str) -> list[SignatureFile]:
        signature = self.other.sign(content).signature
        return [SignatureFile(f".SIGN.RSA256.{self.key_name}", signature)]

    async def public_keys(self) -> Keyring:
        return await self.inner.public_keys()


@pytest.mark.parametrize(
    ("key", "problem"),
    [("farm", "does not match the index"), ("unknown.rsa.pub", "no signature by a key")],
)
def test_an_index_whose_signatures_do_not_verify_is_not_published(
    tmp_path: Path, key: str, problem: str
) -> None:
    farm = IndexerFarm(tmp_path)
    key_name = farm.farm.new_key.key_name if key == "farm" else key
    liar = LyingSigner(farm.signer, farm.other_key.private_path, key_name=key_name)

    async def go() -> JobOutcome:
        indexer = farm.indexer(MemoryBus(), signer=liar)  # type: ignore[arg-type]
        [outcome] = await indexer.index_events([farm.stage(["greet"])])
        return outcome

    outcome = asyncio.run(go())
    assert outcome.retry is not None and problem in outcome.retry, outcome
    assert not farm.has(layout.repository_index_key("main", "x86_64"))
    assert not farm.has(layout.repository_generation_key("main", "x86_64", 1))
