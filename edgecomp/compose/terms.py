"""One adapter in a composition, with its weight, per-module-type weights and layer range.

The weight an adapter contributes to a module is ``weight × (attention | mlp weight) × [layer in
range]``, so ``lang_sw`` can count fully in the MLPs and half in attention, or only in the lower
layers. Module types and layer numbers are read from PEFT/transformers module names
(``model.layers.3.self_attn.q_proj``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .adapters import LoraAdapter

_LAYER = re.compile(r"\.layers\.(\d+)\.")
ATTENTION = ("self_attn", "attention", "q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("mlp", "gate_proj", "up_proj", "down_proj", "fc1", "fc2")


def module_type(module: str) -> str | None:
    parts = module.split(".")
    if any(p in ATTENTION for p in parts):
        return "attention"
    if any(p in MLP for p in parts):
        return "mlp"
    return None


def layer_index(module: str) -> int | None:
    match = _LAYER.search(module)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Term:
    adapter: LoraAdapter
    weight: float = 1.0
    attention: float = 1.0
    mlp: float = 1.0
    layers: tuple[int, int] | None = None  # inclusive

    def weight_for(self, module: str) -> float:
        if self.layers is not None:
            layer = layer_index(module)
            if layer is None or not self.layers[0] <= layer <= self.layers[1]:
                return 0.0
        kind = module_type(module)
        factor = self.attention if kind == "attention" else self.mlp if kind == "mlp" else 1.0
        return self.weight * factor
