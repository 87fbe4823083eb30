"""Merge a composed LoRA into the base weights and write a plain HF checkpoint.

``original`` adds ΔW to the full-precision base; ``dequantized`` first replaces every block linear
weight by its NF4 round trip, i.e. the weights a QLoRA adapter was trained against.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import EdgecompError
from .methods import Composed

MERGE_BASES = ("original", "dequantized")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def nf4_dequantize_blocks(model) -> None:
    """Replace each linear weight of the decoder layers by its NF4 round trip, in place."""
    import torch

    from ..models.nf4 import nf4_roundtrip

    with torch.no_grad():
        for module in model.get_decoder().layers.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(nf4_roundtrip(module.weight))


def add_deltas(model, composed: Composed) -> None:
    """W += ΔW for every composed module, in place (fp32 arithmetic)."""
    import torch

    with torch.no_grad():
        for name in composed.modules:
            try:
                weight = model.get_submodule(name).weight
            except AttributeError:
                raise EdgecompError(f"the base has no module '{name}' that the adapters target") from None
            delta = composed.delta(name)
            if delta.shape != weight.shape:
                raise EdgecompError(
                    f"module '{name}': adapter shape {tuple(delta.shape)} does not fit base {tuple(weight.shape)}"
                )
            weight.add_(delta.to(weight.dtype))


def merged_model(
    base_path: Path,
    composed: Composed | None,
    merge_base: str,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
):
    """The base model (fp32, CPU) with ``ΔW`` added to its weights (NF4 round trip first with
    ``dequantized``)."""
    import torch

    from ..models.load import load_causal_lm

    if merge_base not in MERGE_BASES:
        raise EdgecompError(f"--merge-base must be one of {', '.join(MERGE_BASES)}")
    model = load_causal_lm(
        base_path, device="cpu", dtype=torch.float32, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    if merge_base == "dequantized":
        nf4_dequantize_blocks(model)
    if composed is not None:
        add_deltas(model, composed)
    return model


def save_checkpoint(model, base_path: Path, out_dir: Path) -> Path:
    """``model`` as a safetensors checkpoint with the base's tokenizer files in ``out_dir``."""
    model.save_pretrained(out_dir, safe_serialization=True)
    for name in TOKENIZER_FILES:
        if (base_path / name).is_file():
            shutil.copy2(base_path / name, out_dir / name)
    return out_dir


def merged_checkpoint(
    base_path: Path,
    composed: Composed | None,
    merge_base: str,
    out_dir: Path,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """Write ``base (+ ΔW)`` as a safetensors checkpoint with the base's tokenizer into ``out_dir``."""
    model = merged_model(
        base_path, composed, merge_base, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    return save_checkpoint(model, base_path, out_dir)
