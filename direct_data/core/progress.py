"""The one progress library (rich): bars on stderr, off by default in library calls and on in the CLI
when stderr is a terminal. Library code reports everything else through `logging`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class _Bar:
    def __init__(self, progress, task):
        self._p, self._t = progress, task

    def update(self, n: int = 1, *, info: str | None = None) -> None:
        """Advance by `n`; `info` is a short status text shown after the bar (e.g. current losses)."""
        if self._p is not None:
            self._p.update(self._t, advance=n, **({"info": info} if info is not None else {}))


@contextlib.contextmanager
def progress_bar(description: str, *, total: int | None, enabled: bool = True, initial: int = 0) -> Iterator[_Bar]:
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
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=False,
    ) as p:
        yield _Bar(p, p.add_task(description, total=total, completed=initial, info=""))
