"""Gemma 3 (text): Llama's layout plus Gemma's ``1 + w`` norms, scaled embeddings, per-head q/k
norms, a norm after attention and around the MLP, and sliding-window layers with their own rotary
base. The attention scale comes from ``query_pre_attn_scalar``."""

from .registry import Family, register

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
    )
)
