"""A staged package: its tree on disk, walked and resolved without ever leaving it.

After the install phase each package (the main one and every subpackage) is
a directory tree — its ``destdir``. Scanners and the lint read these trees
from outside the sandbox, and the trees were written by untrusted build
code: a symlink may point at ``/etc/shadow`` or at ``../../..``. So nothing
here follows a symlink with the kernel. :func:`walk` lists entries with
``lstat``; :func:`resolve` follows symlinks itself, treating the package
root as ``/`` (an absolute target starts at the root, ``..`` stops at it),
the way the path would resolve once the package is installed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from apkfarm.build.errors import BuildError
from apkfarm.build.options import PackageOptions

EntryKind = Literal["file", "dir", "symlink", "other"]

# Linux follows at most 40 symlinks while resolving one path.
MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True)
class FileMode:
    """One ``file_modes`` entry of a template: owner, group, mode, recursive."""

    user: str
    group: str
    mode: int
    recursive: bool = False

    @classmethod
    def parse(cls, path: str, value: object, *, where: str = "template") -> FileMode:
        """From the template's ``(user, group, mode[, recursive])`` tuple."""
        if not isinstance(value, tuple) or len(value) not in (3, 4):
            raise BuildError(
                f"{where}: file_modes[{path!r}] must be (user, group, mode[, recursive])"
            )
        user, group, mode = value[0], value[1], value[2]
        recursive = value[3] if len(value) == 4 else False
        if not (isinstance(user, str) and isinstance(group, str)):
            raise BuildError(f"{where}: file_modes[{path!r}]: user and group must be strings")
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise BuildError(f"{where}: file_modes[{path!r}]: mode must be an integer like 0o755")
        if not isinstance(recursive, bool):
            raise BuildError(f"{where}: file_modes[{path!r}]: recursive must be True or False")
        return cls(user, group, mode, recursive)


@dataclass(frozen=True)
class StagedPackage:
    """One package's staged tree and the template data that steers its scan and lint.

    ``root`` is the package's destdir. Pattern lists hold cbuild-style globs
    matched against package-relative paths (``usr/lib/*.so``; a pattern
    without a directory matches the file name anywhere, like
    ``PurePath.match``). ``explicit_provides`` are the template's
    ``provides``: an explicit ``so:``/``pc:``/``cmd:`` entry suppresses the
    automatic one of the same name.
    """

    name: str
    root: Path
    options: PackageOptions = field(default_factory=PackageOptions)
    build_style: str = ""
    explicit_provides: tuple[str, ...] = ()
    ignore_shlibs: tuple[str, ...] = ()
    skip_dependencies: tuple[str, ...] = ()
    skip_providers: tuple[str, ...] = ()
    broken_symlinks: tuple[str, ...] = ()
    file_modes: Mapping[str, FileMode] = field(default_factory=dict)


@dataclass(frozen=True)
class Entry:
    """One path in a staged tree, as ``lstat`` saw it."""

    path: str  # package-relative, "/"-separated, no leading "/"
    kind: EntryKind
    mode: int  # full st_mode
    size: int
    nlink: int
    inode: tuple[int, int]  # (st_dev, st_ino)
    target: str | None = None  # symlinks only

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def parent(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""


def matches(path: str, patterns: tuple[str, ...]) -> bool:
    """Whether a package-relative path matches any cbuild-style glob."""
    pure = PurePosixPath(path)
    return any(pure.match(p.lstrip("/")) for p in patterns)


def walk(root: Path) -> list[Entry]:
    """Every entry under ``root`` (not ``root`` itself), sorted, symlinks not followed."""
    if root.is_symlink() or not root.is_dir():
        raise BuildError(f"{root}: a staged package must be a directory")
    found: list[Entry] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        base = root / rel if rel else root
        with os.scandir(base) as it:
            children = sorted(it, key=lambda e: e.name)
        for child in children:
            path = f"{rel}/{child.name}" if rel else child.name
            st = child.stat(follow_symlinks=False)
            kind = _kind(st.st_mode)
            target = str(Path(child.path).readlink()) if kind == "symlink" else None
            found.append(
                Entry(
                    path, kind, st.st_mode, st.st_size, st.st_nlink, (st.st_dev, st.st_ino), target
                )
            )
            if kind == "dir":
                stack.append(path)
    found.sort(key=lambda e: e.path)
    return found


def _kind(mode: int) -> EntryKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def normalize(path: str) -> str | None:
    """A package-relative path with ``.``/``..`` folded; ``None`` for the root itself.

    ``..`` at the root stays at the root, as it does in ``/``.
    """
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts:
                parts.pop()
            continue
        parts.append(comp)
    return "/".join(parts) if parts else None


def link_destination(entry: Entry) -> str | None:
    """Where a symlink points, as a package-relative path, folded lexically."""
    assert entry.target is not None
    if entry.target.startswith("/"):
        return normalize(entry.target)
    base = entry.parent
    return normalize(f"{base}/{entry.target}" if base else entry.target)


def resolve(root: Path, path: str, *, follow_last: bool = False) -> str | None:
    """Resolve ``path`` inside the tree at ``root`` as if ``root`` were ``/``.

    Symlinks in the leading components are followed (and the last one too
    with ``follow_last``); absolute targets restart at ``root`` and ``..``
    never climbs above it. Returns the resolved package-relative path of an
    entry that exists (``""`` for the root itself), or ``None`` when some
    component is missing, is not a directory, or the symlinks loop.
    """
    done: list[str] = []
    pending = list(reversed([p for p in path.split("/") if p]))
    hops = 0
    while pending:
        comp = pending.pop()
        if comp == ".":
            continue
        if comp == "..":
            if done:
                done.pop()
            continue
        current = root.joinpath(*done, comp)
        try:
            st = current.lstat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        is_last = not pending
        if stat.S_ISLNK(st.st_mode) and (follow_last or not is_last):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return None
            target = str(current.readlink())
            if target.startswith("/"):
                done = []
            pending.extend(reversed([p for p in target.split("/") if p]))
            continue
        if not is_last and not stat.S_ISDIR(st.st_mode):
            return None
        done.append(comp)
    return "/".join(done)


def read_file(root: Path, path: str, *, limit: int, where: str) -> bytes | None:
    """The content of a regular file in the tree (symlinks resolved inside it).

    ``None`` when the path does not resolve to a regular file. Files larger
    than ``limit`` bytes are refused: the callers read small text files.
    """
    real = resolve(root, path, follow_last=True)
    if real is None:
        return None
    fd = os.open(root / real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > limit:
            raise BuildError(f"{where}: {path} is larger than {limit} bytes")
        chunks: list[bytes] = []
        remaining = limit
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
