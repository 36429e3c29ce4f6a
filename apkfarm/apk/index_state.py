"""Incremental index state: per-package records keyed by file name, as pure functions.

Nothing here touches a file system. A repository (a directory, or a prefix in
object storage) supplies a *listing* — file name -> ``FileStamp`` (size and a
change token: the mtime on disk, an ETag in S3) — and the state says which
packages must be read: new or changed ones only, or all with ``verify_all``.
Adding or removing one package therefore never rereads the others.

The state keeps each record as its rendered ``APKINDEX`` text, so rebuilding
the index from 10,000 records is string joining, not parsing. Encoded, it is
a small text format — a header, one tab-separated manifest line per package
(file, size, stamp, build time, name, version), then the records in the same
order — as easy to keep in an object store as beside the packages, and
decoded with a few bulk string operations.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

from apkfarm.apk.errors import ApkFormatError
from apkfarm.apk.index import IndexRecord, record_sort_key

STATE_MAGIC = "apkfarm-index-state 2"


class FileStamp(NamedTuple):
    """What identifies one version of a package file without reading it."""

    size: int
    stamp: str  # any token that changes when the file does (mtime_ns, ETag)


class StateEntry(NamedTuple):
    """One indexed package: its file, its stamp when read, and its record text.

    (A NamedTuple rather than a dataclass: a 10,000-package state is decoded on
    every incremental update, and tuples are several times cheaper to create.)
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
        """The entry of a package just read; its fields must fit the state's line format."""
        for value in (file_name, stamp.stamp, record.name, record.version):
            if "\t" in value or "\n" in value:
                raise ApkFormatError(f"{file_name!r}: tab or line break in {value!r}")
        return cls(
            file_name=file_name,
            size=stamp.size,
            stamp=stamp.stamp,
            name=record.name,
            version=record.version,
            build_time=record.build_time or 0,
            record_text=record.render(),
        )

    @property
    def file_stamp(self) -> FileStamp:
        return FileStamp(self.size, self.stamp)

    @property
    def record(self) -> IndexRecord:
        return IndexRecord.parse(self.record_text, self.file_name)


@dataclass(frozen=True)
class IndexState:
    """All indexed packages of one repository directory, by file name."""

    entries: Mapping[str, StateEntry] = field(default_factory=dict)
    description: str = ""  # the index DESCRIPTION last written

    def records(self) -> list[IndexRecord]:
        return [entry.record for entry in self.ordered]

    @functools.cached_property
    def ordered(self) -> list[StateEntry]:
        """``sorted_entries()``, computed once per state."""
        return self.sorted_entries()

    def sorted_entries(self) -> list[StateEntry]:
        """Index order: by name, then apk version order within a name.

        Sorting by name alone is cheap; only the rare runs of one name with
        several versions need the (costlier) version keys.
        """
        ordered = sorted(self.entries.values(), key=attrgetter("name"))
        start = 0
        while start < len(ordered):
            end = start + 1
            name = ordered[start].name
            while end < len(ordered) and ordered[end].name == name:
                end += 1
            if end - start > 1:
                ordered[start:end] = sorted(
                    ordered[start:end],
                    key=lambda e: (*record_sort_key(e.name, e.version), e.record_text),
                )
            start = end
        return ordered

    def apkindex(self) -> bytes:
        """The ``APKINDEX`` text, in the same order ``index.render_apkindex`` uses."""
        return "".join(e.record_text + "\n" for e in self.ordered).encode("utf-8")

    def newest_build_time(self) -> int:
        return max((e.build_time for e in self.entries.values()), default=0)


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
    added = sorted(name for name in listing if name not in state.entries)
    removed = sorted(name for name in state.entries if name not in listing)
    changed = sorted(
        name
        for name, stamp in listing.items()
        if (entry := state.entries.get(name)) is not None
        and (entry.size != stamp.size or entry.stamp != stamp.stamp)
    )
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
    entries = {name: entry for name, entry in state.entries.items() if name not in plan.removed}
    for entry in read:
        entries[entry.file_name] = entry
    return IndexState(entries, state.description)


def encode_state(state: IndexState) -> bytes:
    """Header, one manifest line per package, then the records, all in index order.

    Columns keep decoding to a few bulk string operations (it runs on every
    incremental update of the CLI).
    """
    if "\n" in state.description:
        raise ApkFormatError("index description must be one line")
    ordered = state.ordered
    manifest = "\n".join(
        f"{e.file_name}\t{e.size}\t{e.stamp}\t{e.build_time}\t{e.name}\t{e.version}"
        for e in ordered
    )
    records = "".join(e.record_text + "\n" for e in ordered)
    return f"{STATE_MAGIC}\nD:{state.description}\n\n{manifest}\n\n{records}".encode()


# tuple.__new__ bound to StateEntry: a C-level constructor for map() (NamedTuple._make
# is a Python function, which doubles the cost of decoding 10,000 entries).
_new_entry = functools.partial(tuple.__new__, StateEntry)


def decode_state(data: bytes, where: str = "index state") -> IndexState:
    """Inverse of ``encode_state``; anything malformed is an ``ApkFormatError``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApkFormatError(f"{where}: not UTF-8") from None
    sections = text.split("\n\n", 2)
    header = sections[0]
    magic, _, description_line = header.partition("\n")
    if magic != STATE_MAGIC or not description_line.startswith("D:") or len(sections) < 2:
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
        files, sizes, stamps, build_times, names, versions = zip(*rows, strict=True)
        entries = map(
            _new_entry,
            zip(
                files,
                map(int, sizes),
                stamps,
                names,
                versions,
                map(int, build_times),
                [record + "\n" for record in records],
                strict=True,
            ),
        )
        return IndexState(dict(zip(files, entries, strict=True)), description_line[2:])
    except ValueError:
        raise ApkFormatError(f"{where}: malformed numbers in the manifest") from None
