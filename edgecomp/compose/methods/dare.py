"""``dare``: DARE: drop elements of each ΔWᵢ at random, rescale the rest, take the weighted sum; dense."""

from __future__ import annotations

import hashlib

from ..terms import Term
from .composed import Composed, adapter_update
from .registry import Param, register

DENSITY = Param(
    "density",
    float,
    1.0,
    "probability of keeping each element of an update (kept ones are rescaled by 1/density)",
    low=0.0,
    high=1.0,
    open_low=True,
)
SEED = Param("seed", int, 0, "seed of the random drop")


def _generator(seed: int, module: str, index: int):
    """A generator per (module, adapter position), derived from ``seed`` with SHA-256.

    Python's ``hash()`` is salted per process; SHA-256 gives the same draws in every run, and one
    adapter's mask does not depend on which others are composed with it.
    """
    import torch

    digest = hashlib.sha256(f"{seed}/{module}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@register(
    "dare",
    summary="DARE: drop elements of each ΔWᵢ at random, rescale the rest, weighted sum",
    output="dense",
    version=1,
    reference="Yu et al., Language Models are Super Mario: Absorbing Abilities from Homologous Models as a "
    "Free Lunch, ICML 2024, https://arxiv.org/abs/2311.03099",
    params=(DENSITY, SEED),
)
def compose_dare(terms: list[Term], parameters: dict) -> Composed:
    """Drop each element of ΔWᵢ with probability 1 − density, rescale the rest by 1/density (so the
    expectation is ΔWᵢ), then take the weighted sum; at density 1 nothing is dropped: ΣwᵢΔWᵢ.
    """
    import torch

    density, seed = parameters["density"], parameters["seed"]
    dense = {}
    for module in terms[0].adapter.weights:
        dropped = []
        for index, term in enumerate(terms):
            delta = adapter_update(term, module)
            keep = torch.rand(delta.shape, generator=_generator(seed, module, index)) < density
            dropped.append(term.weight_for(module) * torch.where(keep, delta / density, 0.0))
        dense[module] = sum(dropped)
    return Composed(dense=dense)
