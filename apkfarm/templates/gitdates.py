"""Commit times of a ports tree's files, when the tree is a git checkout.

A build is dated by its template (SOURCE_DATE_EPOCH, see
:func:`apkfarm.templates.snapshot.template_epoch`). File modification times
are checkout times after a ``git clone``, so two clones of the same commit
would build different bytes. cbuild dates a template by the last commit that
touched it; the snapshot does the same by giving every tracked, unmodified
file the time of the last commit that changed it. Modified and untracked
files keep their modification time: a template being edited builds as new.

git runs read-only, with the features that could run a command taken from the
checkout's own configuration (fsmonitor, external diff, textconv) switched off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# Options that keep a checkout's configuration from running anything.
_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.quotepath=off")


def _git(root: Path, *args: str) -> subprocess.Popen[str]:
    git = shutil.which("git")
    assert git is not None
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")} | {
        "GIT_OPTIONAL_LOCKS": "0",
        "LC_ALL": "C",
    }
    return subprocess.Popen(
        [git, "-C", str(root), *_SAFE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _lines(root: Path, *args: str) -> list[str] | None:
    with _git(root, *args) as proc:
        assert proc.stdout is not None
        out = proc.stdout.read()
    if proc.returncode != 0:
        return None
    return [line for line in out.split("\n") if line]


def commit_times(root: Path) -> dict[str, int]:
    """Last commit time of each tracked, unmodified file under ``root``, by path
    relative to ``root``. Empty when ``root`` is not in a git work tree (or git
    is missing, or refuses the repository)."""
    if shutil.which("git") is None:
        return {}
    tracked = _lines(root, "ls-files", "--", ".")
    if not tracked:
        return {}
    changed = _lines(
        root, "diff", "--name-only", "--relative", "--no-ext-diff", "--no-textconv", "HEAD", "--"
    )
    if changed is None:
        return {}
    wanted = set(tracked) - set(changed)
    times: dict[str, int] = {}
    # Newest commit first: the first time a path is named is its last change.
    with _git(
        root,
        "log",
        "--format=@%ct",
        "--name-only",
        "--no-renames",
        "--relative",
        "--no-ext-diff",
        "HEAD",
        "--",
        ".",
    ) as proc:
        assert proc.stdout is not None
        when = 0
        for raw_line in proc.stdout:
            line = raw_line.rstrip("\n")
            if line.startswith("@"):
                when = int(line[1:])
            elif line in wanted and line not in times:
                times[line] = when
                if len(times) == len(wanted):
                    proc.kill()  # the rest of history names nothing new
                    break
    return times
