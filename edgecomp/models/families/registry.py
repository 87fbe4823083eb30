"""The model-family descriptor and its registry (the family modules register themselves here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

# How each ``Family.activation_op`` is written in the graph: x · Sigmoid(x) (two nodes), or
# ONNX Runtime's FastGelu (the tanh approximation, ``gelu_pytorch_tanh``).
ACTIVATION_OPS = ("SiLU", "FastGelu")

LLAMA_ATTENTION = ("self_attn", "q_proj", "k_proj", "v_proj", "o_proj")
LLAMA_MLP = ("mlp", "gate_proj", "up_proj", "down_proj")
LLAMA_FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}
LLAMA_LORA_TARGETS = ("down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj")


@dataclass(frozen=True, eq=False)
class Family:
    """One decoder architecture, as the graph builder, its torch mirror, composition and training
    read it. Defaults are Llama's; a family states only how it differs."""

    name: str  # the family's own name (tests/tiny.py's kind, error messages)
    model_types: tuple[str, ...]  # the ``model_type`` values of config.json it covers
    activation: str  # the MLP activation as config.json names it (``hidden_activation``/``hidden_act``)
    activation_op: str  # how the graph computes it: one of ACTIVATION_OPS
    norm_offset: float = 0.0  # RMSNorm scales by ``norm_offset + weight`` (Gemma stores w, scales by 1 + w)
    embedding_scale: bool = False  # embeddings are multiplied by sqrt(hidden_size) (Gemma)
    qk_norm: bool = False  # per-head RMSNorm of q and k before rotary; the graph folds the attention scale into q's
    query_scale_key: str | None = None  # config key whose ** -0.5 is the attention scale (None: head_dim's)
    sandwich_norms: bool = False  # Gemma's extra norms: after attention, and before and after the MLP
    attention_biases: tuple[str, ...] = ()  # attention projections that always carry a bias (Qwen2: q/k/v)
    sliding_window_key: str | None = None  # config key of the sliding window, where the family has one
    layer_types_key: str | None = None  # config key listing each layer's attention kind
    rope_theta_key: str = "rope_theta"  # config key of the rotary base (of the full-attention layers)
    local_rope_key: str | None = None  # config key of the sliding layers' own rotary base
    unsupported_keys: tuple[str, ...] = ()  # config keys that, when set, ask for what the graph does not do
    attention_modules: tuple[str, ...] = LLAMA_ATTENTION  # module-name parts that are attention
    mlp_modules: tuple[str, ...] = LLAMA_MLP  # module-name parts that are the MLP
    fused: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(LLAMA_FUSED))  # one MatMul → its parts
    lora_targets: tuple[str, ...] = LLAMA_LORA_TARGETS  # module suffixes LoRA trains: every linear of the blocks
    tiny_config: Mapping[str, object] = field(default_factory=dict)  # extra config keys of the tiny test model
    genai_type: str = "llama"  # onnxruntime-genai's model type for this architecture (genai_config.json)
    gguf_permute_qk: bool = False  # llama.cpp's converter permutes q/k rows of this architecture (Llama)
    # (config, GGUF metadata) → the config keys llama.cpp derives from a GGUF that transformers'
    # GGUF loader leaves at their defaults; applied when a GGUF base is converted
    from_gguf: Callable[[dict, dict], dict] | None = None

    def __post_init__(self):
        if self.activation_op not in ACTIVATION_OPS:
            raise ValueError(f"family {self.name!r}: activation_op must be one of {ACTIVATION_OPS}")
        object.__setattr__(self, "fused", MappingProxyType(dict(self.fused)))
        object.__setattr__(self, "tiny_config", MappingProxyType(dict(self.tiny_config)))


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to the registry; a model type or a module name claimed twice is a bug."""
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is registered twice")
    for other in FAMILIES.values():
        shared = set(family.model_types) & set(other.model_types)
        if shared:
            raise ValueError(f"model types {sorted(shared)} belong to both {other.name!r} and {family.name!r}")
    kinds = module_kinds()
    for kind, names in (("attention", family.attention_modules), ("mlp", family.mlp_modules)):
        clash = sorted(n for n in names if kinds.get(n, kind) != kind)
        if clash:
            raise ValueError(f"family {family.name!r}: {clash} are {kind} here but not in another family")
    FAMILIES[family.name] = family
    return family


def family_for(config: dict) -> Family | None:
    """The family of a config.json (as a dict), or None when no registered family covers its model type."""
    kind = config.get("model_type")
    return next((f for f in FAMILIES.values() if kind in f.model_types), None)


def model_types() -> set[str]:
    """Every ``model_type`` some registered family covers."""
    return {kind for family in FAMILIES.values() for kind in family.model_types}


def module_kinds() -> dict[str, str]:
    """Module-name part → ``"attention"`` or ``"mlp"``, over every registered family."""
    return {
        name: kind
        for family in FAMILIES.values()
        for kind, names in (("attention", family.attention_modules), ("mlp", family.mlp_modules))
        for name in names
    }
