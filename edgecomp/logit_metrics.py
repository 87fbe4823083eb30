"""The built-in logit metrics: how well a model's next-token logits predict, and how far they stray.

One value per position, each position's logits ``[positions, vocab]`` scored against the
reference given: the target ids for ``nll``; a reference model's logits (or the ids it ranks first)
for ``top1_agreement`` and ``max_abs_diff``. Held-out perplexity (:mod:`edgecomp.eval.perplexity`)
and export verification (:mod:`edgecomp.export.verify`) both compute them here, so a perplexity and
an agreement mean the same thing wherever they are reported.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .metrics import LOGITS, register


def top1(x: np.ndarray) -> np.ndarray:
    """The id each position ranks first: the argmax of logits ``[positions, vocab]``, or ``x`` itself
    when it already holds ids ``[positions]`` (a model scored earlier keeps only those)."""
    return x if x.ndim == 1 else x.argmax(axis=-1)


def largest(values: Sequence[float]) -> float:
    """The largest value (a NaN anywhere gives NaN, so a check against a tolerance fails on it); 0.0 for none."""
    return float(np.max(np.asarray(values), initial=0.0))


@register(
    "nll",
    LOGITS,
    "loss of each target token under the logits (natural log, float64 log-sum-exp); exp of its mean is the perplexity",
    {"nll": False},
)
def nll(logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    logits = logits.astype(np.float32, copy=False)
    top = logits.max(axis=-1)
    lse = top.astype(np.float64) + np.log(np.exp(logits - top[:, None]).sum(axis=-1, dtype=np.float64))
    picked = logits[np.arange(len(targets)), targets].astype(np.float64)
    return {"nll": lse - picked}


@register(
    "top1_agreement",
    LOGITS,
    "1 where the model ranks the reference's most likely next token first, else 0 (teacher-forced greedy agreement)",
    {"top1_agreement": True},
)
def top1_agreement(logits: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    ours, theirs = top1(logits), top1(reference)
    if ours.shape != theirs.shape:
        raise ValueError(f"top-1 agreement needs the same positions on both sides ({ours.shape} vs {theirs.shape})")
    return {"top1_agreement": (ours == theirs).astype(np.float64)}


@register(
    "max_abs_diff",
    LOGITS,
    "largest absolute difference from the reference's logits at each position; reduced by the largest",
    {"max_abs_diff": False},
    reduce=largest,
)
def max_abs_diff(logits: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    return {"max_abs_diff": np.abs(logits - reference).max(axis=-1)}
