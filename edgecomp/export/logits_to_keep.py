"""Give an exported decoder a ``logits_to_keep`` input, so a prompt pays for one lm_head row.

optimum's decoder returns logits for every input position. With Gemma3's 262k vocabulary the
lm_head is most of a prompt pass (2 × 640 × 262,144 multiply-adds per position, more than all 18
layers together) and its output is 1 MiB per position, which is why the runtime cuts prompts into
256-token passes. This inserts ``Slice(hidden, -logits_to_keep, end, axis=1)`` in front of the
lm_head: ``logits_to_keep = 0`` keeps every position (the graph computes what it did before, as
``transformers``' ``logits_to_keep=0`` does), ``1`` only the last. The input has a default, 0 (an
initializer of the same name), so callers that do not know it (optimum's ``ORTModelForCausalLM``,
onnxruntime-genai, a plain onnxruntime loop) run the graph as a standard decoder. The runtime feeds
it (:class:`~edgecomp.runtime.session.DecoderSession`).

The export step applies it to every export (:func:`edgecomp.export.quantization.apply.quantize_model`); it
needs ``onnx``, which a device running summaries does not, and the runtime never imports it.
"""

from __future__ import annotations

from pathlib import Path

INPUT = "logits_to_keep"
# Between the lm_head and the ``logits`` output: Gemma2-style soft-capping (Div, Tanh, Mul), casts,
# and int8 dynamic quantization's rescaling (Mul, Cast).
_TAIL_OPS = {"Mul", "Div", "Tanh", "Cast", "Add", "Identity"}
_MATMULS = {"MatMul", "MatMulNBits", "Gemm", "MatMulInteger", "FusedMatMul"}


def _lm_head_input(graph) -> tuple[str, list]:
    """The hidden-state tensor the lm_head reads, and the nodes that read it for the lm_head."""
    producer = {out: node for node in graph.node for out in node.output}
    node = producer.get("logits")
    while node is not None and node.op_type in _TAIL_OPS:
        node = producer.get(node.input[0])
    if node is None or node.op_type not in _MATMULS:
        raise ValueError("cannot find the lm_head in front of the graph's logits output")
    hidden, readers = node.input[0], [node]
    quantizer = producer.get(hidden)
    if quantizer is not None and quantizer.op_type == "DynamicQuantizeLinear":
        hidden, readers = quantizer.input[0], [quantizer]
    return hidden, readers


def add_logits_to_keep_proto(model) -> bool:
    """Patch a ModelProto in place; False if it already has the input."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    if any(i.name == INPUT for i in graph.input):
        return False
    hidden, readers = _lm_head_input(graph)
    kept = f"{hidden}/last_{INPUT}"
    prefix = f"/edgecomp/{INPUT}"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0, dtype=np.int64), INPUT),  # the default: every position
            numpy_helper.from_array(np.array([1], dtype=np.int64), f"{prefix}/shape"),
            numpy_helper.from_array(np.array([np.iinfo(np.int64).max], dtype=np.int64), f"{prefix}/ends"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), f"{prefix}/axes"),
        ]
    )
    nodes = [
        helper.make_node("Neg", [INPUT], [f"{prefix}/neg"], name=f"{prefix}/Neg"),
        helper.make_node(
            "Reshape", [f"{prefix}/neg", f"{prefix}/shape"], [f"{prefix}/starts"], name=f"{prefix}/Reshape"
        ),
        helper.make_node(
            "Slice", [hidden, f"{prefix}/starts", f"{prefix}/ends", f"{prefix}/axes"], [kept], name=f"{prefix}/Slice"
        ),
    ]
    for reader in readers:
        reader.input[0] = kept
    # Insert right before the first reader so the node list stays topologically sorted.
    at = min(list(graph.node).index(r) for r in readers)
    for offset, node in enumerate(nodes):
        graph.node.insert(at + offset, node)
    graph.input.append(helper.make_tensor_value_info(INPUT, TensorProto.INT64, []))
    for output in graph.output:
        if output.name == "logits":
            dims = output.type.tensor_type.shape.dim
            if len(dims) == 3:
                dims[1].Clear()
                dims[1].dim_param = "logits_length"
    return True


def add_logits_to_keep(model_path: str | Path) -> bool:
    """Patch ``model_path`` (an exported ``model.onnx``) in place; False if it already had the input.

    External data files stay as they are (only the graph changes), so a large model is rewritten
    without loading its weights.
    """
    import onnx

    from .onnx_io import save_model

    model_path = Path(model_path)
    model = onnx.load(str(model_path), load_external_data=False)
    if not add_logits_to_keep_proto(model):
        return False
    if not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        onnx.checker.check_model(model)  # (with external data the checker wants the weight files)
    tmp = model_path.with_name(model_path.name + ".tmp")
    save_model(model, tmp, external=False)
    tmp.replace(model_path)
    return True
