"""The keygen, verify and index sub-commands, run through their argparse registration."""

from __future__ import annotations

import argparse
import fcntl
import io
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from apk_support import OTHER_PUBLIC, VECTOR_PRIVATE, VECTOR_PUBLIC

from apkfarm.apk.index import verify_index_records
from apkfarm.apk.keys import Keyring, load_private_key, load_public_key
from apkfarm.cli import index, keygen, verify
from apkfarm.cli.progress import progress_bar


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="apkfarm")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (keygen, verify, index):
        module.register(subparsers)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_keygen_writes_a_named_key_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("keygen", "--name", "ops@example.org", "--bits", "2048", "--dir", str(tmp_path)) == 0
    printed = capsys.readouterr().out.split()
    private, public = (Path(p) for p in printed)
    assert re.fullmatch(r"ops@example\.org-[0-9a-f]{8}\.rsa", private.name)
    assert public.name == private.name + ".pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert load_private_key(private).key_size == 2048
    assert (
        load_public_key(public).public_numbers()
        == load_private_key(private).public_key().public_numbers()
    )


def test_verify_prints_one_line_per_file_and_fails_on_any(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = vectors / "apk" / "repo-v2" / "x86_64"
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    shutil.copy(vectors / "apk" / "keys" / VECTOR_PUBLIC, trusted)
    files = [str(repo / n) for n in ("APKINDEX.tar.gz", "refa-1.0-r0.apk", "refb-2.1-r3.apk")]
    assert run("verify", *files, "--keys", str(trusted)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{files[0]}: ok (index, signed by {VECTOR_PUBLIC})",
        f"{files[1]}: ok (package refa-1.0-r0, signed by {VECTOR_PUBLIC})",
        f"{files[2]}: ok (package refb-2.1-r3, signed by {VECTOR_PUBLIC})",
    ]
    broken = tmp_path / "broken.apk"
    data = bytearray((repo / "refa-1.0-r0.apk").read_bytes())
    data[-20] ^= 0xFF
    broken.write_bytes(bytes(data))
    assert run("verify", files[1], str(broken), "--keys", str(trusted)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("ok (package refa-1.0-r0, signed by ref@example.org-0001.rsa.pub)")
    assert out[1].startswith(f"{broken}: FAILED: {broken}: data member: ")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(vectors / "apk" / "keys" / OTHER_PUBLIC, other)
    assert run("verify", files[1], "--keys", str(other)) == 1
    assert "no signature by a trusted key" in capsys.readouterr().out


def test_index_command_signs_and_reports_changes(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "x86_64"
    repo.mkdir()
    for name in ("refa-1.0-r0.apk", "refb-2.1-r3.apk"):
        shutil.copy(vectors / "apk" / "repo-v2" / "x86_64" / name, repo)
    key = str(vectors / "apk" / "keys" / VECTOR_PRIVATE)
    assert run("index", str(repo), "--key", key, "--description", "mirror test") == 0
    out = capsys.readouterr().out
    assert "added    refa-1.0-r0.apk\nadded    refb-2.1-r3.apk\n" in out
    assert "2 packages (2 read, 0 unchanged)" in out
    keyring = Keyring.from_files([vectors / "apk" / "keys" / VECTOR_PUBLIC])
    assert [r.name for r in verify_index_records(repo / "APKINDEX.tar.gz", keyring)] == [
        "refa",
        "refb",
    ]
    assert run("index", str(repo), "--key", key, "--description", "mirror test") == 0
    assert "is up to date (2 packages)" in capsys.readouterr().out
    (repo / "refb-2.1-r3.apk").unlink()
    assert run("index", str(repo), "--key", key, "--description", "mirror test") == 0
    assert "removed  refb-2.1-r3.apk" in capsys.readouterr().out


def test_progress_bar_draws_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress_bar("indexing", None) as advance:
        advance(3, 10)
        advance(10, 10)
    assert "indexing" in terminal.getvalue()
    pipe = io.StringIO()
    monkeypatch.setattr(sys, "stderr", pipe)
    with progress_bar("indexing", 10) as advance:
        advance()
    assert pipe.getvalue() == ""


def test_index_command_takes_named_changes_without_listing_the_directory(
    vectors: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "x86_64"
    repo.mkdir()
    source = vectors / "apk" / "repo-v2" / "x86_64"
    shutil.copy(source / "refa-1.0-r0.apk", repo)
    key = str(vectors / "apk" / "keys" / VECTOR_PRIVATE)
    assert run("index", str(repo), "--key", key) == 0
    capsys.readouterr()
    shutil.copy(source / "refb-2.1-r3.apk", repo)
    # A file nobody named is not picked up: the directory is not listed.
    shutil.copy(source / "refb-2.1-r3.apk", repo / "stray-1.0-r0.apk")
    assert run("index", str(repo), "--key", key, "--added", "refb-2.1-r3.apk") == 0
    assert "added    refb-2.1-r3.apk" in capsys.readouterr().out
    keyring = Keyring.from_files([vectors / "apk" / "keys" / VECTOR_PUBLIC])
    names = [r.name for r in verify_index_records(repo / "APKINDEX.tar.gz", keyring)]
    assert names == ["refa", "refb"]
    assert run("index", str(repo), "--key", key, "--removed", "refa-1.0-r0.apk") == 0
    assert "removed  refa-1.0-r0.apk" in capsys.readouterr().out
    assert [r.name for r in verify_index_records(repo / "APKINDEX.tar.gz", keyring)] == ["refb"]


def test_index_runs_on_one_directory_take_turns(vectors: Path, tmp_path: Path) -> None:
    repo = tmp_path / "x86_64"
    repo.mkdir()
    shutil.copy(vectors / "apk" / "repo-v2" / "x86_64" / "refa-1.0-r0.apk", repo)
    key = str(vectors / "apk" / "keys" / VECTOR_PRIVATE)
    lock = os.open(repo / ".apkfarm-index.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another run is busy with this directory
    run_ = subprocess.Popen(
        [sys.executable, "-m", "apkfarm.cli.main", "index", str(repo), "--key", key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run_.stderr is not None
        line = run_.stderr.readline()  # it says so, then waits instead of racing
        assert line.startswith("waiting for another apkfarm index on")
        assert run_.poll() is None
        assert not (repo / "APKINDEX.tar.gz").exists()
    finally:
        os.close(lock)  # the other run ends
    out, _ = run_.communicate(timeout=120)
    assert run_.returncode == 0
    assert "added    refa-1.0-r0.apk" in out
