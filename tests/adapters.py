"""Random LoRA adapters on a tiny base, saved in PEFT's format (B is random too, unlike PEFT's init)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def make_adapter(
    base_dir: Path,
    out: Path,
    seed: int,
    rank: int = 4,
    alpha: float = 8.0,
    targets=("q_proj", "v_proj", "down_proj"),
    meta: dict | None = None,
) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False)
    model = get_peft_model(model, cfg)
    model.save_pretrained(out)
    if meta is not None:
        (out / "edgecomp.json").write_text(json.dumps(meta))
    return out
