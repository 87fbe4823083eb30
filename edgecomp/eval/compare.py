"""``edgecomp eval --compare A.json B.json``: B against A on the same documents, paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EdgecompError
from .bootstrap import paired_difference


def load_scores(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "scores.json"
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgecompError(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError):
        raise EdgecompError(f"{path}: not a scores.json written by `edgecomp eval`") from None
    if not isinstance(scores, dict) or not isinstance(scores.get("per_document"), dict):
        raise EdgecompError(f"{path}: not a scores.json written by `edgecomp eval`")
    return scores


def compare(a: dict, b: dict) -> dict:
    """Per metric: mean of a, mean of b, and b − a with its 95% paired bootstrap interval."""
    for key in ("data_sha256", "lang"):
        if a.get(key) != b.get(key):
            raise EdgecompError(
                f"the two evaluations differ in {key} ({a.get(key)} vs {b.get(key)}): "
                "a paired comparison needs the same documents"
            )
    ids = list(a["per_document"])
    if set(ids) != set(b["per_document"]):
        raise EdgecompError("the two evaluations scored different documents (compare runs with the same --limit)")
    metrics = sorted(set(a["per_document"][ids[0]]) & set(b["per_document"][ids[0]]))
    result = {
        "a": a.get("model"),
        "b": b.get("model"),
        "data": a.get("data"),
        "lang": a.get("lang"),
        "documents": len(ids),
        "metrics": {},
    }
    for name in metrics:
        x = [a["per_document"][i][name] for i in ids]
        y = [b["per_document"][i][name] for i in ids]
        d = paired_difference(x, y)
        result["metrics"][name] = {
            "a": round(sum(x) / len(x), 4),
            "b": round(sum(y) / len(y), 4),
            "difference": d.as_dict(),
        }
    return result
