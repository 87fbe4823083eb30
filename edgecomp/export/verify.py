"""Does the ONNX graph compute what the PyTorch model computes? Compare logits, position by position.

The ONNX side runs through the runtime's own :class:`~edgecomp.runtime.session.DecoderSession`
(empty cache, the whole sequence in one pass), so the check also covers how the runtime feeds the
graph. fp32 exports must match within a tolerance; quantized ones are measured against the fp32
export (largest logit difference, and how often the top token agrees), never failed. Both numbers
are logit metrics of :mod:`edgecomp.metrics` (``max_abs_diff``, ``top1_agreement``), the ones
held-out perplexity reports too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import EdgecompError
from ..metrics import LOGITS, metric
from ..model_folder import read_config
from ..runtime.session import DecoderSession, KVShape

# fp32 ONNX and fp32 PyTorch differ only by operation order (fused kernels, sums in another order).
# That rounding error grows with the size of the logits, so the tolerance is relative to the
# largest one: it leaves room for the rounding of small test models and large-vocabulary bases
# alike (benchmarks/EXPORT.md) and still fails anything really wrong (a wrong mask or position
# moves logits by whole units).
RELATIVE_TOLERANCE = 1e-3


def default_tolerance(reference: np.ndarray) -> float:
    return RELATIVE_TOLERANCE * max(1.0, float(np.abs(reference).max()))


def onnx_logits(onnx_dir: Path, config: dict, input_ids: Sequence[int]) -> np.ndarray:
    """Logits [tokens, vocab] of ``onnx_dir/model.onnx`` for one sequence, on CPU."""
    decoder = DecoderSession(Path(onnx_dir) / "model.onnx", KVShape.from_config(config))
    logits, _ = decoder.run(np.asarray([input_ids], dtype=np.int64), decoder.empty_cache(1))
    return logits[0]


def torch_logits(checkpoint_dir: Path, input_ids: Sequence[int]) -> np.ndarray:
    """Logits [tokens, vocab] of the PyTorch checkpoint (fp32, eval mode) for one sequence."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.float32, local_files_only=True)
    return model_logits(model, input_ids)


def _config(checkpoint_dir: Path) -> dict:
    return read_config(checkpoint_dir)


def model_logits(model, input_ids: Sequence[int]) -> np.ndarray:
    """Logits [tokens, vocab] of a loaded PyTorch model (eval mode) for one sequence."""
    import torch

    with torch.inference_mode():
        return model.eval()(torch.tensor([list(input_ids)])).logits[0].float().numpy()


def match_logits(actual: np.ndarray, reference: np.ndarray, what: str, atol: float | None = None) -> dict:
    """``actual`` must equal ``reference`` within ``atol`` (default :func:`default_tolerance`);
    otherwise (NaN too) raise :class:`EdgecompError` saying ``what`` ("X differ from Y")."""
    diff = metric("max_abs_diff", LOGITS).overall(actual, reference)["max_abs_diff"]
    tolerance = default_tolerance(reference) if atol is None else atol
    if not diff <= tolerance:
        raise EdgecompError(
            f"{what} by {diff:.3g} (tolerance {tolerance:.3g}); the export is wrong, refusing to write it"
        )
    return {"max_abs_diff": diff, "tolerance": tolerance, "tokens": len(reference)}


def measure_logits(actual: np.ndarray, reference: np.ndarray) -> dict:
    """How far ``actual`` strays from ``reference``: largest logit difference, and the share of
    positions whose most likely next token is the same (teacher-forced greedy agreement)."""
    return {
        "max_abs_diff": metric("max_abs_diff", LOGITS).overall(actual, reference)["max_abs_diff"],
        "greedy_agreement": metric("top1_agreement", LOGITS).overall(actual, reference)["top1_agreement"],
        "tokens": len(reference),
    }


def verify_logits(onnx_dir: Path, checkpoint_dir: Path, input_ids: Sequence[int], atol: float | None = None) -> dict:
    """Compare ONNX and PyTorch logits; raise :class:`EdgecompError` beyond the tolerance.

    ``atol`` defaults to :func:`default_tolerance` of the PyTorch logits.
    """
    reference = torch_logits(checkpoint_dir, input_ids)
    actual = onnx_logits(onnx_dir, _config(checkpoint_dir), input_ids)
    return match_logits(actual, reference, "ONNX logits differ from PyTorch", atol)


def compare_quantized(quantized_dir: Path, fp32_dir: Path, checkpoint_dir: Path, input_ids: Sequence[int]) -> dict:
    """:func:`measure_logits` of a quantized export against the fp32 one."""
    config = _config(checkpoint_dir)
    return measure_logits(onnx_logits(quantized_dir, config, input_ids), onnx_logits(fp32_dir, config, input_ids))
