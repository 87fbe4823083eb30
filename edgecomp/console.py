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


def _rate(tokens: int, seconds: float) -> str:
    return f"{tokens / seconds:.0f} tokens/s" if tokens and seconds > 0 else ""


@contextlib.contextmanager
def progress(description: str, total: int) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n, tokens=0)``; shows a bar (terminal) or plain progress lines (otherwise),
    with the tokens/s of the tokens reported, when any are."""
    start, done, tokens, step = time.perf_counter(), [0], [0], max(1, total // 10)
    if console.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar:
            task = bar.add_task(description, total=total, rate="")

            def advance_bar(n: int, new_tokens: int = 0) -> None:
                tokens[0] += new_tokens
                bar.update(task, advance=n, rate=_rate(tokens[0], time.perf_counter() - start))

            yield advance_bar
        return

    def advance(n: int, new_tokens: int = 0) -> None:
        before, done[0] = done[0], done[0] + n
        tokens[0] += new_tokens
        if done[0] // step != before // step or done[0] == total:
            elapsed = time.perf_counter() - start
            left = f", ~{elapsed / done[0] * (total - done[0]):.0f} s left" if 0 < done[0] < total else ""
            rate = _rate(tokens[0], elapsed)
            console.print(
                f"{description}: {done[0]}/{total} ({elapsed:.0f} s{', ' + rate if rate else ''}{left})",
                highlight=False,
            )

    yield advance
