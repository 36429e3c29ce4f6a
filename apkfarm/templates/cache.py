"""Evaluation results by content hash, in memory and optionally on disk.

The key covers everything an evaluation depends on: the template's bytes,
its place in the tree, the build context (profiles, stage) and the worker's
own code and tables. An entry is therefore never stale; one is simply not
asked for again once its template changes.

Only deterministic outcomes are stored (a result or an error the template
itself caused); timeouts and worker crashes are not.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["EvaluationCache", "context_digest", "evaluation_key"]


def context_digest(worker_version: str, context: dict[str, Any]) -> str:
    """What every key of one evaluation context shares: the worker and the context."""
    material = json.dumps([worker_version, context], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


def evaluation_key(
    *,
    context: str,
    category: str,
    name: str,
    repositories: tuple[str, ...],
    digest: str,
) -> str:
    """The cache key of one template (by content digest) evaluated in one context.

    `context` is ``context_digest(...)``; names cannot contain NUL, so joining
    with it is unambiguous.
    """
    material = "\0".join((context, category, name, ",".join(repositories), digest))
    return hashlib.sha256(material.encode()).hexdigest()


class EvaluationCache:
    """A bounded in-memory map of key -> result, backed by `directory` when given."""

    def __init__(self, directory: Path | None = None, *, max_entries: int = 200_000) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.max_entries = max_entries
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        result = self._memory.get(key)
        if result is not None:
            self._memory.move_to_end(key)
            self.hits += 1
            return result
        if self.directory is not None:
            try:
                with self._path(key).open("rb") as stream:
                    loaded = json.load(stream)
            except (OSError, ValueError):
                loaded = None
            if isinstance(loaded, dict):
                self._remember(key, loaded)
                self.hits += 1
                return loaded
        self.misses += 1
        return None

    def put(self, key: str, result: dict[str, Any]) -> None:
        self._remember(key, result)
        if self.directory is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half an entry.
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(result, stream, separators=(",", ":"))
            Path(temporary).replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                Path(temporary).unlink()
            raise

    def _remember(self, key: str, result: dict[str, Any]) -> None:
        self._memory[key] = result
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def __len__(self) -> int:
        return len(self._memory)
