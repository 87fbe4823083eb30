"""How summaries are decoded: one settings type that the CLI, recipes, evaluation and the runtime pass along.

Greedy by default; beam search with ``num_beams > 1`` (Hugging Face's ``early_stopping=True`` with
``length_penalty``); sampling with ``do_sample`` (``temperature``, then the ``top_k`` most likely
tokens, then the ``top_p`` nucleus, drawn with ``seed``). The settings are checked when made, so a
bad value stops before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from ..errors import EdgecompError


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 64
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    length_penalty: float = 1.0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise EdgecompError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if self.num_beams < 1:
            raise EdgecompError(f"num_beams must be at least 1 (got {self.num_beams})")
        if self.do_sample and self.num_beams > 1:
            raise EdgecompError("choose sampling or beam search, not both")
        if self.do_sample and not (self.temperature > 0 and self.top_k >= 0 and 0 < self.top_p <= 1):
            raise EdgecompError("sampling needs temperature > 0, top_k >= 0 and 0 < top_p <= 1")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def chooser(self) -> Callable[[np.ndarray], int]:
        """The next-token rule for one sequence: argmax, or a sampler with its own generator."""
        if not self.do_sample:
            return lambda logits: int(np.argmax(logits))
        return _sampler(self.temperature, self.top_k, self.top_p, self.seed)


def _sampler(temperature: float, top_k: int, top_p: float, seed: int) -> Callable[[np.ndarray], int]:
    """Pick from ``softmax(logits / temperature)`` cut to the top k, then to the top-p nucleus."""
    rng = np.random.default_rng(seed)

    def choose(logits: np.ndarray) -> int:
        scores = logits.astype(np.float64) / temperature
        candidates = np.arange(scores.size)
        if 0 < top_k < scores.size:
            candidates = np.argpartition(-scores, top_k - 1)[:top_k]
        if top_p < 1.0:  # the nucleus needs an order; plain sampling does not pay for a sort
            candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
        probs = np.exp(scores[candidates] - scores[candidates].max())
        probs /= probs.sum()
        if top_p < 1.0:
            # Keep the smallest prefix whose mass reaches top_p (always at least the best token).
            keep = int(np.searchsorted(np.cumsum(probs), top_p)) + 1
            candidates, probs = candidates[:keep], probs[:keep] / probs[:keep].sum()
        return int(candidates[rng.choice(len(probs), p=probs)])

    return choose
