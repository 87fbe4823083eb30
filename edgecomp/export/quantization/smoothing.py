"""Scale activation channels into the weights before block quantization (exact in real arithmetic).

Block quantization gives every block of 32 input channels one scale. Where a few channels of a
layer's input are far larger than the rest (Gemma's norms make such channels), one scale a block
serves them badly twice over: ONNX Runtime's int8 activations (MatMulNBits ``accuracy_level=4``)
lose the small channels, and the 4-bit weights of the important channels get no more levels than
the others. Dividing input channel j by ``s_j`` and multiplying the weights' row j by ``s_j``
changes nothing in real arithmetic and moves that imbalance where the quantizer handles it: into
the weights, quantized per block of 32 values of one output, with the division folded into the
RMSNorm scale that produces the input (no extra node).

- :func:`smooth_tied_head`: SmoothQuant (Xiao et al., 2023) for a tied LM head (the table is
  shared with the embedding lookup, which gets the inverse back with one Mul);
- :func:`scale_norm_inputs`: AWQ-style (Lin et al., 2024) scales for the MatMuls that read a norm
  (q/k/v, gate/up), the exponent chosen per layer from the calibration Hessian, before GPTQ.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .codec import block_quantize, dequantize_blocks
from .rewrite import find_embedding_and_head

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
NORMS = {"SimplifiedLayerNormalization": 1, "SkipSimplifiedLayerNormalization": 2}  # op → its scale input


def _norm_scale(node: onnx.NodeProto | None, output: str) -> str | None:
    """The scale initializer name of an RMSNorm node whose normalized output is ``output``."""
    if node is None or node.op_type not in NORMS or not node.output or node.output[0] != output:
        return None
    index = NORMS[node.op_type]
    return node.input[index] if len(node.input) > index else None


def smooth_tied_head(model: onnx.ModelProto, mean_square: np.ndarray, alpha: float = 0.5) -> dict | None:
    """SmoothQuant (Xiao et al., 2023) for a tied LM head, in place, exact in real arithmetic.

    On CPU, MatMulNBits quantizes its input to int8 in blocks of 32 channels; the head's input (the
    final norm's output) has a few channels far larger than the rest, and one scale a block then
    leaves the others a handful of levels. ``mean_square``: E[x_j²] of the head input on
    calibration text. Scaling channel j of the table by ``s_j = rms_j^α / max|E_j|^(1-α)`` and the
    head input by ``1/s_j`` moves that range into the weights, which are quantized per block of
    rows anyway: the final norm's scale absorbs ``1/s`` (or a Mul does), and one Mul by ``1/s``
    after the embedding lookup gives the model its embeddings back. Returns what was done.
    """
    found = find_embedding_and_head(model)
    if found is None or found.head is None or not found.tied:
        return None
    inits = {t.name: t for t in model.graph.initializer}
    table = numpy_helper.to_array(inits[found.table]).astype(np.float32)
    s = np.maximum(mean_square, 1e-16) ** (alpha / 2) / np.maximum(np.abs(table).max(axis=0), 1e-8) ** (1 - alpha)
    s = (s / np.exp(np.log(s).mean())).astype(np.float32)  # geometric mean 1: weights keep their scale
    inits[found.table].CopyFrom(numpy_helper.from_array(table * s, found.table))
    if found.head_weight is not None:
        weight = numpy_helper.to_array(inits[found.head_weight]).astype(np.float32)
        inits[found.head_weight].CopyFrom(numpy_helper.from_array(weight * s[:, None], found.head_weight))
    inverse = numpy_helper.from_array((1.0 / s).astype(np.float32), "/edgecomp/smooth/inverse")
    model.graph.initializer.append(inverse)

    nodes = list(model.graph.node)
    looked_up = found.gather.output[0]
    found.gather.output[0] = f"{looked_up}/smoothed"
    unsmooth = helper.make_node(
        "Mul", [found.gather.output[0], inverse.name], [looked_up], name="/edgecomp/smooth/embedding"
    )
    nodes.insert(nodes.index(found.gather) + 1, unsmooth)
    hidden = found.head.input[0]
    producer = next((n for n in nodes if hidden in n.output), None)
    readers = [n for n in nodes if hidden in n.input]
    norm_scale = _norm_scale(producer, hidden)
    if norm_scale in inits and len(readers) == 1:
        scale = numpy_helper.to_array(inits[norm_scale]).astype(np.float32)
        inits[norm_scale].CopyFrom(numpy_helper.from_array(scale / s, norm_scale))
        where = "final norm scale"
    else:
        found.head.input[0] = f"{hidden}/smoothed"
        nodes.insert(
            nodes.index(found.head),
            helper.make_node("Mul", [hidden, inverse.name], [found.head.input[0]], name="/edgecomp/smooth/head"),
        )
        where = "Mul before the head"
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    return {"alpha": alpha, "head_input_scale": where, "max_scale": float(s.max()), "min_scale": float(s.min())}


def _output_error(rows: np.ndarray, hessian: np.ndarray, bits: int, block: int) -> float:
    """tr(ΔW H ΔWᵀ): the expected squared output error of rounding ``rows`` [N, K] to blocks."""
    delta = dequantize_blocks(*block_quantize(rows, bits, block, symmetric=False), bits)[:, : rows.shape[1]] - rows
    return float(np.sum((delta @ hessian) * delta))


def scale_norm_inputs(model: onnx.ModelProto, hessians: dict[str, np.ndarray], bits: int, block: int) -> dict:
    """For each RMSNorm output read only by MatMuls with constant weights (all ``bits``-bit), pick
    ``s = (E[x²]^½)^α`` (geometric mean 1) with α in :data:`ALPHAS` minimizing the summed output
    error of rounding the scaled weights (α = 0 keeps them as they are), fold ``1/s`` into the norm
    scale and ``s`` into the weights, and rescale that input's Hessian for GPTQ. In place; returns
    the α chosen per input."""
    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    chosen = {}
    for node in model.graph.node:
        scale_name = _norm_scale(node, node.output[0] if node.output else "")
        if scale_name not in inits:
            continue
        out = node.output[0]
        users = readers.get(out, [])
        if (
            out not in hessians
            or not users
            or any(u.op_type != "MatMul" or u.input[0] != out or u.input[1] not in inits for u in users)
            or len(readers.get(scale_name, [])) != 1
        ):
            continue
        hessian = hessians[out]
        weights = [numpy_helper.to_array(inits[u.input[1]]).astype(np.float32).T for u in users]  # [N, K]
        rms = np.sqrt(np.maximum(np.diag(hessian), 1e-16))
        best = None
        for alpha in ALPHAS:
            s = rms**alpha
            s = s / np.exp(np.log(s).mean())
            h = hessian / np.outer(s, s)
            error = sum(_output_error(w * s, h, bits, block) for w in weights)
            if best is None or error < best[0]:
                best = (error, alpha, s)
        _, alpha, s = best
        chosen[out] = alpha
        if alpha == 0.0:
            continue
        s = s.astype(np.float32)
        norm_scale = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
        inits[scale_name].CopyFrom(numpy_helper.from_array(norm_scale / s, scale_name))
        for user, w in zip(users, weights):
            inits[user.input[1]].CopyFrom(numpy_helper.from_array(np.ascontiguousarray((w * s).T), user.input[1]))
        hessians[out] = hessian / np.outer(s, s)
    return chosen
