"""Progress bars (rich), off by default in library calls and on in the CLI."""

from __future__ import annotations

import contextlib
from typing import Iterator


class _Bar:
    def __init__(self, progress, task):
        self._p, self._t = progress, task

    def update(self, n: int = 1, **fields) -> None:
        if self._p is not None:
            self._p.update(self._t, advance=n, **fields)


@contextlib.contextmanager
def progress_bar(description: str, *, total: int | None, enabled: bool = True) -> Iterator[_Bar]:
    """A rich progress bar on stderr; a no-op object when disabled or when there is nothing to do."""
    if not enabled or not total:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as p:
        yield _Bar(p, p.add_task(description, total=total))
