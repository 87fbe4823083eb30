"""Model families: one descriptor per decoder architecture edgecomp knows, in one module each.

A :class:`Family` says everything the rest of edgecomp needs to know about an architecture: how
edgecomp's ONNX graph (:mod:`edgecomp.export.decoder_graph`) and its PyTorch mirror
(:mod:`edgecomp.export.quantization.quantized_torch`) compute a layer, which module names are
attention and which MLP (composition's per-type weights, :mod:`edgecomp.compose.terms`), which
modules LoRA trains (:mod:`edgecomp.train.lora`) and a tiny test configuration (``tests/tiny.py``).
Adding an architecture is one module here that calls :func:`register`; nothing else branches on
a model type. The package imports nothing heavy (no torch, no onnx), so composing adapters does
not pay for it.
"""

from . import gemma3, llama, qwen2, qwen3  # noqa: F401  (each registers its family)
from .registry import FAMILIES, Family, family_for, model_types, module_kinds, register

__all__ = ["FAMILIES", "Family", "family_for", "model_types", "module_kinds", "register"]
