"""Index records, the signed index file and the incremental repository state."""

from __future__ import annotations

import base64
import io
import os
import random
import re
import shutil
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from apk_support import (
    OTHER_PUBLIC,
    VECTOR_PRIVATE,
    VECTOR_PUBLIC,
    identity,
    independent_members,
    tar_file_content,
    tar_members,
    write_tree,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from apkfarm.apk.assemble import write_signed_package
from apkfarm.apk.errors import ApkError, ApkFormatError, ApkSignatureError
from apkfarm.apk.index import (
    IndexRecord,
    build_index_from_records,
    index_content_member,
    parse_apkindex,
    read_index,
    read_index_records,
    render_apkindex,
    sort_records,
    verify_index_records,
)
from apkfarm.apk.index_state import (
    FileStamp,
    IndexState,
    Journal,
    StateChanges,
    StateEntry,
    apply_changes,
    apply_update,
    decode_journal,
    decode_state,
    encode_changes,
    encode_state,
    journal_header,
    plan_changes,
    plan_update,
    state_identity,
)
from apkfarm.apk.keys import Keyring, generate_key_pair
from apkfarm.apk.package import build_package
from apkfarm.apk.pkginfo import PkgInfo
from apkfarm.apk.repository import (
    INDEX_NAME,
    JOURNAL_NAME,
    STATE_NAME,
    Repository,
    list_packages,
    read_packages,
    update_repository,
)
from apkfarm.apk.segmented_gzip import PIECE_RULE, record_pieces
from apkfarm.apk.signing import LocalKeySigner

RECORD = IndexRecord(
    checksum="Q1" + "A" * 26 + "=",
    name="foo",
    version="1.0-r0",
    arch="x86_64",
    size=1234,
    installed_size=4096,
    description="Foo",
    url="https://example.org",
    license="MIT",
    origin="foo",
    maintainer="Me <me@example.org>",
    build_time=1_700_000_000,
    commit="c0ffee",
    provider_priority=10,
    depends=("so:libc.musl-x86_64.so.1", "bar>=2"),
    provides=("cmd:foo=1.0-r0",),
    install_if=("foo-base", "baz"),
)


@pytest.fixture(scope="module")
def keys(vectors: Path) -> Path:
    return vectors / "apk" / "keys"


@pytest.fixture(scope="module")
def signer(keys: Path) -> LocalKeySigner:
    return LocalKeySigner(keys / VECTOR_PRIVATE)


@pytest.fixture(scope="module")
def keyring(keys: Path) -> Keyring:
    return Keyring.from_files([keys / VECTOR_PUBLIC])


def test_record_renders_in_apk_field_order() -> None:
    assert RECORD.render() == (
        "C:Q1AAAAAAAAAAAAAAAAAAAAAAAAAA=\nP:foo\nV:1.0-r0\nA:x86_64\nS:1234\nI:4096\n"
        "T:Foo\nU:https://example.org\nL:MIT\no:foo\nm:Me <me@example.org>\nt:1700000000\n"
        "c:c0ffee\nk:10\nD:so:libc.musl-x86_64.so.1 bar>=2\np:cmd:foo=1.0-r0\ni:foo-base baz\n"
    )
    minimal = IndexRecord("Q1x", "m", "1-r0", "noarch", 1, 0)
    assert minimal.render() == "C:Q1x\nP:m\nV:1-r0\nA:noarch\nS:1\nI:0\nT:\nU:\nL:\n"
    assert IndexRecord.parse(RECORD.render()) == RECORD
    assert IndexRecord.parse(minimal.render()) == minimal


def test_unknown_fields_survive_a_round_trip_and_bad_lines_are_refused() -> None:
    text = RECORD.render() + "z:future field\nQ:an uppercase one\n"
    parsed = IndexRecord.parse(text)
    assert parsed.extra == (("z", "future field"), ("Q", "an uppercase one"))
    assert parsed.render() == text
    with pytest.raises(ApkFormatError, match="malformed line"):
        parse_apkindex(b"C:x\nP:y\nV:1\nnot a field\n\n")
    with pytest.raises(ApkFormatError, match="record without V: field"):
        parse_apkindex(b"C:x\nP:y\n\n")


def test_records_sort_by_name_then_apk_version() -> None:
    versions = ["1.10-r0", "1.2-r0", "1.2_rc1-r0", "1.2-r1", "1.2_p1-r0"]
    records = [IndexRecord(f"Q1{v}", "foo", v, "x86_64", 1, 1) for v in versions]
    records.append(IndexRecord("Q1a", "aaa", "9-r0", "x86_64", 1, 1))
    ordered = [(r.name, r.version) for r in sort_records(records)]
    assert ordered == [
        ("aaa", "9-r0"),
        ("foo", "1.2_rc1-r0"),
        ("foo", "1.2-r0"),
        ("foo", "1.2-r1"),
        ("foo", "1.2_p1-r0"),
        ("foo", "1.10-r0"),
    ]
    text = render_apkindex(reversed(records))
    assert text == render_apkindex(records)
    assert text.endswith(b"\n\n") and text.count(b"\n\n") == len(records)


def test_signed_index_round_trip_several_signers_and_rejections(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring, keys: Path
) -> None:
    pair = generate_key_pair(tmp_path, "next@example.org", now=1)
    data = build_index_from_records(
        [RECORD], "my repo", [signer, LocalKeySigner(pair.private_path)]
    )
    members = independent_members(data)
    assert len(members) == 2
    assert tar_file_content(members[1].raw, "DESCRIPTION") == b"my repo"
    assert [m.name for m in tar_members(members[1].raw)] == ["DESCRIPTION", "APKINDEX"]
    assert members[1].raw.endswith(bytes(1024))
    assert [m.name for m in tar_members(members[0].raw)] == [
        ".SIGN.RSA256." + VECTOR_PUBLIC,
        ".SIGN.RSA256.next@example.org-1.rsa.pub",
    ]
    for trusted in (keyring, Keyring.from_files([pair.public_path])):
        index = read_index(io.BytesIO(data), trusted)
        assert index.records == [RECORD] and index.description == "my repo"
    with pytest.raises(ApkSignatureError, match="not trusted"):
        read_index(io.BytesIO(data), Keyring.from_files([keys / OTHER_PUBLIC]))
    # Same records, same bytes.
    assert (
        build_index_from_records([RECORD], "my repo", [signer, LocalKeySigner(pair.private_path)])
        == data
    )
    # A package is not an index.
    path = tmp_path / INDEX_NAME
    path.write_bytes(data)
    assert read_index_records(path) == [RECORD]
    assert verify_index_records(path, keyring) == [RECORD]


# ----------------------------------------------------------------------------- state


def entry(
    name: str, version: str, stamp: str = "1", *, build_time: int = 5, variant: str = ""
) -> StateEntry:
    record = IndexRecord(
        f"Q1{name}{version}{variant}", name, version, "x86_64", 10, 20, build_time=build_time
    )
    return StateEntry.from_record(record.filename, FileStamp(10, stamp), record)


def random_entry(rng: random.Random, name: str, version: str = "1.0-r0") -> StateEntry:
    """An entry whose checksum looks like a real one (random), so the index has pieces."""
    checksum = "Q1" + base64.b64encode(rng.randbytes(20)).decode()
    record = IndexRecord(
        checksum, name, version, "x86_64", rng.randrange(1, 10**6), 20, "a package", build_time=7
    )
    return StateEntry.from_record(record.filename, FileStamp(record.size, "1"), record)


def state_v2(state: IndexState) -> bytes:
    """``state`` as format 2 wrote it: a manifest line per package, then the records."""
    ordered = state.ordered
    manifest = "\n".join(
        f"{e.file_name}\t{e.size}\t{e.stamp}\t{e.build_time}\t{e.name}\t{e.version}"
        for e in ordered
    )
    records = "".join(e.record_text + "\n" for e in ordered)
    return f"apkfarm-index-state 2\nD:{state.description}\n\n{manifest}\n\n{records}".encode()


def reseal(data: bytes) -> bytes:
    """A format-3 state whose body was edited, with its checksum made to match again."""
    body = data.partition(b"\n")[2]
    return b"apkfarm-index-state 3 %08x\n" % zlib.crc32(body) + body


def assert_same_state(incremental: IndexState, full: IndexState) -> None:
    """Whatever way a state was reached, it is the same state, text and bytes."""
    assert incremental.entries == full.entries
    assert list(incremental.entries) == list(full.entries)  # both in index order
    assert incremental.apkindex() == full.apkindex() == render_apkindex(full.records())
    assert incremental.apkindex_pieces() == record_pieces(full.apkindex())
    assert encode_state(incremental) == encode_state(full)
    assert decode_state(encode_state(incremental)) == full


def test_plan_and_apply_are_incremental() -> None:
    a, b, c = entry("a", "1-r0"), entry("b", "1-r0"), entry("c", "1-r0")
    state = IndexState({e.file_name: e for e in (a, b, c)}, "desc")
    listing = {
        a.file_name: a.file_stamp,
        b.file_name: FileStamp(10, "2"),  # rewritten
        "d-1-r0.apk": FileStamp(7, "1"),  # new
    }  # c removed
    plan = plan_update(state, listing)
    assert plan.added == ("d-1-r0.apk",)
    assert plan.changed == (b.file_name,)
    assert plan.removed == (c.file_name,)
    assert plan.to_read == ("b-1-r0.apk", "d-1-r0.apk")
    assert plan.unchanged == 1
    assert plan_update(state, listing, verify_all=True).to_read == tuple(sorted(listing))
    new = apply_update(state, plan, [entry("b", "1-r0", "2"), entry("d", "1-r0")])
    assert sorted(new.entries) == ["a-1-r0.apk", "b-1-r0.apk", "d-1-r0.apk"]
    assert new.entries["b-1-r0.apk"].stamp == "2"
    assert new.description == "desc"
    assert new.apkindex() == render_apkindex(new.records())


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
            st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,2}){0,2}-r[0-9]", fullmatch=True),
            st.text(alphabet="0123456789abcdef", min_size=1, max_size=20),
        ),
        max_size=20,
    ),
    st.text(
        alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)),
        max_size=40,
    ),
)
def test_property_state_encoding_round_trips(
    items: list[tuple[str, str, str]], description: str
) -> None:
    state = IndexState({e.file_name: e for e in (entry(n, v, s) for n, v, s in items)}, description)
    decoded = decode_state(encode_state(state))
    assert decoded == state
    assert decoded.apkindex() == state.apkindex()


# Few names and versions, so that runs of one name with several versions are common.
_NAMES = st.sampled_from(["a", "b", "foo", "foo-bar", "foo_bar", "z"])
_VERSIONS = st.sampled_from(["1.0-r0", "1.0-r1", "1.10-r0", "1.2_rc1-r0", "2-r0", "not@valid"])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(_NAMES, _VERSIONS, st.sampled_from(["", "x"])), max_size=12),
    st.lists(
        st.lists(
            st.one_of(
                st.tuples(st.just("add"), _NAMES, _VERSIONS, st.sampled_from(["", "x", "y"])),
                st.tuples(st.just("remove"), st.integers(0, 50)),
            ),
            max_size=5,
        ),
        max_size=6,
    ),
)
def test_property_incremental_updates_equal_a_full_build(
    initial: list[tuple[str, str, str]], steps: list[list[tuple[Any, ...]]]
) -> None:
    entries = {e.file_name: e for e in (entry(n, v, variant=x) for n, v, x in initial)}
    state = IndexState(entries, "d")
    for step in steps:
        written: list[StateEntry] = []
        deleted: list[str] = []
        for change in step:
            if change[0] == "add":
                _, name, version, variant = change
                written.append(entry(name, version, "2", variant=variant, build_time=len(variant)))
            elif entries:
                deleted.append(sorted(entries)[change[1] % len(entries)])
        plan = plan_changes(state, written=[e.file_name for e in written], deleted=deleted)
        state = apply_update(state, plan, written)
        for name in plan.removed:
            del entries[name]
        entries.update((e.file_name, e) for e in written)
        assert_same_state(state, IndexState(entries, "d"))
        assert state.newest_build_time() == max((e.build_time for e in entries.values()), default=0)


def test_a_large_index_keeps_its_pieces_through_updates() -> None:
    rng = random.Random(3)
    entries = [random_entry(rng, f"p{i:04d}") for i in range(3000)]
    state = IndexState({e.file_name: e for e in entries}, "big")
    assert len(state.apkindex_pieces()) > 3
    assert_same_state(decode_state(encode_state(state)), state)
    expected = {e.file_name: e for e in entries}
    # One at a time (spliced in place) and a large batch (the state is sorted afresh).
    for batch in (1, 1, 5, 200):
        added = [random_entry(rng, f"p{rng.randrange(4000):04d}a") for _ in range(batch)]
        removed = rng.sample(sorted(expected), batch)
        plan = plan_changes(state, written=[e.file_name for e in added], deleted=removed)
        state = apply_update(decode_state(encode_state(state)), plan, added)
        for name in removed:
            expected.pop(name, None)
        expected.update((e.file_name, e) for e in added)
        assert_same_state(state, IndexState(expected, "big"))
    content = index_content_member("big", state.apkindex(), mtime=7)
    assert index_content_member(
        "big", state.apkindex(), mtime=7, pieces=state.apkindex_pieces()
    ) == (content)


def test_a_journal_replays_its_batches_and_stops_at_a_torn_one() -> None:
    rng = random.Random(6)
    base = IndexState({e.file_name: e for e in (random_entry(rng, f"b{i}") for i in range(50))})
    encoded = encode_state(base)
    identity = state_identity(encoded)
    assert identity is not None and state_identity(b"apkfarm-index-state 2\nD:\n\n") is None
    batches = [
        StateChanges((), (random_entry(rng, "new"),), "one"),
        StateChanges(("b1-1.0-r0.apk", "b2-1.0-r0.apk"), (random_entry(rng, "b3"),), "two"),
        StateChanges(("new-1.0-r0.apk",), (), "three"),
    ]
    journal = journal_header(identity) + b"".join(encode_changes(b) for b in batches)
    replayed = decode_journal(journal, identity)
    assert replayed == Journal(tuple(batches), intact=True)
    expected = base
    for batch in batches:
        plan = plan_changes(expected, written=[e.file_name for e in batch.written])
        plan = replace(plan, removed=batch.removed)
        expected = replace(
            apply_update(expected, plan, batch.written), description=batch.description
        )
    assert_same_state(apply_changes(base, replayed.changes), expected)
    assert apply_changes(base, replayed.changes).description == "three"
    # A batch cut short (a crash while appending) ends the journal; it is not intact.
    for cut in (1, 10, len(encode_changes(batches[2])) - 1):
        torn = decode_journal(journal[:-cut], identity)
        assert torn == Journal(tuple(batches[:2]), intact=False)
    # A journal that follows another state file holds nothing for this one.
    assert decode_journal(journal, "00000000-1") == Journal((), intact=False)
    assert decode_journal(journal_header(identity), identity) == Journal((), intact=True)
    # A whole batch (its checksum matches) that does not decode is an error, not a tail.
    bogus = b"X:\nnot a state"
    with pytest.raises(ApkFormatError, match="batch 1"):
        decode_journal(
            journal_header(identity) + b"B %d %08x\n" % (len(bogus), zlib.crc32(bogus)) + bogus,
            identity,
        )
    with pytest.raises(ApkFormatError, match="not a file name"):
        encode_changes(StateChanges(("a\tb.apk",), (), ""))


def test_format_2_states_are_still_read() -> None:
    rng = random.Random(5)
    state = IndexState({e.file_name: e for e in (random_entry(rng, n) for n in "qwerty")}, "old")
    assert_same_state(decode_state(state_v2(state)), state)
    assert decode_state(state_v2(IndexState({}, "empty"))) == IndexState({}, "empty")


def test_a_state_from_another_cutting_rule_gets_its_pieces_found_again() -> None:
    rng = random.Random(4)
    state = IndexState({e.file_name: e for e in (random_entry(rng, f"n{i}") for i in range(900))})
    data = encode_state(state)
    assert b"\nR:" + PIECE_RULE.encode() + b"\n" in data
    other = reseal(data.replace(b"\nR:" + PIECE_RULE.encode() + b"\n", b"\nR:older-rule\n"))
    # All pieces marked as ending after every record: ignored, found from the text again.
    count = len(state.entries)
    other = reseal(other[: -len(state.apkindex()) - count] + b"\x01" * count + state.apkindex())
    assert_same_state(decode_state(other), state)


def test_bad_state_is_refused() -> None:
    with pytest.raises(ApkFormatError, match="not an apkfarm index state"):
        decode_state(b"{}")
    with pytest.raises(ApkFormatError, match="not an apkfarm index state"):
        decode_state(b"apkfarm-index-state 3 nothex!!\nD:\n")
    with pytest.raises(ApkFormatError, match="manifest and records do not match"):
        decode_state(b"apkfarm-index-state 2\nD:\n\nx.apk\t1\t2\t3\n\nC:1\nP:a\nV:1\n\n")
    with pytest.raises(ApkFormatError, match="malformed numbers"):
        decode_state(b"apkfarm-index-state 2\nD:\n\nx.apk\tNaN\t2\t3\ta\t1\n\nC:1\nP:a\nV:1\n\n")
    with pytest.raises(ApkFormatError, match="another version"):
        decode_state(b"apkfarm-index-state 1\nD:\n\n")

    state = IndexState({e.file_name: e for e in (entry("a", "1-r0"), entry("b", "1-r0"))}, "d")
    good = encode_state(state)
    assert decode_state(reseal(good)) == state
    damaged = bytearray(good)
    damaged[-5] ^= 1  # one bit of a record
    problems = {
        "checksum mismatch": bytes(damaged),
        "checksum mismatch ": good[:-1],  # truncated
        "columns and count do not match": reseal(good.replace(b"\nN:2\n", b"\nN:3\n")),
        "malformed count": reseal(good.replace(b"\nN:2\n", b"\nN:two\n")),
        "appears twice": reseal(good.replace(b"b-1-r0.apk", b"a-1-r0.apk")),
        "not in index order": reseal(good.replace(b"\nP:a\tb\n", b"\nP:b\ta\n")),
        "records and lengths do not match": reseal(good + b"C:extra\n\n"),
        "malformed piece ends": reseal(good.replace(b"\x00C:", b"\x02C:")),
        "truncated": reseal(good.partition(b"\nZ:1\t1\n")[0] + b"\nZ:1\t1\n"),
        "V: line missing": reseal(good.replace(b"\nV:", b"\nX:")),
        "not UTF-8": reseal(good.replace(b"\nD:d\n", b"\nD:\xff\n")),
    }
    for problem, data in problems.items():
        with pytest.raises(ApkFormatError, match=problem.strip()):
            decode_state(data)
    with pytest.raises(ApkFormatError, match="one line"):
        encode_state(IndexState({}, "two\nlines"))
    with pytest.raises(ApkFormatError, match="not one rendered index record"):
        IndexState({"x.apk": entry("x", "1-r0")._replace(file_name="x.apk", record_text="P:x")})
    with pytest.raises(ApkFormatError, match="out of range"):
        IndexState({"x.apk": entry("x", "1-r0")._replace(file_name="x.apk", size=2**63)})


# ----------------------------------------------------------------------------- repository


def make_package(
    directory: Path, signer: LocalKeySigner, name: str, version: str = "1.0-r0"
) -> Path:
    tree = directory.parent / f"tree-{name}-{version}"
    write_tree(tree, {f"usr/share/{name}/README": f"{name} {version}\n".encode()})
    info = PkgInfo(
        pkgname=name, pkgver=version, arch="x86_64", builddate=1_700_000_000, origin=name
    )
    path = directory / f"{name}-{version}.apk"
    with build_package(tree, info) as unsigned, path.open("wb") as out:
        write_signed_package(out, unsigned, [signer])
    return path


def test_repository_updates_incrementally(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("alpha", "beta", "gamma"):
        make_package(repo, signer, name)
    first = update_repository(repo, signers=[signer], keyring=keyring, description="test")
    assert first.added == ("alpha-1.0-r0.apk", "beta-1.0-r0.apk", "gamma-1.0-r0.apk")
    assert first.reread == 3 and first.wrote_index and first.state_was_reset
    records = verify_index_records(repo / INDEX_NAME, keyring)
    assert [r.name for r in records] == ["alpha", "beta", "gamma"]
    for record in records:
        data = (repo / record.filename).read_bytes()
        assert record.checksum == identity(independent_members(data)[1].compressed)
        assert record.size == len(data)

    again = update_repository(repo, signers=[signer], keyring=keyring, description="test")
    assert (again.reread, again.wrote_index, again.unchanged) == (0, False, 3)

    make_package(repo, signer, "delta")
    (repo / "beta-1.0-r0.apk").unlink()
    step = update_repository(repo, signers=[signer], keyring=keyring, description="test")
    assert (step.added, step.removed, step.reread) == (
        ("delta-1.0-r0.apk",),
        ("beta-1.0-r0.apk",),
        1,
    )
    assert [r.name for r in read_index_records(repo / INDEX_NAME)] == ["alpha", "delta", "gamma"]

    # A rebuilt package (new bytes, new mtime) is noticed and reread.
    os.utime(make_package(repo, signer, "alpha"), ns=(1, 1))
    changed = update_repository(repo, signers=[signer], keyring=keyring, description="test")
    assert changed.changed == ("alpha-1.0-r0.apk",) and changed.reread == 1

    everything = update_repository(
        repo, signers=[signer], keyring=keyring, description="test", verify_all=True
    )
    assert everything.reread == 3 and everything.wrote_index


def test_repository_refuses_bad_packages_and_keeps_the_old_index(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring, keys: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    make_package(repo, signer, "good")
    update_repository(repo, signers=[signer], keyring=keyring)
    index_before = (repo / INDEX_NAME).read_bytes()
    state_before = (repo / STATE_NAME).read_bytes()

    shutil.copy(make_package(tmp_path, signer, "renamed"), repo / "other-name-1-r0.apk")
    with pytest.raises(
        ApkError,
        match=re.escape("other-name-1-r0.apk: file name does not match the package inside"),
    ):
        update_repository(repo, signers=[signer], keyring=keyring)
    (repo / "other-name-1-r0.apk").unlink()

    pair = generate_key_pair(tmp_path / "k", "stranger@example.org", now=2)
    make_package(repo, LocalKeySigner(pair.private_path), "foreign")
    with pytest.raises(
        ApkError, match=r"(?s)1 package\(s\) failed verification.*foreign-1.0-r0.apk: .*not trusted"
    ):
        update_repository(repo, signers=[signer], keyring=keyring)
    assert (repo / INDEX_NAME).read_bytes() == index_before
    assert (repo / STATE_NAME).read_bytes() == state_before


def test_a_damaged_state_file_means_a_full_reread(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    make_package(repo, signer, "one")
    update_repository(repo, signers=[signer], keyring=keyring)
    (repo / STATE_NAME).write_text("garbage")
    result = update_repository(repo, signers=[signer], keyring=keyring)
    assert result.state_was_reset and result.reread == 1 and result.wrote_index


def test_parallel_reading_matches_serial(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for i in range(300):  # above the threshold where worker processes are used
        make_package(repo, signer, f"p{i:03d}")
    names = sorted(list_packages(repo))
    seen: list[tuple[int, int]] = []
    parallel = read_packages(
        repo, names, keyring, jobs=2, progress=lambda d, t: seen.append((d, t))
    )
    serial = read_packages(repo, names[:5], keyring, jobs=1)
    assert parallel[:5] == serial
    assert len(parallel) == 300 and seen[-1] == (300, 300)


def test_warm_repository_takes_changes_from_events(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    repo_dir = tmp_path / "repo"
    repo_dir.mkdir()
    make_package(repo_dir, signer, "base")
    repository = Repository(repo_dir, signers=[signer], keyring=keyring, description="warm")
    assert repository.refresh().added == ("base-1.0-r0.apk",)
    make_package(repo_dir, signer, "extra")
    # A file nobody announced is not read by the event-driven path...
    make_package(repo_dir, signer, "unannounced")
    update = repository.packages_changed(written=["extra-1.0-r0.apk"])
    assert (update.added, update.reread, update.packages) == (("extra-1.0-r0.apk",), 1, 2)
    assert [r.name for r in read_index_records(repo_dir / INDEX_NAME)] == ["base", "extra"]
    (repo_dir / "base-1.0-r0.apk").unlink()
    update = repository.packages_changed(deleted=["base-1.0-r0.apk"])
    assert update.removed == ("base-1.0-r0.apk",) and update.reread == 0
    # ...but the next scan finds it, and the state on disk matches what the process held.
    assert Repository(repo_dir, signers=[signer], keyring=keyring).state == repository.state
    assert repository.refresh().added == ("unannounced-1.0-r0.apk",)
    assert [r.name for r in read_index_records(repo_dir / INDEX_NAME)] == ["extra", "unannounced"]


def test_updates_are_journalled_and_folded_into_the_state_file(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("apkfarm.apk.repository._JOURNAL_MAX_BATCHES", 2)
    repo = tmp_path / "repo"
    repo.mkdir()
    make_package(repo, signer, "first")
    update_repository(repo, signers=[signer], keyring=keyring, description="j")
    state_file = (repo / STATE_NAME).read_bytes()
    journal = (repo / JOURNAL_NAME).read_bytes()
    assert journal.startswith(b"apkfarm-index-journal 1 ") and journal.count(b"\n") == 1

    def index_like_a_fresh_build() -> None:
        """The index equals, byte for byte, one built from nothing over the same files."""
        fresh = tmp_path / "fresh"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh.mkdir()
        for package in repo.glob("*.apk"):
            shutil.copy(package, fresh / package.name)
        update_repository(fresh, signers=[signer], keyring=keyring, description="j")
        assert (repo / INDEX_NAME).read_bytes() == (fresh / INDEX_NAME).read_bytes()
        # The state reloaded from file and journal holds the same records (the stamps
        # differ: the copies have other mtimes).
        reloaded = Repository(repo, signers=[signer], keyring=keyring).state
        rebuilt = Repository(fresh, signers=[signer], keyring=keyring).state
        assert list(reloaded.entries) == list(rebuilt.entries)
        assert reloaded.apkindex() == rebuilt.apkindex()
        assert reloaded.apkindex_pieces() == record_pieces(rebuilt.apkindex())

    # Two updates are appended to the journal; the state file stays as it was.
    make_package(repo, signer, "second")
    assert update_repository(repo, signers=[signer], keyring=keyring, description="j").reread == 1
    make_package(repo, signer, "third")
    (repo / "first-1.0-r0.apk").unlink()
    update_repository(repo, signers=[signer], keyring=keyring, description="j")
    assert (repo / STATE_NAME).read_bytes() == state_file
    assert (repo / JOURNAL_NAME).read_bytes().startswith(journal)
    assert (repo / JOURNAL_NAME).read_bytes().count(b"\nB ") == 2
    index_like_a_fresh_build()
    # The third is folded into a new state file, with an empty journal after it.
    make_package(repo, signer, "fourth")
    update_repository(repo, signers=[signer], keyring=keyring, description="j")
    assert (repo / STATE_NAME).read_bytes() != state_file
    assert (repo / JOURNAL_NAME).read_bytes().count(b"\n") == 1
    index_like_a_fresh_build()

    # A batch cut short by a crash: what it held is read again, and the state file is
    # rewritten rather than the torn journal appended to.
    make_package(repo, signer, "fifth")
    update_repository(repo, signers=[signer], keyring=keyring, description="j")
    with (repo / JOURNAL_NAME).open("r+b") as torn:
        torn.truncate(torn.seek(0, os.SEEK_END) - 7)
    state_file = (repo / STATE_NAME).read_bytes()
    again = update_repository(repo, signers=[signer], keyring=keyring, description="j")
    assert again.added == ("fifth-1.0-r0.apk",) and not again.state_was_reset
    assert (repo / STATE_NAME).read_bytes() != state_file
    index_like_a_fresh_build()

    # A journal left over from an older state file (a crash while folding) is not
    # applied to the newer one: it would bring back a package removed since.
    make_package(repo, signer, "sixth")
    update_repository(repo, signers=[signer], keyring=keyring, description="j")
    old_journal = (repo / JOURNAL_NAME).read_bytes()
    assert old_journal.count(b"\nB ") == 1
    (repo / "sixth-1.0-r0.apk").unlink()
    update_repository(repo, signers=[signer], keyring=keyring, description="j")
    make_package(repo, signer, "seventh")
    update_repository(repo, signers=[signer], keyring=keyring, description="j")  # folds
    (repo / JOURNAL_NAME).write_bytes(old_journal)
    untouched = update_repository(repo, signers=[signer], keyring=keyring, description="j")
    assert (untouched.removed, untouched.wrote_index) == ((), False)
    index_like_a_fresh_build()

    # Large changes go straight to a new state file, even when the journal has room.
    (repo / "seventh-1.0-r0.apk").unlink()
    update_repository(repo, signers=[signer], keyring=keyring, description="j")  # folds
    assert (repo / JOURNAL_NAME).read_bytes().count(b"\n") == 1
    monkeypatch.setattr("apkfarm.apk.repository._JOURNAL_MAX_CHANGES", 1)
    state_file = (repo / STATE_NAME).read_bytes()
    make_package(repo, signer, "eighth")
    make_package(repo, signer, "ninth")
    update_repository(repo, signers=[signer], keyring=keyring, description="j")
    assert (repo / STATE_NAME).read_bytes() != state_file
    assert (repo / JOURNAL_NAME).read_bytes().count(b"\n") == 1
    index_like_a_fresh_build()


def test_a_repository_with_a_format_2_state_is_not_read_again(
    tmp_path: Path, signer: LocalKeySigner, keyring: Keyring
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("one", "two"):
        make_package(repo, signer, name)
    update_repository(repo, signers=[signer], keyring=keyring)
    state = Repository(repo, signers=[signer], keyring=keyring).state
    (repo / STATE_NAME).write_bytes(state_v2(state))
    (repo / JOURNAL_NAME).unlink()
    make_package(repo, signer, "three")
    update = update_repository(repo, signers=[signer], keyring=keyring)
    assert (update.reread, update.state_was_reset) == (1, False)
    assert (repo / STATE_NAME).read_bytes().startswith(b"apkfarm-index-state 3 ")
    assert [r.name for r in read_index_records(repo / INDEX_NAME)] == ["one", "three", "two"]


def test_a_package_deleted_while_listing_is_not_listed(
    tmp_path: Path, signer: LocalKeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_package(tmp_path, signer, "here")
    (tmp_path / "not-a-package.txt").write_text("x")
    (tmp_path / "dir.apk").mkdir()
    real_listdir = os.listdir
    # The listing names a file that is gone by the time it is looked at.
    monkeypatch.setattr(os, "listdir", lambda fd: [*real_listdir(fd), "gone-1.0-r0.apk"])
    listing = list_packages(tmp_path)
    assert list(listing) == ["here-1.0-r0.apk"]
    assert listing["here-1.0-r0.apk"].size == (tmp_path / "here-1.0-r0.apk").stat().st_size
