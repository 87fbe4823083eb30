"""What a method returns: exact low-rank factors with one scale, or dense ΔW per module.

Exact factors ``{module: (A, B)}`` merge like any adapter (ΔW = scale·B·A) and are written back as
a PEFT adapter as they are; dense updates need a truncated SVD for that (:mod:`..lowrank`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..terms import Term


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


def adapter_update(term: Term, module: str):
    """Adapter ΔWᵢ = sᵢ·Bᵢ·Aᵢ of one module, unweighted, [out, in] fp32: what dense methods start from."""
    a, b = term.adapter.weights[module]
    return term.adapter.scale * (b @ a)
