"""Any composition as one LoRA ``{module: (A, B)}`` with one scale, so it can be written as an adapter.

Exact factors are passed through unchanged. Dense updates (a method whose ``output`` is ``dense``),
or any composition when a rank is asked for (``delta``'s concatenated rank Σrᵢ can be large), become
the truncated SVD B·A of ΔW, the best rank-r approximation in Frobenius norm (Eckart–Young).
Truncation loses part of the update, so the relative error per module is reported rather than left
silent.
"""

from __future__ import annotations

from ..errors import EdgecompError
from .methods import METHODS, Composed


def _svd(composed: Composed, module: str):
    """``U, S, Vᴴ`` of ΔW. From the factors when the composition is low-rank (exact and cheap: QR of
    B and Aᵀ, then the SVD of the small core), else of the dense ΔW in fp32."""
    import torch

    if module in composed.low_rank:
        a, b = composed.low_rank[module]
        qb, rb = torch.linalg.qr(b.double())
        qa, ra = torch.linalg.qr(a.double().T)
        u, s, vh = torch.linalg.svd(composed.scale * rb @ ra.T)
        return qb @ u, s, vh @ qa.T
    return torch.linalg.svd(composed.dense[module].float(), full_matrices=False)


def _truncated_svd(composed: Composed, module: str, rank: int):
    """(A [k, in], B [out, k], relative error) with k = min(rank, available), B = U√S, A = √S·Vᴴ.

    The balanced split keeps A and B on a similar scale. The relative Frobenius error of the
    truncation is sqrt(Σ_{i>k} sᵢ²) / sqrt(Σ sᵢ²) (Eckart–Young), read off the singular values.
    """
    u, s, vh = _svd(composed, module)
    k = min(rank, s.numel())
    root = s[:k].sqrt()
    a, b = (root[:, None] * vh[:k]).float(), (u[:, :k] * root).float()
    total = float(s.square().sum())
    error = (float(s[k:].square().sum()) / total) ** 0.5 if total > 0 else 0.0
    return a, b, error


def check_writable(method: str, rank: int | None) -> None:
    """Refuse, before any work, to write a method's full-rank update as an adapter without ``rank``."""
    if rank is None and METHODS[method].output == "dense":
        raise _full_rank()


def _full_rank() -> EdgecompError:
    dense = ", ".join(f"'{m.name}'" for m in METHODS.values() if m.output == "dense")
    return EdgecompError(
        f"the composition is a full-rank update (methods {dense} give one); "
        "pass --rank to write it as an adapter (merging it into the base works without)"
    )


def to_low_rank(composed: Composed, rank: int | None = None) -> tuple[dict, float, dict]:
    """``(low_rank, scale, report)``: exact factors when ``rank`` is None, else a rank-``rank`` SVD.

    PEFT's format has one rank for all modules, so modules smaller than ``rank`` (where the SVD is
    exact at min(out, in)) are padded with zero rows/columns up to the common rank, which is
    ``rank`` clipped to the largest min(out, in).
    """
    import torch

    if rank is None:
        if composed.dense:
            raise _full_rank()
        return composed.low_rank, composed.scale, {"exact": True}
    factors = {module: _truncated_svd(composed, module, rank) for module in composed.modules}
    common = max(a.shape[0] for a, _, _ in factors.values())
    low_rank = {}
    for module, (a, b, _) in factors.items():
        pad = common - a.shape[0]
        low_rank[module] = (
            torch.cat([a, a.new_zeros(pad, a.shape[1])]),
            torch.cat([b, b.new_zeros(b.shape[0], pad)], dim=1),
        )
    errors = {module: error for module, (_, _, error) in factors.items()}
    report = {
        "exact": False,
        "rank": common,
        "relative_error": {"max": max(errors.values()), "mean": sum(errors.values()) / len(errors)},
        "per_module": errors,
    }
    return low_rank, 1.0, report
