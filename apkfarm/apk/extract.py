"""Safe extraction of a verified package into a directory (a build sysroot).

Nothing becomes visible under its final name before the whole package has
verified (signature, datahash, every per-file checksum): files, hard links
and symlinks are first written under temporary names beside their targets,
then renamed into place. On any failure the temporaries and the directories
this call created are removed, leaving the destination as it was.

Paths are confined to the destination, which is treated like a chroot:

- absolute names and ``..`` are refused by the reader;
- symlinks already in the destination (``lib -> usr/lib``) are followed as
  if the destination were ``/``, so they can never lead outside it;
- an entry may not be written through a symlink of the same package, and a
  relative symlink may not point above the destination's root;
- device nodes and fifos are refused; ownership is left to the caller
  (files belong to whoever extracts).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from apkfarm.apk.errors import ApkError, ExtractionError
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import (
    DEFAULT_LIMITS,
    PackageContents,
    ReadLimits,
    check_data_path,
    verify_package,
)
from apkfarm.apk.tar import EntryType, TarEntry

_MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class ExtractedPackage:
    """The verified package and the paths (relative to the destination) it installed."""

    contents: PackageContents
    paths: tuple[str, ...]


@dataclass
class _Staged:
    temp: str
    final: str
    relpath: str


@dataclass
class _Extraction:
    root: str
    source: str
    staged: list[_Staged] = field(default_factory=list)
    created_dirs: list[str] = field(default_factory=list)
    package_symlinks: set[str] = field(default_factory=set)
    file_temps: dict[str, str] = field(default_factory=dict)  # relpath -> staged temp
    paths: list[str] = field(default_factory=list)
    dir_modes: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # created dir -> mode, mtime

    def fail(self, relpath: str, what: str) -> ExtractionError:
        return ExtractionError(f"{self.source}: data member: {relpath}: {what}")

    # ------------------------------------------------------------- confinement

    def resolve_dir(self, rel_parts: list[str], relpath: str) -> str:
        """The host path of directory ``rel_parts``, following symlinks chroot-style."""
        current: list[str] = []
        pending = list(rel_parts)
        hops = 0
        while pending:
            part = pending.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if current:
                    current.pop()
                continue
            candidate = os.path.join(self.root, *current, part)  # noqa: PTH118
            try:
                st = os.lstat(candidate)
            except FileNotFoundError:
                current.append(part)
                continue
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise self.fail(relpath, "too many levels of symbolic links")
                target = os.readlink(candidate)  # noqa: PTH115
                if target.startswith("/"):
                    current = []
                pending = target.split("/") + pending
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise self.fail(relpath, f"{'/'.join([*current, part])} is not a directory")
            current.append(part)
        return os.path.join(self.root, *current)  # noqa: PTH118

    def parent_of(self, relpath: str) -> str:
        parts = relpath.split("/")
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            if prefix in self.package_symlinks:
                raise self.fail(relpath, f"would be written through the package's symlink {prefix}")
        parent = self.resolve_dir(parts[:-1], relpath)
        missing = []
        probe = parent
        while not os.path.lexists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)  # noqa: PTH120
        # Parents the tar does not list are created too, and removed again on failure.
        os.makedirs(parent, exist_ok=True)  # noqa: PTH103
        self.created_dirs.extend(reversed(missing))
        return parent

    def temp_beside(self, parent: str) -> str:
        return os.path.join(parent, f".apkfarm-extract-{secrets.token_hex(8)}")  # noqa: PTH118

    # ------------------------------------------------------------- entries

    def entry(self, entry: TarEntry, content: Iterator[bytes] | None) -> None:
        relpath = check_data_path(entry.name, f"{self.source}: data member")
        if entry.type is EntryType.DIRECTORY:
            self.directory(relpath, entry)
            return
        if entry.type in (EntryType.CHAR_DEVICE, EntryType.BLOCK_DEVICE, EntryType.FIFO):
            raise self.fail(relpath, f"{entry.type.name.lower()} entries are not extracted")
        parent = self.parent_of(relpath)
        final = os.path.join(parent, relpath.rsplit("/", 1)[-1])  # noqa: PTH118
        temp = self.temp_beside(parent)
        if entry.type is EntryType.FILE:
            assert content is not None
            self.write_file(temp, content, entry.mode)
            self.file_temps[relpath] = temp
        elif entry.type is EntryType.HARDLINK:
            target = entry.linkname.rstrip("/")
            source_temp = self.file_temps.get(target)
            if source_temp is None:
                raise self.fail(relpath, f"hard link to {target}, which this package did not write")
            os.link(source_temp, temp)
        elif entry.type is EntryType.SYMLINK:
            link = entry.linkname
            if not link.startswith("/"):
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), link))
                if resolved == ".." or resolved.startswith("../"):
                    raise self.fail(relpath, f"symlink target {link!r} points outside the root")
            os.symlink(link, temp)  # noqa: PTH211 - str paths throughout this module
            self.package_symlinks.add(relpath)
        self.staged.append(_Staged(temp, final, relpath))
        if entry.type is not EntryType.SYMLINK:
            os.utime(temp, (entry.mtime, entry.mtime))
        self.paths.append(relpath)

    def directory(self, relpath: str, entry: TarEntry) -> None:
        parts = relpath.split("/")
        parent = self.parent_of(relpath)
        final = os.path.join(parent, parts[-1])  # noqa: PTH118
        try:
            st = os.lstat(final)
        except FileNotFoundError:
            os.mkdir(final, 0o700)  # noqa: PTH102 - the real mode is applied at commit
            self.created_dirs.append(final)
            self.dir_modes[final] = (entry.mode, entry.mtime)
            self.paths.append(relpath)
            return
        if stat.S_ISLNK(st.st_mode):
            # An existing symlink to a directory (lib -> usr/lib) is kept, as apk keeps it.
            self.resolve_dir(parts, relpath)
            return
        if not stat.S_ISDIR(st.st_mode):
            raise self.fail(relpath, "exists and is not a directory")

    @staticmethod
    def write_file(temp: str, content: Iterator[bytes], mode: int) -> None:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in content:
                out.write(chunk)
        os.chmod(temp, mode)  # noqa: PTH101 - setuid bits survive only when set after writing

    # ------------------------------------------------------------- outcome

    def commit(self) -> None:
        for item in self.staged:
            if os.path.isdir(item.final) and not os.path.islink(item.final):  # noqa: PTH112, PTH114
                raise self.fail(item.relpath, "a directory is in the way")
            os.replace(item.temp, item.final)  # noqa: PTH105
        # Directory modes last, deepest first, so a read-only directory is filled first.
        for final, (mode, mtime) in sorted(self.dir_modes.items(), reverse=True):
            os.chmod(final, mode)  # noqa: PTH101
            os.utime(final, (mtime, mtime))

    def rollback(self) -> None:
        for item in self.staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(item.temp)  # noqa: PTH108
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):  # not empty: something else put files there
                os.rmdir(directory)  # noqa: PTH106


def extract_package(
    stream: BinaryIO,
    dest_dir: Path,
    keyring: Keyring,
    *,
    source: str = "package",
    limits: ReadLimits = DEFAULT_LIMITS,
) -> ExtractedPackage:
    """Verify the package on ``stream`` against ``keyring``; install its files under ``dest_dir``.

    Renames into place happen only after the whole package verified; if one
    of them fails (a directory in the way), files renamed before it stay.
    """
    if not dest_dir.is_dir():
        raise ExtractionError(f"{dest_dir}: destination directory does not exist")
    state = _Extraction(root=str(dest_dir.resolve()), source=source)
    try:
        contents = verify_package(
            stream, keyring, source=source, limits=limits, on_data_entry=state.entry
        )
        state.commit()
    except BaseException:
        state.rollback()
        raise
    return ExtractedPackage(contents, tuple(state.paths))


__all__ = ["ApkError", "ExtractedPackage", "extract_package"]
