"""What a weight-only quantization (``MatMulNBits`` blocks) is configured by, and which layer a node is in.

:class:`WeightOnlyConfig` says how wide each MatMul's blocks are and how the embedding / LM head are
stored; :class:`GPTQConfig` and :class:`TuneConfig` say how the 4-bit codes are chosen
(:mod:`~edgecomp.export.quantization.gptq`) and their scales tuned
(:mod:`~edgecomp.export.quantization.scale_tuning`). These are plain data, importing neither onnx
nor numpy: the quantization schemes (:mod:`~edgecomp.export.quantization.schemes`) declare them
and the command line lists those schemes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ...errors import EdgecompError

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class GPTQConfig:
    """``tokens`` of calibration text in sequences of ``sequence_length``; ``damp`` (a fraction of
    the mean diagonal) keeps the Hessian invertible; ``clip_search`` tries ranges shrunk by these
    factors for each block and keeps the one with the least error (1.0 = the block's full range);
    ``scale_inputs`` first moves norm outputs' channel scales into the weights
    (:func:`edgecomp.export.quantization.smoothing.scale_norm_inputs`); ``act_order`` quantizes the
    columns with the largest inputs first (the blocks' scales and zero points fixed beforehand, so
    blocks stay contiguous for MatMulNBits)."""

    sequence_length: int = 256
    tokens: int = 16384
    damp: float = 0.01
    clip_search: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8)
    scale_inputs: bool = True  # AWQ-style input-channel scales first (edgecomp.export.quantization.smoothing)
    act_order: bool = True  # columns by decreasing Hessian diagonal, block parameters fixed first

    def describe(self) -> dict:
        return {**asdict(self), "clip_search": list(self.clip_search), "method": "gptq"}


@dataclass(frozen=True)
class TuneConfig:
    """``steps`` Adam steps of ``batch`` calibration sequences at learning rate ``lr`` on the
    scales' logarithms; the teacher's ``top_k`` tokens per position; ``norms``: tune the RMSNorm
    weights too; ``holdout`` sequences are kept out of training to report the KL before/after."""

    steps: int = 96
    batch: int = 4
    lr: float = 1e-3
    top_k: int = 64
    norms: bool = True
    holdout: int = 4

    def describe(self) -> dict:
        return {**asdict(self), "method": "e2e scale tuning"}


@dataclass(frozen=True)
class WeightOnlyConfig:
    """How a weight-only scheme (``int8``, ``int4``: MatMulNBits) quantizes.

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
        return {
            **asdict(self),
            "eight_bit": list(self.eight_bit),
            "eight_bit_layers": list(self.eight_bit_layers),
            "gptq": gptq,
            "tune": tune,
        }

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
