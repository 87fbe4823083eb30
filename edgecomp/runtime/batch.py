"""Many documents: grouped by the model that summarizes them, batched, resumable, bad ones skipped.

Each document is routed (``route(doc)``: which model, e.g. by its detected language) and the
groups are summarized ``batch_size`` at a time with :func:`.summarize.summarize_many`, the model
loaded once per group. Every batch's rows are appended to the JSON Lines output and synced before
the next starts, so an interrupted run loses at most one batch, and a rerun skips the ids the
output already holds. A document that cannot be read or routed is reported by id on stderr and
skipped; it never stops the batch. The progress bar counts documents and new tokens per second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..console import console, progress
from ..data.documents import Document
from ..errors import EdgecompError
from ..fsutil import append_jsonl, read_jsonl_prefix
from .decoding import Decoding
from .model import OnnxCausalLM
from .summarize import MAX_CHUNKS, summarize_many


@dataclass(frozen=True)
class Route:
    """Which model summarizes a document: ``key`` groups documents, ``info`` goes into each row,
    ``payload`` is for the loader."""

    key: str
    info: dict = field(default_factory=dict)
    payload: object = None


@dataclass
class BatchStats:
    summarized: int = 0
    already_done: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (id, reason)
    new_tokens: int = 0
    seconds: float = 0.0  # spent summarizing (not loading or building models)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        parts = [f"{self.summarized} summarized"]
        if self.already_done:
            parts.append(f"{self.already_done} already in the output")
        parts.append(f"{len(self.skipped)} skipped")
        return (
            f"{', '.join(parts)}; {self.new_tokens} new tokens in {self.seconds:.1f} s of summarizing "
            f"({self.tokens_per_s:.1f} tokens/s)"
        )


def done_ids(output: Path | None) -> set[str]:
    """Ids an output already holds (its torn last line, if any, is cut off)."""
    if output is None:
        return set()
    return {str(row["id"]) for row in read_jsonl_prefix(output, lambda row: "id" in row and "summary" in row)}


def summarize_documents(
    docs: Sequence[Document],
    route: Callable[[Document], Route],
    load: Callable[[Route], OnnxCausalLM],
    write: Callable[[list[dict]], None],
    decoding: Decoding = Decoding(),
    *,
    skip: set[str] = frozenset(),
    batch_size: int = 8,
    max_chunks: int = MAX_CHUNKS,
) -> BatchStats:
    """Summarize ``docs`` (those not in ``skip``) per ``decoding``; ``write(rows)`` receives each batch's rows."""
    if batch_size < 1:
        raise EdgecompError(f"--batch-size must be at least 1 (got {batch_size})")
    stats = BatchStats(already_done=sum(d.id in skip for d in docs))
    groups: dict[str, tuple[Route, list[Document]]] = {}
    for doc in docs:
        if doc.id in skip:
            continue
        if doc.error is not None:
            stats.skipped.append((doc.id, doc.error))
            continue
        try:
            r = route(doc)
        except EdgecompError as e:
            stats.skipped.append((doc.id, str(e)))
            continue
        groups.setdefault(r.key, (r, []))[1].append(doc)
    for doc_id, reason in stats.skipped:
        console.print(f"skipped {doc_id}: {reason}", highlight=False, markup=False, soft_wrap=True)
    total = sum(len(group) for _, group in groups.values())
    with progress(f"summarizing {total} documents", total) as advance:
        for r, group in groups.values():
            model = load(r)
            for first in range(0, len(group), batch_size):
                batch = group[first : first + batch_size]
                began = time.perf_counter()
                results = summarize_many(
                    model,
                    [d.text for d in batch],
                    decoding,
                    batch_size=batch_size,
                    max_chunks=max_chunks,
                    progress=False,
                )
                stats.seconds += time.perf_counter() - began
                write(
                    [
                        {
                            "id": d.id,
                            **r.info,
                            "summary": res["summary"],
                            "prompt_tokens": res["prompt_tokens"],
                            "new_tokens": res["new_tokens"],
                            "chunks": res["chunks"],
                        }
                        for d, res in zip(batch, results)
                    ]
                )
                tokens = sum(res["new_tokens"] for res in results)
                stats.summarized += len(batch)
                stats.new_tokens += tokens
                advance(len(batch), tokens)
    return stats


def jsonl_writer(output: Path) -> Callable[[list[dict]], None]:
    """Rows appended to ``output`` and synced, batch by batch."""
    if output.exists() and not output.is_file():
        raise EdgecompError(f"{output}: exists and is not a file")
    if not output.parent.is_dir():
        raise EdgecompError(f"{output.parent}: no such folder for the output")
    return lambda rows: append_jsonl(output, rows)
