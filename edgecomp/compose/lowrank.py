"""Any composition as one LoRA ``{module: (A, B)}`` with one scale, so it can be written as an adapter.

Exact factors are passed through unchanged. Dense updates (``ties``, ``dare``), or any composition
when a rank is asked for (``delta``'s concatenated rank Σrᵢ can be large), become the truncated SVD
B·A of ΔW, the best rank-r approximation in Frobenius norm (Eckart–Young). Truncation loses part of
the update, so the relative error per module is reported rather than left silent.
"""

from __future__ import annotations

from ..errors import EdgecompError
from .methods import Composed


def _truncated_svd(delta, rank: int):
    """(A [k, in], B [out, k], relative error) with k = min(rank, out, in), split as B = U√S, A = √S·Vᴴ.

    The SVD runs in float64 so the factors are accurate to fp32; the error is that of the fp32
    factors actually written. The balanced split keeps A and B on a similar scale.
    """
    import torch

    w = delta.double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    k = min(rank, s.numel())
    root = s[:k].sqrt()
    a, b = (root[:, None] * vh[:k]).float(), (u[:, :k] * root).float()
    norm = torch.linalg.matrix_norm(w)
    error = float(torch.linalg.matrix_norm(w - b.double() @ a.double()) / norm) if norm > 0 else 0.0
    return a, b, error


def to_low_rank(composed: Composed, rank: int | None = None) -> tuple[dict, float, dict]:
    """``(low_rank, scale, report)``: exact factors when ``rank`` is None, else a rank-``rank`` SVD.

    PEFT's format has one rank for all modules, so modules smaller than ``rank`` (where the SVD is
    exact at min(out, in)) are padded with zero rows/columns up to the common rank, which is
    ``rank`` clipped to the largest min(out, in).
    """
    import torch

    if rank is None:
        if composed.dense:
            raise EdgecompError(
                "the composition is a full-rank update (methods 'ties' and 'dare' give one); "
                "pass --rank to write it as an adapter (merging it into the base works without)"
            )
        return composed.low_rank, composed.scale, {"exact": True}
    factors = {module: _truncated_svd(composed.delta(module), rank) for module in composed.modules}
    common = max(a.shape[0] for a, _, _ in factors.values())
    low_rank = {}
    for module, (a, b, _) in factors.items():
        pad = common - a.shape[0]
        low_rank[module] = (torch.cat([a, a.new_zeros(pad, a.shape[1])]),
                            torch.cat([b, b.new_zeros(b.shape[0], pad)], dim=1))
    errors = {module: error for module, (_, _, error) in factors.items()}
    report = {
        "exact": False,
        "rank": common,
        "relative_error": {"max": max(errors.values()), "mean": sum(errors.values()) / len(errors)},
        "per_module": errors,
    }
    return low_rank, 1.0, report
