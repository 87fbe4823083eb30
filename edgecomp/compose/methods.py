"""Composition methods, by name (a registry in the style of mergekit's merge methods).

Each method turns weighted adapters (:class:`Term`) into a :class:`Composed`: exact low-rank factors
``{module: (A, B)}`` with one scale where the method has them (so the result merges like any adapter,
ΔW = scale·B·A, and is written back as a PEFT adapter exactly), or dense ΔW per module otherwise.
Weights are per module (``Term.weight_for``): per-module-type weights and layer ranges apply to
every method. Below ΔWᵢ = sᵢBᵢAᵢ is adapter i's update and wᵢ its weight for the module.

- ``params``: the paper's arithmetic (Chronopoulou et al., MRL 2024), A = ΣwᵢAᵢ, B = ΣwᵢBᵢ; exact LoRA.
- ``delta``: the exact weighted sum ΣwᵢΔWᵢ, one LoRA of rank Σrᵢ by concatenating the factors.
- ``ties``: TIES-merging (Yadav et al., 2023): trim each ΔWᵢ, elect signs, sum the agreeing; dense.
- ``dare``: DARE (Yu et al., 2023): drop elements of each ΔWᵢ at random, rescale, weighted sum; dense.

``params`` is not ΣwᵢΔWᵢ: the cross terms BᵢAⱼ are part of the method, and it needs equal ranks and
scales. ``delta`` writes B' = [B₁ … Bₙ], A' = [w₁s₁A₁; …; wₙsₙAₙ] with scale 1.
"""

from __future__ import annotations

import hashlib
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
        if adapter.stored_dtype != first.stored_dtype:
            raise EdgecompError(
                f"{adapter.name}: weights are {adapter.stored_dtype}, {first.stored_dtype} in {first.name}"
            )
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


def _update(term: Term, module: str):
    """Adapter ΔWᵢ = sᵢ·Bᵢ·Aᵢ of one module, unweighted, [out, in] fp32."""
    a, b = term.adapter.weights[module]
    return term.adapter.scale * (b @ a)


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


@register("ties")
def compose_ties(terms: list[Term], options: MethodOptions) -> Composed:
    """TIES: trim each ΔWᵢ to ``density``, elect a sign per element, sum the values that agree with it.

    The election uses the weighted values wᵢ·trim(ΔWᵢ): a negative weight (``-lang_en``) flips its
    update before it votes, as it does in the sum. The agreeing values are summed, not averaged
    (mergekit's ``ties`` without ``normalize``), so weights mean what they mean in ``delta``: with
    density 1 and no sign conflict TIES is exactly ΣwᵢΔWᵢ. The paper's mean over agreeing adapters
    shrinks an element k-fold where k adapters agree, which it makes up for with a tuned global λ.
    """
    import torch

    dense = {}
    for module in terms[0].adapter.weights:
        weighted = torch.stack([t.weight_for(module) * _trim(_update(t, module), options.density) for t in terms])
        elected = torch.sign(weighted.sum(0))
        dense[module] = torch.where(torch.sign(weighted) == elected, weighted, 0.0).sum(0)
    return Composed(dense=dense)


def _generator(seed: int, module: str, index: int):
    """A generator per (module, adapter position), derived from ``seed`` with SHA-256.

    Python's ``hash()`` is salted per process; SHA-256 gives the same draws in every run, and one
    adapter's mask does not depend on which others are composed with it.
    """
    import torch

    digest = hashlib.sha256(f"{seed}/{module}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


@register("dare")
def compose_dare(terms: list[Term], options: MethodOptions) -> Composed:
    """DARE: drop each element of ΔWᵢ with probability 1 − density, rescale the rest by 1/density
    (so the expectation is ΔWᵢ), then take the weighted sum; at density 1 nothing is dropped: ΣwᵢΔWᵢ.
    """
    import torch

    dense = {}
    for module in terms[0].adapter.weights:
        dropped = []
        for index, term in enumerate(terms):
            delta = _update(term, module)
            keep = torch.rand(delta.shape, generator=_generator(options.seed, module, index)) < options.density
            dropped.append(term.weight_for(module) * torch.where(keep, delta / options.density, 0.0))
        dense[module] = sum(dropped)
    return Composed(dense=dense)


def compose(terms: list[Term], method: str, options: MethodOptions = MethodOptions()) -> Composed:
    if method not in METHODS:
        raise EdgecompError(f"unknown method '{method}' (choose from {', '.join(METHODS)})")
    if not 0.0 < options.density <= 1.0:
        raise EdgecompError(f"density must be in (0, 1], not {options.density}")
    check_compatible(terms)
    return METHODS[method](terms, options)
