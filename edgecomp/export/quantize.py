"""Weight quantization of an exported decoder with ONNX Runtime's own quantizers.

``int8``: dynamic quantization (int8 weights, activations quantized on the fly: MatMulInteger).
``int4``: weight-only blockwise int4 (MatMulNBits, blocks of 32, symmetric), which ONNX Runtime
has dedicated CPU and CUDA kernels for. Only MatMul weights are quantized in both: the embedding
table stays fp32 because a lookup gains no speed from it, and int4 Gather needs opset 21, which
the quantizer can only force onto optimum's opset-18 graph with a warning that it may be invalid.
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
                use_external_data_format=bool(data_files),
            )
    else:
        with _quiet_root_logger():
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            quantizer = MatMulNBitsQuantizer(
                str(src), bits=4, block_size=INT4_BLOCK_SIZE, is_symmetric=True
            )
            quantizer.process()
            quantizer.model.save_model_to_file(str(dst), use_external_data_format=bool(data_files))
    return dst
