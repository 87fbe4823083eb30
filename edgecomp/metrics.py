"""The evaluation-metric interface that ``edgecomp eval``, held-out perplexity and export verification share.

A :class:`Metric` scores a batch of items against references and returns named per-item values
(``{value name: one float per item}``), never only a total: means, bootstrap intervals and paired
comparisons then work the same way for every metric, and each metric says how its values reduce to
one number (:attr:`Metric.reduce`, the mean unless it says otherwise). What a metric compares is its
kind:

- ``summary``: ``score(references, predictions, lang)``, texts against reference texts in target
  language ``lang`` (ISO 639-1), one value per document (ROUGE, language, length in ``edgecomp.eval``);
- ``logits``: ``score(logits, reference)``, a model's next-token logits ``[positions, vocab]``
  against the target ids ``[positions]`` or a reference model's logits (or the ids it ranks first),
  one value per position (NLL, top-1 agreement, logit difference in :mod:`edgecomp.logit_metrics`).

Adding a metric is one module whose import registers it with :func:`register`; built-in modules are
imported on first use, per kind, so export verification loads only the logit metrics: those of
:data:`BUILTIN` (same layer as this module), while :mod:`edgecomp.eval.metrics` names the summary
ones, which live in the eval package above. Stdlib and numpy only:
export, eval and the runtime side can all import it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .errors import EdgecompError

SUMMARY = "summary"
LOGITS = "logits"
# Modules whose import registers the built-in metrics of each kind, in the order their values are
# reported (imported on first use: some load heavy scorers).
BUILTIN: dict[str, tuple[str, ...]] = {
    SUMMARY: (),  # edgecomp.eval.metrics names its own (eval sits above this module)
    LOGITS: ("edgecomp.logit_metrics",),
}

Values = Mapping[str, Sequence[float]]


def mean(values: Sequence[float]) -> float:
    """The mean of per-item values; 0.0 for no items (a sequence with nothing to score scores nothing)."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()) if x.size else 0.0


@dataclass(frozen=True)
class Metric:
    """A registered metric: its ``score`` function and what a caller needs to read its values.

    ``higher_is_better`` names every value ``score`` returns, with its direction (``None``: a
    description with no better direction, such as a length); one metric can return several values
    because they come from one pass (ROUGE-1/2/L from one scorer call). ``reduce`` turns one value's
    per-item list into one number; ``module``, where it was registered, orders the built-in metrics
    and names both sides of a name clash.
    """

    name: str
    kind: str
    description: str
    higher_is_better: Mapping[str, bool | None]
    score: Callable[..., Values]
    reduce: Callable[[Sequence[float]], float] = mean
    module: str = ""

    def overall(self, *inputs) -> dict[str, float]:
        """Score ``inputs`` and reduce each value to one number."""
        return {name: self.reduce(v) for name, v in self.score(*inputs).items()}


METRICS: dict[str, Metric] = {}


def register(
    name: str,
    kind: str,
    description: str,
    higher_is_better: Mapping[str, bool | None],
    reduce: Callable[[Sequence[float]], float] = mean,
) -> Callable[[Callable[..., Values]], Callable[..., Values]]:
    """Decorator: register the function as metric ``name`` (the function itself is returned unchanged)."""
    if kind not in BUILTIN:
        raise ValueError(f"metric '{name}': unknown kind '{kind}' (known: {', '.join(BUILTIN)})")

    def add(fn: Callable[..., Values]) -> Callable[..., Values]:
        known = METRICS.get(name)
        if known is not None and (known.module, known.score.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"metric '{name}' is registered twice ({known.module} and {fn.__module__})")
        METRICS[name] = Metric(name, kind, description, dict(higher_is_better), fn, reduce, fn.__module__)
        return fn

    return add


def metrics(kind: str, builtin: Sequence[str] = ()) -> dict[str, Metric]:
    """Every metric of ``kind``: those of :data:`BUILTIN` and of the modules ``builtin`` (imported
    first, so they register) in that order, then the others as registered."""
    if kind not in BUILTIN:
        raise EdgecompError(f"unknown metric kind '{kind}' (known: {', '.join(BUILTIN)})")
    modules = (*BUILTIN[kind], *builtin)
    for module in modules:
        importlib.import_module(module)
    rank = {module: i for i, module in enumerate(modules)}
    found = sorted((m for m in METRICS.values() if m.kind == kind), key=lambda m: rank.get(m.module, len(rank)))
    return {m.name: m for m in found}


def metric(name: str, kind: str) -> Metric:
    """The metric ``name`` of ``kind``; an unknown name fails naming the ones there are."""
    found = metrics(kind)
    if name not in found:
        raise EdgecompError(f"no {kind} metric '{name}' (known: {', '.join(found) or 'none'})")
    return found[name]
