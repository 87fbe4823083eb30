"""Composition methods, by name (a registry in the style of mergekit's merge methods).

Each method turns weighted adapters (:class:`Term`) into a :class:`Composed`: exact low-rank factors
``{module: (A, B)}`` with one scale where the method has them (so the result merges like any adapter,
ΔW = scale·B·A, and is written back as a PEFT adapter exactly), or dense ΔW per module otherwise.
Weights are per module (``Term.weight_for``): per-module-type weights and layer ranges apply to
every method.

- ``params``: the paper's language/task arithmetic (Chronopoulou et al., MRL 2024): A = Σ wᵢAᵢ and
  B = Σ wᵢBᵢ, element-wise, module by module. Needs equal ranks and scales. Not ΣwᵢΔWᵢ: the cross
  terms BᵢAⱼ are part of the method.
- ``delta``: the exact weighted sum of updates, ΣwᵢsᵢBᵢAᵢ, written as one LoRA of rank Σrᵢ by
  concatenation: B' = [B₁ … Bₙ], A' = [w₁s₁A₁; …; wₙsₙAₙ], scale 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ..errors import EdgecompError
from .terms import Term


@dataclass
class Composed:
    low_rank: dict = field(default_factory=dict)  # module -> (A [r, in], B [out, r]), exact
    dense: dict = field(default_factory=dict)  # module -> ΔW [out, in]
    scale: float = 1.0

    @property
    def modules(self) -> list[str]:
        return sorted(set(self.low_rank) | set(self.dense))

    def delta(self, module: str):
        if module in self.dense:
            return self.dense[module]
        a, b = self.low_rank[module]
        return self.scale * (b @ a)


@dataclass(frozen=True)
class MethodOptions:
    """Options some methods take: TIES/DARE keep ``density`` of each update, DARE draws with ``seed``."""

    density: float = 1.0
    seed: int = 0


METHODS: dict[str, Callable[[list[Term], MethodOptions], Composed]] = {}


def register(name: str):
    def wrap(fn):
        METHODS[name] = fn
        return fn

    return wrap


def check_compatible(terms: list[Term]) -> None:
    """Same base, same target modules, same shapes, finite weights; errors name the adapter."""
    if not terms:
        raise EdgecompError("no adapters to compose")
    first = terms[0].adapter
    for term in terms:
        adapter = term.adapter
        for name in ("weight", "attention", "mlp"):
            if not math.isfinite(getattr(term, name)):
                raise EdgecompError(f"{adapter.name}: {name} weight {getattr(term, name)} is not a finite number")
        if adapter.fingerprint and first.fingerprint and adapter.fingerprint != first.fingerprint:
            raise EdgecompError(f"{adapter.name}: trained on another base than {first.name}")
        if set(adapter.weights) != set(first.weights):
            diff = sorted(set(adapter.weights) ^ set(first.weights))[:3]
            raise EdgecompError(f"{adapter.name}: target modules differ from {first.name} (e.g. {diff})")
        for module, (a, b) in adapter.weights.items():
            a0, b0 = first.weights[module]
            if a.shape[1] != a0.shape[1] or b.shape[0] != b0.shape[0]:
                raise EdgecompError(
                    f"{adapter.name}: module '{module}' is {b.shape[0]}x{a.shape[1]}, "
                    f"{b0.shape[0]}x{a0.shape[1]} in {first.name}"
                )
            if a.dtype != a0.dtype or b.dtype != b0.dtype:
                raise EdgecompError(f"{adapter.name}: module '{module}' is {a.dtype}, {a0.dtype} in {first.name}")


@register("params")
def compose_params(terms: list[Term], options: MethodOptions) -> Composed:
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


@register("delta")
def compose_delta(terms: list[Term], options: MethodOptions) -> Composed:
    import torch

    low_rank = {}
    for module in terms[0].adapter.weights:
        a = torch.cat([t.weight_for(module) * t.adapter.scale * t.adapter.weights[module][0] for t in terms])
        b = torch.cat([t.adapter.weights[module][1] for t in terms], dim=1)
        low_rank[module] = (a, b)
    return Composed(low_rank=low_rank, scale=1.0)


def compose(terms: list[Term], method: str, options: MethodOptions = MethodOptions()) -> Composed:
    if method not in METHODS:
        raise EdgecompError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    if not 0.0 < options.density <= 1.0:
        raise EdgecompError(f"density must be in (0, 1], not {options.density}")
    check_compatible(terms)
    return METHODS[method](terms, options)
