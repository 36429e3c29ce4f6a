"""``APKINDEX`` records and the signed two-member ``APKINDEX.tar.gz``.

A record is what ``apk index`` writes for one package, in apk's field order:
``C: P: V: A: S: I: T: U: L:``, then ``o: m: t: c: k:`` when set, then
``D: p: i:`` when non-empty; records are separated by one blank line. apk
reads ``r:``/``q:`` (replaces) only from its installed database, never from
a repository index, so records carry no replaces.

The index file is a signature member (see ``assemble``) followed by one
normal tar (ending with end-of-archive blocks) holding ``DESCRIPTION`` (no
trailing newline) and ``APKINDEX``. Records are ordered by name, then by
apk version order, so the same set of packages always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from apkfarm import version as apk_version
from apkfarm.apk.assemble import sign_member, signature_member
from apkfarm.apk.errors import ApkFormatError
from apkfarm.apk.keys import Keyring
from apkfarm.apk.reader import (
    DEFAULT_LIMITS,
    PackageContents,
    ReadLimits,
    SignatureCheck,
    verify_raw_index,
)
from apkfarm.apk.segmented_gzip import SegmentCache, record_pieces, segmented_member
from apkfarm.apk.signing import Signer
from apkfarm.apk.tar import (
    END_OF_ARCHIVE,
    MAX_OCTAL_SIZE,
    EntryType,
    entry_headers,
    file_entry,
    padding,
)

# apk's own level; with cached pieces an update compresses little, whatever the level.
INDEX_GZIP_LEVEL = 9


@dataclass(frozen=True)
class IndexRecord:
    """One package in ``APKINDEX``; attribute comments give the field letter."""

    checksum: str  # C: "Q1" + base64(SHA-1 of the control member)
    name: str  # P:
    version: str  # V:
    arch: str  # A:
    size: int  # S: bytes of the .apk
    installed_size: int  # I:
    description: str = ""  # T:
    url: str = ""  # U:
    license: str = ""  # L:
    origin: str | None = None  # o:
    maintainer: str | None = None  # m:
    build_time: int | None = None  # t:
    commit: str | None = None  # c:
    provider_priority: int | None = None  # k:
    depends: tuple[str, ...] = ()  # D:
    provides: tuple[str, ...] = ()  # p:
    install_if: tuple[str, ...] = ()  # i:
    extra: tuple[tuple[str, str], ...] = ()  # fields this code does not know, kept in order

    @property
    def filename(self) -> str:
        """The file name apk fetches for this record: ``<name>-<version>.apk``."""
        return f"{self.name}-{self.version}.apk"

    @classmethod
    def from_package(cls, contents: PackageContents, file_size: int | None = None) -> IndexRecord:
        """The record of a package that was read (and verified) by ``apkfarm.apk.reader``."""
        info = contents.info
        return cls(
            checksum=contents.identity,
            name=info.pkgname,
            version=info.pkgver,
            arch=info.arch,
            size=contents.size if file_size is None else file_size,
            installed_size=info.size,
            description=info.pkgdesc,
            url=info.url,
            license=info.license,
            origin=info.origin,
            maintainer=info.maintainer,
            build_time=info.builddate or None,
            commit=info.commit,
            provider_priority=info.provider_priority or None,
            depends=info.depends,
            provides=info.provides,
            install_if=info.install_if,
        )

    def render(self) -> str:
        """The record's lines, each ending in a newline (no blank separator line)."""
        lines = [
            f"C:{self.checksum}",
            f"P:{self.name}",
            f"V:{self.version}",
        ]
        if self.arch:
            lines.append(f"A:{self.arch}")
        lines += [
            f"S:{self.size}",
            f"I:{self.installed_size}",
            f"T:{self.description}",
            f"U:{self.url}",
            f"L:{self.license}",
        ]
        if self.origin is not None:
            lines.append(f"o:{self.origin}")
        if self.maintainer is not None:
            lines.append(f"m:{self.maintainer}")
        if self.build_time:
            lines.append(f"t:{self.build_time}")
        if self.commit is not None:
            lines.append(f"c:{self.commit}")
        if self.provider_priority:
            lines.append(f"k:{self.provider_priority}")
        if self.depends:
            lines.append("D:" + " ".join(self.depends))
        if self.provides:
            lines.append("p:" + " ".join(self.provides))
        if self.install_if:
            lines.append("i:" + " ".join(self.install_if))
        lines += [f"{key}:{value}" for key, value in self.extra]
        for line in lines:
            if "\n" in line:
                raise ApkFormatError(f"{self.filename}: index field {line[:2]} has a line break")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str, where: str = "APKINDEX") -> IndexRecord:
        """One record's lines (without the separating blank line)."""
        fields: dict[str, str] = {}
        extra: list[tuple[str, str]] = []
        for line in text.split("\n"):
            if not line:
                continue
            if len(line) < 2 or line[1] != ":":
                raise ApkFormatError(f"{where}: malformed line {line[:40]!r}")
            key, value = line[0], line[2:]
            if key in _KNOWN_FIELDS:
                fields[key] = value
            else:
                extra.append((key, value))
        for required in "CPV":
            if required not in fields:
                raise ApkFormatError(f"{where}: record without {required}: field")
        name = fields["P"]
        try:
            return cls(
                checksum=fields["C"],
                name=name,
                version=fields["V"],
                arch=fields.get("A", ""),
                size=int(fields.get("S", "0")),
                installed_size=int(fields.get("I", "0")),
                description=fields.get("T", ""),
                url=fields.get("U", ""),
                license=fields.get("L", ""),
                origin=fields.get("o"),
                maintainer=fields.get("m"),
                build_time=int(fields["t"]) if "t" in fields else None,
                commit=fields.get("c"),
                provider_priority=int(fields["k"]) if "k" in fields else None,
                depends=tuple(fields.get("D", "").split()),
                provides=tuple(fields.get("p", "").split()),
                install_if=tuple(fields.get("i", "").split()),
                extra=tuple(extra),
            )
        except ValueError as error:
            raise ApkFormatError(
                f"{where}: {name}: a numeric field is not a number ({error})"
            ) from None


_KNOWN_FIELDS = frozenset("CPVASITULomtckDpi")


def version_order(version: str) -> tuple[int, object]:
    """Sort key for versions: apk order for valid ones, invalid ones after them by text."""
    if apk_version.is_valid(version):
        return (0, apk_version.sort_key(version))
    return (1, version)


def record_sort_key(name: str, version: str) -> tuple[str, tuple[int, object]]:
    return (name, version_order(version))


def sort_records(records: Iterable[IndexRecord]) -> list[IndexRecord]:
    """Name, then apk version order, then checksum: one order for one set of records."""
    return sorted(records, key=lambda r: (*record_sort_key(r.name, r.version), r.checksum))


def render_apkindex(records: Iterable[IndexRecord]) -> bytes:
    """The ``APKINDEX`` text: sorted records, each followed by a blank line."""
    return "".join(r.render() + "\n" for r in sort_records(records)).encode("utf-8")


def parse_apkindex(data: bytes, where: str = "APKINDEX") -> list[IndexRecord]:
    """All records of an ``APKINDEX`` text, in file order."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApkFormatError(f"{where}: not UTF-8 ({error})") from None
    return [IndexRecord.parse(block, where) for block in text.split("\n\n") if block.strip("\n")]


def index_content_member(
    description: str,
    apkindex: bytes,
    *,
    mtime: int,
    cache: SegmentCache | None = None,
    pieces: Sequence[bytes] | None = None,
) -> bytes:
    """The compressed second member: ``DESCRIPTION`` + ``APKINDEX`` + end-of-archive.

    Compressed in content-defined pieces (``segmented_gzip``) so that with a
    ``cache`` an update recompresses only the pieces whose records changed;
    the bytes are the same with or without a cache. ``pieces``, when given,
    must be ``record_pieces(apkindex)``, made by someone who kept them.
    """
    if "\n" in description:
        raise ApkFormatError("index description must be one line")
    if not 0 <= mtime <= MAX_OCTAL_SIZE:
        mtime = 0  # a foreign package's absurd build time must not break the index
    prefix = file_entry(
        b"DESCRIPTION", description.encode("utf-8"), mode=0o644, mtime=mtime
    ) + entry_headers(b"APKINDEX", EntryType.FILE, mode=0o644, mtime=mtime, size=len(apkindex))
    suffix = padding(len(apkindex)) + END_OF_ARCHIVE
    if pieces is None:
        pieces = record_pieces(apkindex)
    elif sum(map(len, pieces)) != len(apkindex):
        raise ValueError("index pieces do not make up the APKINDEX text")
    return segmented_member([prefix, *pieces, suffix], level=INDEX_GZIP_LEVEL, cache=cache)


def build_index(
    apkindex: bytes,
    description: str,
    signers: Sequence[Signer],
    *,
    mtime: int = 0,
    cache: SegmentCache | None = None,
    pieces: Sequence[bytes] | None = None,
) -> bytes:
    """The signed ``APKINDEX.tar.gz`` bytes; every signer signs (key rotation).

    ``pieces``: as for ``index_content_member``."""
    content = index_content_member(description, apkindex, mtime=mtime, cache=cache, pieces=pieces)
    return signature_member(sign_member(content, signers)) + content


def build_index_from_records(
    records: Iterable[IndexRecord],
    description: str,
    signers: Sequence[Signer],
) -> bytes:
    """``build_index`` over records; the tar mtime is the newest build time (deterministic)."""
    ordered = sort_records(records)
    mtime = max((r.build_time or 0 for r in ordered), default=0)
    return build_index(render_apkindex(ordered), description, signers, mtime=mtime)


@dataclass(frozen=True)
class Index:
    """A parsed index."""

    description: str
    records: list[IndexRecord]
    signature: SignatureCheck | None


def read_index(
    stream: BinaryIO,
    keyring: Keyring | None,
    *,
    source: str = "APKINDEX.tar.gz",
    limits: ReadLimits = DEFAULT_LIMITS,
) -> Index:
    """Read an ``APKINDEX.tar.gz`` stream; with a keyring its signature must verify."""
    raw = verify_raw_index(stream, keyring, source=source, limits=limits)
    records = parse_apkindex(raw.apkindex, f"{source}: APKINDEX")
    return Index(raw.description, records, raw.signature)


def read_index_records(path: Path) -> list[IndexRecord]:
    """The records of an ``APKINDEX.tar.gz`` file, without checking its signature."""
    with path.open("rb") as stream:
        return read_index(stream, None, source=str(path)).records


def verify_index_records(path: Path, keyring: Keyring) -> list[IndexRecord]:
    """The records of an ``APKINDEX.tar.gz`` file whose signature verifies with ``keyring``."""
    with path.open("rb") as stream:
        return read_index(stream, keyring, source=str(path)).records
