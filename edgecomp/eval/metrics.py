"""Scoring summaries with every summary metric of the registry (:mod:`edgecomp.metrics`).

``edgecomp eval`` calls :func:`score_documents` once over all documents; a metric added to the
registry (kind ``summary``) shows up in its ``scores.json`` and in ``--compare`` with nothing else
to change. The values of all metrics land in one table, so each must return exactly the values it
declares, one per document, under names no other metric uses.
"""

from __future__ import annotations

from typing import Sequence

from ..metrics import SUMMARY, Metric, metrics

# The built-in summary metrics, in the order scores.json and reports list their values (imported on
# first use: they register themselves).
SUMMARY_METRICS = ("edgecomp.eval.rouge", "edgecomp.eval.language_id", "edgecomp.eval.length")


def summary_metrics() -> dict[str, Metric]:
    """Every summary metric: the built-in ones first, then any other registered."""
    return metrics(SUMMARY, SUMMARY_METRICS)


def score_documents(references: Sequence[str], predictions: Sequence[str], lang: str) -> dict[str, list[float]]:
    """Every summary metric on every document: ``{value name: [one float per document]}``."""
    values: dict[str, list[float]] = {}
    for m in summary_metrics().values():
        got = m.score(references, predictions, lang)
        if set(got) != set(m.higher_is_better):
            raise ValueError(
                f"metric '{m.name}' returned {sorted(got)}, not the values it declares ({sorted(m.higher_is_better)})"
            )
        for name, v in got.items():
            if name in values:
                raise ValueError(f"metric '{m.name}' returns '{name}', a value another metric returns too")
            if len(v) != len(predictions):
                raise ValueError(f"metric '{m.name}' gave {len(v)} values of '{name}' for {len(predictions)} documents")
            values[name] = list(v)
    return values
