"""Refuse tensors with NaN or infinity where they enter: adapters, checkpoints, bases.

A NaN in one LoRA factor spreads through every composition and merge that uses it, and only a
later export's verification would notice, with a message about logits. Checking where a file is
read names the file and the tensor instead. Only floating-point tensors are checked (NF4 weights
are packed integers).
"""

from __future__ import annotations

from typing import Iterable, Tuple

from .errors import EdgecompError


def check_finite(tensors: Iterable[Tuple[str, object]], source) -> None:
    """Raise, naming ``source`` and the first bad tensor, if a ``(name, tensor)`` holds NaN or inf."""
    import torch

    for name, tensor in tensors:
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        finite = torch.isfinite(tensor)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise EdgecompError(
                f"{source}: tensor '{name}' holds {bad} NaN or infinite value{'s' if bad > 1 else ''} "
                "(a damaged file or a diverged training run)"
            )
