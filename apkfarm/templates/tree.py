"""Reading a ports tree's layout (never its code): categories, templates, symlinks.

A cports tree looks like::

    main/zlib/template.py
    main/zlib-devel -> zlib          subpackage symlinks, relative, same category
    user/.parent -> ../main          user may depend on main (never the reverse)
    user/foo/template.py
    etc/build_profiles/x86_64.ini    optional profile overrides

``TreeScanner`` is meant to be kept: it remembers what it read, keyed by
``stat`` data, so that scanning an unchanged tree again reads no file and
lists no unchanged directory.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from apkfarm.errors import ApkfarmError

__all__ = ["CategoryListing", "TemplateFile", "TreeScanner", "TreeSnapshot"]

PARENT_LINK = ".parent"
MAX_TEMPLATE_BYTES = 1 << 20


@dataclass(frozen=True)
class TemplateFile:
    """One ``<category>/<name>/template.py`` and its content digest."""

    category: str
    name: str
    path: Path
    digest: str

    @property
    def full_name(self) -> str:
        return f"{self.category}/{self.name}"


@dataclass(frozen=True)
class CategoryListing:
    """What one category directory holds."""

    name: str
    templates: tuple[str, ...]  # directory names that hold a template.py
    symlinks: Mapping[str, str]  # entry name -> link text, without .parent
    parent_link: str | None  # the .parent link text, if any
    oddities: tuple[str, ...]  # entries that are neither templates nor symlinks

    @cached_property
    def template_set(self) -> frozenset[str]:
        return frozenset(self.templates)


@dataclass(frozen=True)
class TreeSnapshot:
    """The layout of a tree at one moment, with every template's digest."""

    root: Path
    categories: Mapping[str, CategoryListing]
    templates: Mapping[str, TemplateFile]  # full name -> file
    problems: tuple[tuple[str, str], ...] = field(default=())  # (full name, message)
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.chains:
            chains = {category: self._chain(category) for category in self.categories}
            object.__setattr__(self, "chains", chains)

    def repositories(self, category: str) -> tuple[str, ...]:
        """`category`, then the categories its ``.parent`` links lead to (cbuild's order)."""
        known = self.chains.get(category)
        if known is not None:
            return known
        return self._chain(category)

    def _chain(self, category: str) -> tuple[str, ...]:
        chain = [category]
        current = category
        while True:
            listing = self.categories.get(current)
            if listing is None or listing.parent_link is None:
                break
            parent = listing.parent_link.rstrip("/").rpartition("/")[2]
            if parent in chain or parent not in self.categories:
                break
            chain.append(parent)
            current = parent
        return tuple(chain)


@dataclass
class _FileState:
    key: tuple[int, int, int, int]
    source: bytes
    file: TemplateFile


@dataclass
class _DirState:
    key: tuple[int, int, int]
    listing: CategoryListing


class TreeScanner:
    """Scans one tree repeatedly, re-reading only what changed since the last scan."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._root = str(self.root)  # string paths: this runs per template, per scan
        self._files: dict[str, _FileState] = {}
        self._dirs: dict[str, _DirState] = {}
        # template.py stat results taken while listing a category in this
        # scan, so that the template's own step need not stat it again.
        self._listed: dict[str, os.stat_result] = {}

    def source(self, template: TemplateFile) -> bytes:
        """The bytes `template.digest` was computed from."""
        state = self._files.get(template.full_name)
        if state is None or state.file.digest != template.digest:
            raise ApkfarmError(f"{template.full_name}: template changed while it was loaded")
        return state.source

    def scan(self) -> TreeSnapshot:
        """The whole tree: its layout and every template's digest."""
        categories = self.categories()
        templates: dict[str, TemplateFile] = {}
        problems: list[tuple[str, str]] = []
        for category, listing in categories.items():
            for name in listing.templates:
                file = self.file(category, name, problems)
                if file is not None:
                    templates[file.full_name] = file
        return self.snapshot(categories, templates, problems)

    def categories(self) -> dict[str, CategoryListing]:
        """The tree's layout (cheap: unchanged category directories are not listed again)."""
        if not self.root.is_dir():
            raise ApkfarmError(f"{self.root}: not a ports tree (no such directory)")
        self._listed = {}  # only this scan's listings may stand in for a stat
        with os.scandir(self.root) as entries:
            top = sorted(
                e.name
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            )
        categories: dict[str, CategoryListing] = {}
        for name in top:
            listing = self._category(name)
            if listing.templates:  # src/, etc/ and the like are not categories
                categories[name] = listing
        return categories

    def file(
        self, category: str, name: str, problems: list[tuple[str, str]]
    ) -> TemplateFile | None:
        """One template's file and digest; read again only if its stat data changed."""
        return self._template(category, name, problems)

    def snapshot(
        self,
        categories: dict[str, CategoryListing],
        templates: dict[str, TemplateFile],
        problems: list[tuple[str, str]],
    ) -> TreeSnapshot:
        """Assemble a snapshot, and forget files that are gone."""
        for stale in [k for k in self._files if k not in templates]:
            del self._files[stale]
        return TreeSnapshot(self.root, categories, templates, tuple(problems))

    def _category(self, name: str) -> CategoryListing:
        path = self.root / name
        info = path.stat()
        key = (info.st_mtime_ns, info.st_ino, info.st_ctime_ns)
        cached = self._dirs.get(name)
        if cached is not None and cached.key == key:
            return cached.listing
        templates: list[str] = []
        symlinks: dict[str, str] = {}
        parent_link: str | None = None
        oddities: list[str] = []
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_symlink():
                    target = os.readlink(entry.path)  # noqa: PTH115 - DirEntry path, hot loop
                    if entry.name == PARENT_LINK:
                        parent_link = target
                    else:
                        symlinks[entry.name] = target
                elif entry.is_dir(follow_symlinks=False):
                    try:
                        found = os.stat(entry.path + "/template.py")  # noqa: PTH116 - hot loop
                    except OSError:
                        found = None
                    if found is not None and stat.S_ISREG(found.st_mode):
                        templates.append(entry.name)
                        self._listed[f"{name}/{entry.name}"] = found
                    elif not entry.name.startswith("."):
                        oddities.append(entry.name)
                elif not entry.name.startswith("."):
                    oddities.append(entry.name)
        listing = CategoryListing(
            name=name,
            templates=tuple(sorted(templates)),
            symlinks=dict(sorted(symlinks.items())),
            parent_link=parent_link,
            oddities=tuple(sorted(oddities)),
        )
        self._dirs[name] = _DirState(key, listing)
        return listing

    def _template(
        self, category: str, name: str, problems: list[tuple[str, str]]
    ) -> TemplateFile | None:
        full_name = f"{category}/{name}"
        path = f"{self._root}/{full_name}/template.py"
        info = self._listed.pop(full_name, None) if self._listed else None
        if info is None:
            try:
                info = os.stat(path)  # noqa: PTH116 - one stat per template per scan: the hot path
            except OSError as error:
                problems.append((full_name, f"cannot read template.py: {error.strerror}"))
                return None
        key = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_ctime_ns)
        state = self._files.get(full_name)
        if state is not None and state.key == key:
            return state.file
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TEMPLATE_BYTES:
            problems.append((full_name, "template.py is not a regular file under 1 MiB"))
            return None
        try:
            # os.read of the size stat gave: no buffered file object per template.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                source = os.read(fd, info.st_size + 1)
            finally:
                os.close(fd)
        except OSError as error:
            problems.append((full_name, f"cannot read template.py: {error.strerror}"))
            return None
        file = TemplateFile(category, name, Path(path), hashlib.sha256(source).hexdigest())
        self._files[full_name] = _FileState(key, source, file)
        return file
