"""``edgecomp adapters list``: what an adapter library folder holds, one row per adapter."""

from __future__ import annotations

from pathlib import Path

from .spec import load_library


def library_rows(folder: Path) -> list[dict]:
    rows = []
    for adapter in load_library(folder):
        meta = adapter.meta or {}
        rows.append(
            {
                "path": str(adapter.path.relative_to(folder)) if adapter.path != folder else ".",
                "kind": meta.get("kind", "?"),
                "lang": meta.get("lang") or "?",
                "base": (meta.get("base") or {}).get("name", "?"),
                "rank": adapter.rank,
                "quantization": meta.get("quantization", "?"),
                "data": (meta.get("data") or {}).get("file", "-"),
                "steps": meta.get("steps"),
                "final_loss": meta.get("final_loss"),
                "tokens_per_s": meta.get("tokens_per_s"),
            }
        )
    return rows


def library_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title=f"{len(rows)} adapters")
    for column in (
        "path",
        "kind",
        "lang",
        "base",
        "rank",
        "quantization",
        "data",
        "steps",
        "final_loss",
        "tokens_per_s",
    ):
        table.add_column(
            column, justify="right" if column in ("rank", "steps", "final_loss", "tokens_per_s") else "left"
        )
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row.values()))
    return table
