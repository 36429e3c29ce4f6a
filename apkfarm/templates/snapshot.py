"""Tree snapshots: the exact ports tree a submission evaluated, as one tar.

A submission is planned and built from one snapshot, identified by the
SHA-256 of its tar, so every builder builds exactly what the scheduler
evaluated even if the source tree changes meanwhile. The tar is deterministic
(sorted entries, fixed owner), so the same tree has the same id.

Regular files carry a time: a build's SOURCE_DATE_EPOCH is the newest of its
template directory's files (:func:`template_epoch`), so rebuilding a snapshot
reproduces the same bytes. In a git checkout a tracked, unmodified file's time
is that of the commit checked out (:mod:`apkfarm.templates.gitdates`), so every
clone of a commit has the same snapshot and the same builds; otherwise it is
the file's modification time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from apkfarm.build.extract import ExtractLimits, extract_archive
from apkfarm.errors import ApkfarmError
from apkfarm.templates.gitdates import CheckoutDates, checkout_dates

# Parts of a cports checkout the farm never needs (cbuild's own code and caches).
_SKIP_NAMES = frozenset({".git", "__pycache__", ".mypy_cache", ".ruff_cache"})
_SKIP_SUFFIXES = (".pyc",)
TREE_LIMITS = ExtractLimits(max_members=500_000, max_total_size=4 * 1024**3)


class SnapshotError(ApkfarmError):
    """A tree that cannot be snapshotted or a snapshot that cannot be unpacked."""


@dataclass(frozen=True)
class Snapshot:
    tree_id: str
    tar_path: Path


def _tree_parts(root: Path) -> list[Path]:
    """Top-level entries that are part of the tree: categories and etc/."""
    parts = []
    for entry in sorted(root.iterdir()):
        if entry.name in _SKIP_NAMES or entry.is_symlink():
            continue
        if not entry.is_dir():
            continue
        is_category = any(
            (child / "template.py").is_file() for child in entry.iterdir() if child.is_dir()
        )
        if entry.name == "etc" or is_category:
            parts.append(entry)
    if not parts:
        raise SnapshotError(f"{root}: no category directories with templates")
    return parts


def _add(tar: tarfile.TarFile, path: Path, arcname: str, dates: CheckoutDates | None) -> None:
    info = path.lstat()
    entry = tarfile.TarInfo(arcname)
    if stat.S_ISREG(info.st_mode):
        mtime = int(info.st_mtime)
        entry.mtime = mtime if dates is None else dates.time_of(arcname, mtime)
    else:
        entry.mtime = 0
    entry.uid = entry.gid = 0
    entry.uname = entry.gname = "root"
    if stat.S_ISLNK(info.st_mode):
        entry.type = tarfile.SYMTYPE
        entry.linkname = str(path.readlink())
        entry.mode = 0o777
        tar.addfile(entry)
    elif stat.S_ISDIR(info.st_mode):
        entry.type = tarfile.DIRTYPE
        entry.mode = 0o755
        tar.addfile(entry)
        for child in sorted(path.iterdir()):
            if child.name in _SKIP_NAMES or child.name.endswith(_SKIP_SUFFIXES):
                continue
            _add(tar, child, f"{arcname}/{child.name}", dates)
    elif stat.S_ISREG(info.st_mode):
        entry.size = info.st_size
        # Only the executable bit of a tree file matters (scripts in files/).
        entry.mode = 0o755 if info.st_mode & 0o111 else 0o644
        with path.open("rb") as handle:
            tar.addfile(entry, handle)
    else:
        raise SnapshotError(f"{path}: not a file, directory or symlink")


def make_snapshot(root: Path, out_dir: Path) -> Snapshot:
    """Write ``out_dir/<tree_id>.tar`` for the tree at ``root``."""
    root = root.resolve()
    if not root.is_dir():
        raise SnapshotError(f"{root}: not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = out_dir / f".partial-{os.getpid()}.tar"
    try:
        dates = checkout_dates(root)
        with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for part in _tree_parts(root):
                _add(tar, part, part.name, dates)
        tree_id = file_sha256(partial)
        final = out_dir / f"{tree_id}.tar"
        partial.replace(final)
    finally:
        partial.unlink(missing_ok=True)
    return Snapshot(tree_id, final)


def unpack_snapshot(tar_path: Path, tree_id: str, trees_dir: Path) -> Path:
    """The tree directory for ``tree_id``, unpacked safely once and reused afterwards."""
    destination = trees_dir / tree_id
    if destination.is_dir():
        return destination
    if file_sha256(tar_path) != tree_id:
        raise SnapshotError(f"{tar_path}: content does not match tree id {tree_id}")
    trees_dir.mkdir(parents=True, exist_ok=True)
    staging = trees_dir / f".unpack-{tree_id}"
    shutil.rmtree(staging, ignore_errors=True)
    extract_archive(tar_path, staging, limits=TREE_LIMITS, special_bits="refuse")
    staging.replace(destination)
    return destination


def template_epoch(template_dir: Path) -> int:
    """SOURCE_DATE_EPOCH for a template: the newest modification time of its files."""
    newest = 0
    for path in template_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            newest = max(newest, int(path.lstat().st_mtime))
    if newest == 0:
        raise SnapshotError(f"{template_dir}: no files to date the build by")
    return newest


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
