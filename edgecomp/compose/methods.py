"""Composition methods, by name (a registry in the style of mergekit's merge methods).

Each method turns weighted adapters into one LoRA, ``{module: (A, B)}`` with a single scale, so the
result merges like any adapter (ΔW = scale·B·A) and can be written back as a PEFT adapter.

- ``params``: the paper's language/task arithmetic (Chronopoulou et al., MRL 2024): A = Σ wᵢAᵢ and
  B = Σ wᵢBᵢ, element-wise, module by module. Needs equal ranks and scales. Not ΣwᵢΔWᵢ: the cross
  terms BᵢAⱼ are part of the method.
- ``delta``: the exact weighted sum of updates, ΣwᵢsᵢBᵢAᵢ, written as one LoRA of rank Σrᵢ by
  concatenation: B' = [B₁ … Bₙ], A' = [w₁s₁A₁; …; wₙsₙAₙ], scale 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from ..errors import EdgecompError
from .adapters import LoraAdapter

Term = tuple[LoraAdapter, float]


@dataclass
class Composed:
    weights: dict  # module -> (A [r, in], B [out, r])
    scale: float

    def delta(self, module: str):
        a, b = self.weights[module]
        return self.scale * (b @ a)


METHODS: dict[str, Callable[[list[Term]], Composed]] = {}


def register(name: str):
    def wrap(fn):
        METHODS[name] = fn
        return fn

    return wrap


def check_compatible(terms: list[Term]) -> None:
    """Same base, same target modules, same shapes, finite weights; errors name the adapter."""
    if not terms:
        raise EdgecompError("no adapters to compose")
    first = terms[0][0]
    for adapter, weight in terms:
        if not math.isfinite(weight):
            raise EdgecompError(f"{adapter.name}: weight {weight} is not a finite number")
        if adapter.fingerprint and first.fingerprint and adapter.fingerprint != first.fingerprint:
            raise EdgecompError(f"{adapter.name}: trained on another base than {first.name}")
        if set(adapter.weights) != set(first.weights):
            diff = sorted(set(adapter.weights) ^ set(first.weights))[:3]
            raise EdgecompError(f"{adapter.name}: target modules differ from {first.name} (e.g. {diff})")
        for module, (a, b) in adapter.weights.items():
            a0, b0 = first.weights[module]
            if a.shape[1] != a0.shape[1] or b.shape[0] != b0.shape[0]:
                raise EdgecompError(f"{adapter.name}: module '{module}' has another shape than in {first.name}")


@register("params")
def compose_params(terms: list[Term]) -> Composed:
    first = terms[0][0]
    for adapter, _ in terms:
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
    weights = {}
    for module in first.weights:
        a = sum(w * adapter.weights[module][0] for adapter, w in terms)
        b = sum(w * adapter.weights[module][1] for adapter, w in terms)
        weights[module] = (a, b)
    return Composed(weights, first.scale)


@register("delta")
def compose_delta(terms: list[Term]) -> Composed:
    import torch

    weights = {}
    for module in terms[0][0].weights:
        a = torch.cat([w * adapter.scale * adapter.weights[module][0] for adapter, w in terms], dim=0)
        b = torch.cat([adapter.weights[module][1] for adapter, _ in terms], dim=1)
        weights[module] = (a, b)
    return Composed(weights, 1.0)


def compose(terms: list[Term], method: str) -> Composed:
    if method not in METHODS:
        raise EdgecompError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    check_compatible(terms)
    return METHODS[method](terms)
