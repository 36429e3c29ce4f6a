"""Unpack source archives into a build directory, refusing anything hostile.

Sources come from the internet; the builder unpacks them before the sandbox
exists, so this module trusts nothing in them. It supports tar (plain, gzip,
bzip2, xz) and zip, detected by content, not by name.

What is refused (``ExtractError`` naming the archive and the member):

* member paths that are absolute or contain ``..``;
* symlinks with an absolute target, or whose target — resolved like the
  kernel would, through the symlinks already extracted — leaves the
  destination (checked again on the final tree, since a later member can
  change how an earlier target resolves); a loop is harmless (ELOOP);
* members under a symlinked directory (writing through a symlink), or under
  a path that is a file;
* a member that would replace a symlink or a directory, or a directory that
  would replace a file (a file may replace a file: tar's "last one wins");
* hard links to a path outside the archive or to a member that is not an
  already extracted regular file;
* device, FIFO and socket members, and member types we do not know;
* encrypted zip members;
* limit breaches (``ExtractLimits``): member count, one member's size, total
  data size, expansion ratio against the archive's size, and the size of a
  single tar extension header (pax / GNU long names), which Python's tarfile
  would otherwise read into memory whole.

Special mode bits (setuid, setgid, sticky) are stripped by default — what
cbuild's ``tar --no-same-permissions`` does — or refused with
``special_bits="refuse"``. Modes are masked with umask 022 and the owner
always keeps read/write (and search on directories), so later phases can
patch and clean the tree. Ownership is never restored.

Extraction writes into a fresh temporary directory next to the destination
and renames it into place only when every member was accepted, so a refusal
leaves nothing behind. Files are created with ``O_EXCL | O_NOFOLLOW`` through
directory descriptors opened with ``O_NOFOLLOW``: even if the bookkeeping
were wrong, no write can pass through a symlink.

Python's ``tarfile`` data filter is not used: the interpreter this project
targets (3.12/3.13) has had several bypasses fixed only in point releases,
and it does not cover zip at all.
"""

from __future__ import annotations

import bz2
import calendar
import contextlib
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, Protocol

from apkfarm.build.errors import ExtractError, ExtractLimitError

SpecialBits = Literal["strip", "refuse"]
ArchiveKind = Literal["tar", "tar.gz", "tar.bz2", "tar.xz", "zip", "file"]

_CHUNK = 64 * 1024
_SPECIAL_BITS = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX
_UMASK = 0o022
_MAX_LINK_TARGET = 4095
_MAX_MTIME = 2**33  # year 2242; larger values are junk and overflow utime

# What the decompressors and archive readers raise for damaged input.
_CORRUPT = (
    tarfile.TarError,
    zipfile.BadZipFile,
    gzip.BadGzipFile,
    EOFError,
    zlib.error,
    lzma.LZMAError,
)

# Sources that are copied as they are, as cbuild does for patches and scripts.
_PLAIN_SUFFIXES = (".patch", ".diff", ".txt", ".sh")


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on what one extraction may create.

    ``max_ratio`` bounds the bytes produced (decompressed stream for tar,
    declared sizes for zip) per byte of archive; archives too small for the
    ratio to be meaningful may always expand to ``ratio_floor``.
    """

    max_members: int = 200_000
    max_member_size: int = 4 * 2**30
    max_total_size: int = 16 * 2**30
    max_ratio: int = 250
    ratio_floor: int = 64 * 2**20
    max_header_size: int = 2**20
    # More than the kernel's 40, so a chain we stop following is one the
    # kernel would refuse to follow too.
    max_symlink_hops: int = 64

    def expansion_limit(self, archive_size: int) -> int:
        return max(self.ratio_floor, self.max_ratio * archive_size)


@dataclass(frozen=True)
class ArchiveReport:
    """What one archive contributed."""

    archive: Path
    kind: ArchiveKind
    members: int
    bytes_written: int
    stripped_special_bits: tuple[str, ...]


@dataclass(frozen=True)
class ExtractResult:
    dest: Path
    archives: tuple[ArchiveReport, ...]


def detect_kind(path: Path) -> ArchiveKind:
    """The archive kind from the first bytes; ``file`` for plain-copy sources."""
    with path.open("rb") as f:
        head = f.read(512)
    if head.startswith(b"\x1f\x8b"):
        return "tar.gz"
    if head.startswith(b"BZh"):
        return "tar.bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "tar.xz"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if len(head) == 512 and head[257:262] == b"ustar":
        return "tar"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        raise ExtractError(f"{path.name}: zstd archives are not supported")
    if path.name.endswith(_PLAIN_SUFFIXES):
        return "file"
    raise ExtractError(f"{path.name}: not a tar (plain, gz, bz2, xz) or zip archive")


def extract_archive(
    archive: Path,
    dest: Path,
    *,
    limits: ExtractLimits | None = None,
    special_bits: SpecialBits = "strip",
) -> ExtractResult:
    """Extract one archive so that its members appear directly under ``dest``.

    ``dest`` must not exist (or be an empty directory); it appears only when
    extraction succeeded.
    """
    session = _Session(dest, limits or ExtractLimits(), special_bits)
    with session:
        session.add(archive)
        session.commit()
    return session.result()


def extract_sources(
    archives: Sequence[Path],
    srcdir: Path,
    *,
    limits: ExtractLimits | None = None,
    special_bits: SpecialBits = "strip",
) -> ExtractResult:
    """Extract all sources into ``srcdir`` the way cbuild lays out a build's sources.

    Every archive is unpacked into one temporary directory (later archives
    may add to directories of earlier ones, never replace their symlinks).
    If the result is exactly one real directory — the usual ``name-1.0/``
    top-level of a tarball — its contents become ``srcdir``; otherwise the
    whole extracted tree does. Patches and scripts (``.patch``, ``.diff``,
    ``.txt``, ``.sh``) are copied in as files. The limits apply to all
    archives together.
    """
    session = _Session(srcdir, limits or ExtractLimits(), special_bits)
    with session:
        for archive in archives:
            session.add(archive)
        session.commit(subdir=session.single_top_directory())
    return session.result()


# --- the recorded tree -------------------------------------------------------------

_Kind = Literal["dir", "file", "symlink"]
_Parts = tuple[str, ...]


@dataclass
class _Entry:
    kind: _Kind
    mode: int = 0o755
    mtime: int | None = None
    target: str = ""  # symlinks only
    origin: str = ""  # the archive it came from, for messages


def _split(name: str, *, label: str) -> _Parts:
    """A member path as components; refuses absolute paths, ``..`` and NUL."""
    if "\x00" in name:
        raise ExtractError(f"{label}: member name contains a NUL byte")
    if name.startswith("/"):
        raise ExtractError(f"{label}: absolute member path {name!r}")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ExtractError(f"{label}: member path {name!r} contains '..'")
    return parts


@dataclass(frozen=True)
class _Spec:
    """One archive member as the extractor sees it, whatever the archive format."""

    name: str
    kind: _Kind
    size: int = 0
    mode: int = 0o644
    mtime: float | None = None
    target: str = ""  # symlinks only


@dataclass
class _Stats:
    members: int = 0
    data_bytes: int = 0
    stripped: list[str] = field(default_factory=list)


class _Session:
    """One extraction into a temporary directory, committed by rename or discarded."""

    def __init__(self, dest: Path, limits: ExtractLimits, special_bits: SpecialBits) -> None:
        self.dest = dest
        self.limits = limits
        self.special_bits = special_bits
        self.entries: dict[_Parts, _Entry] = {}
        self.reports: list[ArchiveReport] = []
        self.total_members = 0
        self.total_bytes = 0
        self.tmp: Path | None = None
        self.root_fd = -1
        self._cached_dir: tuple[_Parts, int] | None = None

    # lifecycle

    def __enter__(self) -> _Session:
        _check_destination(self.dest)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.dest.name}.extract-", dir=self.dest.parent)
        )
        self.root_fd = os.open(self.tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_cached_dir()
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1
        if self.tmp is not None and self.tmp.exists():
            _force_remove(self.tmp)

    def result(self) -> ExtractResult:
        return ExtractResult(dest=self.dest, archives=tuple(self.reports))

    def single_top_directory(self) -> str | None:
        tops = [parts for parts in self.entries if len(parts) == 1]
        if len(tops) == 1 and self.entries[tops[0]].kind == "dir":
            return tops[0][0]
        return None

    def commit(self, subdir: str | None = None) -> None:
        """Check the final tree, apply directory modes, move it (or ``subdir``) into place."""
        assert self.tmp is not None
        dest = self.dest
        for parts, entry in self.entries.items():
            if entry.kind == "symlink":
                label = f"{entry.origin}: member {'/'.join(parts)!r}"
                self._check_link_target(parts, entry.target, label=label)
        self._apply_directory_metadata()
        self._drop_cached_dir()
        _check_destination(dest)
        with contextlib.suppress(FileNotFoundError):
            dest.rmdir()  # an empty directory may be replaced
        if subdir is None:
            self.tmp.chmod(0o755)  # mkdtemp made it private; sources are public
            self.tmp.rename(dest)
        else:
            (self.tmp / subdir).rename(dest)

    # archives

    def add(self, archive: Path) -> None:
        try:
            kind = detect_kind(archive)
        except OSError as exc:
            raise ExtractError(f"{archive.name}: cannot read: {exc.strerror}") from exc
        stats = _Stats()
        try:
            if kind == "zip":
                self._add_zip(archive, stats)
            elif kind == "file":
                self._add_plain(archive, stats)
            else:
                self._add_tar(archive, kind, stats)
        except _CORRUPT as exc:
            raise ExtractError(f"{archive.name}: corrupt archive: {exc}") from exc
        except OSError as exc:
            raise ExtractError(f"{archive.name}: cannot extract: {exc}") from exc
        self.reports.append(
            ArchiveReport(archive, kind, stats.members, stats.data_bytes, tuple(stats.stripped))
        )

    def _add_plain(self, path: Path, stats: _Stats) -> None:
        size = path.stat().st_size
        with path.open("rb") as src:
            self._member(_Spec(path.name, "file", size=size), src, path, stats)

    def _add_tar(self, archive: Path, kind: ArchiveKind, stats: _Stats) -> None:
        size = archive.stat().st_size
        limit = self.limits.expansion_limit(size)
        with archive.open("rb") as raw, _decompressor(raw, kind) as plain:
            stream = _BoundedStream(plain, archive.name, limit, self.limits.max_header_size)
            with tarfile.open(fileobj=stream, mode="r:") as tf:
                for info in tf:
                    self._tar_member(tf, info, archive, stats)

    def _tar_member(
        self, tf: tarfile.TarFile, info: tarfile.TarInfo, archive: Path, stats: _Stats
    ) -> None:
        label = f"{archive.name}: member {info.name!r}"
        if info.isreg():
            data = tf.extractfile(info)
            if data is None:  # pragma: no cover - isreg() members always have data
                raise ExtractError(f"{label}: no data")
            with data:
                spec = _Spec(info.name, "file", size=info.size, mode=info.mode, mtime=info.mtime)
                self._member(spec, data, archive, stats)
        elif info.isdir():
            spec = _Spec(info.name, "dir", mode=info.mode, mtime=info.mtime)
            self._member(spec, None, archive, stats)
        elif info.issym():
            spec = _Spec(info.name, "symlink", mtime=info.mtime, target=info.linkname)
            self._member(spec, None, archive, stats)
        elif info.islnk():
            self._hardlink(info.name, info.linkname, archive, stats)
        elif info.ischr() or info.isblk() or info.isfifo():
            kind = (
                "character device" if info.ischr() else "block device" if info.isblk() else "FIFO"
            )
            raise ExtractError(f"{label}: {kind} members are not allowed")
        else:
            raise ExtractError(f"{label}: unsupported member type {info.type!r}")

    def _add_zip(self, archive: Path, stats: _Stats) -> None:
        size = archive.stat().st_size
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            self._check_count(len(infos), archive)
            declared = sum(i.file_size for i in infos)
            limit = self.limits.expansion_limit(size)
            if declared > limit:
                raise ExtractLimitError(
                    f"{archive.name}: members expand to {declared} bytes, more than "
                    f"{self.limits.max_ratio}x the archive's {size} bytes (limit {limit})"
                )
            for info in infos:
                self._zip_member(zf, info, archive, stats)

    def _zip_member(
        self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: Path, stats: _Stats
    ) -> None:
        label = f"{archive.name}: member {info.filename!r}"
        if info.flag_bits & 0x1:
            raise ExtractError(f"{label}: encrypted members are not supported")
        unix_mode = (info.external_attr >> 16) if info.create_system == 3 else 0
        mtime = calendar.timegm((*info.date_time, 0, 0, 0))
        fmt = stat.S_IFMT(unix_mode)
        if fmt == stat.S_IFLNK:
            if info.file_size > _MAX_LINK_TARGET:
                raise ExtractError(f"{label}: symlink target longer than {_MAX_LINK_TARGET}")
            raw_target = zf.read(info)
            try:
                target = raw_target.decode("utf-8")
            except UnicodeDecodeError:
                raise ExtractError(f"{label}: symlink target is not UTF-8") from None
            spec = _Spec(info.filename, "symlink", mtime=mtime, target=target)
            self._member(spec, None, archive, stats)
        elif info.is_dir() or fmt == stat.S_IFDIR:
            mode = stat.S_IMODE(unix_mode) or 0o755
            self._member(_Spec(info.filename, "dir", mode=mode, mtime=mtime), None, archive, stats)
        elif fmt in (0, stat.S_IFREG):
            mode = stat.S_IMODE(unix_mode) or 0o644
            with zf.open(info) as data:
                spec = _Spec(info.filename, "file", size=info.file_size, mode=mode, mtime=mtime)
                self._member(spec, data, archive, stats)
        else:
            raise ExtractError(
                f"{label}: special file members (mode {unix_mode:#o}) are not allowed"
            )

    # members

    def _check_count(self, extra: int, archive: Path) -> None:
        if self.total_members + extra > self.limits.max_members:
            raise ExtractLimitError(f"{archive.name}: more than {self.limits.max_members} members")

    def _member(self, spec: _Spec, data: _Stream | None, archive: Path, stats: _Stats) -> None:
        name, kind, size, link_target = spec.name, spec.kind, spec.size, spec.target
        label = f"{archive.name}: member {name!r}"
        self._check_count(1, archive)
        self.total_members += 1
        stats.members += 1
        parts = _split(name, label=label)
        if not parts:
            if kind == "dir":
                return  # "./" names the destination itself
            raise ExtractError(f"{label}: a {kind} cannot replace the destination directory")
        mode = self._checked_mode(spec, label, stats)
        self._check_parents(parts, label)
        existing = self.entries.get(parts)
        if existing is not None:
            if existing.kind == "symlink":
                raise ExtractError(f"{label}: would replace a symlink extracted earlier")
            if existing.kind == "dir" and kind != "dir":
                raise ExtractError(f"{label}: would replace a directory with a {kind}")
            if existing.kind == "file" and kind != "file":
                raise ExtractError(f"{label}: would replace a file with a {kind}")
        clean_mtime = _clean_mtime(spec.mtime)
        parent_fd = self._dir_fd(parts[:-1])
        leaf = parts[-1]
        if kind == "dir":
            if existing is None:
                os.mkdir(leaf, 0o700, dir_fd=parent_fd)
            self.entries[parts] = _Entry("dir", mode | 0o700, clean_mtime)
        elif kind == "symlink":
            if not link_target:
                raise ExtractError(f"{label}: symlink with an empty target")
            if len(link_target) > _MAX_LINK_TARGET or "\x00" in link_target:
                raise ExtractError(f"{label}: invalid symlink target")
            self._check_link_target(parts, link_target, label=label)
            os.symlink(link_target, leaf, dir_fd=parent_fd)
            self.entries[parts] = _Entry("symlink", 0o777, clean_mtime, link_target, archive.name)
            if clean_mtime is not None:
                os.utime(leaf, (clean_mtime, clean_mtime), dir_fd=parent_fd, follow_symlinks=False)
        else:
            assert data is not None
            self._check_size(size, label, archive)
            if existing is not None:
                os.unlink(leaf, dir_fd=parent_fd)
            written = self._write_file(
                parent_fd, leaf, data, size=size, mode=mode, mtime=clean_mtime, label=label
            )
            self.total_bytes += written
            stats.data_bytes += written
            self.entries[parts] = _Entry("file", mode, clean_mtime)

    def _hardlink(self, name: str, target: str, archive: Path, stats: _Stats) -> None:
        label = f"{archive.name}: member {name!r}"
        self._check_count(1, archive)
        self.total_members += 1
        stats.members += 1
        parts = _split(name, label=label)
        target_parts = _split(target, label=f"{label} (hard link target)")
        if not parts:
            raise ExtractError(f"{label}: a hard link cannot replace the destination directory")
        source = self.entries.get(target_parts)
        if source is None:
            raise ExtractError(
                f"{label}: hard link to {target!r}, which is not in the archive before it"
            )
        if source.kind != "file":
            raise ExtractError(f"{label}: hard link to {target!r}, which is a {source.kind}")
        self._check_parents(target_parts, label)  # its parents are real dirs, but be sure
        self._check_parents(parts, label)
        existing = self.entries.get(parts)
        if existing is not None and existing.kind != "file":
            raise ExtractError(f"{label}: would replace a {existing.kind} with a hard link")
        if parts == target_parts:
            return  # a hard link to itself: nothing to do
        dst_fd = self._dir_fd(parts[:-1])
        if existing is not None:
            os.unlink(parts[-1], dir_fd=dst_fd)
        src_fd = self._open_dir(target_parts[:-1])
        try:
            os.link(
                target_parts[-1],
                parts[-1],
                src_dir_fd=src_fd,
                dst_dir_fd=dst_fd,
                follow_symlinks=False,
            )
        finally:
            os.close(src_fd)
        self.entries[parts] = _Entry("file", source.mode, source.mtime)

    def _checked_mode(self, spec: _Spec, label: str, stats: _Stats) -> int:
        mode, kind = spec.mode, spec.kind
        if kind == "symlink":
            return 0o777
        special = mode & _SPECIAL_BITS
        if special:
            if self.special_bits == "refuse":
                raise ExtractError(f"{label}: setuid/setgid/sticky mode {mode & 0o7777:#o}")
            stats.stripped.append(spec.name)
        perm = mode & 0o777 & ~_UMASK
        return perm | (0o700 if kind == "dir" else 0o600)

    def _check_parents(self, parts: _Parts, label: str) -> None:
        for depth in range(1, len(parts)):
            entry = self.entries.get(parts[:depth])
            if entry is None:
                continue
            shown = "/".join(parts[:depth])
            if entry.kind == "symlink":
                raise ExtractError(f"{label}: would be written through the symlink {shown!r}")
            if entry.kind == "file":
                raise ExtractError(f"{label}: parent {shown!r} is a file")

    def _check_size(self, size: int, label: str, archive: Path) -> None:
        if size > self.limits.max_member_size:
            raise ExtractLimitError(
                f"{label}: {size} bytes is more than the {self.limits.max_member_size} allowed"
            )
        if self.total_bytes + size > self.limits.max_total_size:
            raise ExtractLimitError(
                f"{archive.name}: extracted data would exceed {self.limits.max_total_size} bytes"
            )

    def _check_link_target(self, parts: _Parts, target: str, *, label: str) -> None:
        """Refuse a symlink whose target leaves the tree, resolved through recorded symlinks."""
        if target.startswith("/"):
            raise ExtractError(f"{label}: symlink to the absolute path {target!r}")
        here = list(parts[:-1])
        pending = list(reversed(target.split("/")))
        hops = 0
        while pending:
            comp = pending.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if not here:
                    raise ExtractError(f"{label}: symlink target {target!r} leaves the destination")
                here.pop()
                continue
            entry = self.entries.get((*here, comp))
            if entry is not None and entry.kind == "symlink":
                hops += 1
                if hops > self.limits.max_symlink_hops:
                    # The kernel gives up after 40 links (ELOOP): a chain this
                    # long resolves to nothing, so it cannot lead anywhere.
                    return
                if entry.target.startswith("/"):  # pragma: no cover - refused when recorded
                    raise ExtractError(f"{label}: symlink chain reaches an absolute path")
                pending.extend(reversed(entry.target.split("/")))
                continue
            # A directory, a file, or a missing name (looked at lexically).
            here.append(comp)

    # writing

    def _write_file(
        self,
        parent_fd: int,
        leaf: str,
        data: _Stream,
        *,
        size: int,
        mode: int,
        mtime: int | None,
        label: str,
    ) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(leaf, flags, 0o600, dir_fd=parent_fd)
        written = 0
        try:
            while True:
                chunk = data.read(_CHUNK)
                if not chunk:
                    break
                written += len(chunk)
                if written > size:
                    raise ExtractError(f"{label}: more data than the {size} bytes declared")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
            if written != size:
                raise ExtractError(f"{label}: {written} bytes of data, {size} declared")
            os.fchmod(fd, mode)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        finally:
            os.close(fd)
        return written

    def _open_dir(self, parts: _Parts) -> int:
        """A new O_NOFOLLOW descriptor of an existing directory; the caller closes it."""
        fd = os.dup(self.root_fd)
        try:
            for name in parts:
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                child = os.open(name, flags, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _drop_cached_dir(self) -> None:
        if self._cached_dir is not None:
            os.close(self._cached_dir[1])
            self._cached_dir = None

    def _dir_fd(self, parts: _Parts) -> int:
        """An O_NOFOLLOW descriptor of the directory ``parts``, creating missing ones."""
        if not parts:
            return self.root_fd
        if self._cached_dir is not None and self._cached_dir[0] == parts:
            return self._cached_dir[1]
        self._drop_cached_dir()
        fd = os.dup(self.root_fd)
        try:
            for depth, name in enumerate(parts, start=1):
                if parts[:depth] not in self.entries:
                    os.mkdir(name, 0o700, dir_fd=fd)
                    self.entries[parts[:depth]] = _Entry("dir", 0o755, None)
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                child = os.open(name, flags, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        self._cached_dir = (parts, fd)
        return fd

    def _apply_directory_metadata(self) -> None:
        """Directory modes and mtimes last, deepest first, as tar does."""
        dirs = sorted(
            (p for p, e in self.entries.items() if e.kind == "dir"), key=len, reverse=True
        )
        for parts in dirs:
            entry = self.entries[parts]
            fd = self._dir_fd(parts)
            os.fchmod(fd, entry.mode)
            if entry.mtime is not None:
                os.utime(fd, (entry.mtime, entry.mtime))


class _BoundedStream:
    """A decompressed tar stream that tarfile reads, with the bomb checks applied.

    Every read and seek is checked against ``limit`` (the expansion bound)
    before it happens; a single read larger than ``max_read`` can only be
    tarfile loading a pax or GNU long-name header into memory, and is refused.
    """

    def __init__(self, inner: _SeekableStream, label: str, limit: int, max_header: int) -> None:
        self.inner = inner
        self.label = label
        self.limit = limit
        self.max_read = max(max_header, _CHUNK)
        self.position = 0

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0 or size > self.max_read:
            raise ExtractLimitError(
                f"{self.label}: a tar extension header of {size} bytes exceeds "
                f"{self.max_read} bytes"
            )
        self._check(self.position + size)
        data = self.inner.read(size)
        self.position += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        target = offset if whence == os.SEEK_SET else self.position + offset
        if whence not in (os.SEEK_SET, os.SEEK_CUR):
            raise ExtractError(f"{self.label}: unexpected seek from the end of a stream")
        self._check(target)
        self.position = self.inner.seek(target)
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: bytes, /) -> int:
        raise ExtractError(f"{self.label}: archive stream is read-only")

    def close(self) -> None:
        """The caller closes the underlying streams."""

    def _check(self, end: int) -> None:
        if end > self.limit:
            raise ExtractLimitError(
                f"{self.label}: decompresses to more than {self.limit} bytes "
                "(expansion ratio limit)"
            )


class _Stream(Protocol):
    """The part of a file object the extractor reads from."""

    def read(self, size: int = -1, /) -> bytes: ...


class _SeekableStream(_Stream, Protocol):
    def seek(self, offset: int, whence: int = 0, /) -> int: ...


@contextlib.contextmanager
def _decompressor(raw: IO[bytes], kind: ArchiveKind) -> Iterator[_SeekableStream]:
    if kind == "tar":
        yield raw
    elif kind == "tar.gz":
        with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            yield gz
    elif kind == "tar.bz2":
        with bz2.BZ2File(raw, mode="rb") as bz:
            yield bz
    elif kind == "tar.xz":
        with lzma.LZMAFile(raw, mode="rb") as xz:
            yield xz
    else:  # pragma: no cover - callers pass tar kinds only
        raise ExtractError(f"not a tar kind: {kind}")


def _clean_mtime(mtime: int | float | None) -> int | None:
    if mtime is None:
        return None
    value = int(mtime)
    return min(max(value, 0), _MAX_MTIME)


def _check_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ExtractError(f"{dest}: destination exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise ExtractError(f"{dest}: destination exists and is not empty")


def _force_remove(path: Path) -> None:
    """Remove a partially extracted tree, even where modes deny writing."""

    def _retry(func: object, failed: str, exc: BaseException) -> None:
        failed_path = Path(failed)
        failed_path.parent.chmod(0o700)
        if failed_path.is_dir() and not failed_path.is_symlink():
            shutil.rmtree(failed_path, onexc=_retry)
        else:
            failed_path.unlink()

    shutil.rmtree(path, onexc=_retry)
