"""ONNX graph surgery of a weight-only quantization: MatMulNBits for the MatMuls, GatherBlockQuantized
for the embedding lookup, a tied embedding / LM head stored once.

A tied embedding / LM head (Gemma, the tiny test models) is stored ONCE: the head's
``MatMulNBits`` and the lookup's ``GatherBlockQuantized`` read the same packed initializer.
``MatMulNBits`` stores ``B`` as ``[N, k_blocks, blob]`` bytes, N = output features = vocabulary
rows, each row in blocks along K = the hidden size (:mod:`~edgecomp.export.quantization.codec`),
scales ``[N, k_blocks]``: that is the embedding table ``[vocab, hidden]`` in blocks along the
hidden axis. ``GatherBlockQuantized`` with uint8 data follows the MatMulNBits conventions (same
nibble order, default zero point 8 / 128), gathers along axis 0 and dequantizes along its last
axis: given the same 3-D bytes it gathers ``[tokens, k_blocks, blob]`` and, with the scales seen as
``[N, k_blocks, 1]`` (a Reshape node, not a second copy), dequantizes each blob as one block; a
Reshape makes that ``[batch, tokens, hidden]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import EdgecompError
from .codec import block_quantize, pack_codes, pack_zero_points, unpack_nibbles
from .gptq import gptq_blocks
from .weight_only import WeightOnlyConfig, graph_layers

# --- the embedding table and the LM head -------------------------------------------------------


@dataclass
class EmbeddingAndHead:
    """The embedding lookup (``Gather`` of ``input_ids``) and the LM head (``MatMul`` by a
    ``[hidden, vocab]`` weight), as found in an optimum decoder graph. ``head`` is None when the
    graph has no MatMul of that shape; ``tied`` says the head weight is the table transposed."""

    gather: onnx.NodeProto
    table: str  # initializer name, [vocab, hidden]
    head: onnx.NodeProto | None
    head_weight: str | None  # initializer name, [hidden, vocab]
    tied: bool


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def find_embedding_and_head(model: onnx.ModelProto) -> EmbeddingAndHead | None:
    """Locate the token embedding and LM head of a decoder graph (fp32 or fp16 weights)."""
    inits = _initializers(model)
    gather = next(
        (
            n
            for n in model.graph.node
            if n.op_type == "Gather"
            and n.input[1] == "input_ids"
            and n.input[0] in inits
            and len(inits[n.input[0]].dims) == 2
        ),
        None,
    )
    if gather is None:
        return None
    vocab, hidden = inits[gather.input[0]].dims
    head = next(
        (
            n
            for n in model.graph.node
            if n.op_type == "MatMul" and n.input[1] in inits and list(inits[n.input[1]].dims) == [hidden, vocab]
        ),
        None,
    )
    if head is None:  # already tied by tie_lm_head: MatMul(x, Transpose(table))
        transposed = {
            n.output[0] for n in model.graph.node if n.op_type == "Transpose" and n.input[0] == gather.input[0]
        }
        head = next((n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in transposed), None)
        return EmbeddingAndHead(gather, gather.input[0], head, None, tied=head is not None)
    table = numpy_helper.to_array(inits[gather.input[0]])
    tied = bool(np.array_equal(table.T, numpy_helper.to_array(inits[head.input[1]])))
    return EmbeddingAndHead(gather, gather.input[0], head, head.input[1], tied)


def tie_lm_head(model: onnx.ModelProto) -> bool:
    """Store a tied LM head once: ``MatMul(x, W)`` with ``W == table.T`` becomes
    ``MatMul(x, Transpose(table))`` and ``W`` goes (in place). ONNX Runtime folds the Transpose
    when the session starts, so this halves the file, not the memory. Returns whether it did."""
    found = find_embedding_and_head(model)
    if found is None or not found.tied or found.head_weight is None:
        return False
    transposed = found.head_weight + "_from_embedding"
    nodes = []
    for node in model.graph.node:
        if node == found.head:
            nodes.append(
                helper.make_node("Transpose", [found.table], [transposed], name=f"{node.name}_tied_weight", perm=[1, 0])
            )
            node.input[1] = transposed
        nodes.append(node)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    keep = [t for t in model.graph.initializer if t.name != found.head_weight]
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(keep)
    return True


def _unpacked_zero_points(zero_points: np.ndarray, k_blocks: int) -> np.ndarray:
    """MatMulNBits' packed 4-bit zero points [N, ceil(k_blocks/2)] → one per byte [N, k_blocks, 1]
    (GatherBlockQuantized reads the 3-D view's single block per row of blobs from the low nibble)."""
    return np.ascontiguousarray(unpack_nibbles(zero_points)[:, :k_blocks, None].astype(np.uint8))


def _indices_rank(model: onnx.ModelProto, name: str) -> int:
    for value in model.graph.input:
        if value.name == name:
            return len(value.type.tensor_type.shape.dim)
    return 2


class _Rewriter:
    """Collects the replacement nodes and new initializers of a weight-only quantization."""

    def __init__(self, model: onnx.ModelProto, config: WeightOnlyConfig):
        self.model, self.config = model, config
        self.inits = _initializers(model)
        self.new_inits: list[onnx.TensorProto] = []
        self.replaced: dict[str, list[onnx.NodeProto]] = {}
        self.dropped: set[str] = set()  # node names removed without replacement
        self.bits_used: dict[int, int] = {}

    def packed(
        self, rows: np.ndarray, prefix: str, bits: int, hessian: np.ndarray | None = None, block: int | None = None
    ) -> tuple[dict, np.ndarray | None]:
        """Quantize ``rows`` [N, K] into new initializers (by GPTQ when given the inputs' Hessian)
        in blocks of ``block`` (default the configuration's); return their names and zero points."""
        block = block or self.config.block_size
        if hessian is not None:
            codes, scales, zeros = gptq_blocks(rows, hessian, bits=bits, block_size=block, config=self.config.gptq)
            packed = pack_codes(codes.reshape(len(codes), -1, block), bits)
            zero_points = pack_zero_points(zeros)
        else:
            packed, scales, zero_points = block_quantize(rows, bits, block, self.config.symmetric)
        names = {"data": f"{prefix}_Q{bits}", "scales": f"{prefix}_scales"}
        self.new_inits += [
            numpy_helper.from_array(packed, names["data"]),
            numpy_helper.from_array(scales, names["scales"]),
        ]
        if zero_points is not None:
            names["zero_points"] = f"{prefix}_zero_points"
            self.new_inits.append(numpy_helper.from_array(zero_points, names["zero_points"]))
        self.bits_used[bits] = self.bits_used.get(bits, 0) + rows.size
        return names, zero_points

    def matmul_nbits(
        self, node: onnx.NodeProto, names: dict, k: int, n: int, bits: int, block: int | None = None
    ) -> None:
        inputs = [node.input[0], names["data"], names["scales"]] + (
            [names["zero_points"]] if "zero_points" in names else []
        )
        attributes = {"K": int(k), "N": int(n), "bits": bits, "block_size": block or self.config.block_size}
        if self.config.accuracy_level:
            attributes["accuracy_level"] = self.config.accuracy_level
        self.replaced[node.name] = [
            helper.make_node(
                "MatMulNBits",
                inputs,
                list(node.output),
                name=f"{node.name}_Q{bits}",
                domain="com.microsoft",
                **attributes,
            )
        ]

    def finish(self) -> None:
        nodes = []
        for node in self.model.graph.node:
            if node.name in self.dropped:
                continue
            nodes.extend(self.replaced.get(node.name, [node]))
        self.model.graph.ClearField("node")
        self.model.graph.node.extend(nodes)
        used = {i for n in self.model.graph.node for i in n.input}
        keep = [t for t in self.model.graph.initializer if t.name in used]
        self.model.graph.ClearField("initializer")
        self.model.graph.initializer.extend(keep + [t for t in self.new_inits if t.name in used])
        if not any(o.domain == "com.microsoft" for o in self.model.opset_import):
            self.model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _embedding_and_head(rw: _Rewriter) -> dict:
    """LM head → MatMulNBits; embedding lookup → GatherBlockQuantized (on the head's blocks if tied).

    Returns what was done, for the manifest.
    """
    config, model, inits = rw.config, rw.model, rw.inits
    found = find_embedding_and_head(model)
    if found is None:
        return {"embedding": "not found"}
    if any(not n.name for n in (found.gather, found.head) if n is not None):
        raise EdgecompError("the embedding or LM head node has no name; cannot rewrite the graph")
    vocab, hidden = inits[found.table].dims
    bits, block = config.head_bits, config.head_block_size or config.block_size
    if hidden % block:  # e.g. blocks of 128 on a 64-wide model: the MatMuls' blocks fit more often
        block = config.block_size
    table = numpy_helper.to_array(inits[found.table]).astype(np.float32, copy=False)
    report: dict = {"vocab": int(vocab), "hidden": int(hidden), "tied": found.tied, "bits": bits, "block_size": block}

    head_names = head_zero_points = None
    if found.head is not None:
        rows = table if found.tied else numpy_helper.to_array(inits[found.head_weight]).T
        head_names, head_zero_points = rw.packed(rows, "lm_head.weight", bits, block=block)
        rw.matmul_nbits(found.head, head_names, hidden, vocab, bits, block)
        if found.head_weight is None:  # the head read tie_lm_head's Transpose of the table
            rw.dropped.update(
                n.name for n in model.graph.node if n.op_type == "Transpose" and n.input[0] == found.table
            )
        report["head"] = f"MatMulNBits {bits}-bit"

    if not config.quantize_embedding or hidden % block:  # the 3-D view needs whole blocks per row
        report["embedding"] = "fp32 Gather"
        return report
    if found.tied and head_names is not None:
        names, zero_points, shared = head_names, head_zero_points, True
    else:
        (names, zero_points), shared = rw.packed(table, "embed_tokens.weight", bits, block=block), False
    k_blocks = hidden // block
    prefix = found.gather.name
    scales_3d, out_4d = f"{prefix}_scales_3d", f"{prefix}_blocks"
    shape_3d, shape_out = f"{prefix}_scales_shape", f"{prefix}_output_shape"
    rank = _indices_rank(model, found.gather.input[1])
    rw.new_inits += [
        numpy_helper.from_array(np.array([0, 0, 1], dtype=np.int64), shape_3d),
        numpy_helper.from_array(np.array([0] * rank + [hidden], dtype=np.int64), shape_out),
    ]
    gather_inputs = [names["data"], found.gather.input[1], scales_3d]
    if zero_points is not None:  # 4-bit asymmetric: one zero point per byte for the 3-D view
        gather_inputs.append(f"{prefix}_zero_points_3d")
        rw.new_inits.append(numpy_helper.from_array(_unpacked_zero_points(zero_points, k_blocks), gather_inputs[-1]))
    rw.replaced[found.gather.name] = [
        helper.make_node("Reshape", [names["scales"], shape_3d], [scales_3d], name=f"{prefix}_scales_view"),
        helper.make_node(
            "GatherBlockQuantized",
            gather_inputs,
            [out_4d],
            name=f"{prefix}_Q{bits}",
            domain="com.microsoft",
            gather_axis=0,
            quantize_axis=2,
            bits=bits,
            block_size=block,
        ),
        helper.make_node("Reshape", [out_4d, shape_out], list(found.gather.output), name=f"{prefix}_merge_blocks"),
    ]
    report["embedding"] = f"GatherBlockQuantized {bits}-bit" + (", sharing the LM head's blocks" if shared else "")
    return report


def head_input(model: onnx.ModelProto) -> str | None:
    """The tensor the LM head multiplies (the final norm's output), or None."""
    found = find_embedding_and_head(model)
    return found.head.input[0] if found is not None and found.head is not None else None


def _matmul_weights(model: onnx.ModelProto, config: WeightOnlyConfig, skip: set[str]):
    """(node, weight initializer, bits) for every named MatMul by a constant 2-D fp32 weight."""
    inits = _initializers(model)
    num_layers = graph_layers(model)
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.name in skip or not node.name:
            continue
        weight = inits.get(node.input[1])
        if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
            continue
        yield node, weight, config.bits_for(node.name, num_layers)


def gptq_inputs(model: onnx.ModelProto, config: WeightOnlyConfig) -> list[str]:
    """The activations whose Hessians GPTQ needs: inputs of the 4-bit MatMuls (not the LM head)."""
    found = find_embedding_and_head(model)
    head = {found.head.name} if found is not None and found.head is not None else set()
    names = {node.input[0] for node, _, bits in _matmul_weights(model, config, head) if bits == 4}
    return sorted(names)


def quantize_weight_only(
    model: onnx.ModelProto, config: WeightOnlyConfig, hessians: dict[str, np.ndarray] | None = None
) -> tuple[onnx.ModelProto, dict]:
    """MatMulNBits for every MatMul by a constant 2-D weight, the embedding and head per ``config``
    (in place; returns the model and what was done). A MatMul whose input has a Hessian in
    ``hessians`` (see :func:`gptq_inputs`) is quantized by GPTQ, the others by rounding."""
    rw = _Rewriter(model, config)
    report = _embedding_and_head(rw)
    hessians = hessians or {}
    by_gptq = 0
    for node, weight, bits in list(_matmul_weights(model, config, set(rw.replaced))):
        k, n = weight.dims
        hessian = hessians.get(node.input[0]) if bits == 4 and not config.symmetric else None
        names, _ = rw.packed(numpy_helper.to_array(weight).T, node.input[1], bits, hessian)
        rw.matmul_nbits(node, names, k, n, bits)
        by_gptq += hessian is not None
    rw.finish()
    report["weights_by_bits"] = {str(b): int(c) for b, c in sorted(rw.bits_used.items())}
    if config.eight_bit_layers:  # what the request resolved to (nothing, in a shallow model)
        report["eight_bit_layers"] = config.layers_in_8_bit(graph_layers(model))
    if hessians:
        report["gptq_matmuls"] = by_gptq
    return model, report
