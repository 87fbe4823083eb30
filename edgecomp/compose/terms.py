"""One adapter in a composition, with its weight, per-module-type weights and layer range.

The weight an adapter contributes to a module is ``weight × (attention | mlp weight) × [layer in
range]``, so ``lang_sw`` can count fully in the MLPs and half in attention, or only in the lower
layers. Module types and layer numbers are read from PEFT/transformers module names
(``model.layers.3.self_attn.q_proj``); which names are attention and which MLP is what the model
families (:mod:`edgecomp.models.families`) say. A module no family knows has no type, so an
``attention``/``mlp`` weight other than 1 on an adapter with such a module is refused rather than
silently left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import EdgecompError
from ..models.families import module_kinds
from .adapters import LoraAdapter

_LAYER = re.compile(r"\.layers\.(\d+)\.")


def module_type(module: str) -> str | None:
    """``"attention"``, ``"mlp"``, or None when no registered family names a part of ``module``."""
    kinds = module_kinds()
    return next((kinds[part] for part in module.split(".") if part in kinds), None)


def layer_index(module: str) -> int | None:
    match = _LAYER.search(module)
    return int(match.group(1)) if match else None


def check_module_types(term: Term) -> None:
    """Raise when ``term`` weighs attention or MLP apart but its adapter has a module of no known type."""
    weighted = [name for name in ("attention", "mlp") if getattr(term, name) != 1.0]
    if not weighted:
        return
    unknown = next((m for m in term.adapter.weights if module_type(m) is None), None)
    if unknown is not None:
        raise EdgecompError(
            f"{term.adapter.name}: {' and '.join(weighted)} weights need module types, but no model family "
            f"knows whether '{unknown}' is attention or MLP"
        )


@dataclass(frozen=True)
class Term:
    adapter: LoraAdapter
    weight: float = 1.0
    attention: float = 1.0
    mlp: float = 1.0
    layers: tuple[int, int] | None = None  # inclusive

    def __post_init__(self):
        check_module_types(self)

    def weight_for(self, module: str) -> float:
        if self.layers is not None:
            layer = layer_index(module)
            if layer is None or not self.layers[0] <= layer <= self.layers[1]:
                return 0.0
        kind = module_type(module)
        factor = self.attention if kind == "attention" else self.mlp if kind == "mlp" else 1.0
        return self.weight * factor
