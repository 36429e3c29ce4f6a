"""POSIX (pax) tar as apk uses it: a deterministic header writer and a bounded streaming reader.

The writer produces the same header layout as GNU tar's ``--format=posix``
(the layout of the reference packages): octal fields zero-padded and
NUL-terminated, ``ustar\\0`` + ``00`` magic, ``root``/``root`` owner names,
uid/gid 0. A pax extended header is written only when an entry needs one:
for apk's per-file ``APK-TOOLS.checksum.SHA1`` record and for names or link
targets longer than the 100 bytes a ustar header holds.

The reader pulls 512-byte blocks from a ``BlockSource`` (in practice the
gzip member reader) and never holds more than one content chunk in memory.
It knows which gzip member every header came from, because the v2 format is
defined by which member an entry lives in.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from apkfarm.apk.errors import ApkFormatError, ApkLimitError

BLOCK_SIZE = 512
ZERO_BLOCK = bytes(BLOCK_SIZE)
END_OF_ARCHIVE = bytes(2 * BLOCK_SIZE)

# apk's tar reader reads only octal fields; 11 octal digits cap a size at 8 GiB.
MAX_OCTAL_SIZE = 8**11 - 1
CHECKSUM_RECORD_PREFIX = "APK-TOOLS.checksum."

_NAME_FIELD = 100
_USTAR_MAGIC = b"ustar\x0000"


class EntryType(enum.Enum):
    """Tar entry types apk understands (the value is the typeflag byte)."""

    FILE = b"0"
    HARDLINK = b"1"
    SYMLINK = b"2"
    CHAR_DEVICE = b"3"
    BLOCK_DEVICE = b"4"
    DIRECTORY = b"5"
    FIFO = b"6"


_TYPEFLAGS: dict[bytes, EntryType] = {t.value: t for t in EntryType}
_TYPEFLAGS[b"\x00"] = EntryType.FILE  # pre-POSIX regular file
_TYPEFLAGS[b"7"] = EntryType.FILE  # contiguous file, read as regular like apk does


# --------------------------------------------------------------------------- writing


def padding(size: int) -> bytes:
    """Zero bytes that pad ``size`` bytes of content to the next block boundary."""
    return bytes(-size % BLOCK_SIZE)


def pax_record(key: str, value: bytes) -> bytes:
    """One ``"<len> <key>=<value>\\n"`` record; ``len`` counts the whole record."""
    payload = b" " + key.encode("utf-8") + b"=" + value + b"\n"
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return str(length).encode("ascii") + payload


def _octal(value: int, width: int) -> bytes:
    """``width - 1`` zero-padded octal digits and a NUL, as GNU tar writes them."""
    digits = b"%0*o" % (width - 1, value)
    if len(digits) > width - 1:
        raise ValueError(f"{value} does not fit a {width}-byte tar field")
    return digits + b"\x00"


def header_block(
    name: bytes,
    entry_type: bytes,
    *,
    mode: int,
    mtime: int,
    size: int = 0,
    linkname: bytes = b"",
    uname: bytes = b"root",
    gname: bytes = b"root",
    device_fields: bool = True,
) -> bytes:
    """One ustar header block; names longer than 100 bytes are cut (a pax record carries them)."""
    if size > MAX_OCTAL_SIZE:
        raise ValueError(f"entry size {size} exceeds what apk's tar reader accepts")
    fields = [
        name[:_NAME_FIELD].ljust(_NAME_FIELD, b"\x00"),
        _octal(mode & 0o7777, 8),
        _octal(0, 8),  # uid: packages are always owned by root
        _octal(0, 8),  # gid
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # checksum placeholder, counted as spaces
        entry_type,
        linkname[:_NAME_FIELD].ljust(_NAME_FIELD, b"\x00"),
        _USTAR_MAGIC,
        uname.ljust(32, b"\x00"),
        gname.ljust(32, b"\x00"),
        _octal(0, 8) if device_fields else bytes(8),
        _octal(0, 8) if device_fields else bytes(8),
        bytes(155 + 12),  # prefix (unused: long names go to pax) and padding
    ]
    block = bytearray(b"".join(fields))
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def _pax_header_name(name: bytes) -> bytes:
    """GNU tar's ``<dir>/PaxHeaders/<base>`` naming, so headers read the same as the vectors."""
    stripped = name.rstrip(b"/")
    directory, _, base = stripped.rpartition(b"/")
    return (directory or b".") + b"/PaxHeaders/" + base


def entry_headers(
    name: bytes,
    entry_type: EntryType,
    *,
    mode: int,
    mtime: int,
    size: int = 0,
    linkname: bytes = b"",
    checksum_sha1: str | None = None,
) -> bytes:
    """The header block(s) of one entry: a pax header first when one is needed."""
    records: list[bytes] = []
    if len(name) > _NAME_FIELD:
        records.append(pax_record("path", name))
    if len(linkname) > _NAME_FIELD:
        records.append(pax_record("linkpath", linkname))
    if checksum_sha1 is not None:
        records.append(pax_record(CHECKSUM_RECORD_PREFIX + "SHA1", checksum_sha1.encode("ascii")))
    main = header_block(
        name, entry_type.value, mode=mode, mtime=mtime, size=size, linkname=linkname
    )
    if not records:
        return main
    pax_data = b"".join(records)
    pax = header_block(
        _pax_header_name(name),
        b"x",
        mode=0o644,
        mtime=mtime,
        size=len(pax_data),
        uname=b"",
        gname=b"",
        device_fields=False,
    )
    return pax + pax_data + padding(len(pax_data)) + main


def file_entry(name: bytes, content: bytes, *, mode: int, mtime: int) -> bytes:
    """A whole regular-file entry without a checksum record (control and index members)."""
    return (
        entry_headers(name, EntryType.FILE, mode=mode, mtime=mtime, size=len(content))
        + content
        + padding(len(content))
    )


# --------------------------------------------------------------------------- reading


class BlockSource(Protocol):
    """Where the reader gets blocks from; each read stays inside one gzip member."""

    def read_blocks(self, size: int) -> tuple[bytes, int]:
        """Exactly ``size`` bytes and the index of the member they came from.

        Returns ``(b"", -1)`` at the clean end of the input; raises when the
        input ends inside a member or a read would cross a member boundary.
        """
        ...


@dataclass(frozen=True, slots=True)
class FileChecksum:
    """A per-file checksum from the ``APK-TOOLS.checksum.<ALG>`` pax record."""

    algorithm: str  # "SHA1" or "MD5"
    hexdigest: str

    def new_hash(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm.lower())


class TarEntry(NamedTuple):
    """One tar entry as apk sees it, after pax and GNU long-name headers are applied."""

    name: str
    type: EntryType
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    linkname: str
    checksum: FileChecksum | None
    member: int


@dataclass(frozen=True, slots=True)
class TarLimits:
    """Bounds for hostile input."""

    max_path: int = 4096
    max_pax_header: int = 1 << 20
    max_entries: int = 1_000_000


def _parse_octal(field: bytes, what: str, where: Callable[[], str]) -> int:
    try:
        return int(field.strip(b" \x00") or b"0", 8)
    except ValueError:
        pass
    if field[:1] in (b"\x80", b"\xff"):
        raise ApkFormatError(f"{where()}: base-256 {what} field is not supported by apk")
    raise ApkFormatError(f"{where()}: {what} field {field!r} is not octal")


_HEX_RE = {"SHA1": re.compile(r"[0-9a-f]{40}"), "MD5": re.compile(r"[0-9a-f]{32}")}


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def parse_pax_records(data: bytes, where: str) -> dict[str, bytes]:
    """Parse ``"<len> <key>=<value>\\n"`` records; malformed records are an error."""
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\x00") == b"":
            break  # zero padding inside the declared size
        space = data.find(b" ", pos)
        if space < 0 or not data[pos:space].isdigit():
            raise ApkFormatError(f"{where}: malformed pax record at byte {pos}")
        length = int(data[pos:space])
        record = data[pos : pos + length]
        if length <= space - pos or len(record) != length or not record.endswith(b"\n"):
            raise ApkFormatError(f"{where}: malformed pax record at byte {pos}")
        key, sep, value = record[space - pos + 1 : -1].partition(b"=")
        if not sep:
            raise ApkFormatError(f"{where}: pax record without '=' at byte {pos}")
        records[_decode(key)] = value
        pos += length
    return records


class TarReader:
    """Streaming tar reader: ``next_entry()`` then read or skip that entry's content."""

    def __init__(
        self,
        source: BlockSource,
        *,
        describe: Callable[[int], str],
        limits: TarLimits | None = None,
    ) -> None:
        self._source = source
        self._describe = describe
        self._limits = limits or TarLimits()
        self._entries = 0
        self._unread: TarEntry | None = None
        self._content_left = 0
        self._padded_left = 0
        self.end_member = -1  # member holding the end-of-archive blocks, once seen
        self.saw_end_marker = False

    def _read(self, size: int) -> tuple[bytes, int]:
        return self._source.read_blocks(size)

    def _read_extension(self, size: int, member: int, what: str, limit: int) -> bytes:
        where = self._describe(member)
        if size > limit:
            raise ApkLimitError(f"{where}: {what} of {size} bytes exceeds the limit of {limit}")
        padded = size + len(padding(size))
        data, data_member = self._read(padded) if padded else (b"", member)
        if len(data) != padded:
            raise ApkFormatError(f"{where}: archive ends inside a {what}")
        if data_member != member:
            raise ApkFormatError(f"{where}: a {what} continues into the next gzip member")
        return data[:size]

    def next_entry(self) -> TarEntry | None:
        """The next entry, or None at the end-of-archive marker or clean end of input."""
        if self._unread is not None:
            self.skip_content(self._unread)  # the caller did not need that content
        pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        extended_member = -1
        while True:
            block, member = self._read(BLOCK_SIZE)

            def where(member: int = member) -> str:
                return self._describe(member)

            if not block:
                if pax or long_name is not None or long_link is not None:
                    raise ApkFormatError(
                        f"{self._describe(extended_member)}: archive ends after an "
                        "extended header without its entry"
                    )
                return None
            if block == ZERO_BLOCK:
                if pax or long_name is not None:
                    raise ApkFormatError(f"{where()}: extended header followed by a zero block")
                second, second_member = self._read(BLOCK_SIZE)
                if second != ZERO_BLOCK or second_member != member:
                    raise ApkFormatError(
                        f"{where()}: a single zero block inside the archive "
                        "(end-of-archive needs two)"
                    )
                self.end_member = member
                self.saw_end_marker = True
                return None
            if extended_member not in (-1, member):
                raise ApkFormatError(
                    f"{where()}: an extended header and its entry are in different gzip members"
                )
            if block[257:262] != b"ustar":
                raise ApkFormatError(f"{where()}: not a ustar/pax tar header")
            stored = _parse_octal(block[148:156], "checksum", where)
            if stored != sum(block) - sum(block[148:156]) + 8 * 32:
                name = _decode(block[:_NAME_FIELD].split(b"\x00", 1)[0])
                raise ApkFormatError(f"{where()}: tar header checksum mismatch (entry {name!r})")
            typeflag = block[156:157]
            size = _parse_octal(block[124:136], "size", where)
            if typeflag == b"x":
                extended_member = member
                data = self._read_extension(size, member, "pax header", self._limits.max_pax_header)
                pax.update(parse_pax_records(data, where()))
                continue
            if typeflag == b"g":
                # Global pax headers carry nothing apk uses; read and bound them.
                self._read_extension(size, member, "global pax header", self._limits.max_pax_header)
                continue
            if typeflag in (b"L", b"K"):
                extended_member = member
                data = self._read_extension(
                    size, member, "GNU long name", self._limits.max_path
                ).split(b"\x00", 1)[0]
                if typeflag == b"L":
                    long_name = data
                else:
                    long_link = data
                continue
            return self._make_entry(
                block, member, where, size=size, pax=pax, long_name=long_name, long_link=long_link
            )

    def _make_entry(
        self,
        block: bytes,
        member: int,
        where: Callable[[], str],
        *,
        size: int,
        pax: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> TarEntry:
        self._entries += 1
        if self._entries > self._limits.max_entries:
            raise ApkLimitError(f"{where()}: more than {self._limits.max_entries} entries")
        typeflag = block[156:157]
        entry_type = _TYPEFLAGS.get(typeflag)
        if entry_type is None:
            raise ApkFormatError(f"{where()}: unsupported tar entry type {typeflag!r}")
        if long_name is not None:
            raw_name = long_name
        else:
            raw_name = block[:_NAME_FIELD].split(b"\x00", 1)[0]
            if block[345] != 0:
                raw_name = block[345:500].split(b"\x00", 1)[0] + b"/" + raw_name
        raw_link = long_link if long_link is not None else block[157:257].split(b"\x00", 1)[0]
        checksum = None
        if pax:
            raw_name = pax.get("path", raw_name)
            raw_link = pax.get("linkpath", raw_link)
            if "size" in pax:
                raise ApkFormatError(
                    f"{where()}: {_decode(raw_name)}: pax size records are not read by apk"
                )
            for algorithm in ("SHA1", "MD5"):  # strongest first, as apk prefers it
                value = pax.get(CHECKSUM_RECORD_PREFIX + algorithm)
                if value is not None:
                    hexdigest = _decode(value).lower()
                    if not _HEX_RE[algorithm].fullmatch(hexdigest):
                        raise ApkFormatError(
                            f"{where()}: {_decode(raw_name)}: malformed {algorithm} checksum record"
                        )
                    checksum = FileChecksum(algorithm, hexdigest)
                    break
        if not raw_name:
            raise ApkFormatError(f"{where()}: entry with an empty name")
        max_path = self._limits.max_path
        if len(raw_name) > max_path or len(raw_link) > max_path:
            raise ApkLimitError(f"{where()}: name or link target longer than {max_path} bytes")
        if b"\x00" in raw_name or b"\x00" in raw_link:
            raise ApkFormatError(f"{where()}: name or link target contains a NUL byte")
        name = _decode(raw_name)
        if size != 0 and entry_type is not EntryType.FILE:
            raise ApkFormatError(f"{where()}: {name}: {entry_type.name.lower()} entry with content")
        entry = TarEntry(
            name=name,
            type=entry_type,
            mode=_parse_octal(block[100:108], "mode", where) & 0o7777,
            uid=_parse_octal(block[108:116], "uid", where),
            gid=_parse_octal(block[116:124], "gid", where),
            size=size,
            mtime=_parse_octal(block[136:148], "mtime", where),
            linkname=_decode(raw_link),
            checksum=checksum,
            member=member,
        )
        self._unread = entry
        self._content_left = size
        self._padded_left = size + len(padding(size))
        return entry

    def iter_content(self, entry: TarEntry, chunk_size: int = 1 << 18) -> Iterator[bytes]:
        """Yield the current entry's content in chunks; the block padding is consumed too."""
        if entry is not self._unread:
            raise RuntimeError("content can only be read for the current entry")
        chunk_size -= chunk_size % BLOCK_SIZE
        while self._padded_left:
            want = min(chunk_size, self._padded_left)
            data, member = self._read(want)
            if len(data) != want:
                raise ApkFormatError(
                    f"{self._describe(entry.member)}: {entry.name}: archive ends inside the content"
                )
            if member != entry.member:
                raise ApkFormatError(
                    f"{self._describe(entry.member)}: {entry.name}: "
                    "content continues into the next gzip member"
                )
            self._padded_left -= want
            if self._content_left:
                piece = data[: self._content_left] if self._content_left < want else data
                self._content_left -= len(piece)
                yield piece
        self._unread = None

    def read_content(self, entry: TarEntry, limit: int) -> bytes:
        """The whole content of a small entry, refusing more than ``limit`` bytes."""
        if entry.size > limit:
            raise ApkLimitError(
                f"{self._describe(entry.member)}: {entry.name}: {entry.size} bytes "
                f"exceeds the limit of {limit}"
            )
        return b"".join(self.iter_content(entry))

    def skip_content(self, entry: TarEntry) -> None:
        for _ in self.iter_content(entry):
            pass
