"""Load a resolved base for training or merging, and its tokenizer.

Weights load from safetensors unless the caller allows pickle (``allow_pickle``, for a folder that
has only ``.bin`` weights), and a model's own Python code (``auto_map`` in its config) runs only with
``trust_remote_code``: both are code execution from a downloaded file, so both are opt-in. On GPU the
compute dtype is bf16, on CPU fp32 (bitsandbytes' CPU kernels and most CPUs have no fast bf16 path).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgecompError, first_line
from ..finite import check_finite
from ..model_folder import read_config
from .nf4 import nf4_config


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``device`` ("auto" resolved), refused in one line when PyTorch here cannot use it."""
    import torch

    if device == "auto":
        return default_device()
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available():
            raise EdgecompError(f"--device {device}: PyTorch here sees no CUDA GPU (torch {torch.__version__})")
        if index >= torch.cuda.device_count():
            raise EdgecompError(f"--device {device}: there are {torch.cuda.device_count()} CUDA devices")
    return device


def compute_dtype(device: str):
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def _check_remote_code(path: Path, trust_remote_code: bool) -> None:
    """Refuse, with a clear message, a model whose architecture exists only as its own code."""
    from transformers import CONFIG_MAPPING

    config = read_config(path)
    if config.get("auto_map") and config.get("model_type") not in CONFIG_MAPPING and not trust_remote_code:
        raise EdgecompError(
            f"{path}: the model's architecture is Python code shipped with it (auto_map in config.json), "
            "which edgecomp does not run; pass --trust-remote-code if you trust its source"
        )


def load_causal_lm(
    path: Path,
    *,
    qlora: bool = False,
    device: str = "cpu",
    dtype=None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
):
    """A causal LM from a checkpoint folder: NF4 with double quantization if ``qlora``."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    path = Path(path)
    _check_remote_code(path, trust_remote_code)
    dtype = dtype or compute_dtype(device)
    use_safetensors = not allow_pickle or any(path.glob("*.safetensors"))  # safetensors first when both exist
    kwargs = dict(dtype=dtype, use_safetensors=use_safetensors, trust_remote_code=trust_remote_code)
    if qlora:
        kwargs.update(quantization_config=nf4_config(dtype), device_map={"": device})
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kwargs)
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as e:
        raise EdgecompError(f"{path}: the model cannot be loaded ({first_line(e)})") from None
    missing = info.get("missing_keys") or []
    if missing:
        raise EdgecompError(
            f"{path}: the weights lack {len(missing)} tensor(s) the config needs (e.g. '{sorted(missing)[0]}'): "
            "a damaged or mismatched checkpoint"
        )
    check_finite(model.state_dict().items(), path)
    return model if qlora else model.to(device)
