"""A live view of an embedded build: builds per arch and state, and the latest changes."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from apkfarm.cli.remote import state_label

_ORDER = (
    "waiting",
    "fetching",
    "queued",
    "building",
    "built",
    "done",
    "up-to-date",
    "failed",
    "blocked",
    "cancelled",
    "excluded",
)


class BuildProgress:
    """Redraws on every change on a terminal; prints one line per change otherwise."""

    def __init__(self, archs: Sequence[str]) -> None:
        self.archs = list(archs)
        self.states: dict[tuple[str, str], str] = {}
        self.recent: deque[str] = deque(maxlen=8)
        self.console = Console(stderr=True)
        self.live: Live | None = None

    def __enter__(self) -> BuildProgress:
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=8)
            self.live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(exc_type, exc, traceback)

    def update(self, build: Any) -> None:
        t = build.template
        label = state_label(build.state)
        key = (t.arch, t.pkgname)
        if self.states.get(key) == label:
            return
        self.states[key] = label
        line = f"{t.arch:<8} {t.pkgname:<24} {label}"
        if build.reason and label in ("failed", "blocked"):
            line += f": {build.reason.splitlines()[0]}"
        if self.live is not None:
            self.recent.append(line)
            self.live.update(self._render())
        else:
            print(line, file=sys.stderr, flush=True)

    def _render(self) -> Group:
        table = Table(title="apkfarm build", expand=False)
        table.add_column("arch")
        for state in _ORDER:
            table.add_column(state, justify="right")
        for arch in self.archs:
            counts = {state: 0 for state in _ORDER}
            for (build_arch, _), label in self.states.items():
                if build_arch == arch and label in counts:
                    counts[label] += 1
            table.add_row(arch, *(str(counts[s]) if counts[s] else "" for s in _ORDER))
        return Group(table, Text("\n".join(self.recent)))
