import json
from pathlib import Path

import pytest

from apkfarm.audit import (
    AuditEntry,
    AuditLog,
    parse_record,
    read_records,
    record_hash,
    verify_chain,
)
from apkfarm.blobs import LocalBlobStore
from apkfarm.blobs.layout import audit_key


def _entry(n: int) -> AuditEntry:
    return AuditEntry(
        requester="builder-x86_64",
        action="sign-package",
        result="signed",
        subject=f"pkg{n}-1.0-r0 x86_64",
        digest=f"{n:064x}",
        job_id=f"job-{n}",
        keys=("farm@example.org-1.rsa.pub",),
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    log = AuditLog(LocalBlobStore(tmp_path))
    for n in range(1, 6):
        log.append(_entry(n))
    return LocalBlobStore(tmp_path)


def test_an_untouched_chain_verifies(store: LocalBlobStore) -> None:
    assert verify_chain(read_records(store)) == []


def test_a_new_writer_continues_after_the_head(store: LocalBlobStore) -> None:
    log = AuditLog(store)
    assert log.head_sequence == 5
    record = log.append(_entry(6))
    assert record.sequence == 6
    assert verify_chain(read_records(store)) == []


def test_an_edited_record_is_named(store: LocalBlobStore) -> None:
    key = audit_key(3)
    document = json.loads(store.get_bytes(key))
    document["entry"]["subject"] = "openssh-9.9-r0 x86_64"
    store.put_bytes(key, json.dumps(document).encode())
    problems = verify_chain(read_records(store))
    assert problems == [f"{key}: content does not match its hash (record edited)"]


def test_an_edited_record_with_a_recomputed_hash_breaks_the_next_link(
    store: LocalBlobStore,
) -> None:
    key = audit_key(3)
    document = json.loads(store.get_bytes(key))
    document["entry"]["result"] = "refused"
    records = dict(read_records(store))
    original = parse_record(records[key], key)
    forged_entry = AuditEntry(**{**original.entry.__dict__, "result": "refused"})
    document["hash"] = record_hash(3, original.previous_hash, forged_entry)
    store.put_bytes(key, json.dumps(document).encode())
    problems = verify_chain(read_records(store))
    assert len(problems) == 1
    assert problems[0].startswith(audit_key(4))
    assert "record 3" in problems[0]


def test_a_deleted_record_is_named(store: LocalBlobStore) -> None:
    store.delete(audit_key(2))
    problems = verify_chain(read_records(store))
    assert problems == [f"{audit_key(3)}: record 2 missing before it (deleted)"]


def test_records_are_never_overwritten(store: LocalBlobStore) -> None:
    before = store.get_bytes(audit_key(5))
    stale = AuditLog.__new__(AuditLog)
    stale.store, stale.head_sequence, stale.head_hash = store, 4, "f" * 64
    record = stale.append(_entry(99))
    # The stale writer lost the race for record 5 and continued after it instead.
    assert record.sequence == 6
    assert store.get_bytes(audit_key(5)) == before
    assert verify_chain(read_records(store)) == []
