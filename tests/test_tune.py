"""End-to-end scale tuning (edgecomp.export.quantization.scale_tuning): the PyTorch student computes what the quantized
ONNX graph computes, and tuning brings the written graph closer to fp32 on text it never saw."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny import CORPUS

from edgecomp.errors import EdgecompError
from edgecomp.export.onnx_export import export_onnx
from edgecomp.export.quantization.apply import quantize_model
from edgecomp.export.quantization.scale_tuning import tune_scales
from edgecomp.export.quantization.schemes.int4 import INT4, int4_options
from edgecomp.export.quantization.schemes.int8 import INT8
from edgecomp.export.quantization.weight_only import GPTQConfig, TuneConfig, WeightOnlyConfig
from edgecomp.runtime.session import DecoderSession, KVShape

# Tiny models: blocks of 16 on a hidden size of 64; exact int arithmetic in ONNX Runtime
# (accuracy_level 0) so the student can be compared tightly.
SMALL = WeightOnlyConfig(
    bits=4,
    block_size=16,
    head_bits=8,
    head_block_size=32,
    accuracy_level=0,
    gptq=GPTQConfig(sequence_length=32, tokens=32 * 64),
)


def shuffled_lines(count: int, seed: int) -> list[str]:
    """Lines of the tiny corpus's words in random order: calibration and held-out text from one
    distribution, never the same lines."""
    words = " ".join(CORPUS).split()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=10)) for _ in range(count)]


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "calibration.txt"
    path.write_text("\n".join(shuffled_lines(800, seed=0)) + "\n", encoding="utf-8")
    return path


def logits(export_dir: Path, config: dict, ids: list[int]) -> np.ndarray:
    decoder = DecoderSession(export_dir / "model.onnx", KVShape.from_config(config))
    return decoder.run(np.array([ids]), decoder.empty_cache(1))[0][0]


def heldout_ids(checkpoint: Path) -> list[list[int]]:
    from edgecomp.data.tokenizer import encoder, load_tokenizer

    encode = encoder(load_tokenizer(checkpoint))
    return [[2, *encode(line)][:32] for line in shuffled_lines(4, seed=1)]


def kl(p_logits: np.ndarray, q_logits: np.ndarray) -> float:
    def log_softmax(x):
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    log_p, log_q = log_softmax(p_logits.astype(np.float64)), log_softmax(q_logits.astype(np.float64))
    return float((np.exp(log_p) * (log_p - log_q)).sum(-1).mean())


def test_student_computes_what_the_quantized_graph_computes(tiny_base, tmp_path, calibration):
    """Weights read back from the int4 graph (fused q/k/v and gate/up split by rows, folded norm
    constants undone, smoothing of the tied table undone) give ONNX Runtime's logits."""
    import torch

    from edgecomp.export.quantization.quantized_torch import BlockLinear, QuantizedStudent

    config = json.loads((tiny_base / "config.json").read_text())
    raw = export_onnx(tiny_base, tmp_path / "raw").parent
    report = quantize_model(raw, tmp_path / "q", "int4", SMALL, tokenizer_dir=tiny_base, calibration=[calibration])
    assert report["input_scales"] and report["smooth_head"]
    student = QuantizedStudent(onnx.load(str(tmp_path / "q" / "model.onnx")), raw)
    assert sum(isinstance(m, BlockLinear) for m in student.net.modules()) == 7 * config["num_hidden_layers"]
    for ids in heldout_ids(tiny_base)[:2]:
        want = logits(tmp_path / "q", config, ids)
        with torch.no_grad():
            got = (student.hidden(torch.tensor([ids]))[0] @ student.head.T).numpy()
        np.testing.assert_allclose(got, want, atol=2e-3 * float(np.abs(want).max()))


def test_tuning_brings_the_written_graph_closer_to_fp32(tiny_base, tmp_path, calibration):
    """Same codes, new scales: the tuned graph is nearer fp32 than GPTQ's on unseen sequences, and
    only scales and norm weights changed (every initializer keeps its shape and type)."""
    config = json.loads((tiny_base / "config.json").read_text())
    raw = export_onnx(tiny_base, tmp_path / "raw").parent
    quantize_model(raw, tmp_path / "gptq", "int4", SMALL, tokenizer_dir=tiny_base, calibration=[calibration])
    tuned_config = replace(SMALL, tune=TuneConfig(steps=60, batch=4, lr=1e-3, top_k=128, holdout=8))
    report = quantize_model(
        raw, tmp_path / "tuned", "int4", tuned_config, tokenizer_dir=tiny_base, calibration=[calibration]
    )
    assert report["tune"]["heldout_kl_after"] < report["tune"]["heldout_kl_before"]

    plain, tuned = (onnx.load(str(tmp_path / d / "model.onnx")) for d in ("gptq", "tuned"))
    before = {t.name: onnx.numpy_helper.to_array(t) for t in plain.graph.initializer}
    after = {t.name: onnx.numpy_helper.to_array(t) for t in tuned.graph.initializer}
    assert before.keys() == after.keys()
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed and all(name.endswith(("_scales", "norm.weight")) for name in changed), sorted(changed)
    assert all(before[n].shape == after[n].shape and before[n].dtype == after[n].dtype for n in before)

    ids = heldout_ids(tiny_base)
    fp32 = [logits(raw, config, s) for s in ids]
    distance = {
        d: np.mean([kl(f, logits(tmp_path / d, config, s)) for f, s in zip(fp32, ids)]) for d in ("gptq", "tuned")
    }
    assert distance["tuned"] < distance["gptq"], distance


def test_only_edgecomp_graphs_are_tuned(tmp_path):
    model = onnx.helper.make_model(onnx.helper.make_graph([], "optimum", [], []), producer_name="pytorch")
    with pytest.raises(EdgecompError, match="edgecomp's decoder graph"):
        tune_scales(model, tmp_path / "model.onnx", tmp_path, [[2, 3]] * 8, TuneConfig())


def test_int4_options():
    assert int4_options(INT4) is INT4 and int4_options(None) is None
    assert int4_options(INT4, tune_steps=0).tune is None
    seven = int4_options(INT4, tune_steps=7, block_size=64)
    assert seven.tune.steps == 7 and seven.block_size == 64 and seven.gptq == INT4.gptq
    assert seven.eight_bit_layers == INT4.eight_bit_layers == (0, 1, 3, -1)
    assert int4_options(INT4, eight_bit_layers="none").eight_bit_layers == ()
    assert int4_options(INT4, eight_bit_layers="2, -2").eight_bit_layers == (2, -2)
    for config, options in (
        (None, {"tune_steps": 5}),
        (INT8, {"block_size": 16}),
        (INT4, {"tune_steps": -1}),
        (INT4, {"block_size": 24}),
        (INT4, {"eight_bit_layers": "first"}),
        (INT8, {"eight_bit_layers": "0"}),
    ):
        with pytest.raises(EdgecompError):
            int4_options(config, **options)
