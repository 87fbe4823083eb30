"""Write a composition as a standard PEFT LoRA adapter, so it can be served unmerged.

PEFT, llama.cpp's ``convert_lora_to_gguf.py`` and onnxruntime-genai's multi-LoRA all read this
format. One rank for every module (``r``), and ``lora_alpha = scale · r`` so PEFT's scale
``alpha / r`` is the composition's. The config is the first adapter's with ``r``/``lora_alpha``
replaced; tensors are written with sorted keys, so the same composition gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgecompError
from ..fsutil import write_json
from .adapters import CONFIG, META, WEIGHTS

_PREFIX = "base_model.model."


def write_peft_adapter(
    out: Path, low_rank: dict, scale: float, template_config: dict, meta: dict, dtype: str = "float32"
) -> None:
    """``low_rank``: module → (A [r, in], B [out, r]), every module of the same rank ``r``, stored as ``dtype``."""
    import torch
    from safetensors.torch import save_file

    ranks = {a.shape[0] for a, _ in low_rank.values()}
    if len(ranks) != 1:
        raise EdgecompError(f"composed modules have different ranks {sorted(ranks)}; pass --rank")
    rank = ranks.pop()
    tensors = {}
    for module in sorted(low_rank):
        a, b = low_rank[module]
        tensors[f"{_PREFIX}{module}.lora_A.weight"] = a.to(getattr(torch, dtype)).contiguous()
        tensors[f"{_PREFIX}{module}.lora_B.weight"] = b.to(getattr(torch, dtype)).contiguous()
    config = {
        **template_config,
        "r": rank,
        "lora_alpha": scale * rank,
        "use_rslora": False,
        "rank_pattern": {},
        "alpha_pattern": {},
        "lora_dropout": 0.0,
        "inference_mode": True,
    }
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    write_json(out / CONFIG, config)
    write_json(out / META, meta)
