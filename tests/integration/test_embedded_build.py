"""`apkfarm build`: the farm in one process, as a packager runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT
from fixtures.examples import EXAMPLES, ExampleDistfiles

from apkfarm.apk.index import verify_index_records
from apkfarm.apk.keys import Keyring
from apkfarm.cli.main import main

pytestmark = pytest.mark.sandbox


def test_build_leaves_a_signed_repository_and_is_incremental(
    example_distfiles: ExampleDistfiles, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "build",
        str(EXAMPLES),
        "greet",
        "tally",
        "--arch",
        "x86_64",
        "--out",
        str(tmp_path / "repo"),
        "--keys-dir",
        str(tmp_path / "keys"),
        "--site",
        example_distfiles.file_site,
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    # greet needs libgreet: it was built too; nothing else was.
    assert "3 done" in out
    keyring = Keyring.from_directory(tmp_path / "repo" / "keys")
    records = verify_index_records(
        tmp_path / "repo" / "main" / "x86_64" / "APKINDEX.tar.gz", keyring
    )
    names = {r.name for r in records}
    assert {"greet", "libgreet", "libgreet-devel", "tally"} <= names
    assert "wordfreq" not in names
    for record in records:
        assert (tmp_path / "repo" / "main" / "x86_64" / record.filename).is_file()
    # The key lives in the keys directory, private and unreadable to others.
    (private,) = (tmp_path / "keys").glob("*.rsa")
    assert private.stat().st_mode & 0o077 == 0

    # Again: what was asked for is up to date; nothing is rebuilt (libgreet is not
    # even planned: nothing that must build needs it).
    assert main(args) == 0
    assert "tree " in (again := capsys.readouterr().out)
    assert "2 up-to-date" in again and "done" not in again


def test_a_failing_template_fails_the_command_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "build",
            str(REPO_ROOT / "tests" / "data" / "ports-broken"),
            "--all",
            "--arch",
            "x86_64",
            "--out",
            str(tmp_path / "repo"),
            "--keys-dir",
            str(tmp_path / "keys"),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "failed: broken (x86_64): build failed in build" in err
    assert "blocked: needs-broken (x86_64): waits on broken, which failed" in err
    log_line = next(line for line in err.splitlines() if line.strip().startswith("log: "))
    log = Path(log_line.split("log: ", 1)[1]).read_text()
    assert "broken: about to fail" in log
