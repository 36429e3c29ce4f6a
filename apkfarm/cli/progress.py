"""A progress bar on a terminal, nothing otherwise (logs and pipes stay clean)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(label: str, total: int | None) -> Iterator[Callable[..., None]]:
    """Yield ``advance(done=None, total=None)``; draws with rich only when stderr is a TTY.

    ``total=None`` means not known yet (the first ``advance`` call gives it).
    """
    if not sys.stderr.isatty() or (total is not None and total < 2):
        yield lambda *_args, **_kwargs: None
        return
    from rich.console import Console  # noqa: PLC0415 - keeps `apkfarm --help` fast
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn  # noqa: PLC0415 - keeps `apkfarm --help` fast

    with Progress(
        f"[bold]{label}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int | None = None, new_total: int | None = None) -> None:
            if new_total is not None:
                bar.update(task, total=new_total)
            if done is None:
                bar.advance(task)
            else:
                bar.update(task, completed=done)

        yield advance
