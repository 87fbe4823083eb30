"""Llama: RMSNorm, SiLU-gated MLP, rotary attention without biases; every default of :class:`Family`."""

from .registry import Family, register

LLAMA = register(Family(name="llama", model_types=("llama",), activation="silu", activation_op="SiLU"))
