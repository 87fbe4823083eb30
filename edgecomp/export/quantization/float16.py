"""The ``fp16`` graph: float16 weights and activations, the residual stream and the graph's edges float32.

The graph's inputs and outputs (ids, mask, KV cache, logits) stay float32, with Casts at the
boundary, so the runtime feeds it exactly as it feeds fp32. The residual stream of edgecomp's
graph stays float32 too (:func:`residual_in_fp32`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` in float16 but for its inputs, outputs and residual stream (see the module docstring)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    residual_in_fp32(model)
    return model


def residual_in_fp32(model: onnx.ModelProto) -> int:
    """Run every SkipSimplifiedLayerNormalization (edgecomp's graph: each residual add and the norm
    after it) in float32, so the residual stream between them never becomes float16.

    Gemma 3's residual at the BOS position outgrows float16's range (65,504) in the middle layers,
    and the inf turns into NaN logits. The normalized outputs (bounded) go back to float16 for the
    MatMuls; only the residual stays float32. Returns the nodes changed.
    """
    inits = {t.name: t for t in model.graph.initializer}
    skip_nodes = [n for n in model.graph.node if n.op_type == "SkipSimplifiedLayerNormalization"]
    fp32_outputs = {n.output[3] for n in skip_nodes if len(n.output) > 3 and n.output[3]}
    nodes = []
    for node in model.graph.node:
        if node.op_type != "SkipSimplifiedLayerNormalization":
            nodes.append(node)
            continue
        for index in (0, 1):  # the update and the residual, unless the residual is already float32
            if node.input[index] not in fp32_outputs:
                cast = f"{node.input[index]}/fp32"
                nodes.append(
                    helper.make_node(
                        "Cast",
                        [node.input[index]],
                        [cast],
                        name=f"{node.name}/cast_in{index}",
                        to=onnx.TensorProto.FLOAT,
                    )
                )
                node.input[index] = cast
        gamma = inits.get(node.input[2])
        if gamma is not None and gamma.data_type == onnx.TensorProto.FLOAT16:
            gamma.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(gamma).astype(np.float32), gamma.name))
        normalized = node.output[0]
        node.output[0] = f"{normalized}/fp32"
        nodes += [
            node,
            helper.make_node(
                "Cast", [node.output[0]], [normalized], name=f"{node.name}/cast_out", to=onnx.TensorProto.FLOAT16
            ),
        ]
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    return len(skip_nodes)
