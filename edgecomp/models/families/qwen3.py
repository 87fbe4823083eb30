"""Qwen3: Llama's decoder with a per-head RMSNorm of q and k before rotary (plain ``w``, no Gemma
offset; the attention scale stays head_dim ** -0.5).

Its optional sliding-window layers (``use_sliding_window``, off in the released checkpoints) are
not built by edgecomp's graph: such a config is exported by optimum. The tiny test model unties
its LM head, so one family covers that path of the graph."""

from .registry import Family, register

QWEN3 = register(
    Family(
        name="qwen3",
        model_types=("qwen3",),
        activation="silu",
        activation_op="SiLU",
        qk_norm=True,
        unsupported_keys=("use_sliding_window",),
        tiny_config={"head_dim": 16, "use_sliding_window": False, "tie_word_embeddings": False},
        genai_type="qwen3",
    )
)
