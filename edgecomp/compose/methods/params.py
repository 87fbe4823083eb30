"""``params``: the paper's arithmetic, A = ΣwᵢAᵢ and B = ΣwᵢBᵢ, an exact LoRA.

It is not ΣwᵢΔWᵢ: the cross terms BᵢAⱼ are part of the method, and it needs equal ranks and scales.
"""

from __future__ import annotations

import math

from ...errors import EdgecompError
from ..terms import Term
from .composed import Composed
from .registry import register


@register(
    "params",
    summary="the paper's arithmetic: A = ΣwᵢAᵢ, B = ΣwᵢBᵢ (equal ranks and scales)",
    output="low_rank",
    version=1,
    reference="Chronopoulou et al., Language and Task Arithmetic with Parameter-Efficient Layers for "
    "Zero-Shot Summarization, MRL 2024, https://aclanthology.org/2024.mrl-1.7",
)
def compose_params(terms: list[Term], parameters: dict) -> Composed:
    first = terms[0].adapter
    for adapter in (t.adapter for t in terms):
        if adapter.rank != first.rank:
            raise EdgecompError(
                f"{adapter.name}: rank {adapter.rank} differs from {first.name}'s {first.rank}; "
                "'params' needs equal ranks (use --method delta)"
            )
        if not math.isclose(adapter.scale, first.scale):
            raise EdgecompError(
                f"{adapter.name}: LoRA scale {adapter.scale} differs from {first.name}'s {first.scale}; "
                "'params' needs equal alpha/rank (use --method delta)"
            )
    low_rank = {}
    for module in first.weights:
        a = sum(t.weight_for(module) * t.adapter.weights[module][0] for t in terms)
        b = sum(t.weight_for(module) * t.adapter.weights[module][1] for t in terms)
        low_rank[module] = (a, b)
    return Composed(low_rank=low_rank, scale=first.scale)
