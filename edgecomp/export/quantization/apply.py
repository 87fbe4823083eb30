"""Quantize an exported decoder by scheme (:mod:`~edgecomp.export.quantization.schemes`): the orchestration.

:func:`quantize_model` reads ``model.onnx``, applies the scheme named by ``mode`` and writes the
result with a ``logits_to_keep`` input. A scheme with a weight-only configuration (``int8``,
``int4``) is calibrated here when its configuration asks for it: the calibration text is
tokenized, the Hessians of the MatMul inputs collected on the fp32 graph, then the LM head's input
smoothed (:mod:`~edgecomp.export.quantization.smoothing`), the norm inputs scaled, the weights
rewritten into blocks (by GPTQ where there are Hessians, :mod:`~edgecomp.export.quantization.rewrite`)
and the 4-bit scales tuned (:mod:`~edgecomp.export.quantization.scale_tuning`). A scheme without
one keeps float weights, its tied LM head stored once, and may convert the graph (``fp16``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import onnx

from ...console import console
from ...model_folder import read_config
from ..logits_to_keep import add_logits_to_keep_proto
from ..onnx_io import save_model
from .gptq import calibration_lines, collect_hessians, sequences_for
from .rewrite import gptq_inputs, head_input, quantize_weight_only, tie_lm_head
from .scale_tuning import tune_scales, untunable
from .schemes import get_scheme
from .smoothing import scale_norm_inputs, smooth_tied_head
from .weight_only import GPTQConfig, TuneConfig, WeightOnlyConfig

SMOOTH_CALIBRATION = GPTQConfig(tokens=4096)  # channel statistics for smooth_head need few tokens


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
    """Write ``src_dir/model.onnx`` quantized per the scheme ``mode`` to ``dst_dir/model.onnx``;
    return what was done (``mode``; for a weight-only scheme the configuration and how the
    embedding / head are stored).

    ``config`` overrides a weight-only scheme's own configuration (the benchmark's variants). With
    GPTQ or head smoothing in the configuration, ``calibration`` text files (default: the shipped
    ``calibration.txt``) are tokenized with the tokenizer in ``tokenizer_dir`` (default
    ``src_dir``), then ``map_ids`` (a trimmed graph's
    :meth:`~edgecomp.data.vocab_map.IdMap.to_trimmed_ids`). The result keeps its weights in
    ``model.onnx.data`` next to it (:func:`~edgecomp.export.onnx_io.save_model`). A tied LM head is
    stored once.
    """
    scheme = get_scheme(mode)
    src, dst = Path(src_dir) / "model.onnx", Path(dst_dir) / "model.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    report: dict = {"mode": mode}
    model = onnx.load(str(src))
    if scheme.config is not None:
        config = config or scheme.config
        model = _quantize_weights(
            model, config, report, src, Path(tokenizer_dir or src_dir), calibration, map_ids, progress
        )
        report["config"] = config.describe()
    else:
        report["tied_lm_head"] = tie_lm_head(model)
    if scheme.convert is not None:
        model = scheme.convert(model)
    # Last, so the quantizers above see optimum's graph: prompts then pay for one LM-head row.
    report["logits_to_keep"] = add_logits_to_keep_proto(model) or "already"
    save_model(model, dst, external=True)  # always: ONNX Runtime maps the weights file, and fp32 may pass 2 GB
    return report


def _quantize_weights(
    model: onnx.ModelProto,
    config: WeightOnlyConfig,
    report: dict,
    src: Path,
    tokenizer_dir: Path,
    calibration,
    map_ids,
    progress,
) -> onnx.ModelProto:
    """``model`` (read from ``src``) in weight-only blocks per ``config``, calibrated where it asks;
    what was done goes into ``report``."""
    hessians = sequences = None
    head = head_input(model) if config.smooth_head else None  # one graph scan (it compares tables)
    if config.gptq is not None or head is not None:
        wanted = (gptq_inputs(model, config) if config.gptq else []) + ([head] if head is not None else [])
        hessians, sequences = _calibrate(
            model, config, wanted, tokenizer_dir, src.parent, calibration, map_ids, progress
        )
        report["calibration"] = {
            "files": [Path(p).name for p in calibration] if calibration else ["calibration.txt (shipped)"],
            "tokens": sum(len(s) for s in sequences),
        }
        if head is not None:
            report["smooth_head"] = smooth_tied_head(model, np.diag(hessians.pop(head)))
        if config.gptq is not None and config.gptq.scale_inputs:
            alphas = scale_norm_inputs(model, hessians, config.bits, config.block_size)
            chosen = sorted(set(alphas.values()))
            report["input_scales"] = {str(a): sum(v == a for v in alphas.values()) for a in chosen}
        if config.gptq is None:
            hessians = None
    model, report["weights"] = quantize_weight_only(model, config, hessians)
    if config.tune is not None and config.gptq is not None:
        report["tune"] = _tune(model, src, src.parent, sequences, config.tune, progress)
    return model


def _tune(model, fp32_path: Path, config_dir: Path, sequences, config: TuneConfig, progress) -> dict | str:
    """:func:`tune_scales`' report, or why it was skipped (a warning: the export is still valid)."""
    reason = untunable(model, sequences, config)
    if reason is None:
        return tune_scales(model, fp32_path, config_dir, sequences, config, progress=progress)
    console.print(f"[yellow]warning:[/] 4-bit scales not tuned: {reason}")
    return f"skipped: {reason}"


def _calibrate(model, config: WeightOnlyConfig, inputs, tokenizer_dir: Path, src_dir: Path, files, map_ids, progress):
    """Hessians of ``inputs`` (activations) on the calibration text, and its token sequences."""
    from ...runtime.session import KVShape  # ONNX Runtime loads only when a scheme calibrates

    sequences = sequences_for(tokenizer_dir, calibration_lines(files), config.gptq or SMOOTH_CALIBRATION)
    if map_ids is not None:  # re-spelling dropped tokens lengthens a sequence: cut it back, all stay full length
        sequences = [map_ids(ids)[: len(ids)] for ids in sequences]
    cfg = read_config(src_dir)
    report = (lambda done, total: progress("calibrating", done, total)) if progress else None
    hessians = collect_hessians(model, sorted(set(inputs)), sequences, KVShape.from_config(cfg), progress=report)
    return hessians, sequences


def quantize_onnx(src_dir: Path, dst_dir: Path, mode: str, config: WeightOnlyConfig | None = None) -> Path:
    """:func:`quantize_model`, returning the written ``model.onnx``."""
    quantize_model(src_dir, dst_dir, mode, config)
    return Path(dst_dir) / "model.onnx"
