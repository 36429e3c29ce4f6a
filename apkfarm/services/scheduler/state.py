"""The scheduler's durable state: SQLite in WAL mode, one file on the scheduler's volume.

Everything a restart needs is here — trees, every build with what it waits
for and what it needs fetched, and an outbox of bus messages decided but not
yet confirmed by the broker — so a restarted scheduler resumes exactly where
it stopped.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from apkfarm.v1 import common_pb2

State = common_pb2.BuildState

# Builds in these states will not change without an operator (Retry) or a new tree.
FINAL_STATES = frozenset(
    {
        State.BUILD_STATE_DONE,
        State.BUILD_STATE_FAILED,
        State.BUILD_STATE_BLOCKED,
        State.BUILD_STATE_CANCELLED,
        State.BUILD_STATE_EXCLUDED,
        State.BUILD_STATE_UP_TO_DATE,
    }
)
# What a dependent may build on.
SATISFIED_STATES = frozenset({State.BUILD_STATE_DONE, State.BUILD_STATE_UP_TO_DATE})
ACTIVE_STATES = frozenset(
    {
        State.BUILD_STATE_WAITING,
        State.BUILD_STATE_FETCHING,
        State.BUILD_STATE_QUEUED,
        State.BUILD_STATE_BUILDING,
        State.BUILD_STATE_BUILT,
    }
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS trees (
    tree_id TEXT PRIMARY KEY,
    tree_key TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    archs TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS builds (
    build_id TEXT PRIMARY KEY,
    tree_id TEXT NOT NULL,
    arch TEXT NOT NULL,
    category TEXT NOT NULL,
    pkgname TEXT NOT NULL,
    version TEXT NOT NULL,
    state INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    wave INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    job_id TEXT NOT NULL DEFAULT '',
    log_key TEXT NOT NULL DEFAULT '',
    failed_phase TEXT NOT NULL DEFAULT '',
    builder_address TEXT NOT NULL DEFAULT '',
    packages TEXT NOT NULL DEFAULT '[]',
    staged TEXT NOT NULL DEFAULT '[]',
    deps TEXT NOT NULL DEFAULT '[]',
    sources TEXT NOT NULL DEFAULT '[]',
    build_depends TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_by_tree_arch ON builds (tree_id, arch);
CREATE INDEX IF NOT EXISTS builds_by_job ON builds (job_id);
CREATE INDEX IF NOT EXISTS builds_by_state ON builds (state);
CREATE TABLE IF NOT EXISTS sources (
    sha256 TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    type TEXT NOT NULL,
    body BLOB NOT NULL,
    message_id TEXT NOT NULL
);
"""


@dataclass
class BuildRow:
    build_id: str
    tree_id: str
    arch: str
    category: str
    pkgname: str
    version: str
    state: int
    reason: str = ""
    wave: int = 0
    attempts: int = 0
    job_id: str = ""
    log_key: str = ""
    failed_phase: str = ""
    builder_address: str = ""
    # Package names the job produces (main package, then subpackages).
    packages: list[str] = field(default_factory=list)
    # StagedPackage dicts of the last successful attempt.
    staged: list[dict[str, Any]] = field(default_factory=list)
    # Build ids (same tree and arch) that must be DONE or UP_TO_DATE first.
    deps: list[str] = field(default_factory=list)
    # {"url", "sha256", "filename"} per source.
    sources: list[dict[str, str]] = field(default_factory=list)
    # Farm package names to install into the build's sysroot.
    build_depends: list[str] = field(default_factory=list)
    updated_at: float = 0.0

    @property
    def template(self) -> str:
        return f"{self.category}/{self.pkgname}"


_JSON_COLUMNS = ("packages", "staged", "deps", "sources", "build_depends")
_COLUMNS = (
    "build_id",
    "tree_id",
    "arch",
    "category",
    "pkgname",
    "version",
    "state",
    "reason",
    "wave",
    "attempts",
    "job_id",
    "log_key",
    "failed_phase",
    "builder_address",
    *_JSON_COLUMNS,
    "updated_at",
)


def state_name(state: int, *, short: bool = False) -> str:
    """``BUILD_STATE_DONE``, or with ``short`` ``done``."""
    name = State.Name(cast("common_pb2.BuildState.ValueType", state))
    return name.removeprefix("BUILD_STATE_").lower().replace("_", " ") if short else name


def build_id(tree_id: str, arch: str, pkgname: str) -> str:
    return f"{tree_id}/{arch}/{pkgname}"


def _row(record: sqlite3.Row) -> BuildRow:
    values = dict(record)
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    return BuildRow(**values)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    kind: str  # "work" or "event"
    target: str  # queue name or routing key
    type: str
    body: bytes
    message_id: str


class StateStore:
    """All reads and writes of the scheduler's database."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL is durable across process crashes; FULL also
        # across power loss. A build farm's state favours FULL.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- trees ------------------------------------------------------------

    def add_tree(self, tree_id: str, tree_key: str, archs: Iterable[str]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO trees (tree_id, tree_key, submitted_at, archs) "
            "VALUES (?, ?, ?, ?)",
            (tree_id, tree_key, time.time(), json.dumps(list(archs))),
        )

    def tree_key(self, tree_id: str) -> str | None:
        row = self.db.execute("SELECT tree_key FROM trees WHERE tree_id = ?", (tree_id,)).fetchone()
        return None if row is None else str(row["tree_key"])

    def latest_tree(self) -> str | None:
        row = self.db.execute(
            "SELECT tree_id FROM trees ORDER BY submitted_at DESC, rowid DESC LIMIT 1"
        ).fetchone()
        return None if row is None else str(row["tree_id"])

    # --- builds -----------------------------------------------------------

    def put_build(self, row: BuildRow) -> None:
        row.updated_at = time.time()
        values = [getattr(row, c) for c in _COLUMNS]
        for i, column in enumerate(_COLUMNS):
            if column in _JSON_COLUMNS:
                values[i] = json.dumps(values[i])
        placeholders = ", ".join("?" for _ in _COLUMNS)
        self.db.execute(
            f"INSERT OR REPLACE INTO builds ({', '.join(_COLUMNS)}) VALUES ({placeholders})",  # noqa: S608 - column names are constants
            values,
        )

    def delete_build(self, build_id: str) -> None:
        self.db.execute("DELETE FROM builds WHERE build_id = ?", (build_id,))

    def get_build(self, build_id: str) -> BuildRow | None:
        record = self.db.execute("SELECT * FROM builds WHERE build_id = ?", (build_id,)).fetchone()
        return None if record is None else _row(record)

    def build_by_job(self, job_id: str) -> BuildRow | None:
        if not job_id:
            return None
        record = self.db.execute("SELECT * FROM builds WHERE job_id = ?", (job_id,)).fetchone()
        return None if record is None else _row(record)

    def builds(
        self, tree_id: str, arch: str | None = None, states: Iterable[int] = ()
    ) -> list[BuildRow]:
        query = "SELECT * FROM builds WHERE tree_id = ?"
        params: list[Any] = [tree_id]
        if arch:
            query += " AND arch = ?"
            params.append(arch)
        wanted = list(states)
        if wanted:
            query += f" AND state IN ({', '.join('?' for _ in wanted)})"
            params.extend(wanted)
        query += " ORDER BY arch, wave, pkgname"
        return [_row(r) for r in self.db.execute(query, params)]

    def builds_in_states(self, states: Iterable[int]) -> list[BuildRow]:
        wanted = list(states)
        query = (
            f"SELECT * FROM builds WHERE state IN ({', '.join('?' for _ in wanted)})"  # noqa: S608 - placeholders only
            " ORDER BY tree_id, arch, wave, pkgname"
        )
        return [_row(r) for r in self.db.execute(query, wanted)]

    def dependents(self, row: BuildRow) -> list[BuildRow]:
        """Builds of the same tree and arch that wait on ``row``."""
        needle = json.dumps(row.build_id)
        records = self.db.execute(
            "SELECT * FROM builds WHERE tree_id = ? AND arch = ? AND instr(deps, ?) > 0",
            (row.tree_id, row.arch, needle),
        )
        return [r for r in map(_row, records) if row.build_id in r.deps]

    def count_by_state(self) -> dict[tuple[str, int], int]:
        return {
            (str(r["arch"]), int(r["state"])): int(r["n"])
            for r in self.db.execute(
                "SELECT arch, state, COUNT(*) AS n FROM builds GROUP BY arch, state"
            )
        }

    # --- sources ----------------------------------------------------------

    def source_state(self, sha256: str) -> tuple[str, str] | None:
        row = self.db.execute(
            "SELECT state, error FROM sources WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return None if row is None else (str(row["state"]), str(row["error"]))

    def set_source(self, sha256: str, state: str, error: str = "") -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO sources (sha256, state, error) VALUES (?, ?, ?)",
            (sha256, state, error),
        )

    # --- outbox -----------------------------------------------------------

    def enqueue(self, kind: str, target: str, type_name: str, body: bytes, message_id: str) -> None:
        self.db.execute(
            "INSERT INTO outbox (kind, target, type, body, message_id) VALUES (?, ?, ?, ?, ?)",
            (kind, target, type_name, body, message_id),
        )

    def pending(self, limit: int = 100) -> list[OutboxMessage]:
        return [
            OutboxMessage(
                int(r["id"]),
                str(r["kind"]),
                str(r["target"]),
                str(r["type"]),
                bytes(r["body"]),
                str(r["message_id"]),
            )
            for r in self.db.execute("SELECT * FROM outbox ORDER BY id LIMIT ?", (limit,))
        ]

    def sent(self, message_id: int) -> None:
        self.db.execute("DELETE FROM outbox WHERE id = ?", (message_id,))
