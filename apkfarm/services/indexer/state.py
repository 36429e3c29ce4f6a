"""What the indexer remembers about one repository, and how it is stored (pure).

One object per repository, ``<category>/<arch>/.apkfarm/index.state``,
written after the index it describes, so that a restart finds the records of
the published packages without reading a single package again. It holds:

- the index records (``apkfarm.apk.index_state``), each stamped with the
  SHA-256 of the package file, so a second event for the same bytes changes
  nothing;
- the current generation number and when it was published;
- the generations whose ``.generations/<n>/APKINDEX.tar.gz`` still exist;
- the *retired* package files: no longer in the current index, but named by
  an older generation that may still be kept, each with the newest
  generation that may name it. A file is deleted only once every generation
  up to that one is pruned.

Encoded as one magic line, one JSON line (the small bookkeeping) and then the
index state's own text format.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apkfarm.apk.errors import ApkFormatError
from apkfarm.apk.index_state import IndexState, decode_state, encode_state
from apkfarm.errors import ApkfarmError

STATE_MAGIC = b"apkfarm-repository-state 1"


class StateError(ApkfarmError):
    """A repository state object that cannot be read."""


@dataclass(frozen=True)
class RepositoryState:
    index: IndexState = field(default_factory=IndexState)
    # 0: nothing published yet.
    generation: int = 0
    # Unix seconds when ``generation`` was published.
    published_at: float = 0.0
    # Generations whose index objects exist, ascending.
    generations: tuple[int, ...] = ()
    # Package file -> newest generation that may name it (it is not in the current one).
    retired: Mapping[str, int] = field(default_factory=dict)

    @property
    def package_count(self) -> int:
        return len(self.index.entries)


def encode_repository_state(state: RepositoryState) -> bytes:
    meta = {
        "generation": state.generation,
        "published_at": state.published_at,
        "generations": list(state.generations),
        "retired": dict(sorted(state.retired.items())),
    }
    header = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
    return STATE_MAGIC + b"\n" + header + b"\n" + encode_state(state.index)


def _whole_number(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StateError(f"{where}: {what} is not a whole number: {value!r}")
    return value


def decode_repository_state(data: bytes, where: str = "repository state") -> RepositoryState:
    """Inverse of ``encode_repository_state``; anything malformed is a ``StateError``."""
    magic, _, rest = data.partition(b"\n")
    if magic != STATE_MAGIC:
        raise StateError(f"{where}: not an apkfarm repository state (or another version)")
    header, _, index_text = rest.partition(b"\n")
    try:
        meta = json.loads(header)
    except (ValueError, UnicodeDecodeError) as error:
        raise StateError(f"{where}: unreadable header ({error})") from None
    if not isinstance(meta, dict):
        raise StateError(f"{where}: the header is not an object")
    generation = _whole_number(meta.get("generation"), "generation", where)
    published_at = meta.get("published_at")
    if isinstance(published_at, bool) or not isinstance(published_at, int | float):
        raise StateError(f"{where}: published_at is not a number")
    generations = meta.get("generations")
    retired = meta.get("retired")
    if not isinstance(generations, list) or not isinstance(retired, dict):
        raise StateError(f"{where}: generations or retired files missing")
    try:
        index = decode_state(index_text, where)
    except ApkFormatError as error:
        raise StateError(str(error)) from None
    return RepositoryState(
        index=index,
        generation=generation,
        published_at=float(published_at),
        generations=tuple(sorted({_whole_number(g, "generation", where) for g in generations})),
        retired={
            str(name): _whole_number(last, f"generation of retired {name!r}", where)
            for name, last in retired.items()
        },
    )
