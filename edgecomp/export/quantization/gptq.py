"""GPTQ for the 4-bit blocks: choose each weight's 4-bit code so the layer's *outputs* move least.

Round-to-nearest treats every weight alone. GPTQ (Frantar et al., ICLR 2023) quantizes a weight
matrix one input column at a time and, after each column, spreads that column's rounding error over
the columns not yet quantized, weighted by the inverse Hessian ``H = Σ x xᵀ`` of the layer's
inputs on calibration text, so the errors cancel in ``x @ W`` instead of adding up. The blocks and
codes it writes are the same MatMulNBits blocks round-to-nearest writes (asymmetric 4-bit, a scale
and a zero point per block): only which code each weight gets differs, so the runtime is
untouched.

Why edgecomp needs it: the embedded default's weights are a Q4_K_M GGUF, mostly Q5_0 (5-bit)
blocks (640 is not a multiple of the 256 K-quants need), and re-rounding them to a 4-bit grid
loses far more than GPTQ on multilingual calibration text (``calibration.txt``) does, after
AWQ-style input scales (:mod:`edgecomp.export.quantization.smoothing`) and in act order; tuning the
scales end to end afterwards (:mod:`edgecomp.export.quantization.scale_tuning`) gains more
(benchmarks/QUANTIZATION.md has the measurements).

The Hessians are collected with ONNX Runtime on the fp32 graph itself (every MatMul's input made a
graph output), so they are the activations the exported graph computes, for any architecture
optimum exports, and no PyTorch model has to be held next to the ONNX one. The solve runs in
PyTorch (float64 Cholesky), which the export step has anyway.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import helper

from ...errors import EdgecompError
from ..logits_to_keep import add_logits_to_keep_proto
from ..onnx_io import save_model
from .weight_only import GPTQConfig

CALIBRATION_TEXT = Path(__file__).with_name("calibration.txt")


def calibration_sequences(
    encode: Callable[[str], list[int]], lines: Iterable[str], bos: int | None, config: GPTQConfig
) -> list[list[int]]:
    """Lines packed into sequences of ``sequence_length`` tokens (BOS first), ``tokens`` in all."""
    sequences: list[list[int]] = []
    current: list[int] = [bos] if bos is not None else []
    for line in lines:
        if not line.strip():
            continue
        current += encode(line)
        while len(current) >= config.sequence_length:
            sequences.append(current[: config.sequence_length])
            current = ([bos] if bos is not None else []) + current[config.sequence_length :]
            if len(sequences) * config.sequence_length >= config.tokens:
                return sequences
    if len(current) > 1:
        sequences.append(current)
    return sequences


def collect_hessians(
    model: onnx.ModelProto,
    inputs: Sequence[str],
    sequences: Sequence[Sequence[int]],
    kv_shape,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, np.ndarray]:
    """``Σ x xᵀ / n`` (float64, [K, K]) over every token of ``sequences`` for each tensor named in
    ``inputs`` (MatMul inputs of ``model``, an fp32 decoder-with-past graph; not modified)."""
    import onnxruntime as ort

    from ...runtime.adapter import zero_feeds
    from ...runtime.session import input_names, session_options

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    add_logits_to_keep_proto(probe)  # calibration needs no logits: skip the LM head
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in inputs)
    with tempfile.TemporaryDirectory(prefix="edgecomp-gptq-") as tmp:
        path = Path(tmp) / "probe.onnx"
        save_model(probe, path, external=True)
        del probe
        session = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    feeds_wanted = input_names(session)
    lora = zero_feeds(session.get_inputs())  # a graph with run-time LoRA inputs: calibrate the base
    sums: dict[str, np.ndarray] = {}
    count = 0
    empty = np.zeros((1, kv_shape.num_kv_heads, 0, kv_shape.head_dim), dtype=np.float32)
    for index, ids in enumerate(sequences):
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
            "logits_to_keep": np.array(1, dtype=np.int64),
        }
        if "position_ids" in feeds_wanted:
            feeds["position_ids"] = np.arange(len(ids), dtype=np.int64)[None]
        for name in feeds_wanted:
            if name.startswith("past_key_values."):
                feeds[name] = empty
        feeds |= lora
        outputs = session.run(list(inputs), {k: v for k, v in feeds.items() if k in feeds_wanted})
        for name, x in zip(inputs, outputs):
            x = x.reshape(-1, x.shape[-1]).astype(np.float64)
            sums[name] = sums.get(name, 0) + x.T @ x
        count += len(ids)
        if progress:
            progress(index + 1, len(sequences))
    return {name: total / count for name, total in sums.items()}


def _block_params(x, bits: int, shrink: float):
    """Asymmetric scale and integer zero point per row of ``x`` [N, block] (range includes 0)."""
    import torch

    levels = (1 << bits) - 1
    lo = torch.clamp(x.min(dim=1).values * shrink, max=0)
    hi = torch.clamp(x.max(dim=1).values * shrink, min=0)
    scale = (hi - lo) / levels
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zero = torch.clamp(torch.round(-lo / scale), 0, levels)
    return scale, zero


def _choose_params(x, bits: int, shrinks: Sequence[float]):
    """The (scale, zero) among the shrunk ranges that rounds ``x`` [N, block] with least error."""
    import torch

    levels = (1 << bits) - 1
    best = None
    for shrink in shrinks:
        scale, zero = _block_params(x, bits, shrink)
        q = torch.clamp(torch.round(x / scale[:, None]) + zero[:, None], 0, levels)
        err = ((q - zero[:, None]) * scale[:, None] - x).abs().pow(2.4).sum(dim=1)
        if best is None:
            best = [err, scale, zero]
        else:
            better = err < best[0]
            best = [
                torch.where(better, err, best[0]),
                torch.where(better, scale, best[1]),
                torch.where(better, zero, best[2]),
            ]
    return best[1], best[2]


def _inverse_factor(h, k: int):
    """Upper Cholesky factor of H⁻¹ (GPTQ's update rows), or the identity if H is not positive
    definite even damped (GPTQ then reduces to plain rounding)."""
    import torch

    try:
        return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
    except RuntimeError:
        return torch.eye(k)


def gptq_blocks(
    rows: np.ndarray, hessian: np.ndarray, *, bits: int, block_size: int, config: GPTQConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GPTQ of ``rows`` [N, K] (N outputs, K inputs) with the inputs' Hessian [K, K].

    Returns ``codes`` [N, K] uint8 (0..2^bits-1), ``scales`` [N, K/block] float32 and ``zeros``
    [N, K/block] uint8: weight ≈ (code - zero) * scale per block along K, MatMulNBits' rule.
    """
    import torch

    w = torch.tensor(rows, dtype=torch.float32).clone()
    n, k = w.shape
    if k % block_size:
        raise EdgecompError(f"GPTQ needs K ({k}) to be a multiple of the block size ({block_size})")
    levels = (1 << bits) - 1
    h = torch.tensor(hessian, dtype=torch.float64).clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += torch.eye(k, dtype=torch.float64) * (config.damp * torch.diag(h).mean())
    codes = torch.zeros((n, k), dtype=torch.uint8)
    scales = torch.zeros((n, k // block_size), dtype=torch.float32)
    zeros = torch.zeros((n, k // block_size), dtype=torch.float32)
    order = torch.arange(k)
    if config.act_order:  # blocks must stay contiguous in K: fix their parameters, then reorder
        for b in range(k // block_size):
            scales[:, b], zeros[:, b] = _choose_params(
                w[:, b * block_size : (b + 1) * block_size], bits, config.clip_search
            )
        order = torch.argsort(torch.diag(h), descending=True)
        w, h = w[:, order], h[order][:, order]
    hinv = _inverse_factor(h, k)
    lazy = max(block_size, 128 // block_size * block_size)  # columns updated together
    for i1 in range(0, k, lazy):
        i2 = min(i1 + lazy, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        hinv1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            column = int(order[i1 + i])
            if config.act_order:
                scale, zero = scales[:, column // block_size], zeros[:, column // block_size]
            elif column % block_size == 0:
                scale, zero = _choose_params(w1[:, i : i + block_size], bits, config.clip_search)
                scales[:, column // block_size], zeros[:, column // block_size] = scale, zero
            q = torch.clamp(torch.round(w1[:, i] / scale) + zero, 0, levels)
            codes[:, column] = q.to(torch.uint8)
            err = (w1[:, i] - (q - zero) * scale) / hinv1[i, i]
            w1[:, i:] -= err[:, None] * hinv1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return codes.numpy(), scales.numpy(), zeros.to(torch.uint8).numpy()


def calibration_lines(paths: Sequence[str | Path] | None = None) -> list[str]:
    """Lines of the calibration files (default: the shipped multilingual ``calibration.txt``)."""
    from ...data.readers import read_lines

    lines: list[str] = []
    for path in paths or [CALIBRATION_TEXT]:
        lines += read_lines(path)
    if not lines:
        raise EdgecompError("the calibration text is empty")
    return lines


def sequences_for(export_dir: Path, lines: Sequence[str], config: GPTQConfig) -> list[list[int]]:
    """Calibration sequences tokenized with the export's own tokenizer and BOS."""
    from ...data.tokenizer import encoder, load_tokenizer
    from ...model_folder import special_ids

    return calibration_sequences(encoder(load_tokenizer(export_dir)), lines, special_ids(export_dir).bos, config)
