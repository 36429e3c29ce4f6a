"""Tree snapshots and the dates builds take from them.

Git checkouts are made for real (``git init``, commits with fixed dates,
``git clone``, shallow too): the point is that clones of one commit, checked
out at different times and depths, give the same snapshot and so the same
SOURCE_DATE_EPOCH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require

from apkfarm.templates.gitdates import checkout_dates
from apkfarm.templates.snapshot import (
    SnapshotError,
    make_snapshot,
    template_epoch,
    unpack_snapshot,
)

FIRST = 1_700_000_000
SECOND = 1_750_000_000
TEMPLATE = 'pkgname = "{name}"\npkgver = "1.0"\npkgrel = 0\n'


def git(cwd: Path, *args: str, when: int | None = None) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "packager",
        "GIT_AUTHOR_EMAIL": "packager@example.org",
        "GIT_COMMITTER_NAME": "packager",
        "GIT_COMMITTER_EMAIL": "packager@example.org",
    }
    if when is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def write_tree(root: Path) -> None:
    for name in ("alpha", "beta"):
        directory = root / "main" / name
        directory.mkdir(parents=True)
        (directory / "template.py").write_text(TEMPLATE.format(name=name))
        (directory / "patches").mkdir()
        (directory / "patches" / "fix.patch").write_text(f"--- {name}\n")
    (root / "main" / "alpha-devel").symlink_to("alpha")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A ports tree in git: both templates at FIRST, alpha's patch changed at SECOND."""
    require(shutil.which("git") is not None, "git is not installed")
    root = tmp_path / "ports"
    root.mkdir()
    write_tree(root)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "import", when=FIRST)
    (root / "main/alpha/patches/fix.patch").write_text("--- alpha, fixed\n")
    git(root, "commit", "-q", "-am", "alpha: fix the patch", when=SECOND)
    return root


def epochs(tmp_path: Path, root: Path, label: str) -> tuple[str, dict[str, int]]:
    snapshot = make_snapshot(root, tmp_path / f"snapshots-{label}")
    tree = unpack_snapshot(snapshot.tar_path, snapshot.tree_id, tmp_path / f"trees-{label}")
    dates = {name: template_epoch(tree / "main" / name) for name in ("alpha", "beta")}
    return snapshot.tree_id, dates


def clone(repository: Path, destination: Path, *options: str) -> Path:
    git(repository.parent, "clone", "-q", *options, f"file://{repository}", str(destination))
    return destination


# --- outside git --------------------------------------------------------------------


def test_a_tree_outside_git_is_dated_by_its_files(tmp_path: Path) -> None:
    root = tmp_path / "ports"
    write_tree(root)
    os.utime(root / "main/alpha/template.py", (FIRST, FIRST))
    os.utime(root / "main/alpha/patches/fix.patch", (SECOND, SECOND))

    assert checkout_dates(root) is None
    tree_id, dates = epochs(tmp_path, root, "plain")

    assert dates["alpha"] == SECOND
    assert make_snapshot(root, tmp_path / "again").tree_id == tree_id


def test_a_tree_without_templates_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "main").mkdir(parents=True)
    with pytest.raises(SnapshotError, match="no category directories with templates"):
        make_snapshot(tmp_path / "empty", tmp_path / "out")


def test_a_snapshot_whose_bytes_changed_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ports"
    write_tree(root)
    snapshot = make_snapshot(root, tmp_path / "out")
    data = bytearray(snapshot.tar_path.read_bytes())
    data[600] ^= 0x01
    snapshot.tar_path.write_bytes(bytes(data))
    with pytest.raises(SnapshotError, match="does not match tree id"):
        unpack_snapshot(snapshot.tar_path, snapshot.tree_id, tmp_path / "trees")
    assert not (tmp_path / "trees" / snapshot.tree_id).exists()


# --- in git -------------------------------------------------------------------------


def test_tracked_files_are_dated_by_the_commit_checked_out(
    tmp_path: Path, repository: Path
) -> None:
    _tree_id, dates = epochs(tmp_path, repository, "repo")
    assert dates == {"alpha": SECOND, "beta": SECOND}


def test_clones_of_a_commit_give_the_same_snapshot(tmp_path: Path, repository: Path) -> None:
    one = clone(repository, tmp_path / "one")
    shallow = clone(repository, tmp_path / "shallow", "--depth", "1")
    # Checked out at different times, as on two machines.
    for path in (shallow / "main").rglob("*"):
        if path.is_file():
            os.utime(path, (SECOND + 12345, SECOND + 12345))

    first = epochs(tmp_path, one, "one")
    second = epochs(tmp_path, shallow, "shallow")

    assert first == second
    assert first[1] == {"alpha": SECOND, "beta": SECOND}


def test_an_older_commit_checked_out_dates_by_that_commit(tmp_path: Path, repository: Path) -> None:
    work = clone(repository, tmp_path / "work")
    git(work, "checkout", "-q", "HEAD~1")

    _tree_id, dates = epochs(tmp_path, work, "old")

    assert dates == {"alpha": FIRST, "beta": FIRST}


def test_a_modified_or_untracked_file_dates_its_template_by_its_mtime(
    tmp_path: Path, repository: Path
) -> None:
    work = clone(repository, tmp_path / "work")
    edited = work / "main/beta/template.py"
    edited.write_text(TEMPLATE.format(name="beta") + "# edited\n")
    os.utime(edited, (SECOND + 100, SECOND + 100))
    added = work / "main/alpha/patches/new.patch"
    added.write_text("--- new\n")
    os.utime(added, (SECOND + 200, SECOND + 200))

    _tree_id, dates = epochs(tmp_path, work, "work")

    assert dates == {"alpha": SECOND + 200, "beta": SECOND + 100}


def test_a_subdirectory_of_a_repository_is_dated_from_it(tmp_path: Path) -> None:
    require(shutil.which("git") is not None, "git is not installed")
    top = tmp_path / "top"
    write_tree(top / "ports")
    (top / "README").write_text("not part of the tree\n")
    git(top, "init", "-q", "-b", "main")
    git(top, "add", ".")
    git(top, "commit", "-q", "-m", "import", when=FIRST)

    dates = checkout_dates(top / "ports")

    assert dates is not None
    assert dates.commit_time == FIRST
    assert "main/alpha/template.py" in dates.unmodified
    assert "README" not in dates.unmodified and "../README" not in dates.unmodified


def test_the_checkouts_configuration_runs_nothing(tmp_path: Path, repository: Path) -> None:
    marker = tmp_path / "ran"
    hook = tmp_path / "hook.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(repository, "config", "core.fsmonitor", str(hook))
    git(repository, "config", "diff.external", str(hook))
    (repository / "main/beta/template.py").write_text("# dirty, so diff has work\n")

    dates = checkout_dates(repository)

    assert dates is not None
    assert "main/alpha/template.py" in dates.unmodified
    assert "main/beta/template.py" not in dates.unmodified
    assert not marker.exists()
