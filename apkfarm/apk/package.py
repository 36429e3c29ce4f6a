"""The package writer: a staged directory tree + ``PkgInfo`` -> an unsigned v2 package.

The writer never sees a key. It produces the data member first (streamed into
a spool file, hashed for ``datahash``), then the control member (``.PKGINFO``
with ``size`` and ``datahash`` filled in, plus install scripts). Signing and
assembly happen afterwards (``apkfarm.apk.assemble``), possibly elsewhere.

The data member is deflated by the engine ``compression`` names (default
ISA-L level 2 on a thread beside the tar writer; zlib levels for packages
that want them; see ``apkfarm.apk.gzip_members`` for the measurements and
what each engine's bytes depend on). Its digest (``datahash``) is taken from
exactly the bytes written to the spool. The control member is always zlib
level 9: it is small, and it is what the signature and the ``C:`` identity
cover.

Output is deterministic: entries sorted (depth first, siblings by byte
order, parents before children), every mtime the same ``source_date_epoch``,
uid/gid 0 ``root``, gzip headers without time or name. The same tree,
metadata and compression give identical bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from apkfarm.apk.errors import PackageInputError
from apkfarm.apk.gzip_members import (
    DEFAULT_DATA_COMPRESSION,
    DataCompression,
    MemberWriter,
    compress_member,
)
from apkfarm.apk.pkginfo import SCRIPT_NAMES, PkgInfo
from apkfarm.apk.reader import identity_of
from apkfarm.apk.tar import (
    END_OF_ARCHIVE,
    MAX_OCTAL_SIZE,
    EntryType,
    entry_headers,
    file_entry,
    padding,
)

_SMALL_FILE = 1 << 20  # read files up to this size once; larger ones are read twice
_COPY_CHUNK = 1 << 20
_SPOOL_IN_MEMORY = 4 << 20  # data members up to this size never touch the disk
_SPECIAL_KINDS = {
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


class DataMember:
    """The compressed data member, spooled (in memory when small, else a temp file)."""

    def __init__(self, spool: BinaryIO, size: int, sha256: str) -> None:
        self._spool = spool
        self.size = size
        self.sha256 = sha256

    def chunks(self, chunk_size: int = _COPY_CHUNK) -> Iterator[bytes]:
        self._spool.seek(0)
        while chunk := self._spool.read(chunk_size):
            yield chunk

    def write_to(self, out: BinaryIO) -> int:
        for chunk in self.chunks():
            out.write(chunk)
        return self.size

    def close(self) -> None:
        self._spool.close()


@dataclass
class UnsignedPackage:
    """A package without its signature member: what a builder produces and uploads.

    ``control_member`` is what a signer signs; ``data`` streams the data member.
    Close it (or use it as a context manager) to drop the spool file.
    """

    info: PkgInfo
    control_member: bytes
    data: DataMember

    @property
    def identity(self) -> str:
        """The index ``C:`` value of the package (independent of its signature)."""
        sha1 = hashlib.sha1(self.control_member).digest()  # noqa: S324 - defined as SHA-1
        return identity_of(sha1)

    @property
    def unsigned_size(self) -> int:
        return len(self.control_member) + self.data.size

    def write_unsigned(self, out: BinaryIO) -> int:
        """Control + data members: the form in which a builder hands a package on."""
        out.write(self.control_member)
        return len(self.control_member) + self.data.write_to(out)

    def close(self) -> None:
        self.data.close()

    def __enter__(self) -> UnsignedPackage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class _Node:
    relpath: bytes  # b"usr/bin/x"; directories without the trailing slash
    abspath: bytes
    st: os.stat_result


def _walk_subtree(directory: bytes, prefix: bytes) -> Iterator[_Node]:
    """Depth first, siblings in byte order, a directory before its contents."""
    with os.scandir(directory) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        abspath = os.path.join(directory, name)  # noqa: PTH118 - bytes paths keep any file name
        relpath = prefix + name
        st = os.lstat(abspath)
        yield _Node(relpath, abspath, st)
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_subtree(abspath, relpath + b"/")


def _normalise_declared(paths: Collection[str]) -> set[bytes]:
    return {os.fsencode(p.strip("/")) for p in paths}


def _display(relpath: bytes) -> str:
    return os.fsdecode(relpath)


class _DataTarWriter:
    """Writes data tar entries through one gzip member, tracking what apk needs."""

    def __init__(
        self,
        member: MemberWriter,
        *,
        who: str,
        mtime: int,
        allowed_setuid: set[bytes],
    ) -> None:
        self._member = member
        self._who = who
        self._mtime = mtime
        self._allowed_setuid = allowed_setuid
        self._hardlinks: dict[tuple[int, int], bytes] = {}
        self.installed_size = 0

    def add(self, node: _Node) -> None:
        st = node.st
        kind = stat.S_IFMT(st.st_mode)
        where = f"{self._who}: {_display(node.relpath)}"
        if b"\n" in node.relpath:
            raise PackageInputError(f"{where}: file names with a line break cannot be packaged")
        if kind in _SPECIAL_KINDS:
            raise PackageInputError(
                f"{where}: is a {_SPECIAL_KINDS[kind]}; special files cannot be packaged"
            )
        mode = stat.S_IMODE(st.st_mode)
        privileged = mode & (stat.S_ISUID | stat.S_ISGID) and not stat.S_ISLNK(st.st_mode)
        if privileged and node.relpath not in self._allowed_setuid:
            raise PackageInputError(
                f"{where}: has the setuid/setgid bit (mode {mode:04o}) but is not "
                "declared; declare it in the template or clear the bit"
            )
        if kind == stat.S_IFDIR:
            self._write(
                entry_headers(
                    node.relpath + b"/", EntryType.DIRECTORY, mode=mode, mtime=self._mtime
                )
            )
        elif kind == stat.S_IFLNK:
            target = os.readlink(node.abspath)  # noqa: PTH115 - bytes, as stored in the tar
            self._write(
                entry_headers(
                    node.relpath,
                    EntryType.SYMLINK,
                    mode=0o777,
                    mtime=self._mtime,
                    linkname=target,
                    checksum_sha1=hashlib.sha1(target).hexdigest(),  # noqa: S324 - apk's format
                )
            )
        elif kind == stat.S_IFREG:
            self._add_file(node, mode, where)
        else:
            raise PackageInputError(f"{where}: unsupported file type {kind:o}")

    def _add_file(self, node: _Node, mode: int, where: str) -> None:
        st = node.st
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._hardlinks.get(key)
            if first is not None:
                self._write(
                    entry_headers(
                        node.relpath,
                        EntryType.HARDLINK,
                        mode=mode,
                        mtime=self._mtime,
                        linkname=first,
                    )
                )
                return
            self._hardlinks[key] = node.relpath
        size = st.st_size
        if size > MAX_OCTAL_SIZE:
            raise PackageInputError(f"{where}: {size} bytes is more than apk's tar reader takes")
        self.installed_size += size
        with open(node.abspath, "rb") as source:  # noqa: PTH123 - bytes path
            if size <= _SMALL_FILE:
                content = source.read(size + 1)
                self._check_size(len(content), size, where)
                header = entry_headers(
                    node.relpath,
                    EntryType.FILE,
                    mode=mode,
                    mtime=self._mtime,
                    size=size,
                    checksum_sha1=hashlib.sha1(content).hexdigest(),  # noqa: S324
                )
                self._write(header + content + padding(size))
                return
            # Large file: the checksum precedes the content, so read it twice.
            sha1 = hashlib.sha1()  # noqa: S324 - apk's per-file checksum is SHA-1
            seen = 0
            while chunk := source.read(_COPY_CHUNK):
                sha1.update(chunk)
                seen += len(chunk)
            self._check_size(seen, size, where)
            self._write(
                entry_headers(
                    node.relpath,
                    EntryType.FILE,
                    mode=mode,
                    mtime=self._mtime,
                    size=size,
                    checksum_sha1=sha1.hexdigest(),
                )
            )
            source.seek(0)
            again = hashlib.sha1()  # noqa: S324
            seen = 0
            while seen < size and (chunk := source.read(min(_COPY_CHUNK, size - seen))):
                again.update(chunk)
                seen += len(chunk)
                self._write(chunk)
            if seen != size or again.digest() != sha1.digest():
                raise PackageInputError(f"{where}: changed while it was being packaged")
            self._write(padding(size))

    @staticmethod
    def _check_size(actual: int, expected: int, where: str) -> None:
        if actual != expected:
            raise PackageInputError(f"{where}: changed size while it was being packaged")

    def _write(self, data: bytes) -> None:
        self._member.write(data)


def _control_member(info: PkgInfo, scripts: Mapping[str, bytes], mtime: int) -> bytes:
    parts = [file_entry(b".PKGINFO", info.render(), mode=0o644, mtime=mtime)]
    for name in SCRIPT_NAMES:
        if name in scripts:
            parts.append(file_entry(b"." + name.encode(), scripts[name], mode=0o755, mtime=mtime))
    # Cut: no end-of-archive blocks, the data member's tar continues the stream.
    return compress_member(b"".join(parts))


def _normalise_scripts(who: str, info: PkgInfo, scripts: Mapping[str, bytes]) -> dict[str, bytes]:
    result: dict[str, bytes] = {}
    for raw_name, content in scripts.items():
        name = raw_name.removeprefix(".")
        if name not in SCRIPT_NAMES:
            raise PackageInputError(
                f"{who}: unknown install script {raw_name!r} (known: {', '.join(SCRIPT_NAMES)})"
            )
        result[name] = bytes(content)
    if info.triggers and "trigger" not in result:
        raise PackageInputError(f"{who}: triggers are declared but there is no trigger script")
    if "trigger" in result and not info.triggers:
        raise PackageInputError(f"{who}: a trigger script needs the trigger paths declared")
    return result


def build_package(
    staged_dir: Path,
    info: PkgInfo,
    *,
    scripts: Mapping[str, bytes] | None = None,
    allowed_setuid: Collection[str] = (),
    source_date_epoch: int | None = None,
    spool_dir: Path | None = None,
    compression: DataCompression = DEFAULT_DATA_COMPRESSION,
) -> UnsignedPackage:
    """Pack ``staged_dir`` as an unsigned package; ``info.size``/``datahash`` are computed.

    ``allowed_setuid`` lists the paths (relative to the tree, with or without a
    leading ``/``) that may carry setuid/setgid bits. ``source_date_epoch``
    (default: ``info.builddate``) is every entry's mtime. ``compression``
    deflates the data member.
    """
    who = f"package {info.pkgname}"
    info.validate()
    if not staged_dir.is_dir():
        raise PackageInputError(f"{who}: staged directory {staged_dir} does not exist")
    mtime = info.builddate if source_date_epoch is None else source_date_epoch
    if not 0 <= mtime <= MAX_OCTAL_SIZE:
        raise PackageInputError(
            f"{who}: SOURCE_DATE_EPOCH {mtime} is outside what a tar header holds "
            f"(0..{MAX_OCTAL_SIZE})"
        )
    script_map = _normalise_scripts(who, info, scripts or {})
    spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - owned by the returned DataMember
        max_size=_SPOOL_IN_MEMORY, dir=None if spool_dir is None else str(spool_dir)
    )
    try:
        sha256 = hashlib.sha256()
        # The member's thread writes the spool and the hash until the with block ends;
        # on an error it is stopped before the spool is closed.
        with MemberWriter(spool, [sha256], compression) as member:
            writer = _DataTarWriter(
                member, who=who, mtime=mtime, allowed_setuid=_normalise_declared(allowed_setuid)
            )
            for node in _walk_subtree(os.fsencode(staged_dir), b""):
                writer.add(node)
            member.write(END_OF_ARCHIVE)
        final = info.with_computed(size=writer.installed_size, datahash=sha256.hexdigest())
        control = _control_member(final, script_map, mtime)
        data = DataMember(spool, member.compressed_size, sha256.hexdigest())  # type: ignore[arg-type]
    except BaseException:
        spool.close()
        raise
    return UnsignedPackage(info=final, control_member=control, data=data)
