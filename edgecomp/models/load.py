"""Load a resolved base for training or merging, and its tokenizer.

Weights load from safetensors only and never with ``trust_remote_code``. On GPU the compute dtype is
bf16, on CPU fp32 (bitsandbytes' CPU kernels and most CPUs have no fast bf16 path).
"""

from __future__ import annotations

from pathlib import Path

from .quantize import nf4_config


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compute_dtype(device: str):
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def load_causal_lm(path: Path, *, qlora: bool = False, device: str = "cpu", dtype=None):
    """A causal LM from a checkpoint folder: NF4 with double quantization if ``qlora``."""
    from transformers import AutoModelForCausalLM

    dtype = dtype or compute_dtype(device)
    kwargs = dict(dtype=dtype, use_safetensors=True, trust_remote_code=False)
    if qlora:
        kwargs.update(quantization_config=nf4_config(dtype), device_map={"": device})
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model if qlora else model.to(device)
