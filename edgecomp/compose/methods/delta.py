"""``delta``: the exact weighted sum ΣwᵢΔWᵢ as one LoRA of rank Σrᵢ, by concatenating the factors.

B' = [B₁ … Bₙ], A' = [w₁s₁A₁; …; wₙsₙAₙ] with scale 1, so B'A' = Σ wᵢsᵢBᵢAᵢ for any ranks.
"""

from __future__ import annotations

from ..terms import Term
from .composed import Composed
from .registry import register


@register(
    "delta",
    summary="the exact weighted sum of the updates ΣwᵢΔWᵢ (any ranks)",
    output="low_rank",
    version=1,
    reference="task arithmetic: Ilharco et al., Editing Models with Task Arithmetic, ICLR 2023, "
    "https://arxiv.org/abs/2212.04089",
)
def compose_delta(terms: list[Term], parameters: dict) -> Composed:
    import torch

    low_rank = {}
    for module in terms[0].adapter.weights:
        a = torch.cat([t.weight_for(module) * t.adapter.scale * t.adapter.weights[module][0] for t in terms])
        b = torch.cat([t.adapter.weights[module][1] for t in terms], dim=1)
        low_rank[module] = (a, b)
    return Composed(low_rank=low_rank, scale=1.0)
