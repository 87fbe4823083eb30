"""Which layers get LoRA, and the PEFT config.

"All linear layers of the blocks" (the QLoRA recipe): every ``nn.Linear`` (bitsandbytes'
``Linear4bit`` is one) inside the decoder layers, by their module suffix (``q_proj``, ``down_proj``…),
so the embedding and the tied LM head stay frozen and unadapted.
"""

from __future__ import annotations


def block_linear_suffixes(model) -> list[str]:
    import torch

    layers = model.get_decoder().layers
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in layers.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    return sorted(names)


def lora_config(model, rank: int, alpha: float, dropout: float):
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=block_linear_suffixes(model),
        bias="none",
        task_type="CAUSAL_LM",
    )
