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


# Each rank crashes in its third micro-batch, after the checkpoint of step 2 was written.
CRASH_AT_STEP_3 = """
import itertools, sys
from edgecomp import cli
from edgecomp.train import loop

calls, genuine = itertools.count(1), loop.collate
def collate(*args):
    if next(calls) == 3:
        raise SystemExit("simulated crash")
    return genuine(*args)
loop.collate = collate
sys.argv = ["edgecomp", *sys.argv[1:]]
cli.main()
"""


def _torchrun(args: list[str], tmp_path, script: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += [str(script), *args] if script else ["--no-python", str(EDGECOMP), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def _assert_same_adapter(one: Path, two: Path) -> None:
    a = load_file(str(one / "adapter_model.safetensors"))
    b = load_file(str(two / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def single(tiny_llama_dir, mono_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "one"
    result = CliRunner().invoke(app, _args(tiny_llama_dir, mono_file, out))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.skipif(not EDGECOMP.is_file(), reason="the edgecomp console script is not installed in this venv")
def test_two_processes_train_the_single_process_adapter(single, tiny_llama_dir, mono_file, tmp_path):
    run = _torchrun(_args(tiny_llama_dir, mono_file, tmp_path / "two"), tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # rank 0 alone reports (and writes)
    _assert_same_adapter(single, tmp_path / "two")
    meta = json.loads((tmp_path / "two" / "edgecomp.json").read_text())
    assert meta["processes"] == 2
    assert meta["tokens"] == json.loads((single / "edgecomp.json").read_text())["tokens"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two"]  # no checkpoint left behind


def test_a_two_process_checkpoint_resumes_in_one_process(single, tiny_llama_dir, mono_file, tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(CRASH_AT_STEP_3)
    out = tmp_path / "adapter"
    run = _torchrun(_args(tiny_llama_dir, mono_file, out), tmp_path, script)
    assert run.returncode != 0 and "simulated crash" in run.stderr
    assert (out.parent / "adapter.checkpoint" / "step-000002").is_dir() and not out.exists()
    resumed = CliRunner().invoke(app, [*_args(tiny_llama_dir, mono_file, out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming at step 2/3" in resumed.output
    _assert_same_adapter(single, out)


def test_a_batch_that_does_not_split_is_refused_before_work(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; the check comes before the process group
    result = CliRunner().invoke(app, _args(tiny_llama_dir, mono_file, tmp_path / "odd", batch_size=3))
    assert result.exit_code != 0
    assert "edgecomp: error: --batch-size 3 does not split across 2 processes" in result.output
    assert list(tmp_path.iterdir()) == []
