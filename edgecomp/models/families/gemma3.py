"""Gemma 3 (text): Llama's layout plus Gemma's ``1 + w`` norms, scaled embeddings, per-head q/k
norms, a norm after attention and around the MLP, and sliding-window layers with their own rotary
base. The attention scale comes from ``query_pre_attn_scalar``."""

from .registry import Family, register


def _from_gguf(config: dict, meta: dict) -> dict:
    """What llama.cpp's Gemma 3 loader reads or assumes: the attention scale is 1/sqrt(head_dim)
    (1/sqrt(hidden/heads) for the 62-layer 27B), the layers' attention kinds follow
    ``attention.sliding_window_pattern`` (every sixth layer global when it is absent; all global
    without a window), and the sliding layers' rotary base is ``rope.freq_base_swa`` when given."""
    arch, layers = meta["general.architecture"], config["num_hidden_layers"]
    out = {
        "query_pre_attn_scalar": (
            config["hidden_size"] // config["num_attention_heads"] if layers == 62 else config["head_dim"]
        )
    }
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern", 6)
    if not meta.get(f"{arch}.attention.sliding_window"):
        sliding = [False] * layers
    elif hasattr(pattern, "__len__"):
        sliding = [bool(p) for p in pattern]
    else:
        sliding = [int(pattern) == 0 or i % int(pattern) < int(pattern) - 1 for i in range(layers)]
    out["layer_types"] = ["sliding_attention" if s else "full_attention" for s in sliding]
    if f"{arch}.rope.freq_base_swa" in meta:
        out["rope_local_base_freq"] = float(meta[f"{arch}.rope.freq_base_swa"])
    return out


GEMMA3 = register(
    Family(
        name="gemma3",
        model_types=("gemma3_text",),
        activation="gelu_pytorch_tanh",
        activation_op="FastGelu",
        norm_offset=1.0,
        embedding_scale=True,
        qk_norm=True,
        query_scale_key="query_pre_attn_scalar",
        sandwich_norms=True,
        sliding_window_key="sliding_window",
        layer_types_key="layer_types",
        local_rope_key="rope_local_base_freq",
        tiny_config={
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 8,
            "layer_types": ["sliding_attention", "full_attention"],
        },
        genai_type="gemma3_text",
        from_gguf=_from_gguf,
    )
)
