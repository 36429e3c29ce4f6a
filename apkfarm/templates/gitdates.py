"""Dates for a ports tree's files when the tree is a git checkout.

A build is dated by its template (SOURCE_DATE_EPOCH, see
:func:`apkfarm.templates.snapshot.template_epoch`). File modification times
are checkout times after a ``git clone``, so two clones of the same commit
would build different bytes. In a checkout, every tracked, unmodified file is
therefore dated by the time of the commit checked out; modified and untracked
files keep their modification time, so a template being edited builds as new.

cbuild dates each template by the last commit that touched it instead. That
needs the whole history (``git log --name-only`` took 7 s for 30,000 commits
of a 3,300-template tree on the project's machine, and grows with history) and
gives a shallow clone, as CI makes them, other dates than a full one. The
commit time is the same in every clone of a commit, shallow or not, and costs
three quick git calls.

git runs read-only, with the features that could run a command taken from the
checkout's own configuration (fsmonitor, external diff, textconv) switched off.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Options that keep a checkout's configuration from running anything.
_SAFE = ("-c", "core.fsmonitor=false", "-c", "core.quotepath=off")


@dataclass(frozen=True)
class CheckoutDates:
    """The checked-out commit's time and the files it dates (paths relative to the tree)."""

    commit_time: int
    unmodified: frozenset[str]

    def time_of(self, path: str, mtime: int) -> int:
        """The time for the tree file ``path`` whose modification time is ``mtime``."""
        return self.commit_time if path in self.unmodified else mtime


def _lines(root: Path, *args: str) -> list[str] | None:
    git = shutil.which("git")
    if git is None:
        return None
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    done = subprocess.run(
        [git, "-C", str(root), *_SAFE, *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env | {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        check=False,
    )
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.split("\n") if line]


def checkout_dates(root: Path) -> CheckoutDates | None:
    """How to date the files of the tree at ``root``; None when it is not in a
    git work tree with a commit (or git is missing, or refuses the repository)."""
    head = _lines(root, "log", "-1", "--format=%ct", "HEAD")
    if not head:
        return None
    tracked = _lines(root, "ls-files", "--", ".")
    changed = _lines(
        root, "diff", "--name-only", "--relative", "--no-ext-diff", "--no-textconv", "HEAD", "--"
    )
    if tracked is None or changed is None:
        return None
    return CheckoutDates(int(head[0]), frozenset(tracked) - frozenset(changed))
