"""`apkfarm audit verify` and `apkfarm keys` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apkfarm.apk.keys import generate_key_pair
from apkfarm.audit import AuditEntry, AuditLog
from apkfarm.blobs import LocalBlobStore
from apkfarm.blobs.layout import audit_key
from apkfarm.cli.main import main


def _log(directory: Path, count: int) -> LocalBlobStore:
    store = LocalBlobStore(directory)
    log = AuditLog(store)
    for n in range(1, count + 1):
        log.append(
            AuditEntry(
                requester="builder-x86_64",
                action="sign-package",
                result="signed",
                subject=f"p{n}-1.0-r0 x86_64",
                digest=f"{n:064x}",
            )
        )
    return store


def test_audit_verify_reports_an_intact_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _log(tmp_path, 4)
    assert main(["audit", "verify", "--store", str(tmp_path)]) == 0
    assert "4 records, chain intact" in capsys.readouterr().out


def test_audit_verify_names_the_tampered_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _log(tmp_path, 4)
    document = json.loads(store.get_bytes(audit_key(2)))
    document["entry"]["requester"] = "indexer"
    store.put_bytes(audit_key(2), json.dumps(document).encode())
    assert main(["audit", "verify", "--store", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{audit_key(2)}: content does not match its hash (record edited)" in out
    assert "1 problems" in out


def test_keys_lists_active_and_retired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = generate_key_pair(tmp_path, "farm@example.org", now=0x100)
    new = generate_key_pair(tmp_path, "farm@example.org", now=0x200)
    (tmp_path / "retired").mkdir()
    old.public_path.rename(tmp_path / "retired" / old.public_path.name)
    old.private_path.unlink()
    assert main(["keys", "--dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("active ") and lines[0].endswith(new.key_name)
    assert lines[1].startswith("retired") and lines[1].endswith(old.key_name)
    assert lines[2] == f"packages are signed with {new.key_name}; indexes with every active key"
