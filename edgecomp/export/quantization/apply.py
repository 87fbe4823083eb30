"""Weight quantization of an exported decoder into ONNX Runtime's block-quantized operators.

Modes:

``none``
    the fp32 graph as exported (a tied LM head stored once: ``MatMul(x, Transpose(table))``).
``fp16``
    every float weight and activation in float16 (for GPUs), except the residual stream of
    edgecomp's graph (:func:`residual_in_fp32`); the graph's inputs and outputs stay float32
    (ids, mask, KV cache, logits), so the runtime feeds it exactly as it feeds fp32.
``int8``
    weight-only 8-bit blocks (``MatMulNBits``, symmetric, 32 values a block) for every MatMul, the
    LM head included, and the embedding lookup as ``GatherBlockQuantized`` on the same blocks; the
    head's input channels smoothed into the table (:mod:`edgecomp.export.quantization.smoothing`).
``int4``
    4-bit blocks (asymmetric, 32 a block) for the transformer's MatMuls (8-bit in decoder layers
    0, 1, 3 and the last, :data:`INT4`), the 4-bit codes chosen by GPTQ
    (:mod:`edgecomp.export.quantization.gptq`) after AWQ-style input scales, then their scales tuned end to end
    against the fp32 graph (:mod:`edgecomp.export.quantization.scale_tuning`); the tied embedding / LM head 8-bit in
    blocks of 128 (:data:`INT4`).

A tied embedding / LM head (Gemma, the tiny test models) is stored ONCE: the head's
``MatMulNBits`` and the lookup's ``GatherBlockQuantized`` read the same packed initializer.
``MatMulNBits`` stores ``B`` as ``[N, k_blocks, blob]`` bytes, N = output features = vocabulary
rows, each row in blocks along K = the hidden size (4-bit: two values a byte, low nibble first),
scales ``[N, k_blocks]``: that is the embedding table ``[vocab, hidden]`` in blocks along the
hidden axis. ``GatherBlockQuantized`` with uint8 data follows the MatMulNBits conventions (same
nibble order, default zero point 8 / 128), gathers along axis 0 and dequantizes along its last
axis: given the same 3-D bytes it gathers ``[tokens, k_blocks, blob]`` and, with the scales seen as
``[N, k_blocks, 1]`` (a Reshape node, not a second copy), dequantizes each blob as one block; a
Reshape makes that ``[batch, tokens, hidden]``.

Measured on Gemma3 270M (benchmarks/QUANTIZATION.md, from benchmarks/quantization_table.py:
100 held-out FLORES lines each in en/sw/hi/vi, perplexity against the fp32 export):

- int8 302 MB: worst language +1.5% (hi), +0.4-1.0% elsewhere; without smoothing the head +3.5%
  (hi): ONNX Runtime's int8 activations (``accuracy_level=4``) lose the head input's small
  channels next to its outliers. ``accuracy_level=0`` would be exact but has no fast 8-bit
  kernel on CPU (it dequantizes the whole head every step: 1.6 tokens/s).
- int4 248 MB (the GGUF: 253 MB): +2.9% (sw) to +4.2% (vi), a merged export +3.0% to +4.6%;
  layers 0, 1, 17 in 8 bits (246 MB) +2.5% to +4.8%; all layers 4-bit (238 MB) +4% to +8.5%;
  GPTQ alone +7% to +13%, round to nearest +20% to +81%: this base is already a GGUF whose blocks
  are mostly Q5_0 (5-bit), and 4 bits cannot hold 5. Blocks of 16 (``--block-size 16``,
  all 4-bit: 252 MB) reach +2% to +5.4% but decode ~10% slower (more scale bytes per weight). A
  4-bit embedding / head is what breaks Hindi (x39): it stays 8-bit.
- The former int8 (dynamic MatMulInteger, per-tensor activation scales, fp32 embedding): 943 MB,
  +312% (hi): Gemma's activations have outliers one scale per tensor cannot hold.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import EdgecompError
from ..logits_to_keep import add_logits_to_keep_proto
from .smoothing import scale_norm_inputs, smooth_tied_head
from .gptq import GPTQConfig, calibration_lines, collect_hessians, gptq_blocks, sequences_for
from .scale_tuning import TuneConfig, tune_scales, untunable

MODES = ("none", "fp16", "int8", "int4")
# Bumped whenever a mode's output changes (2: int8 became weight-only MatMulNBits, int4 got the
# shared 8-bit embedding; 3: int4 by GPTQ, every mode with logits_to_keep; 4: smoothed head, input
# scales, int4 head blocks of 128; 5: int4 scales tuned end to end; 6: int4's edge layers in 8
# bits; 7: layer 3 in 8 bits too); export caches key on it.
QUANTIZER_VERSION = 7


@dataclass(frozen=True)
class WeightOnlyConfig:
    """How ``int8`` / ``int4`` (weight-only, MatMulNBits) quantize.

    Every MatMul weight is cut into blocks of ``block_size`` along its input axis; ``bits`` is the
    width of the transformer's MatMuls, except those whose node name contains one of
    ``eight_bit`` (e.g. ``"mlp/gate_up_proj"``) or that sit in one of ``eight_bit_layers`` (decoder
    layer indices, negative ones counted from the last; ignored when they would be more than a
    quarter of the layers), which get 8 bits. ``head_bits`` is the width of the LM
    head and, when ``quantize_embedding``, of the embedding table (one shared copy when tied).

    4-bit blocks are asymmetric (``symmetric=False``: a scale and a 4-bit zero point, the range
    stretched to include 0, as ONNX Runtime's quantizer does) or symmetric (scale only, the
    largest magnitude mapped to -8). 8-bit blocks are always symmetric with scale ``amax / 127``:
    that reproduces llama.cpp's Q8_0 blocks exactly (the default base's embedding is Q8_0).
    """

    bits: int = 4
    block_size: int = 32
    symmetric: bool = False
    accuracy_level: int = 4  # MatMulNBits computes with int8 activations on CPU; CUDA ignores it
    head_bits: int = 8
    quantize_embedding: bool = True
    eight_bit: tuple[str, ...] = ()
    eight_bit_layers: tuple[int, ...] = ()
    gptq: GPTQConfig | None = None  # 4-bit MatMuls chosen by GPTQ on calibration text, else rounded
    head_block_size: int | None = None  # the LM head's (and shared embedding's) blocks; None: block_size
    smooth_head: bool = True  # migrate the LM head input's outlier channels into a tied table (calibrated)
    tune: TuneConfig | None = None  # then train the 4-bit scales against fp32 (edgecomp's graph, with gptq)

    def __post_init__(self):
        if self.bits not in (4, 8) or self.head_bits not in (4, 8):
            raise EdgecompError("weight-only quantization takes 4 or 8 bits")
        for block in (self.block_size, self.head_block_size or self.block_size):
            if block < 16 or block & (block - 1):
                raise EdgecompError("block_size must be a power of two, at least 16")

    def describe(self) -> dict:
        gptq = self.gptq.describe() if self.gptq else None
        tune = self.tune.describe() if self.tune else None
        return {**asdict(self), "eight_bit": list(self.eight_bit), "eight_bit_layers": list(self.eight_bit_layers),
                "gptq": gptq, "tune": tune}

    def layers_in_8_bit(self, num_layers: int) -> list[int]:
        """``eight_bit_layers`` resolved in a model of ``num_layers`` decoder layers; none when they
        would be more than a quarter of them (a shallow model stays 4-bit, not mostly 8-bit)."""
        chosen = sorted({i % num_layers for i in self.eight_bit_layers if -num_layers <= i < num_layers})
        return chosen if 4 * len(chosen) <= num_layers else []

    def bits_for(self, node_name: str, num_layers: int = 0) -> int:
        """The width of the MatMul ``node_name`` in a graph of ``num_layers`` decoder layers."""
        if any(part in node_name for part in self.eight_bit):
            return 8
        return 8 if decoder_layer(node_name) in self.layers_in_8_bit(num_layers) else self.bits


_LAYER = re.compile(r"/layers\.(\d+)/")


def decoder_layer(node_name: str) -> int | None:
    """The decoder layer a node belongs to, by exporter naming (``/model/layers.3/mlp/...``)."""
    match = _LAYER.search(node_name)
    return int(match[1]) if match else None


def graph_layers(model: onnx.ModelProto) -> int:
    """How many decoder layers the graph's node names count."""
    layers = {decoder_layer(node.name) for node in model.graph.node} - {None}
    return max(layers) + 1 if layers else 0


# What ``int8`` and ``int4`` mean (benchmarks/quantization_table.py measured the alternatives on
# Gemma3 270M, whose weights come from a Q4_K_M GGUF: see the module docstring).
INT8 = WeightOnlyConfig(bits=8, head_bits=8)
SMOOTH_CALIBRATION = GPTQConfig(tokens=4096)  # channel statistics for smooth_head need few tokens
# int4 keeps decoder layers 0, 1, 3 and the last in 8 bits: made exact one at a time, those layers'
# MatMuls cut the most KL to fp32 on Gemma3 270M (mostly the edges of the network, where llama.cpp's
# Q4_K_M spends its extra bits too); they cost 10 MB and a few % of decode speed. Layer 3 (the
# fourth by sensitivity) took a merged export (adapters composed into every linear) from +5.9% to
# +4.6% perplexity on its worst language (benchmarks/QUANTIZATION.md).
INT4 = WeightOnlyConfig(bits=4, head_bits=8, head_block_size=128, eight_bit_layers=(0, 1, 3, -1), gptq=GPTQConfig(),
                        tune=TuneConfig())


def mode_config(mode: str) -> WeightOnlyConfig | None:
    """The weight-only configuration a mode means (None for none/fp16)."""
    return {"int8": INT8, "int4": INT4}.get(mode)


def int4_options(config: WeightOnlyConfig | None, *, block_size: int | None = None,
                 tune_steps: int | None = None, eight_bit_layers: str | None = None) -> WeightOnlyConfig | None:
    """``config`` (int4's) with merge-export's ``--block-size`` / ``--tune-steps`` /
    ``--eight-bit-layers`` (None: as is; ``tune_steps=0``: GPTQ alone; layers as ``"0,1,-1"`` or
    ``"none"`` for every layer in 4 bits)."""
    if block_size is None and tune_steps is None and eight_bit_layers is None:
        return config
    if config is None or config.bits != 4 or config.gptq is None:
        raise EdgecompError("--block-size, --tune-steps and --eight-bit-layers apply to --quantize int4 only")
    if tune_steps is not None and tune_steps < 0:
        raise EdgecompError("--tune-steps must be 0 (off) or more")
    if block_size is not None:
        config = replace(config, block_size=block_size)  # checked: a power of two, at least 16
    if tune_steps is not None:
        config = replace(config, tune=replace(config.tune or TuneConfig(), steps=tune_steps) if tune_steps else None)
    if eight_bit_layers is not None:
        config = replace(config, eight_bit_layers=_layer_list(eight_bit_layers))
    return config


def _layer_list(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise EdgecompError(f"--eight-bit-layers takes layer indices like 0,1,-1 or 'none', not {text!r}") from None


def block_quantize(rows: np.ndarray, bits: int, block_size: int, symmetric: bool):
    """Quantize each row of ``rows`` [N, K] in blocks of ``block_size`` along K, MatMulNBits' layout,
    rounding to nearest.

    Returns ``packed`` [N, k_blocks, block_size * bits / 8] uint8 (4-bit: two values a byte, low
    nibble first), ``scales`` [N, k_blocks] float32 and ``zero_points`` ([N, ceil(k_blocks * bits / 8)]
    uint8, 4-bit ones packed in pairs) or None for symmetric blocks (MatMulNBits and
    GatherBlockQuantized then use the midpoint, 8 or 128). 8-bit blocks are always symmetric.
    """
    rows = np.asarray(rows, dtype=np.float32)
    n, k = rows.shape
    k_blocks = -(-k // block_size)
    levels = (1 << bits) - 1
    packed = np.empty((n, k_blocks, block_size * bits // 8), dtype=np.uint8)
    scales = np.empty((n, k_blocks), dtype=np.float32)
    asymmetric = bits == 4 and not symmetric
    zeros = np.empty((n, k_blocks), dtype=np.uint8) if asymmetric else None
    step = max(1, (1 << 24) // (k_blocks * block_size))  # rows per slice: ~64 MiB of float32
    for start in range(0, n, step):
        x = rows[start : start + step]
        if k_blocks * block_size != k:
            x = np.pad(x, ((0, 0), (0, k_blocks * block_size - k)))
        x = x.reshape(len(x), k_blocks, block_size)
        if bits == 8:
            scale = np.abs(x).max(axis=-1) / 127.0
            safe = np.where(scale == 0, 1.0, scale)[..., None]
            q = np.clip(np.rint(x / safe), -127, 127) + 128
        elif symmetric:  # ONNX Runtime's rule: the value of largest magnitude becomes -8
            hi, lo = x.max(axis=-1), x.min(axis=-1)
            scale = np.where(np.abs(hi) > np.abs(lo), hi, lo) / -8.0
            safe = np.where(scale == 0, 1.0, scale)[..., None]
            q = np.clip(np.rint(x / safe), -8, 7) + 8
        else:
            lo = np.minimum(x.min(axis=-1), 0.0)
            hi = np.maximum(x.max(axis=-1), 0.0)
            scale = (hi - lo) / levels
            safe = np.where(scale == 0, 1.0, scale)
            zero = np.where(scale == 0, 8, np.clip(np.rint(-lo / safe), 0, levels))
            q = np.clip(np.rint(x / safe[..., None] + zero[..., None]), 0, levels)
            zeros[start : start + len(x)] = zero
        packed[start : start + len(x)] = pack_codes(q.astype(np.uint8), bits)
        scales[start : start + len(x)] = scale
    return packed, scales, None if zeros is None else pack_zero_points(zeros)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes [N, k_blocks, block] (0..2^bits-1) → MatMulNBits bytes (4-bit: low nibble first)."""
    codes = codes.astype(np.uint8, copy=False)
    return codes[..., 0::2] | (codes[..., 1::2] << 4) if bits == 4 else codes


def pack_zero_points(zeros: np.ndarray) -> np.ndarray:
    """4-bit zero points [N, k_blocks] → MatMulNBits' [N, ceil(k_blocks / 2)] (pairs a byte)."""
    if zeros.shape[1] % 2:
        zeros = np.pad(zeros, ((0, 0), (0, 1)))
    return zeros[:, 0::2] | (zeros[:, 1::2] << 4)


def centered_codes(packed: np.ndarray, zero_points: np.ndarray | None, bits: int) -> np.ndarray:
    """MatMulNBits' packed blocks [N, k_blocks, blob] → ``code - zero`` [N, k_blocks, block] float32
    (what the scales multiply; :mod:`edgecomp.export.quantization.quantized_torch` trains those scales)."""
    n, k_blocks, _ = packed.shape
    if bits == 4:
        q = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(n, k_blocks, -1)
    else:
        q = packed
    if zero_points is None:
        zero = np.full((n, k_blocks), 1 << (bits - 1), dtype=np.float32)
    elif bits == 4:
        zero = np.stack([zero_points & 0x0F, zero_points >> 4], axis=-1).reshape(n, -1)[:, :k_blocks]
    else:
        zero = zero_points[:, :k_blocks]
    return q.astype(np.float32) - zero[..., None].astype(np.float32)


def dequantize_blocks(packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, bits: int) -> np.ndarray:
    """The inverse of :func:`block_quantize`: rows [N, k_blocks * block_size] float32."""
    return (centered_codes(packed, zero_points, bits) * scales[..., None]).reshape(len(packed), -1)


def external_data_files(model_path: Path) -> list[str]:
    """Names of the files holding this model's external tensors (empty if it is self-contained)."""
    model = onnx.load(str(model_path), load_external_data=False)
    names = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return sorted(names)


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
            if n.op_type == "MatMul"
            and n.input[1] in inits
            and list(inits[n.input[1]].dims) == [hidden, vocab]
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
    pairs = np.stack([zero_points & 0x0F, zero_points >> 4], axis=-1).reshape(len(zero_points), -1)
    return np.ascontiguousarray(pairs[:, :k_blocks, None].astype(np.uint8))


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
        self.new_inits += [numpy_helper.from_array(packed, names["data"]), numpy_helper.from_array(scales, names["scales"])]
        if zero_points is not None:
            names["zero_points"] = f"{prefix}_zero_points"
            self.new_inits.append(numpy_helper.from_array(zero_points, names["zero_points"]))
        self.bits_used[bits] = self.bits_used.get(bits, 0) + rows.size
        return names, zero_points

    def matmul_nbits(self, node: onnx.NodeProto, names: dict, k: int, n: int, bits: int, block: int | None = None) -> None:
        inputs = [node.input[0], names["data"], names["scales"]] + (
            [names["zero_points"]] if "zero_points" in names else []
        )
        attributes = {"K": int(k), "N": int(n), "bits": bits, "block_size": block or self.config.block_size}
        if self.config.accuracy_level:
            attributes["accuracy_level"] = self.config.accuracy_level
        self.replaced[node.name] = [
            helper.make_node(
                "MatMulNBits", inputs, list(node.output), name=f"{node.name}_Q{bits}", domain="com.microsoft", **attributes
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
            rw.dropped.update(n.name for n in model.graph.node if n.op_type == "Transpose" and n.input[0] == found.table)
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
    model: onnx.ModelProto, config: WeightOnlyConfig = INT4, hessians: dict[str, np.ndarray] | None = None
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


def convert_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Float16 weights and activations; inputs/outputs (ids, mask, KV cache, logits) stay as they
    were, with Casts at the boundary, so the runtime needs no change. The residual stream of
    edgecomp's graph stays float32 (:func:`residual_in_fp32`)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True)
    residual_in_fp32(model)
    return model


def residual_in_fp32(model: onnx.ModelProto) -> int:
    """Run every SkipSimplifiedLayerNormalization (edgecomp's graph: each residual add and the norm
    after it) in float32, so the residual stream between them never becomes float16.

    Gemma 3's residual at the BOS position grows past float16's 65,504 by layer 8 of the 270M model
    (55,008 after layer 7), and the inf turns into NaN logits. The normalized outputs (bounded)
    go back to float16 for the MatMuls; only the residual stays float32. Returns the nodes changed.
    """
    inits = _initializers(model)
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
                nodes.append(helper.make_node("Cast", [node.input[index]], [cast], name=f"{node.name}/cast_in{index}",
                                              to=onnx.TensorProto.FLOAT))
                node.input[index] = cast
        gamma = inits.get(node.input[2])
        if gamma is not None and gamma.data_type == onnx.TensorProto.FLOAT16:
            gamma.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(gamma).astype(np.float32), gamma.name))
        normalized = node.output[0]
        node.output[0] = f"{normalized}/fp32"
        nodes += [node, helper.make_node("Cast", [node.output[0]], [normalized], name=f"{node.name}/cast_out",
                                         to=onnx.TensorProto.FLOAT16)]
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    return len(skip_nodes)


def _save(model: onnx.ModelProto, dst: Path, external: bool) -> None:
    if external:
        onnx.save_model(
            model,
            str(dst),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=dst.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(dst))


def quantize_model(
    src_dir: Path,
    dst_dir: Path,
    mode: str,
    config: WeightOnlyConfig | None = None,
    *,
    tokenizer_dir: Path | None = None,
    calibration: Sequence[str | Path] | None = None,
    map_ids: Callable[[list[int]], list[int]] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Write ``src_dir/model.onnx`` quantized per ``mode`` to ``dst_dir/model.onnx``; return what
    was done (``mode``; for int8/int4 the configuration and how the embedding / head are stored).

    ``config`` overrides :data:`INT8` / :data:`INT4` (the benchmark's variants). With GPTQ in the
    configuration, ``calibration`` text files (default: the shipped ``calibration.txt``) are
    tokenized with the tokenizer in ``tokenizer_dir`` (default ``src_dir``), then ``map_ids`` (a
    trimmed graph's :meth:`~edgecomp.export.trim.IdMap.to_trimmed_ids`). The result keeps
    its weights in ``model.onnx.data`` next to it. A tied LM head is stored once.
    """
    if mode not in MODES:
        raise EdgecompError(f"unknown quantization {mode!r}; choose one of {', '.join(MODES)}")
    src, dst = Path(src_dir) / "model.onnx", Path(dst_dir) / "model.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {"mode": mode}
    model = onnx.load(str(src))
    if mode in ("int8", "int4"):
        config = config or mode_config(mode)
        hessians = None
        head = head_input(model) if config.smooth_head else None  # one graph scan (it compares tables)
        if config.gptq is not None or head is not None:
            wanted = (gptq_inputs(model, config) if config.gptq else []) + ([head] if head is not None else [])
            hessians, sequences = _calibrate(model, config, wanted, Path(tokenizer_dir or src_dir), Path(src_dir),
                                             calibration, map_ids, progress)
            report["calibration"] = {
                "files": [Path(p).name for p in calibration] if calibration else ["calibration.txt (shipped)"],
                "tokens": sum(len(s) for s in sequences),
            }
            if head is not None:
                report["smooth_head"] = smooth_tied_head(model, np.diag(hessians.pop(head)))
            if config.gptq is not None and config.gptq.scale_inputs:
                alphas = scale_norm_inputs(model, hessians, config.bits, config.block_size)
                report["input_scales"] = {str(a): sum(v == a for v in alphas.values()) for a in sorted(set(alphas.values()))}
            if config.gptq is None:
                hessians = None
        model, report["weights"] = quantize_weight_only(model, config, hessians)
        if config.tune is not None and config.gptq is not None:
            report["tune"] = _tune(model, src, Path(src_dir), sequences, config.tune, progress)
        report["config"] = config.describe()
    else:
        report["tied_lm_head"] = tie_lm_head(model)
        if mode == "fp16":
            model = convert_fp16(model)
    # Last, so the quantizers above see optimum's graph: prompts then pay for one LM-head row.
    report["logits_to_keep"] = add_logits_to_keep_proto(model) or "already"
    # Weights in model.onnx.data, always: ONNX Runtime maps the file instead of parsing one large
    # protobuf (session load 2.5 → 1.3 s for the int4 default base) and fp32 may exceed 2 GB.
    _save(model, dst, external=True)
    return report


def _tune(model, fp32_path: Path, config_dir: Path, sequences, config: TuneConfig, progress) -> dict | str:
    """:func:`tune_scales`' report, or why it was skipped (a warning: the export is still valid)."""
    reason = untunable(model, sequences, config)
    if reason is None:
        return tune_scales(model, fp32_path, config_dir, sequences, config, progress=progress)
    from ...console import console

    console.print(f"[yellow]warning:[/] 4-bit scales not tuned: {reason}")
    return f"skipped: {reason}"


def _calibrate(model, config: WeightOnlyConfig, inputs, tokenizer_dir: Path, src_dir: Path, files, map_ids, progress):
    """Hessians of ``inputs`` (activations) on the calibration text, and its token sequences."""
    from ...runtime.session import KVShape

    sequences = sequences_for(tokenizer_dir, calibration_lines(files), config.gptq or SMOOTH_CALIBRATION)
    if map_ids is not None:
        sequences = [map_ids(ids) for ids in sequences]
    cfg = json.loads((src_dir / "config.json").read_text(encoding="utf-8"))
    report = (lambda done, total: progress("calibrating", done, total)) if progress else None
    hessians = collect_hessians(model, sorted(set(inputs)), sequences, KVShape.from_config(cfg), progress=report)
    return hessians, sequences


def quantize_onnx(
    src_dir: Path, dst_dir: Path, mode: str, config: WeightOnlyConfig | None = None
) -> Path:
    """:func:`quantize_model`, returning the written ``model.onnx``."""
    quantize_model(src_dir, dst_dir, mode, config)
    return Path(dst_dir) / "model.onnx"
