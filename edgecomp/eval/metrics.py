"""The registry of summary metrics: each module registers a function that scores every document.

A metric takes the references, the predictions and the target language (ISO 639-1) and returns
named per-document values (lists as long as the inputs), so means, bootstrap intervals and paired
comparisons work the same way for all of them. Adding one is a module with ``@register("name")``
imported in ``METRIC_MODULES``.
"""

from __future__ import annotations

import importlib
from typing import Callable, Sequence

Metric = Callable[[Sequence[str], Sequence[str], str], dict[str, list[float]]]

METRICS: dict[str, Metric] = {}
# Modules whose import registers the built-in metrics (imported on first use: some are heavy).
METRIC_MODULES = ("edgecomp.eval.rouge", "edgecomp.eval.language_id", "edgecomp.eval.length")


def register(name: str) -> Callable[[Metric], Metric]:
    def add(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn

    return add


def all_metrics() -> dict[str, Metric]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return METRICS


def score_documents(references: Sequence[str], predictions: Sequence[str], lang: str) -> dict[str, list[float]]:
    """Every registered metric on every document: ``{value name: [one float per document]}``."""
    values: dict[str, list[float]] = {}
    for fn in all_metrics().values():
        values |= fn(references, predictions, lang)
    return values
