"""Llama: RMSNorm, SiLU-gated MLP, rotary attention without biases; the defaults of :class:`Family`,
except that llama.cpp stores its q/k rows permuted (its rotary pairs interleaved)."""

from .registry import Family, register

LLAMA = register(
    Family(name="llama", model_types=("llama",), activation="silu", activation_op="SiLU", gguf_permute_qk=True)
)
