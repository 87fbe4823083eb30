"""Held-out perplexity: the ONNX export scores what PyTorch scores, token for token."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tiny import CORPUS

from edgecomp.errors import EdgecompError
from edgecomp.eval.perplexity import (
    Scores,
    agreement,
    heldout_lines,
    perplexity,
    score_onnx,
    score_torch,
    token_sequences,
)
from edgecomp.export.pipeline import export_checkpoint

LINES = CORPUS + [
    "Wakulima walipata mvua nyingi mwaka huu na mavuno yakawa mazuri.",
    "The bridge was closed for repairs after the storm damaged it.",
]


@pytest.fixture(scope="module")
def exports(tiny_base, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp(f"eval-{tiny_base.name}")
    for mode in ("none", "int4"):
        export_checkpoint(tiny_base, root / mode, quantize=mode, manifest={})
    return {mode: root / mode for mode in ("none", "int4")}


@pytest.fixture(scope="module")
def sequences(tiny_base) -> list[list[int]]:
    return token_sequences(tiny_base, LINES)


def test_sequences_start_with_bos_and_are_cut(tiny_base, sequences):
    assert all(s[0] == 2 and len(s) > 5 for s in sequences)
    assert all(len(s) <= 8 for s in token_sequences(tiny_base, LINES, max_tokens=8))


def test_onnx_fp32_perplexity_equals_pytorch(tiny_base, exports, sequences):
    reference = score_torch(tiny_base, sequences)
    scores = score_onnx(exports["none"], sequences)
    assert scores.tokens == reference.tokens == sum(len(s) - 1 for s in sequences)
    assert math.isclose(perplexity(scores), perplexity(reference), rel_tol=1e-4)
    for ours, theirs in zip(scores.nll, reference.nll):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    assert agreement(scores, reference) > 0.98  # only exact logit ties could differ


def test_perplexity_is_the_token_weighted_mean(tiny_base, exports, sequences):
    scores = score_onnx(exports["none"], sequences)
    total = sum(float(x.sum()) for x in scores.nll)
    assert scores.mean_nll == pytest.approx(total / scores.tokens)
    assert scores.perplexity == pytest.approx(math.exp(total / scores.tokens))
    # Long sequences are scored in chunks with the KV cache: same numbers as one pass.
    import edgecomp.eval.perplexity as module

    chunk = module.CHUNK
    try:
        module.CHUNK = 4
        chunked = score_onnx(exports["none"], sequences)
    finally:
        module.CHUNK = chunk
    for a, b in zip(chunked.nll, scores.nll):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_quantized_export_scores_on_the_same_tokens(exports, sequences):
    fp32 = score_onnx(exports["none"], sequences)
    int4 = score_onnx(exports["int4"], sequences)
    assert int4.tokens == fp32.tokens and np.isfinite(int4.perplexity)
    assert 0 <= agreement(int4, fp32) <= 1
    assert agreement(fp32, fp32) == 1.0


def test_heldout_lines_skip_the_training_slice(tmp_path):
    path = tmp_path / "mono.txt"
    path.write_text("\n".join(f"line {i}" for i in range(10)) + "\n\nline 10\n", encoding="utf-8")
    assert heldout_lines(path, skip=8, count=5) == ["line 8", "line 9", "line 10"]
    assert heldout_lines(path, skip=0, count=2) == ["line 0", "line 1"]
    with pytest.raises(EdgecompError, match="no lines"):
        heldout_lines(path, skip=50)


def test_scores_of_one_token_sequences_are_empty(exports):
    scores = score_onnx(exports["none"], [[2]])
    assert scores.tokens == 0 and isinstance(scores, Scores)
