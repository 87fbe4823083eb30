"""``ties``: TIES-merging: trim each ΔWᵢ, elect a sign per element, sum the values that agree; dense."""

from __future__ import annotations

from ..terms import Term
from .composed import Composed, adapter_update
from .registry import Param, register

DENSITY = Param(
    "density", float, 1.0, "fraction of each update kept, its largest magnitudes", low=0.0, high=1.0, open_low=True
)


def _trim(delta, density: float):
    """Keep the ``density`` fraction of largest-magnitude elements, zero the rest.

    The cut is a threshold (the k-th largest magnitude), so elements tied with it are all kept and the
    result depends on the values alone, never on an index order.
    """
    import torch

    magnitude = delta.abs()
    k = max(1, round(density * magnitude.numel()))
    threshold = torch.kthvalue(magnitude.flatten(), magnitude.numel() - k + 1).values
    return torch.where(magnitude >= threshold, delta, 0.0)


@register(
    "ties",
    summary="TIES-merging: trim each ΔWᵢ to its largest values, elect signs, sum those that agree",
    output="dense",
    version=1,
    reference="Yadav et al., TIES-Merging: Resolving Interference When Merging Models, NeurIPS 2023, "
    "https://arxiv.org/abs/2306.01708",
    params=(DENSITY,),
)
def compose_ties(terms: list[Term], parameters: dict) -> Composed:
    """Trim each ΔWᵢ to ``density``, elect a sign per element, sum the values that agree with it.

    The election uses the weighted values wᵢ·trim(ΔWᵢ): a negative weight (``-lang_en``) flips its
    update before it votes, as it does in the sum. The agreeing values are summed, not averaged
    (mergekit's ``ties`` without ``normalize``), so weights mean what they mean in ``delta``: with
    density 1 and no sign conflict TIES is exactly ΣwᵢΔWᵢ. The paper's mean over agreeing adapters
    shrinks an element k-fold where k adapters agree, which it makes up for with a tuned global λ.
    """
    import torch

    density = parameters["density"]
    dense = {}
    for module in terms[0].adapter.weights:
        weighted = torch.stack([t.weight_for(module) * _trim(adapter_update(t, module), density) for t in terms])
        elected = torch.sign(weighted.sum(0))
        dense[module] = torch.where(torch.sign(weighted) == elected, weighted, 0.0).sum(0)
    return Composed(dense=dense)
