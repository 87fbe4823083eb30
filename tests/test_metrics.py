"""The metric interface: what is registered, adding a metric of each kind, the built-in logit metrics'
formulas, and that export verification loads no part of the eval package."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import edgecomp.metrics as registry
from edgecomp.errors import EdgecompError
from edgecomp.eval.metrics import score_documents, summary_metrics
from edgecomp.metrics import LOGITS, SUMMARY, mean, metric, metrics, register

LOGIT_ROWS = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 3.0, -2.0], [1.0, 1.0, 0.0, 5.0]], dtype=np.float32)


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry for one test: what it registers is gone afterwards."""
    summary_metrics(), metrics(LOGITS)  # built-in modules register once, on first import: into the original
    monkeypatch.setattr(registry, "METRICS", dict(registry.METRICS))


def test_built_in_metrics_and_what_they_declare():
    assert list(summary_metrics()) == ["rouge", "language", "length"]
    assert list(metrics(LOGITS)) == ["nll", "top1_agreement", "max_abs_diff"]
    for kind, found in ((SUMMARY, summary_metrics()), (LOGITS, metrics(LOGITS))):
        for m in found.values():
            assert m.kind == kind and m.description and m.higher_is_better
    assert metric("rouge", SUMMARY).higher_is_better == {"rouge1": True, "rouge2": True, "rougeL": True}
    assert metric("nll", LOGITS).higher_is_better == {"nll": False}


def test_a_registered_summary_metric_is_scored_with_the_others(scratch_registry):
    @register("exclaims", SUMMARY, "exclamation marks in the summary", {"exclamations": None})
    def exclaims(references, predictions, lang):
        return {"exclamations": [float(p.count("!")) for p in predictions]}

    refs = ["The council approved a new budget.", "Heavy rain flooded the market."]
    preds = ["The council approved a budget!!", "Rain flooded the market!"]
    values = score_documents(refs, preds, "en")
    assert values["exclamations"] == [2.0, 1.0]
    assert {"rougeL", "target_lang", "words"} <= set(values)
    assert list(values)[-1] == "exclamations"  # after the built-in ones, in their order
    assert list(summary_metrics()) == ["rouge", "language", "length", "exclaims"]


def test_a_registered_logit_metric_is_found_by_name(scratch_registry):
    @register("entropy", LOGITS, "entropy of the next-token distribution at each position", {"entropy": None})
    def entropy(logits, reference=None):
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        return {"entropy": -(p * np.log(p)).sum(-1)}

    found = metric("entropy", LOGITS)
    assert found.score is entropy and found.module == __name__
    uniform = np.zeros((2, 8), dtype=np.float32)
    assert found.overall(uniform) == {"entropy": pytest.approx(np.log(8))}
    assert "entropy" in metrics(LOGITS) and "entropy" not in summary_metrics()


def test_lookups_and_registrations_that_fail(scratch_registry):
    with pytest.raises(EdgecompError, match=r"no logits metric 'rouge' \(known: nll, top1_agreement, max_abs_diff"):
        metric("rouge", LOGITS)
    with pytest.raises(EdgecompError, match="unknown metric kind"):
        metrics("images")
    with pytest.raises(ValueError, match="unknown kind"):
        register("x", "images", "nothing", {"x": True})
    with pytest.raises(ValueError, match="registered twice"):
        register("rouge", SUMMARY, "another rouge", {"r": True})(lambda r, p, lang: {"r": [0.0] * len(p)})


@pytest.mark.parametrize(
    "declared, returned, message",
    [
        ({"x": None}, {"undeclared": [1.0]}, "not the values it declares"),
        ({"odd": None}, {"odd": [1.0, 2.0]}, "2 values of 'odd' for 1 documents"),
        ({"words": None}, {"words": [1.0]}, "another metric returns too"),  # length returns it already
    ],
)
def test_a_summary_metric_must_return_what_it_declares(scratch_registry, declared, returned, message):
    register("odd", SUMMARY, "a broken metric", declared)(lambda references, predictions, lang: returned)
    with pytest.raises(ValueError, match=message):
        score_documents(["a reference"], ["a prediction"], "en")


def test_nll_is_minus_the_log_softmax_of_the_target():
    targets = np.array([0, 2, 1])
    x = LOGIT_ROWS.astype(np.float64)
    want = np.log(np.exp(x).sum(-1)) - x[np.arange(3), targets]
    nll = metric("nll", LOGITS)
    # exp in float32, sums in float64
    np.testing.assert_allclose(nll.score(LOGIT_ROWS, targets)["nll"], want, rtol=1e-6)
    assert nll.overall(LOGIT_ROWS, targets)["nll"] == pytest.approx(want.mean())
    # a huge logit is still exact (log-sum-exp from the largest)
    big = np.array([[1000.0, 0.0]], dtype=np.float32)
    assert nll.score(big, np.array([0]))["nll"][0] == pytest.approx(0.0, abs=1e-12)


def test_top1_agreement_on_logits_or_ids():
    agree = metric("top1_agreement", LOGITS)
    other = LOGIT_ROWS.copy()
    other[1] = [9.0, 0.0, 0.0, 0.0]  # ranks 0 first where LOGIT_ROWS ranks 2
    assert agree.score(LOGIT_ROWS, other)["top1_agreement"].tolist() == [1.0, 0.0, 1.0]
    assert agree.score(LOGIT_ROWS, np.array([0, 2, 3]))["top1_agreement"].tolist() == [1.0, 1.0, 1.0]
    assert agree.overall(LOGIT_ROWS, other)["top1_agreement"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="same positions"):
        agree.score(LOGIT_ROWS, np.array([0, 2]))


def test_max_abs_diff_is_the_largest_difference_and_keeps_nan():
    diff = metric("max_abs_diff", LOGITS)
    shifted = LOGIT_ROWS.copy()
    shifted[2, 1] += 0.75
    shifted[0, 0] -= 0.25
    assert diff.score(shifted, LOGIT_ROWS)["max_abs_diff"].tolist() == [0.25, 0.0, 0.75]
    assert diff.overall(shifted, LOGIT_ROWS)["max_abs_diff"] == 0.75
    shifted[1, 3] = np.nan
    assert np.isnan(diff.overall(shifted, LOGIT_ROWS)["max_abs_diff"])  # fails any `diff <= tolerance`


def test_mean_of_nothing_is_zero():
    assert mean([]) == 0.0 and mean(np.zeros(0)) == 0.0
    assert mean([1.0, 2.0, 6.0]) == 3.0


def test_the_interface_and_verification_import_nothing_heavy():
    code = (
        "import sys, json\n"
        "import edgecomp.metrics, edgecomp.logit_metrics\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'edgecomp.eval', 'edgecomp.export')\n"
        "light = sorted(m for m in heavy if m in sys.modules)\n"
        "from edgecomp.export import verify\n"
        "from edgecomp.metrics import LOGITS, metrics\n"
        "metrics(LOGITS)\n"
        "print(json.dumps([light, sorted(m for m in sys.modules if m.startswith('edgecomp.eval'))]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    light, evaluation = json.loads(out)
    assert light == [] and evaluation == []
