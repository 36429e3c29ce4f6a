"""Incremental index state: per-package records keyed by file name, as pure functions.

Nothing here touches a file system. A repository (a directory, or a prefix in
object storage) supplies a *listing* — file name -> ``FileStamp`` (size and a
change token: the mtime on disk, an ETag in S3) — and the state says which
packages must be read: new or changed ones only, or all with ``verify_all``.
Adding or removing one package therefore never rereads the others.

The state keeps each record as its rendered ``APKINDEX`` text, so rebuilding
the index from 10,000 records is string joining, not parsing. Encoded, it is
a small text format (one ``F:`` line, then the record, then a blank line) that
is as easy to keep in an object store as beside the packages.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

from apkfarm.apk.errors import ApkFormatError
from apkfarm.apk.index import IndexRecord, record_sort_key

STATE_MAGIC = "apkfarm-index-state 1"


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
    stamp: FileStamp
    name: str
    version: str
    build_time: int
    record_text: str  # IndexRecord.render() output

    @classmethod
    def from_record(cls, file_name: str, stamp: FileStamp, record: IndexRecord) -> StateEntry:
        return cls(
            file_name=file_name,
            stamp=stamp,
            name=record.name,
            version=record.version,
            build_time=record.build_time or 0,
            record_text=record.render(),
        )

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
        if name in state.entries and state.entries[name].stamp != stamp
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


_FORBIDDEN_IN_FIELDS = re.compile(r"[\t\n]")
_ENTRY_RE = re.compile(
    r"F:([^\t\n]*)\t([0-9]+)\t([^\t\n]*)\t([0-9]+)\n"
    r"(C:[^\n]*\nP:([^\n]*)\nV:([^\n]*)\n(?:[^\n]+\n)*)\n"
)


def encode_state(state: IndexState) -> bytes:
    if "\n" in state.description:
        raise ApkFormatError("index description must be one line")
    parts = [f"{STATE_MAGIC}\nD:{state.description}\n\n"]
    for entry in state.ordered:  # stored in index order: decoding keeps it
        parts.append(
            f"F:{entry.file_name}\t{entry.stamp.size}\t{entry.stamp.stamp}\t{entry.build_time}\n"
            f"{entry.record_text}\n"
        )
    text = "".join(parts)
    for entry in state.entries.values():
        if _FORBIDDEN_IN_FIELDS.search(entry.file_name + entry.stamp.stamp):
            raise ApkFormatError(f"{entry.file_name!r}: tab or line break in an index state field")
    return text.encode("utf-8")


def decode_state(data: bytes, where: str = "index state") -> IndexState:
    """Inverse of ``encode_state``; anything malformed is an ``ApkFormatError``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApkFormatError(f"{where}: not UTF-8") from None
    header, _, body = text.partition("\n\n")
    magic, _, description_line = header.partition("\n")
    if magic != STATE_MAGIC or not description_line.startswith("D:"):
        raise ApkFormatError(f"{where}: not an apkfarm index state (or another version)")
    entries: dict[str, StateEntry] = {}
    pos = 0
    # One regular expression pass: decoding runs on every incremental update.
    for match in _ENTRY_RE.finditer(body):
        if match.start() != pos:
            break
        file_name, size, stamp, build_time, record_text, name, version = match.groups()
        entries[file_name] = StateEntry(
            file_name, FileStamp(int(size), stamp), name, version, int(build_time), record_text
        )
        pos = match.end()
    if pos != len(body):
        raise ApkFormatError(f"{where}: malformed entry at {body[pos : pos + 60]!r}")
    return IndexState(entries, description_line[2:])
