"""``edgecomp bench train``: both trainers see the same model, data, batches and seed, so their
loss curves agree; speed and memory are measured, and bad options fail in one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from edgecomp.cli import app

SMALL = ["--seq-len", "32", "--batch-size", "2", "--steps", "3"]


@pytest.fixture
def random_config(tmp_path):
    from tiny import _common

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", **_common(300)}))
    return config


@pytest.mark.parametrize("kind,model", [("language", "base"), ("task", "random")])
def test_edgecomp_and_hf_trainer_follow_the_same_loss_curve(tiny_llama_dir, random_config, kind, model):
    """On a checkpoint, and on a config built with random weights and trained on random ids."""
    source = ["--base", str(tiny_llama_dir)] if model == "base" else ["--random-config", str(random_config)]
    result = CliRunner().invoke(app, ["bench", "train", *source, "--kind", kind, *SMALL, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    ours, theirs = report["trainers"]["edgecomp"], report["trainers"]["hf-trainer"]
    assert len(ours["losses"]) == len(theirs["losses"]) == 3
    assert ours["tokens"] == theirs["tokens"] > 0
    assert report["largest_loss_gap"] < 1e-3  # Trainer logs losses to 4 decimals
    assert ours["losses"][0] != ours["losses"][-1]  # it trained
    assert report["ratios"]["tokens_per_s"] == pytest.approx(ours["tokens_per_s"] / theirs["tokens_per_s"], rel=1e-2)
    assert ours["peak_rss_mb"] > 0 and theirs["peak_rss_mb"] > 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--steps", "0"], "--steps 0 is not allowed: an integer from 1 to"),
        (["--kind", "chat"], "--kind 'chat' is not allowed: one of language, task"),
        (["--random-config", "missing.json"], "--random-config missing.json: no such file"),
        (["--memory-cap-gb", "-1"], "--memory-cap-gb -1.0 is not allowed: a finite number in (0, 10000]"),
        (["--device", "cpu", "--memory-cap-gb", "8"], "--memory-cap-gb limits GPU memory; this run is on the CPU"),
    ],
)
def test_bad_options_fail_in_one_line(tiny_llama_dir, args, message):
    result = CliRunner().invoke(app, ["bench", "train", "--base", str(tiny_llama_dir), *SMALL, *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
