"""Bootstrap intervals over documents: a mean's 95% interval, and a paired difference's.

Percentile bootstrap with a fixed seed (the same inputs always give the same interval). The paired
version resamples documents once for both systems, so what varies is the difference on the same
documents, which is what a comparison of two systems on one test set should report. Every metric's
per-item values (:mod:`edgecomp.metrics`) go through the same two functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from ..metrics import mean

RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def as_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def mean_interval(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values to average")
    means = x[_indices(x.size, resamples, seed)].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(mean(x), float(low), float(high))


@dataclass(frozen=True)
class PairedDifference(Interval):
    """``mean`` of b − a with its interval, and how often a resample's difference was ≤ 0
    (a one-sided bootstrap p-value for "b is better than a")."""

    p_not_better: float = 1.0


def paired_difference(
    a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED
) -> PairedDifference:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("a paired comparison needs the same non-empty set of documents")
    diffs = (y - x)[_indices(x.size, resamples, seed)].mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return PairedDifference(mean(y - x), float(low), float(high), float((diffs <= 0).mean()))
