"""The streaming v2 reader and verifier for packages and indexes.

One pass over a binary stream, memory flat in the archive's size:

1. the signature member's ``.SIGN.*`` files are collected; the first one of a
   known type whose key is in the keyring is the one checked (as apk does);
2. the next member's first entry tells a package (``.PKGINFO`` and scripts)
   from an index (``DESCRIPTION`` and ``APKINDEX``); its compressed bytes are
   hashed for the signature and for the package identity (SHA-1, ``C:``);
3. a package's control signature is checked before any data entry is handed
   to the caller; then every data entry's ``APK-TOOLS.checksum`` is checked
   while streaming, and the data member's SHA-256 against ``datahash``;
4. nothing may follow: no extra member, no trailing bytes, only zeros after
   the end-of-archive blocks.

Every error names the source, the member, the entry and what mismatched.
With ``keyring=None`` signatures are not checked (everything else is).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from cryptography.hazmat.primitives.asymmetric import rsa

from apkfarm.apk.errors import (
    ApkFormatError,
    ApkIntegrityError,
    ApkLimitError,
    ApkSignatureError,
)
from apkfarm.apk.gzip_members import GzipMemberReader, Hasher
from apkfarm.apk.keys import Keyring
from apkfarm.apk.pkginfo import SCRIPT_NAMES, PkgInfo
from apkfarm.apk.signing import (
    SIGNATURE_PREFIX,
    SignatureAlgorithm,
    parse_signature_name,
    verify_digest,
)
from apkfarm.apk.tar import EntryType, TarEntry, TarLimits, TarReader

MiB = 1 << 20
GiB = 1 << 30


class ArchiveKind(enum.Enum):
    PACKAGE = "package"
    INDEX = "index"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what a hostile archive can make the reader inflate or hold."""

    signature_member: int = 1 * MiB
    signature_file: int = 64 * 1024
    control_member: int = 16 * MiB
    pkginfo: int = 1 * MiB
    script: int = 8 * MiB
    data_member: int = 16 * GiB
    index_member: int = 512 * MiB
    description: int = 64 * 1024
    tar: TarLimits = field(default_factory=TarLimits)


DEFAULT_LIMITS = ReadLimits()


@dataclass(frozen=True)
class SignatureCheck:
    """The signature that was verified."""

    file_name: str
    key_name: str
    algorithm: SignatureAlgorithm


@dataclass(frozen=True)
class PackageContents:
    """What reading a package established."""

    source: str
    info: PkgInfo
    identity: str  # "Q1" + base64(SHA-1 of the compressed control member): the index's C:
    control_sha1: bytes
    signature: SignatureCheck | None  # None when read without a keyring
    signature_files: tuple[str, ...]
    scripts: tuple[str, ...]
    size: int  # bytes of the whole .apk
    file_count: int | None  # data entries; None when the data member was only hashed
    data_size: int | None  # bytes of regular-file content; None likewise


@dataclass(frozen=True)
class RawIndex:
    """What reading an index established; ``apkindex`` is parsed by ``apkfarm.apk.index``."""

    source: str
    description: str
    apkindex: bytes
    signature: SignatureCheck | None
    signature_files: tuple[str, ...]
    size: int


# Called for every data entry of a package; ``content`` yields a regular file's
# bytes (None for other entry types). The reader checks the checksum after the
# handler returns, so a handler must treat what it wrote as unverified until
# the whole package has been read.
DataHandler = Callable[[TarEntry, Iterator[bytes] | None], None]


def identity_of(control_sha1: bytes) -> str:
    """The index ``C:`` value: ``Q1`` + base64 of the control member's SHA-1."""
    return "Q1" + base64.b64encode(control_sha1).decode("ascii")


def check_data_path(name: str, where: str) -> str:
    """A data entry name without trailing ``/``; absolute paths and ``..`` are refused."""
    if name.startswith("/"):
        raise ApkFormatError(f"{where}: {name}: absolute path")
    path = name.rstrip("/")
    parts = path.split("/")
    if ".." in parts:
        raise ApkFormatError(f"{where}: {name}: path escapes with '..'")
    if not path or any(part in ("", ".") for part in parts):
        raise ApkFormatError(f"{where}: {name!r}: empty or '.' path component")
    return path


@dataclass
class _Chosen:
    file_name: str
    key_name: str
    algorithm: SignatureAlgorithm
    key: rsa.RSAPublicKey
    signature: bytes


class _V2Reader:
    def __init__(
        self,
        stream: BinaryIO,
        *,
        source: str,
        keyring: Keyring | None,
        expect: ArchiveKind | None,
        limits: ReadLimits,
        on_data_entry: DataHandler | None,
        full_data: bool = True,
    ) -> None:
        self.full_data = full_data
        self.source = source
        self.keyring = keyring
        self.expect = expect
        self.limits = limits
        self.on_data_entry = on_data_entry
        self.kind: ArchiveKind | None = expect
        self.control_index: int | None = None
        self.roles: dict[int, str] = {}
        self.signature_files: list[str] = []
        self.rejected: list[str] = []
        self.chosen: _Chosen | None = None
        self.member_sha1: dict[int, hashlib._Hash] = {}
        self.signed_digest: hashlib._Hash | None = None
        self.data_digest: hashlib._Hash | None = None
        self.info: PkgInfo | None = None
        self.gz = GzipMemberReader(
            stream,
            source=source,
            hashers_for=self._hashers_for,
            limit_for=self._limit_for,
            describe=self.describe,
            total_limit=limits.signature_member
            + limits.control_member
            + max(limits.data_member, limits.index_member),
        )
        self.tar = TarReader(self.gz, describe=self._where, limits=limits.tar)

    # ----------------------------------------------------------------- naming

    def describe(self, index: int) -> str:
        role = self.roles.get(index)
        if role is not None:
            return role
        control = self.control_index
        if control is None:
            if index == 0:
                return "signature member"
            control = 1
        if index == control:
            return "index member" if self.kind is ArchiveKind.INDEX else "control member"
        if index == control + 1 and self.kind is not ArchiveKind.INDEX:
            return "data member"
        return f"gzip member {index + 1}"

    def _where(self, index: int) -> str:
        return f"{self.source}: {self.describe(index)}"

    # ----------------------------------------------------------------- hashing

    def _hashers_for(self, index: int) -> list[Hasher]:
        control = self.control_index
        if control is None or index == control:
            # Could be the control/index member: its SHA-1 is the identity.
            sha1 = hashlib.sha1()  # noqa: S324 - apk's package identity is SHA-1 by definition
            self.member_sha1[index] = sha1
            hashers: list[Hasher] = [sha1]
            if self.chosen is not None and index >= 1:
                self.signed_digest = self.chosen.algorithm.new_hash()
                hashers.append(self.signed_digest)
            return hashers
        if index == control + 1 and self.info is not None:
            if self.info.datahash is not None:
                self.data_digest = hashlib.sha256()
                return [self.data_digest]
            if self.signed_digest is not None:
                # Without datahash the signature covers control and data together.
                return [self.signed_digest]
        return []

    def _limit_for(self, index: int) -> int:
        control = self.control_index
        if control is None:
            return self.limits.signature_member if index == 0 else self.limits.control_member
        if index < control:
            return self.limits.signature_member
        if index == control:
            if self.kind is ArchiveKind.INDEX:
                return self.limits.index_member
            return self.limits.control_member
        return self.limits.data_member

    # ----------------------------------------------------------------- phases

    def read(self) -> PackageContents | RawIndex:
        entry = self.tar.next_entry()
        while entry is not None and entry.member == 0 and entry.name.startswith(SIGNATURE_PREFIX):
            self._signature_entry(entry)
            entry = self.tar.next_entry()
        if self.signature_files:
            self.roles[0] = "signature member"
            self.control_index = 1
            if entry is not None and entry.member == 0:
                raise ApkFormatError(
                    f"{self._where(0)}: holds {entry.name!r}; the signature member may "
                    "hold only .SIGN.* files"
                )
            if self.tar.saw_end_marker and self.tar.end_member == 0:
                raise ApkFormatError(
                    f"{self._where(0)}: ends with an end-of-archive marker (it must be cut)"
                )
        else:
            self.control_index = 0
        if entry is None:
            raise ApkFormatError(f"{self.source}: no control or index member after the signatures")
        if entry.member != self.control_index:
            raise ApkFormatError(f"{self._where(entry.member)}: unexpected entry {entry.name!r}")
        kind = ArchiveKind.PACKAGE if entry.name.startswith(".") else ArchiveKind.INDEX
        if self.expect is not None and kind is not self.expect:
            raise ApkFormatError(
                f"{self.source}: is an apk {kind.value}, not an apk {self.expect.value}"
            )
        self.kind = kind
        self.roles[self.control_index] = (
            "control member" if kind is ArchiveKind.PACKAGE else "index member"
        )
        self._require_trusted_signature()
        if kind is ArchiveKind.PACKAGE:
            return self._read_package(entry)
        return self._read_index(entry)

    def _signature_entry(self, entry: TarEntry) -> None:
        where = self._where(entry.member)
        if entry.type is not EntryType.FILE:
            raise ApkFormatError(f"{where}: {entry.name} is not a regular file")
        self.signature_files.append(entry.name)
        content = self.tar.read_content(entry, self.limits.signature_file)
        if self.keyring is None or self.chosen is not None:
            return
        try:
            algorithm, key_name = parse_signature_name(entry.name)
        except ApkSignatureError:
            self.rejected.append(f"{entry.name}: unknown signature type")
            return
        key = self.keyring.get(key_name)
        if key is None:
            self.rejected.append(f"{entry.name}: key {key_name} is not trusted")
            return
        self.chosen = _Chosen(entry.name, key_name, algorithm, key, content)

    def _require_trusted_signature(self) -> None:
        if self.keyring is None or self.chosen is not None:
            return
        if not self.signature_files:
            raise ApkSignatureError(f"{self.source}: not signed (no signature member)")
        raise ApkSignatureError(
            f"{self.source}: signature member: no signature by a trusted key ("
            + "; ".join(self.rejected)
            + ")"
        )

    def _check_signature(self, digest: hashlib._Hash | None, what: str) -> SignatureCheck | None:
        chosen = self.chosen
        if self.keyring is None or chosen is None:
            return None
        assert digest is not None
        if not verify_digest(chosen.key, chosen.algorithm, chosen.signature, digest.digest()):
            raise ApkSignatureError(
                f"{self.source}: {what}: does not match signature {chosen.file_name} "
                "(altered, or signed by a different key of that name)"
            )
        return SignatureCheck(chosen.file_name, chosen.key_name, chosen.algorithm)

    def _read_package(self, entry: TarEntry | None) -> PackageContents:
        control = self.control_index
        assert control is not None
        where = self._where(control)
        scripts: list[str] = []
        if not self.full_data:
            self.gz.stop_before(control + 1)
        while entry is not None and entry.member == control:
            name = entry.name
            if not name.startswith(".") or "/" in name:
                raise ApkFormatError(
                    f"{where}: {name!r} does not belong in the control member "
                    "(data must start a new gzip member)"
                )
            if entry.type is not EntryType.FILE:
                raise ApkFormatError(f"{where}: {name} is not a regular file")
            if name == ".PKGINFO":
                if self.info is not None:
                    raise ApkFormatError(f"{where}: more than one .PKGINFO")
                data = self.tar.read_content(entry, self.limits.pkginfo)
                self.info = PkgInfo.parse(data, f"{where}: .PKGINFO")
            elif name == ".INSTALL":
                raise ApkFormatError(f"{where}: legacy .INSTALL scripts are not supported by apk")
            elif name[1:] in SCRIPT_NAMES:
                self.tar.read_content(entry, self.limits.script)
                scripts.append(name)
            # Other dot files are ignored, as apk ignores them.
            entry = self.tar.next_entry()
        if self.info is None:
            raise ApkFormatError(f"{where}: no .PKGINFO")
        info = self.info
        if info.datahash is not None and not _is_sha256_hex(info.datahash):
            raise ApkFormatError(f"{where}: .PKGINFO datahash is not hex SHA-256")
        if self.tar.saw_end_marker and self.tar.end_member == control:
            raise ApkFormatError(
                f"{where}: ends with an end-of-archive marker (it must be cut); "
                "apk would never see the data"
            )
        if entry is None and not self.tar.saw_end_marker and self.full_data:
            raise ApkFormatError(f"{self.source}: no data member after the control member")
        # The control member is complete: check its signature before any data is handled.
        control_sha1 = self.member_sha1[control].digest()
        signature = None
        if info.datahash is not None:
            signature = self._check_signature(self.signed_digest, "control member")
        data_index = control + 1
        self.roles[data_index] = "data member"
        file_count: int | None = None
        data_size: int | None = None
        if self.full_data:
            file_count, data_size = self._read_data(entry, data_index)
            self._finish(data_index)
        else:
            self._hash_data_raw(data_index)
        if info.datahash is not None:
            assert self.data_digest is not None
            if self.data_digest.hexdigest() != info.datahash:
                raise ApkIntegrityError(
                    f"{self._where(data_index)}: SHA-256 {self.data_digest.hexdigest()} "
                    f"does not match datahash {info.datahash} in .PKGINFO"
                )
        else:
            signature = self._check_signature(self.signed_digest, "control and data members")
        return PackageContents(
            source=self.source,
            info=info,
            identity=identity_of(control_sha1),
            control_sha1=control_sha1,
            signature=signature,
            signature_files=tuple(self.signature_files),
            scripts=tuple(scripts),
            size=self.gz.bytes_read,
            file_count=file_count,
            data_size=data_size,
        )

    def _hash_data_raw(self, data_index: int) -> None:
        """Digest the data member's bytes without inflating them (metadata reads)."""
        hashers = self._hashers_for(data_index)
        if self.gz.hash_rest_raw(hashers) == 0:
            raise ApkFormatError(f"{self.source}: no data member after the control member")

    def _read_data(self, entry: TarEntry | None, data_index: int) -> tuple[int, int]:
        where = self._where(data_index)
        files: set[str] = set()
        count = 0
        data_size = 0
        while entry is not None:
            if entry.member != data_index:
                raise ApkFormatError(
                    f"{self._where(entry.member)}: unexpected entry {entry.name!r} "
                    "after the data member"
                )
            path = check_data_path(entry.name, where)
            count += 1
            if entry.type is EntryType.FILE:
                data_size += entry.size
                self._data_file(entry, path, where)
                files.add(path)
            elif entry.type is EntryType.SYMLINK:
                self._check_checksum(entry, path, os.fsencode(entry.linkname), where)
                self._handle(entry, None)
            elif entry.type is EntryType.HARDLINK:
                target = entry.linkname.rstrip("/")
                if target not in files:
                    raise ApkFormatError(
                        f"{where}: {path}: hard link to {entry.linkname!r}, "
                        "which is not an earlier regular file of this package"
                    )
                self._handle(entry, None)
            else:
                self._handle(entry, None)
            entry = self.tar.next_entry()
        return count, data_size

    def _handle(self, entry: TarEntry, content: Iterator[bytes] | None) -> None:
        if self.on_data_entry is not None:
            self.on_data_entry(entry, content)

    def _data_file(self, entry: TarEntry, path: str, where: str) -> None:
        if entry.checksum is None:
            raise ApkIntegrityError(f"{where}: {path}: no APK-TOOLS.checksum record")
        hasher = entry.checksum.new_hash()

        def chunks() -> Iterator[bytes]:
            for chunk in self.tar.iter_content(entry):
                hasher.update(chunk)
                yield chunk

        content = chunks()
        self._handle(entry, content)
        for _ in content:  # whatever the handler did not read
            pass
        if hasher.hexdigest() != entry.checksum.hexdigest:
            raise ApkIntegrityError(
                f"{where}: {path}: {entry.checksum.algorithm} checksum mismatch"
            )

    def _check_checksum(self, entry: TarEntry, path: str, content: bytes, where: str) -> None:
        if entry.checksum is None:
            raise ApkIntegrityError(f"{where}: {path}: no APK-TOOLS.checksum record")
        hasher = entry.checksum.new_hash()
        hasher.update(content)
        if hasher.hexdigest() != entry.checksum.hexdigest:
            raise ApkIntegrityError(
                f"{where}: {path}: {entry.checksum.algorithm} checksum mismatch"
            )

    def _finish(self, last_index: int) -> None:
        if self.tar.saw_end_marker:
            if self.tar.end_member != last_index:
                raise ApkFormatError(
                    f"{self._where(self.tar.end_member)}: end-of-archive marker in the wrong member"
                )
            self.gz.drain_zeros()
        if self.gz.member_count != last_index + 1:
            raise ApkFormatError(
                f"{self._where(last_index)}: missing (the archive has only "
                f"{self.gz.member_count} gzip members)"
            )
        self.gz.ensure_end()

    def _read_index(self, entry: TarEntry | None) -> RawIndex:
        index = self.control_index
        assert index is not None
        where = self._where(index)
        description = b""
        apkindex: bytes | None = None
        while entry is not None:
            if entry.member != index:
                raise ApkFormatError(
                    f"{self._where(entry.member)}: unexpected entry {entry.name!r} "
                    "after the index member"
                )
            if entry.name.startswith("."):
                raise ApkFormatError(f"{where}: {entry.name!r} does not belong in an index")
            if entry.type is EntryType.FILE and entry.name == "DESCRIPTION":
                description = self.tar.read_content(entry, self.limits.description)
            elif entry.type is EntryType.FILE and entry.name == "APKINDEX":
                if apkindex is not None:
                    raise ApkFormatError(f"{where}: more than one APKINDEX")
                apkindex = self.tar.read_content(entry, self.limits.index_member)
            entry = self.tar.next_entry()
        if apkindex is None:
            raise ApkFormatError(f"{where}: no APKINDEX file")
        self._finish(index)
        signature = self._check_signature(self.signed_digest, "index member")
        return RawIndex(
            source=self.source,
            description=description.decode("utf-8", "replace"),
            apkindex=apkindex,
            signature=signature,
            signature_files=tuple(self.signature_files),
            size=self.gz.bytes_read,
        )


_SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")


def _is_sha256_hex(value: str) -> bool:
    return _SHA256_HEX_RE.fullmatch(value) is not None


def read_archive(
    stream: BinaryIO,
    *,
    source: str,
    keyring: Keyring | None,
    expect: ArchiveKind | None = None,
    limits: ReadLimits = DEFAULT_LIMITS,
    on_data_entry: DataHandler | None = None,
    full_data: bool = True,
) -> PackageContents | RawIndex:
    """Read and verify a v2 package or index from ``stream`` (detected by content).

    With ``full_data=False`` a package's data member is hashed but not
    inflated: its signed ``datahash`` still proves it intact, but the tar
    inside is not walked (as ``apk index`` reads packages). That is what
    indexing needs, at a fraction of the cost.
    """
    reader = _V2Reader(
        stream,
        source=source,
        keyring=keyring,
        expect=expect,
        limits=limits,
        on_data_entry=on_data_entry,
        full_data=full_data,
    )
    return reader.read()


def verify_package(
    stream: BinaryIO,
    keyring: Keyring | None,
    *,
    source: str = "package",
    limits: ReadLimits = DEFAULT_LIMITS,
    on_data_entry: DataHandler | None = None,
    full_data: bool = True,
) -> PackageContents:
    """Read a package, checking its signature against ``keyring`` (None: do not check)."""
    result = read_archive(
        stream,
        source=source,
        keyring=keyring,
        expect=ArchiveKind.PACKAGE,
        limits=limits,
        on_data_entry=on_data_entry,
        full_data=full_data,
    )
    assert isinstance(result, PackageContents)
    return result


def verify_raw_index(
    stream: BinaryIO,
    keyring: Keyring | None,
    *,
    source: str = "APKINDEX.tar.gz",
    limits: ReadLimits = DEFAULT_LIMITS,
) -> RawIndex:
    """Read an index, checking its signature against ``keyring`` (None: do not check)."""
    result = read_archive(
        stream, source=source, keyring=keyring, expect=ArchiveKind.INDEX, limits=limits
    )
    assert isinstance(result, RawIndex)
    return result


def read_control_member(member: bytes, *, source: str = "control member") -> PkgInfo:
    """Parse one compressed control member on its own (what a signer service receives).

    Checks that it is a cut tar of dot files holding one ``.PKGINFO``.
    """
    reader = _V2Reader(
        io.BytesIO(member),
        source=source,
        keyring=None,
        expect=ArchiveKind.PACKAGE,
        limits=DEFAULT_LIMITS,
        on_data_entry=None,
    )
    reader.control_index = 0
    reader.kind = ArchiveKind.PACKAGE
    reader.roles[0] = "control member"
    where = reader._where(0)
    entry = reader.tar.next_entry()
    info: PkgInfo | None = None
    while entry is not None:
        if not entry.name.startswith(".") or "/" in entry.name or entry.member != 0:
            raise ApkFormatError(f"{where}: {entry.name!r} does not belong in a control member")
        if entry.name.startswith(SIGNATURE_PREFIX):
            raise ApkFormatError(f"{where}: holds a signature file; expected the control member")
        if entry.name == ".PKGINFO":
            info = PkgInfo.parse(reader.tar.read_content(entry, DEFAULT_LIMITS.pkginfo), where)
        entry = reader.tar.next_entry()
    if reader.tar.saw_end_marker:
        raise ApkFormatError(f"{where}: ends with an end-of-archive marker (it must be cut)")
    if info is None:
        raise ApkFormatError(f"{where}: no .PKGINFO")
    reader.gz.ensure_end()
    return info


__all__ = [
    "DEFAULT_LIMITS",
    "ApkLimitError",
    "ArchiveKind",
    "DataHandler",
    "PackageContents",
    "RawIndex",
    "ReadLimits",
    "SignatureCheck",
    "check_data_path",
    "identity_of",
    "read_archive",
    "read_control_member",
    "verify_package",
    "verify_raw_index",
]
