"""``edgecomp train`` under torchrun: two CPU processes (gloo) train the adapter one process
trains on the same global batch, and only rank 0 writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from edgecomp.cli import app

EDGECOMP = Path(sys.executable).parent / "edgecomp"


def _args(base, data, out, batch_size: int = 4) -> list[str]:
    return [
        "train", "--kind", "language", "--lang", "en", "--data", str(data), "--out", str(out),
        "--base", str(base), "--steps", "3", "--batch-size", str(batch_size), "--seq-len", "32",
        "--dropout", "0", "--save-every", "2", "--device", "cpu",
    ]  # fmt: skip


def _torchrun(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["--no-python", str(EDGECOMP), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


@pytest.mark.skipif(not EDGECOMP.is_file(), reason="the edgecomp console script is not installed in this venv")
def test_two_processes_train_the_single_process_adapter(tiny_llama_dir, mono_file, tmp_path):
    single = CliRunner().invoke(app, _args(tiny_llama_dir, mono_file, tmp_path / "one"))
    assert single.exit_code == 0, single.output
    run = _torchrun(_args(tiny_llama_dir, mono_file, tmp_path / "two"), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # rank 0 alone reports (and writes)
    one = load_file(str(tmp_path / "one" / "adapter_model.safetensors"))
    two = load_file(str(tmp_path / "two" / "adapter_model.safetensors"))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=1e-4, msg=name)
    meta = json.loads((tmp_path / "two" / "edgecomp.json").read_text())
    assert meta["processes"] == 2
    assert meta["tokens"] == json.loads((tmp_path / "one" / "edgecomp.json").read_text())["tokens"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # no checkpoint left behind


def test_a_batch_that_does_not_split_is_refused_before_work(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; the check comes before the process group
    result = CliRunner().invoke(app, _args(tiny_llama_dir, mono_file, tmp_path / "odd", batch_size=3))
    assert result.exit_code != 0
    assert "edgecomp: error: --batch-size 3 does not split across 2 processes" in result.output
    assert list(tmp_path.iterdir()) == []
