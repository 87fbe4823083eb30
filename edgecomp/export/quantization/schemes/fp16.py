"""``fp16``: every float weight and activation in float16, for GPUs (:mod:`~edgecomp.export.quantization.float16`).

The residual stream of edgecomp's graph and the graph's inputs and outputs (ids, mask, KV cache,
logits) stay float32, so the runtime feeds it exactly as it feeds fp32.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .registry import Scheme, register

if TYPE_CHECKING:
    import onnx


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """:func:`~edgecomp.export.quantization.float16.convert_fp16`, imported only when a graph is
    converted: the command line reads the schemes for its help and must not load onnx for that."""
    from ..float16 import convert_fp16

    return convert_fp16(model)


register(Scheme(name="fp16", version=8, help="GPUs", convert=to_float16))
