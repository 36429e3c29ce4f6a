"""The signer's audit log: immutable, hash-chained records in the blob store.

Each record is one JSON object at ``audit/<sequence>.json``, created only if
absent (never overwritten). It carries the SHA-256 of the previous record, and
its own hash covers every field, so editing, deleting or reordering a record
breaks the chain at a place :func:`verify_chain` can name.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from apkfarm.blobs import BlobStore
from apkfarm.blobs.layout import AUDIT_PREFIX, audit_key
from apkfarm.errors import ApkfarmError

GENESIS_HASH = "0" * 64
MAX_RECORD_BYTES = 64 * 1024
_AUDIT_KEY = re.compile(rf"{AUDIT_PREFIX}(?P<seq>[0-9]+)\.json")


class AuditError(ApkfarmError):
    """The audit log could not be written or read."""


@dataclass(frozen=True)
class AuditEntry:
    """What happened: one signature given or refused."""

    requester: str
    # "sign-package" or "sign-index".
    action: str
    # "signed" or "refused".
    result: str
    # e.g. "greet-1.0-r0 x86_64" or "index main/x86_64".
    subject: str
    # Lowercase hex SHA-256 of the member the requester presented.
    digest: str
    job_id: str = ""
    keys: tuple[str, ...] = ()
    reason: str = ""
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class AuditRecord:
    sequence: int
    previous_hash: str
    entry: AuditEntry
    hash: str

    def to_json(self) -> bytes:
        document = _content(self.sequence, self.previous_hash, self.entry)
        document["hash"] = self.hash
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def _content(sequence: int, previous_hash: str, entry: AuditEntry) -> dict[str, Any]:
    fields = asdict(entry)
    fields["keys"] = list(entry.keys)
    return {"sequence": sequence, "previous_hash": previous_hash, "entry": fields}


def record_hash(sequence: int, previous_hash: str, entry: AuditEntry) -> str:
    canonical = json.dumps(
        _content(sequence, previous_hash, entry), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def seal(sequence: int, previous_hash: str, entry: AuditEntry) -> AuditRecord:
    return AuditRecord(sequence, previous_hash, entry, record_hash(sequence, previous_hash, entry))


def parse_record(data: bytes, where: str) -> AuditRecord:
    try:
        document = json.loads(data)
        raw = document["entry"]
        entry = AuditEntry(
            requester=str(raw["requester"]),
            action=str(raw["action"]),
            result=str(raw["result"]),
            subject=str(raw["subject"]),
            digest=str(raw["digest"]),
            job_id=str(raw["job_id"]),
            keys=tuple(str(k) for k in raw["keys"]),
            reason=str(raw["reason"]),
            time=str(raw["time"]),
        )
        return AuditRecord(
            int(document["sequence"]),
            str(document["previous_hash"]),
            entry,
            str(document["hash"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise AuditError(f"{where}: not an audit record ({error})") from None


class AuditLog:
    """Appends records after the newest one in the store (one writer: the signer)."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.head_sequence = 0
        self.head_hash = GENESIS_HASH
        self._load_head()

    def _load_head(self) -> None:
        last = None
        for info in self.store.list(AUDIT_PREFIX):
            if _AUDIT_KEY.fullmatch(info.key):
                last = info.key
        if last is None:
            self.head_sequence, self.head_hash = 0, GENESIS_HASH
            return
        record = parse_record(self.store.get_bytes(last, max_size=MAX_RECORD_BYTES), last)
        self.head_sequence, self.head_hash = record.sequence, record.hash

    def append(self, entry: AuditEntry) -> AuditRecord:
        for _ in range(2):
            record = seal(self.head_sequence + 1, self.head_hash, entry)
            if self.store.put_if_absent(audit_key(record.sequence), record.to_json()):
                self.head_sequence, self.head_hash = record.sequence, record.hash
                return record
            # Someone wrote this sequence number first: continue after theirs.
            self._load_head()
        raise AuditError(
            f"audit record {self.head_sequence + 1} keeps being taken by another writer"
        )


def read_records(store: BlobStore) -> Iterator[tuple[str, bytes]]:
    for info in store.list(AUDIT_PREFIX):
        yield info.key, store.get_bytes(info.key, max_size=MAX_RECORD_BYTES)


def verify_chain(objects: Iterable[tuple[str, bytes]]) -> list[str]:
    """Every break in the chain, as one sentence naming the record; empty when intact."""
    problems: list[str] = []
    expected_sequence = 1
    previous_hash = GENESIS_HASH
    for key, data in objects:
        name = _AUDIT_KEY.fullmatch(key)
        if name is None:
            problems.append(f"{key}: unexpected object in the audit log")
            continue
        try:
            record = parse_record(data, key)
        except AuditError as error:
            problems.append(str(error))
            expected_sequence = int(name["seq"]) + 1
            previous_hash = ""
            continue
        if record.sequence != int(name["seq"]):
            problems.append(f"{key}: holds record {record.sequence}, so it was moved or replaced")
        if record.sequence > expected_sequence:
            missing = (
                f"record {expected_sequence}"
                if record.sequence == expected_sequence + 1
                else f"records {expected_sequence} to {record.sequence - 1}"
            )
            problems.append(f"{key}: {missing} missing before it (deleted)")
        elif previous_hash and record.previous_hash != previous_hash:
            problems.append(
                f"{key}: previous_hash does not match record {record.sequence - 1} "
                "(that record was edited or replaced)"
            )
        if record_hash(record.sequence, record.previous_hash, record.entry) != record.hash:
            problems.append(f"{key}: content does not match its hash (record edited)")
        expected_sequence = record.sequence + 1
        previous_hash = record.hash
    return problems
