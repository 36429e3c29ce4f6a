"""Incremental index state: per-package records keyed by file name, as pure functions.

Nothing here touches a file system. A repository (a directory, or a prefix in
object storage) supplies a *listing* — file name -> ``FileStamp`` (size and a
change token: the mtime on disk, an ETag in S3) — and the state says which
packages must be read: new or changed ones only, or all with ``verify_all``.
Adding or removing one package therefore never rereads the others.

The state is kept the way an update uses it: the ``APKINDEX`` text of all
records, already in index order, beside one column per manifest field (file,
name, version, stamp, size, build time, record length, and whether a
compressed piece of the index ends after the record) in the same order. The
index is that text as it is, and its compressed pieces are slices of it; an
update splices the records that come and go into it (a binary search by name
finds where), so nothing is sorted or joined per update, and ``StateEntry``
objects are made only when someone asks.

Encoded (format 3), it is the same thing written down: a magic line with a
CRC-32 of the rest; the description, the count and the piece-cutting rule;
the text columns, one tab-separated line each; the number columns as
little-endian 64-bit integers; one byte per record for the piece ends; then
the ``APKINDEX`` text. Decoding is a few bulk splits and copies, and a
damaged or foreign state is refused (the caller then rebuilds it). Format 2
(a manifest line per package, then the records) is still read.

A journal (at the end) lets a repository append each update's changes
instead of rewriting its whole state.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import operator
import sys
import zlib
from array import array
from collections.abc import (
    Collection,
    ItemsView,
    Iterable,
    Iterator,
    Mapping,
    ValuesView,
)
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from apkfarm.apk.errors import ApkFormatError
from apkfarm.apk.index import IndexRecord, record_sort_key
from apkfarm.apk.segmented_gzip import PIECE_RULE, ends_piece

STATE_MAGIC = "apkfarm-index-state 3"
_V2_MAGIC = "apkfarm-index-state 2"
# The text columns of format 3, in file order.
_TEXT_COLUMNS = (b"F:", b"P:", b"V:", b"Z:")
# The number columns (sizes, build times, record lengths) are arrays of C long long:
# 8 bytes on every platform CPython runs on, written little-endian.
_NUMBER = "q"
_NUMBER_BYTES = 8
_NUMBER_RANGE = range(-(2**63), 2**63)
if array(_NUMBER).itemsize != _NUMBER_BYTES:  # pragma: no cover - no such platform
    raise ImportError("apkfarm.apk.index_state needs 64-bit long long")


class FileStamp(NamedTuple):
    """What identifies one version of a package file without reading it."""

    size: int
    stamp: str  # any token that changes when the file does (mtime_ns, ETag)


class StateEntry(NamedTuple):
    """One indexed package: its file, its stamp when read, and its record text.

    (A NamedTuple rather than a dataclass: tuples are several times cheaper to
    create, and a whole state's entries are made at once when asked for.)
    """

    file_name: str
    size: int  # the FileStamp, flattened: one tuple per entry is cheaper than two
    stamp: str
    name: str
    version: str
    build_time: int
    record_text: str  # IndexRecord.render() output

    @classmethod
    def from_record(cls, file_name: str, stamp: FileStamp, record: IndexRecord) -> StateEntry:
        """The entry of a package just read; its fields must fit the state's format."""
        for value in (file_name, stamp.stamp, record.name, record.version):
            if "\t" in value or "\n" in value:
                raise ApkFormatError(f"{file_name!r}: tab or line break in {value!r}")
        build_time = record.build_time or 0
        if stamp.size not in _NUMBER_RANGE or build_time not in _NUMBER_RANGE:
            raise ApkFormatError(f"{file_name!r}: size or build time out of range")
        return cls(
            file_name=file_name,
            size=stamp.size,
            stamp=stamp.stamp,
            name=record.name,
            version=record.version,
            build_time=build_time,
            record_text=record.render(),
        )

    @property
    def file_stamp(self) -> FileStamp:
        return FileStamp(self.size, self.stamp)

    @property
    def record(self) -> IndexRecord:
        return IndexRecord.parse(self.record_text, self.file_name)


def _numbers(values: Iterable[int] = ()) -> array[int]:
    return array(_NUMBER, values)


def _little_endian(numbers: array[int]) -> bytes:
    if sys.byteorder == "little":
        return numbers.tobytes()
    swapped = array(_NUMBER, numbers)
    swapped.byteswap()
    return swapped.tobytes()


def _from_little_endian(data: bytes | memoryview) -> array[int]:
    numbers = _numbers()
    numbers.frombytes(data)
    if sys.byteorder != "little":
        numbers.byteswap()
    return numbers


def _order_key(name: str, version: str, record_text: str, file_name: str) -> tuple[Any, ...]:
    """Index order: name, apk version order, then the record and the file name, so that
    one set of entries has exactly one order however it was reached."""
    return (*record_sort_key(name, version), record_text, file_name)


def _entry_order_key(entry: StateEntry) -> tuple[Any, ...]:
    return _order_key(entry.name, entry.version, entry.record_text, entry.file_name)


# tuple.__new__ bound to StateEntry: a C-level constructor for map() (NamedTuple._make
# is a Python function, which doubles the cost of making 10,000 entries).
_new_entry = functools.partial(tuple.__new__, StateEntry)


class _Columns:
    """Columns and ``APKINDEX`` text being assembled, in index order."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.names: list[str] = []
        self.versions: list[str] = []
        self.stamps: list[str] = []
        self.sizes = _numbers()
        self.build_times = _numbers()
        self.lengths = _numbers()
        self.cuts = bytearray()
        self.text: list[bytes] = []
        # Where copying from a source stopped: entry index and text offset (copies go
        # forward, so offsets are summed once over the whole source, not kept per entry).
        self._source_at = (0, 0)

    def copy(self, source: IndexEntries, start: int, end: int) -> None:
        """Append ``source``'s entries ``start:end`` (after any copied before)."""
        if start >= end:
            return
        at, offset = self._source_at
        text_start = offset + sum(source._lengths[at:start])
        text_end = text_start + sum(source._lengths[start:end])
        self._source_at = (end, text_end)
        self.files += source._files[start:end]
        self.names += source._names[start:end]
        self.versions += source._versions[start:end]
        self.sizes += source._sizes[start:end]
        self.stamps += source._stamps[start:end]
        self.build_times += source._build_times[start:end]
        self.lengths += source._lengths[start:end]
        self.cuts += source._cuts[start:end]
        self.text.append(source._text[text_start:text_end])

    def append(self, entry: StateEntry) -> None:
        text = entry.record_text
        if not text.endswith("\n") or text.startswith("\n") or "\n\n" in text:
            raise ApkFormatError(f"{entry.file_name!r}: not one rendered index record")
        record = (text + "\n").encode("utf-8")
        try:
            self.sizes.append(entry.size)
            self.build_times.append(entry.build_time)
        except OverflowError:
            raise ApkFormatError(f"{entry.file_name!r}: size or build time out of range") from None
        self.files.append(entry.file_name)
        self.names.append(entry.name)
        self.versions.append(entry.version)
        self.stamps.append(entry.stamp)
        self.lengths.append(len(record))
        self.cuts.append(ends_piece(record[:-2]))
        self.text.append(record)

    def finish(self, target: IndexEntries | None = None) -> IndexEntries:
        """The assembled entries (in ``target``, when it is one being initialised)."""
        if target is None:
            target = IndexEntries.__new__(IndexEntries)
        return target._set_columns(
            files=self.files,
            names=self.names,
            versions=self.versions,
            sizes=self.sizes,
            stamps=self.stamps,
            build_times=self.build_times,
            lengths=self.lengths,
            cuts=bytes(self.cuts),
            text=b"".join(self.text),
        )


class IndexEntries(Mapping[str, StateEntry]):
    """Indexed packages by file name, iterated in index order.

    Immutable. Held as columns beside the ``APKINDEX`` text of all records
    (each record followed by its blank line), so the index is the text as it
    is; ``StateEntry`` objects are made on first use of ``[]``, ``values()``
    or ``items()``, and an update (``updated``) splices the text.
    """

    __slots__ = (
        "_build_times",
        "_cuts",
        "_entries_cache",
        "_file_set_cache",
        "_files",
        "_lengths",
        "_names",
        "_offsets_cache",
        "_sizes",
        "_stamps",
        "_text",
        "_versions",
    )

    _files: list[str]
    _names: list[str]
    _versions: list[str]
    _stamps: list[str]
    _sizes: array[int]
    _build_times: array[int]
    _lengths: array[int]  # bytes of each record in _text, its blank line included
    _cuts: bytes  # per record, 1 when a compressed piece ends after it (segmented_gzip)
    _text: bytes
    _offsets_cache: list[int] | None
    _file_set_cache: set[str] | None
    _entries_cache: dict[str, StateEntry] | None

    def __init__(self, entries: Iterable[StateEntry] = ()) -> None:
        """Entries in any order; they are put in index order (a file name given twice:
        the last one counts)."""
        by_file = {entry.file_name: entry for entry in entries}
        # Sorting by name alone is cheap; only the rare runs of one name with
        # several versions need the (costlier) version keys.
        ordered = sorted(by_file.values(), key=attrgetter("name"))
        start = 0
        while start < len(ordered):
            end = start + 1
            name = ordered[start].name
            while end < len(ordered) and ordered[end].name == name:
                end += 1
            if end - start > 1:
                ordered[start:end] = sorted(ordered[start:end], key=_entry_order_key)
            start = end
        columns = _Columns()
        for entry in ordered:
            columns.append(entry)
        columns.finish(self)
        self._entries_cache = {entry.file_name: entry for entry in ordered}

    def _set_columns(
        self,
        *,
        files: list[str],
        names: list[str],
        versions: list[str],
        sizes: array[int],
        stamps: list[str],
        build_times: array[int],
        lengths: array[int],
        cuts: bytes,
        text: bytes,
    ) -> IndexEntries:
        """Hold these columns, already in index order (not checked); returns ``self``."""
        self._files = files
        self._names = names
        self._versions = versions
        self._sizes = sizes
        self._stamps = stamps
        self._build_times = build_times
        self._lengths = lengths
        self._cuts = cuts
        self._text = text
        self._offsets_cache = None
        self._file_set_cache = None
        self._entries_cache = None
        return self

    # --- the Mapping ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __contains__(self, key: object) -> bool:
        return key in self._file_set

    def __getitem__(self, key: str) -> StateEntry:
        return self._entries[key]

    def values(self) -> ValuesView[StateEntry]:
        return self._entries.values()

    def items(self) -> ItemsView[str, StateEntry]:
        return self._entries.items()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, IndexEntries):
            return (
                self._files == other._files
                and self._stamps == other._stamps
                and self._sizes == other._sizes
                and self._build_times == other._build_times
                and self._names == other._names
                and self._versions == other._versions
                and self._text == other._text
            )
        return super().__eq__(other)

    def __hash__(self) -> int:
        raise TypeError("unhashable type: 'IndexEntries'")  # like dict

    def __repr__(self) -> str:
        return f"IndexEntries({len(self)} packages)"

    # --- what updates use ------------------------------------------------------

    @property
    def text(self) -> bytes:
        """The ``APKINDEX`` text: every record, in index order, each followed by a blank line."""
        return self._text

    def newest_build_time(self) -> int:
        return max(self._build_times, default=0)

    def pieces(self) -> list[bytes]:
        """``segmented_gzip.record_pieces(self.text)``, from the kept cut points."""
        pieces = []
        start = 0
        first = 0  # the first record of the piece
        cut = self._cuts.find(1)
        while cut >= 0:
            end = start + sum(self._lengths[first : cut + 1])
            pieces.append(self._text[start:end])
            start = end
            first = cut + 1
            cut = self._cuts.find(1, first)
        if start < len(self._text):
            pieces.append(self._text[start:])
        return pieces

    def compare(self, listing: Mapping[str, FileStamp]) -> tuple[list[str], list[str], list[str]]:
        """The listed files that are new, those whose stamp differs from the kept one, and
        the kept files that are not listed (each list in no particular order)."""
        # C-level passes only (one lookup per file, then tuple comparisons): a FileStamp
        # equals the kept (size, stamp) when nothing changed; None (not listed) equals
        # nothing.
        now = list(map(listing.get, self._files))
        kept = zip(self._sizes, self._stamps, strict=True)
        differing = list(itertools.compress(self._files, map(operator.ne, now, kept)))
        removed: list[str] = []
        if differing:
            gone = list(map(operator.is_, now, itertools.repeat(None)))
            removed = list(itertools.compress(self._files, gone))
        if removed:
            removed_set = set(removed)
            differing = [name for name in differing if name not in removed_set]
        # Every kept file that was not removed is listed; the rest of the listing is new.
        added = []
        if len(listing) > len(self._files) - len(removed):
            added = [name for name in listing if name not in self._file_set]
        return added, differing, removed

    def updated(self, drop: Collection[str], add: Iterable[StateEntry]) -> IndexEntries:
        """A copy without the files in ``drop`` and with ``add`` (which replace entries of
        the same file name) put in their places."""
        adding = {entry.file_name: entry for entry in add}
        gone = self._positions_of({name for name in itertools.chain(drop, adding) if name in self})
        if not gone and not adding:
            return self
        if len(gone) + len(adding) > max(64, len(self) // 8):
            # Many changes: sorting the result once is cheaper than placing each.
            keep = [e for e in self.values() if e.file_name not in drop]
            return IndexEntries([*keep, *adding.values()])
        events: list[tuple[int, int, StateEntry | None]] = [
            (position, 1, None) for position in gone
        ]
        for new in sorted(adding.values(), key=_entry_order_key):
            events.append((self._insertion_point(new), 0, new))
        # At one position, insertions (in index order: the sort is stable) come before
        # the removal of the entry that is there.
        events.sort(key=lambda event: (event[0], event[1]))
        columns = _Columns()
        done = 0
        for position, _kind, placed in events:
            columns.copy(self, done, position)
            if placed is None:
                done = position + 1
            else:
                done = position
                columns.append(placed)
        columns.copy(self, done, len(self))
        result = columns.finish()
        if self._entries_cache is not None:
            # Entries were made already (a long-lived state): keep them, in the new order.
            known = self._entries_cache | adding
            result._entries_cache = {name: known[name] for name in result._files}
        return result

    def find_piece_ends(self) -> bytes:
        """The cut points, found afresh from the text."""
        offsets = self._offsets
        text = self._text
        return bytes(
            ends_piece(text[start : end - 2]) for start, end in itertools.pairwise(offsets)
        )

    def in_index_order(self) -> bool:
        """True when the columns are in index order (a check for decoded states)."""
        names = self._names
        following = itertools.islice(names, 1, None)
        if all(map(operator.lt, names, following)):  # one C-level pass: the common case
            return True
        if names != sorted(names):
            return False
        # Some name has several entries: those runs must be in version (and record) order.
        return all(
            names[i] != names[i - 1] or self._order_key_at(i - 1) < self._order_key_at(i)
            for i in range(1, len(names))
        )

    def _insertion_point(self, entry: StateEntry) -> int:
        """Where ``entry`` goes among the current entries (before any of the same key)."""
        names = self._names
        low = bisect.bisect_left(names, entry.name)
        high = bisect.bisect_right(names, entry.name, low)
        if low == high:
            return low
        key = _entry_order_key(entry)
        # A run of one name: few entries, compared by version (and record) key.
        while low < high and self._order_key_at(low) < key:
            low += 1
        return low

    def _order_key_at(self, index: int) -> tuple[Any, ...]:
        return _order_key(
            self._names[index], self._versions[index], self._record_at(index), self._files[index]
        )

    def _record_at(self, index: int) -> str:
        offsets = self._offsets
        return self._text[offsets[index] : offsets[index + 1] - 1].decode("utf-8")

    # --- derived, made on first use ------------------------------------------------

    @property
    def _offsets(self) -> list[int]:
        if self._offsets_cache is None:
            self._offsets_cache = list(itertools.accumulate(self._lengths, initial=0))
        return self._offsets_cache

    @property
    def _file_set(self) -> set[str]:
        if self._file_set_cache is None:
            self._file_set_cache = set(self._files)
        return self._file_set_cache

    def _positions_of(self, names: AbstractSet[str]) -> list[int]:
        """The ascending positions of the entries for ``names`` (all present)."""
        if len(names) <= 16:  # a few linear searches beat building a 10,000-entry dict
            return sorted(self._files.index(name) for name in names)
        return sorted(i for i, name in enumerate(self._files) if name in names)

    @property
    def _entries(self) -> dict[str, StateEntry]:
        if self._entries_cache is None:
            self._entries_cache = self._make_entries()
        return self._entries_cache

    def _make_entries(self) -> dict[str, StateEntry]:
        offsets = self._offsets
        text = self._text.decode("utf-8")
        if len(text) == len(self._text):  # ASCII: byte offsets are character offsets
            records = [text[start : end - 1] for start, end in itertools.pairwise(offsets)]
        else:
            records = [
                self._text[start : end - 1].decode("utf-8")
                for start, end in itertools.pairwise(offsets)
            ]
        entries = map(
            _new_entry,
            zip(
                self._files,
                self._sizes,
                self._stamps,
                self._names,
                self._versions,
                self._build_times,
                records,
                strict=True,
            ),
        )
        return dict(zip(self._files, entries, strict=True))


def _index_entries(entries: Mapping[str, StateEntry]) -> IndexEntries:
    if isinstance(entries, IndexEntries):
        return entries
    for key, entry in entries.items():
        if key != entry.file_name:
            raise ValueError(f"index state: the entry under {key!r} is for {entry.file_name!r}")
    return IndexEntries(entries.values())


@dataclass(frozen=True)
class IndexState:
    """All indexed packages of one repository directory, by file name.

    ``entries`` may be given as any mapping of file name to entry; it is kept
    as ``IndexEntries``, which iterates in index order.
    """

    entries: Mapping[str, StateEntry] = field(default_factory=dict)
    description: str = ""  # the index DESCRIPTION last written

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", _index_entries(self.entries))

    @property
    def index_entries(self) -> IndexEntries:
        entries = self.entries
        if not isinstance(entries, IndexEntries):  # __post_init__ made it one
            raise TypeError("IndexState.entries is not an IndexEntries")
        return entries

    @property
    def ordered(self) -> list[StateEntry]:
        """The entries in index order: by name, then apk version order within a name."""
        return list(self.index_entries.values())

    def records(self) -> list[IndexRecord]:
        return [entry.record for entry in self.ordered]

    def apkindex(self) -> bytes:
        """The ``APKINDEX`` text, in the same order ``index.render_apkindex`` uses."""
        return self.index_entries.text

    def apkindex_pieces(self) -> list[bytes]:
        """``apkindex()`` cut as ``segmented_gzip.record_pieces`` cuts it (without cutting)."""
        return self.index_entries.pieces()

    def newest_build_time(self) -> int:
        return self.index_entries.newest_build_time()


@dataclass(frozen=True)
class UpdatePlan:
    """What an update must do; ``to_read`` are the files whose records must be (re)made."""

    to_read: tuple[str, ...]
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: int

    @property
    def changes_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def plan_update(
    state: IndexState, listing: Mapping[str, FileStamp], *, verify_all: bool = False
) -> UpdatePlan:
    """Compare the listing with the state: new, changed (size or stamp) and removed files."""
    added, changed, removed = state.index_entries.compare(listing)
    added.sort()
    changed.sort()
    removed.sort()
    to_read = sorted(listing) if verify_all else sorted(added + changed)
    unchanged = len(listing) - len(added) - len(changed)
    return UpdatePlan(tuple(to_read), tuple(added), tuple(changed), tuple(removed), unchanged)


def plan_changes(
    state: IndexState, *, written: Iterable[str] = (), deleted: Iterable[str] = ()
) -> UpdatePlan:
    """Plan from known events (a package was written or deleted), without a listing."""
    written_set = set(written)
    deleted_set = set(deleted) - written_set
    added = sorted(name for name in written_set if name not in state.entries)
    changed = sorted(name for name in written_set if name in state.entries)
    removed = sorted(name for name in deleted_set if name in state.entries)
    unchanged = len(state.entries) - len(changed) - len(removed)
    return UpdatePlan(
        tuple(sorted(written_set)), tuple(added), tuple(changed), tuple(removed), unchanged
    )


def apply_update(state: IndexState, plan: UpdatePlan, read: Iterable[StateEntry]) -> IndexState:
    """The new state: removed files dropped, read files (re)placed, the rest kept."""
    entries = state.index_entries.updated(frozenset(plan.removed), read)
    return IndexState(entries, state.description)


# ----------------------------------------------------------------------------- encoding


def encode_state(state: IndexState) -> bytes:
    """Magic line with a CRC-32 of the rest, then description, count, columns, text.

    The text columns are one line each of tab-separated values in index order;
    the number columns follow as little-endian 64-bit integers; the text is
    ``apkindex()`` as it is, cut into records by the lengths column.
    """
    if "\n" in state.description:
        raise ApkFormatError("index description must be one line")
    entries = state.index_entries
    head = "".join(
        [
            f"D:{state.description}\nN:{len(entries)}\nR:{PIECE_RULE}\nF:",
            "\t".join(entries._files),
            "\nP:",
            "\t".join(entries._names),
            "\nV:",
            "\t".join(entries._versions),
            "\nZ:",
            "\t".join(entries._stamps),
            "\n",
        ]
    ).encode("utf-8")
    numbers = b"".join(
        [
            *(
                _little_endian(column)
                for column in (entries._sizes, entries._build_times, entries._lengths)
            ),
            entries._cuts,
        ]
    )
    crc = zlib.crc32(entries.text, zlib.crc32(numbers, zlib.crc32(head)))
    return b"".join([f"{STATE_MAGIC} {crc:08x}\n".encode(), head, numbers, entries.text])


def decode_state(data: bytes, where: str = "index state") -> IndexState:
    """Inverse of ``encode_state`` (and reads format 2); anything damaged, foreign or
    inconsistent is an ``ApkFormatError``."""
    if data.startswith(_V2_MAGIC.encode() + b"\n"):
        return _decode_v2(data, where)
    magic_end = data.find(b"\n")
    prefix = STATE_MAGIC.encode() + b" "
    if magic_end != len(prefix) + 8 or not data.startswith(prefix):
        raise ApkFormatError(f"{where}: not an apkfarm index state (or another version)")
    try:
        expected_crc = int(data[len(prefix) : magic_end], 16)
    except ValueError:
        raise ApkFormatError(f"{where}: not an apkfarm index state (or another version)") from None
    if zlib.crc32(memoryview(data)[magic_end + 1 :]) != expected_crc:
        raise ApkFormatError(f"{where}: damaged (checksum mismatch)")
    return _decode_v3_body(data, magic_end + 1, where)


def _decode_v3_body(data: bytes, pos: int, where: str) -> IndexState:
    def line(tag: bytes) -> str:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0 or data[pos : pos + len(tag)] != tag:
            raise ApkFormatError(f"{where}: malformed ({tag.decode()} line missing)")
        value = data[pos + len(tag) : end]
        pos = end + 1
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ApkFormatError(f"{where}: not UTF-8") from None

    description = line(b"D:")
    try:
        count = int(line(b"N:"))
    except ValueError:
        raise ApkFormatError(f"{where}: malformed count") from None
    rule = line(b"R:")
    files, names, versions, stamps = (
        value.split("\t") if value or count else [] for value in map(line, _TEXT_COLUMNS)
    )
    if count < 0 or any(len(column) != count for column in (files, names, versions, stamps)):
        raise ApkFormatError(f"{where}: columns and count do not match")
    view = memoryview(data)
    width = count * _NUMBER_BYTES
    if len(data) - pos < 3 * width + count:
        raise ApkFormatError(f"{where}: truncated")
    sizes, build_times, lengths = (
        _from_little_endian(view[start : start + width])
        for start in (pos, pos + width, pos + 2 * width)
    )
    pos += 3 * width
    cuts = data[pos : pos + count]
    text = data[pos + count :]
    if cuts.translate(None, b"\x00\x01"):
        raise ApkFormatError(f"{where}: malformed piece ends")
    if count and (min(lengths) < 2 or not text.endswith(b"\n\n")):
        raise ApkFormatError(f"{where}: malformed record lengths")
    if sum(lengths) != len(text):
        raise ApkFormatError(f"{where}: records and lengths do not match")
    if not text.isascii():
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            raise ApkFormatError(f"{where}: not UTF-8") from None
    entries = IndexEntries.__new__(IndexEntries)._set_columns(
        files=files,
        names=names,
        versions=versions,
        sizes=sizes,
        stamps=stamps,
        build_times=build_times,
        lengths=lengths,
        cuts=cuts,
        text=text,
    )
    if rule != PIECE_RULE:  # written by a version that cut the index otherwise
        entries._cuts = entries.find_piece_ends()
    if len(entries._file_set) != count:
        raise ApkFormatError(f"{where}: a file name appears twice")
    if not entries.in_index_order():
        raise ApkFormatError(f"{where}: entries are not in index order")
    return IndexState(entries, description)


def _decode_v2(data: bytes, where: str) -> IndexState:
    """Format 2: header, one manifest line per package, then the records (in index order)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApkFormatError(f"{where}: not UTF-8") from None
    sections = text.split("\n\n", 2)
    header = sections[0]
    magic, _, description_line = header.partition("\n")
    if magic != _V2_MAGIC or not description_line.startswith("D:") or len(sections) < 2:
        raise ApkFormatError(f"{where}: not an apkfarm index state (or another version)")
    if len(sections) == 2 or not sections[1]:
        return IndexState({}, description_line[2:])
    rows = [line.split("\t") for line in sections[1].split("\n")]
    records = sections[2].split("\n\n")
    if records and records[-1] == "":
        records.pop()
    if len(records) != len(rows) or any(len(row) != 6 for row in rows):
        raise ApkFormatError(f"{where}: manifest and records do not match")
    try:
        entries = [
            StateEntry(file, int(size), stamp, name, version, int(build_time), record + "\n")
            for (file, size, stamp, build_time, name, version), record in zip(
                rows, records, strict=True
            )
        ]
    except ValueError:
        raise ApkFormatError(f"{where}: malformed numbers in the manifest") from None
    return IndexState(IndexEntries(entries), description_line[2:])


# ----------------------------------------------------------------------------- journal
#
# A repository that keeps its state in a file need not rewrite all of it per update:
# it can append what changed to a journal kept beside it, and fold the journal into
# a new base state now and then. The journal names the base it follows (by the
# base's checksum and length), so a journal left over from an older base is never
# applied to a newer one; each batch carries its length and checksum, so a batch
# cut short by a crash is noticed and ends the journal there.

JOURNAL_MAGIC = "apkfarm-index-journal 1"


@dataclass(frozen=True)
class StateChanges:
    """One update as a journal keeps it: files dropped, entries (re)written, description."""

    removed: tuple[str, ...]
    written: tuple[StateEntry, ...]
    description: str


@dataclass(frozen=True)
class Journal:
    """The changes a journal holds after its base, in order."""

    changes: tuple[StateChanges, ...]
    # False when the journal follows another base or its last batch is cut short: it
    # must not be appended to (a new base and journal must be written).
    intact: bool


def state_identity(encoded: bytes) -> str | None:
    """How a journal names the base ``encoded`` (a format-3 state); None for other data."""
    prefix = STATE_MAGIC.encode() + b" "
    line_end = len(prefix) + 8
    if not encoded.startswith(prefix) or encoded[line_end : line_end + 1] != b"\n":
        return None
    return f"{encoded[len(prefix) : line_end].decode('ascii', 'replace')}-{len(encoded)}"


def journal_header(base: str) -> bytes:
    """The start of a journal that follows the base named ``base`` (``state_identity``)."""
    return f"{JOURNAL_MAGIC} {base}\n".encode()


def encode_changes(changes: StateChanges) -> bytes:
    """One journal batch: ``B <length> <CRC-32>``, then the removed files on one line and
    the written entries as a small encoded state."""
    for name in changes.removed:
        if not name or "\t" in name or "\n" in name:
            raise ApkFormatError(f"{name!r}: not a file name a journal can hold")
    written = IndexState({e.file_name: e for e in changes.written}, changes.description)
    payload = b"".join(
        [b"X:", "\t".join(changes.removed).encode("utf-8"), b"\n", encode_state(written)]
    )
    return b"B %d %08x\n" % (len(payload), zlib.crc32(payload)) + payload


def decode_journal(data: bytes, base: str, where: str = "index journal") -> Journal:
    """The batches of a journal that follows the base named ``base``.

    A journal for another base holds nothing (it is older than the base); a
    batch cut short ends it. Either way the journal is not ``intact``. A whole
    batch that does not decode is an ``ApkFormatError``.
    """
    header = journal_header(base)
    if not data.startswith(header):
        return Journal((), intact=False)
    changes: list[StateChanges] = []
    pos = len(header)
    while pos < len(data):
        line_end = data.find(b"\n", pos)
        fields = data[pos:line_end].split(b" ") if line_end >= 0 else []
        if len(fields) != 3 or fields[0] != b"B" or not fields[1].isdigit():
            return Journal(tuple(changes), intact=False)
        payload = data[line_end + 1 : line_end + 1 + int(fields[1])]
        if len(payload) != int(fields[1]) or f"{zlib.crc32(payload):08x}".encode() != fields[2]:
            return Journal(tuple(changes), intact=False)
        changes.append(_decode_batch(payload, f"{where}, batch {len(changes) + 1}"))
        pos = line_end + 1 + len(payload)
    return Journal(tuple(changes), intact=True)


def _decode_batch(payload: bytes, where: str) -> StateChanges:
    removed_line, _, encoded = payload.partition(b"\n")
    if not removed_line.startswith(b"X:"):
        raise ApkFormatError(f"{where}: malformed")
    try:
        removed = removed_line[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ApkFormatError(f"{where}: not UTF-8") from None
    written = decode_state(encoded, where)
    return StateChanges(
        removed=tuple(removed.split("\t")) if removed else (),
        written=tuple(written.entries.values()),
        description=written.description,
    )


def apply_changes(state: IndexState, changes: Iterable[StateChanges]) -> IndexState:
    """``state`` with journalled ``changes`` applied in order (one splice for all)."""
    net: dict[str, StateEntry | None] = {}
    description = state.description
    for batch in changes:
        for name in batch.removed:
            net[name] = None
        for entry in batch.written:
            net[entry.file_name] = entry
        description = batch.description
    dropped = frozenset(name for name, entry in net.items() if entry is None)
    written = [entry for entry in net.values() if entry is not None]
    return IndexState(state.index_entries.updated(dropped, written), description)
