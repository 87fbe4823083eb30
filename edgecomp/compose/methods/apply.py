"""Composing: check that the adapters fit together, then run the method with its parameters."""

from __future__ import annotations

import math
from typing import Any, Mapping

from ...errors import EdgecompError
from ..terms import Term
from .composed import Composed
from .registry import get_method


def check_compatible(terms: list[Term]) -> None:
    """Same base, same target modules, same shapes, finite weights, module types for per-type
    weights; errors name the adapter."""
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


def compose(terms: list[Term], method: str, parameters: Mapping[str, Any] | None = None) -> Composed:
    """``terms`` composed by ``method``; ``parameters`` are the method's (undeclared ones are refused,
    missing ones take their defaults)."""
    chosen = get_method(method)
    values = chosen.values(parameters or {})
    check_compatible(terms)
    return chosen.function(terms, values)
