"""End-to-end tuning of the 4-bit blocks' scales against the fp32 model (EfficientQAT's E2E-QP).

GPTQ (:mod:`edgecomp.export.quantization.gptq`) fixes each layer's codes to reproduce that layer's outputs;
its errors still add up over the layers. Here the codes stay as GPTQ chose them and only the
per-block scales (and the RMSNorm weights, a few thousand values) move, by gradient descent on the
KL divergence between the fp32 export's next-token distribution and the quantized model's, on the
calibration text (Chen et al., "EfficientQAT", 2024, stage E2E-QP; PEQA, Kim et al., 2023). The
file keeps its size and layout: MatMulNBits reads new float scales, nothing else changes.

The teacher is the fp32 graph run by ONNX Runtime (its top-``top_k`` tokens per position, so the
262k-token head is evaluated once, not per step); the student is the transformers model of the
export's config, its weights read back from the quantized graph (edgecomp's decoder graph names
every weight after the checkpoint's tensor), the 4-bit linears computing ``(code - zero) · scale``
with the scales trainable (:mod:`edgecomp.export.quantization.quantized_torch`). Only edgecomp's own graph
(:mod:`edgecomp.export.decoder_graph`) has that naming; optimum's graphs are left as GPTQ made them.

benchmarks/QUANTIZATION.md has what tuning gains and the settings that were tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from ...errors import EdgecompError
from ...model_folder import read_config
from ..decoder_graph import is_edgecomp_graph
from .weight_only import TuneConfig


def teacher_targets(fp32_path: Path, shape, sequences: Sequence[Sequence[int]], top_k: int, progress=None):
    """(ids [S, k] int64, log-probabilities [S, k] float32) per sequence: the fp32 graph's
    ``top_k`` next tokens at every position and their log-probabilities over the whole vocabulary."""
    import torch

    from ...runtime.session import DecoderSession

    decoder = DecoderSession(fp32_path, shape)
    targets = []
    for index, ids in enumerate(sequences):
        logits = torch.from_numpy(decoder.run(np.asarray([ids]), decoder.empty_cache(1))[0][0])
        values, top = logits.topk(top_k, dim=-1)
        targets.append((top, values - logits.logsumexp(dim=-1, keepdim=True)))
        if progress:
            progress(index + 1, len(sequences))
    return targets


def _full_length(sequences: Sequence[Sequence[int]]) -> list[list[int]]:
    """The calibration sequences of the longest length (the packer's last one may be shorter)."""
    longest = max((len(s) for s in sequences), default=0)
    return [list(s) for s in sequences if len(s) == longest]


def untunable(model: onnx.ModelProto, sequences: Sequence[Sequence[int]], config: TuneConfig) -> str | None:
    """Why :func:`tune_scales` cannot run on ``model`` with ``sequences``, or None."""
    if not is_edgecomp_graph(model):
        return "only edgecomp's decoder graph can be tuned (--graph edgecomp)"
    full = len(_full_length(sequences))
    if full <= config.holdout:
        return f"{full} full calibration sequences, tuning needs more than {config.holdout}"
    return None


def tune_scales(
    model: onnx.ModelProto,
    fp32_path: Path,
    config_dir: Path,
    sequences: Sequence[Sequence[int]],
    config: TuneConfig,
    *,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Tune ``model``'s 4-bit scales (in place) toward the fp32 graph at ``fp32_path`` on
    ``sequences`` (the full-length ones; the last ``holdout`` only measure); return the held-out KL
    before and after. ``config_dir`` holds the export's ``config.json``."""
    import torch

    from ...runtime.session import KVShape
    from .quantized_torch import QuantizedStudent

    reason = untunable(model, sequences, config)
    if reason:
        raise EdgecompError(f"cannot tune the 4-bit scales: {reason}")
    sequences = _full_length(sequences)
    shape = KVShape.from_config(read_config(config_dir))
    report = (lambda i, n: progress("fp32 targets", i, n)) if progress else None
    targets = teacher_targets(fp32_path, shape, sequences, config.top_k, report)
    student = QuantizedStudent(model, config_dir)
    optimizer = torch.optim.Adam(student.trainable(config.norms), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps)  # as EfficientQAT
    train = np.arange(len(sequences) - config.holdout)
    held = list(range(len(sequences) - config.holdout, len(sequences)))

    def kl(indices) -> torch.Tensor:
        """KL(teacher || student) over the teacher's top-k tokens (renormalized), mean over positions."""
        top = torch.stack([targets[i][0] for i in indices])
        log_p = torch.stack([targets[i][1] for i in indices]).log_softmax(dim=-1)
        hidden = student.hidden(torch.tensor([sequences[i] for i in indices]))
        log_q = torch.einsum("bsh,bskh->bsk", hidden, student.head[top]).log_softmax(dim=-1)
        return (log_p.exp() * (log_p - log_q)).sum(-1).mean()

    with torch.no_grad():
        before = float(kl(held))
    rng = np.random.default_rng(0)
    epochs = -(-config.steps * config.batch // len(train))
    order = np.concatenate([rng.permutation(train) for _ in range(epochs)])
    for step in range(config.steps):
        optimizer.zero_grad()
        kl(order[step * config.batch : (step + 1) * config.batch].tolist()).backward()
        optimizer.step()
        schedule.step()
        if progress:
            progress("tuning 4-bit scales", step + 1, config.steps)
    with torch.no_grad():
        after = float(kl(held))
    student.write_back(config.norms)
    return {
        **config.describe(),
        "sequences": len(sequences),
        "heldout_kl_before": round(before, 5),
        "heldout_kl_after": round(after, 5),
    }
