"""Which layers get LoRA, and the PEFT config.

"All linear layers of the blocks" (the QLoRA recipe), by their module suffix (``q_proj``,
``down_proj``…), so the embedding and the tied LM head stay frozen and unadapted. A model of a known
family (:mod:`edgecomp.models.families`) gets its family's ``lora_targets``; any other model gets
every ``nn.Linear`` (bitsandbytes' ``Linear4bit`` is one) found inside its decoder layers.
"""

from __future__ import annotations

from ..models.families import family_for


def block_linear_suffixes(model) -> list[str]:
    import torch

    layers = model.get_decoder().layers
    names = {name.rsplit(".", 1)[-1] for name, module in layers.named_modules() if isinstance(module, torch.nn.Linear)}
    return sorted(names)


def lora_targets(model) -> list[str]:
    """The module suffixes LoRA trains: the family's when it is known, else the ones found."""
    family = family_for({"model_type": getattr(model.config, "model_type", None)})
    return sorted(family.lora_targets) if family else block_linear_suffixes(model)


def lora_config(model, rank: int, alpha: float, dropout: float):
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_targets(model),
        bias="none",
        task_type="CAUSAL_LM",
    )
