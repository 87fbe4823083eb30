"""Weight quantization of an exported decoder with ONNX Runtime's own quantizers.

``int8``: dynamic quantization (MatMulInteger): int8 weights per output channel, activations
quantized on the fly. ``int4``: weight-only MatMulNBits, blocks of 32, with ONNX Runtime's int8
compute path on CPU (``accuracy_level=4``).

Choices measured on Gemma3 270M (2 CPU cores, 132-token English text, teacher-forced against the
fp32 export; the weights came from a Q4_K_M GGUF):

- int4 asymmetric vs symmetric: top-1 agreement 75% vs 58%, KL 0.23 vs 0.39 nats, same speed;
- int4 ``accuracy_level`` 4 vs 0: 57 vs 45 decode tokens/s, the same agreement;
- int8 per-channel vs per-tensor: KL 0.11 vs 0.17 nats, agreement 76% vs 72%, 44 vs 51 tokens/s.

Only MatMul weights are quantized: the embedding table stays fp32 because a lookup gains no speed
from it, and int4 Gather needs opset 21, which the quantizer can only force onto optimum's opset-18
graph with a warning that the result may be invalid.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Iterator

import onnx

from ..errors import EdgecompError

MODES = ("none", "int8", "int4")
INT4_BLOCK_SIZE = 32
INT4_SYMMETRIC = False
INT4_ACCURACY_LEVEL = 4  # MatMulNBits computes with int8 activations on CPU; CUDA ignores it
INT8_PER_CHANNEL = True


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


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Hold the root logger at ERROR while ONNX Runtime's quantizers run, then restore it.

    ``matmul_nbits_quantizer`` calls ``logging.basicConfig(level=INFO)`` when imported, and both
    quantizers log a line per graph node (thousands for a real model), so the import happens here
    first and the level it set is undone afterwards.
    """
    root = logging.getLogger()
    level = root.level
    import onnxruntime.quantization.matmul_nbits_quantizer  # noqa: F401

    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_onnx(src_dir: Path, dst_dir: Path, mode: str) -> Path:
    """Write ``src_dir/model.onnx`` quantized per ``mode`` to ``dst_dir/model.onnx`` and return it.

    The result keeps its weights in an external data file when the source did.
    """
    if mode not in MODES:
        raise EdgecompError(f"unknown quantization {mode!r}; choose one of {', '.join(MODES)}")
    src, dst = Path(src_dir) / "model.onnx", Path(dst_dir) / "model.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    data_files = external_data_files(src)
    if mode == "none":
        for name in ["model.onnx", *data_files]:
            shutil.copy2(src.parent / name, dst.parent / name)
    elif mode == "int8":
        with _quiet_root_logger():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                src,
                dst,
                op_types_to_quantize=["MatMul"],
                weight_type=QuantType.QInt8,
                per_channel=INT8_PER_CHANNEL,
                use_external_data_format=bool(data_files),
            )
    else:
        with _quiet_root_logger():
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            quantizer = MatMulNBitsQuantizer(
                str(src),
                bits=4,
                block_size=INT4_BLOCK_SIZE,
                is_symmetric=INT4_SYMMETRIC,
                accuracy_level=INT4_ACCURACY_LEVEL,
            )
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst), use_external_data_format=bool(data_files))
    return dst
