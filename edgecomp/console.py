"""The one rich console for progress and status: stderr, so stdout carries only results.

``progress`` is a bar on a terminal and plain lines (``what: 12/40 (31 s)``, about every tenth)
when stderr is a file or a pipe, so logs of long runs still show how far they got.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

from rich.console import Console

console = Console(stderr=True)


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; shows a bar (terminal) or plain progress lines (otherwise)."""
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)
        return
    start, done, step = time.perf_counter(), [0], max(1, total // 10)

    def advance(n: int) -> None:
        before, done[0] = done[0], done[0] + n
        if done[0] // step != before // step or done[0] == total:
            console.print(f"{description}: {done[0]}/{total} ({time.perf_counter() - start:.0f} s)", highlight=False)

    yield advance
