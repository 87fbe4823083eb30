"""Qwen2 (and Qwen2.5): Llama's decoder with a bias on the q, k and v projections (not on o).

Its optional sliding-window layers (``use_sliding_window``, off in the released checkpoints) are
not built by edgecomp's graph: such a config is exported by optimum."""

from .registry import Family, register

QWEN2 = register(
    Family(
        name="qwen2",
        model_types=("qwen2",),
        activation="silu",
        activation_op="SiLU",
        attention_biases=("q_proj", "k_proj", "v_proj"),
        unsupported_keys=("use_sliding_window",),
        tiny_config={"use_sliding_window": False},
        genai_type="qwen2",
    )
)
