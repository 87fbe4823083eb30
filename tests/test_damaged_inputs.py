"""Damaged or foreign files and non-finite tensors: one line naming the file, exit 2, nothing written.

Each test is one class of issue 17: NaN in an adapter, a checkpoint or a base; a safetensors file
whose header lies; a truncated GGUF or one of an architecture nobody converts; an ONNX folder that
is not an edgecomp export; a JSON manifest that does not parse; a loss that stops being finite.
"""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from adapters import make_adapter
from safetensors.torch import load_file, save_file
from tiny_gguf import write_tiny_gguf
from typer.testing import CliRunner

from edgecomp.cli import app
from edgecomp.errors import EdgecompError
from edgecomp.train import loop
from edgecomp.train.adapter import TrainOptions, train_adapter
from edgecomp.train.checkpoint import checkpoint_folder

WEIGHTS = "adapter_model.safetensors"


def one_line_error(args, needle: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and lines and lines[-1].startswith("edgecomp: error: "), result.output
    assert needle in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture
def adapter(tiny_llama_dir, tmp_path):
    return make_adapter(tiny_llama_dir, tmp_path / "adapter", seed=1)


def _poison(file, value=float("nan")) -> str:
    tensors = load_file(str(file))
    name = sorted(tensors)[1]
    tensors[name].view(-1)[3] = value
    save_file(tensors, str(file))
    return name


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_adapter_is_refused_naming_file_and_tensor(adapter, tmp_path, value):
    name = _poison(adapter / WEIGHTS, value)
    line = one_line_error(["compose", "--adapter", f"{adapter}:1", "--out", tmp_path / "out"], "NaN or infinite")
    assert f"{adapter / WEIGHTS}: tensor '{name}'" in line
    assert not (tmp_path / "out").exists()


def test_adapter_whose_config_lies_about_its_rank(adapter, tmp_path):
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    one_line_error(["compose", "--adapter", f"{adapter}:1", "--out", tmp_path / "out"], "has rank 4 but")
    assert not (tmp_path / "out").exists()


def _lying_header(file) -> None:
    """The header claims one tensor twice as long as the bytes that follow it."""
    tensors = load_file(str(file))
    name = sorted(tensors)[0]
    size = tensors[name].numel() * 4
    header = {name: {"dtype": "F32", "shape": [tensors[name].numel() * 2], "data_offsets": [0, size * 2]}}
    raw = json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + tensors[name].numpy().tobytes())


def test_safetensors_with_a_lying_header(adapter, tiny_llama_dir, tmp_path):
    _lying_header(adapter / WEIGHTS)
    one_line_error(["compose", "--adapter", f"{adapter}:1", "--out", tmp_path / "out"], "corrupted safetensors")
    base = shutil.copytree(tiny_llama_dir, tmp_path / "base")
    _lying_header(base / "model.safetensors")
    one_line_error(train_args(base, tmp_path), "damaged or truncated safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "base", "data.txt"]


def test_unparsable_adapter_config(adapter, tmp_path):
    (adapter / "adapter_config.json").write_text('{"peft_type": "LORA", ')
    one_line_error(["compose", "--adapter", f"{adapter}:1", "--out", tmp_path / "out"], "unreadable JSON")


def train_args(base, tmp_path, *extra):
    data = tmp_path / "data.txt"
    data.write_text("a few words of text\n" * 20, encoding="utf-8")
    return ["train", "--kind", "language", "--lang", "sw", "--data", data, "--out", tmp_path / "lang",
            "--base", base, "--steps", "2", "--seq-len", "16", "--batch-size", "2", *extra]  # fmt: skip


def test_non_finite_base_is_refused_naming_the_tensor(tiny_llama_dir, tmp_path):
    base = shutil.copytree(tiny_llama_dir, tmp_path / "base")
    name = _poison(base / "model.safetensors")
    one_line_error(train_args(base, tmp_path), f"tensor '{name}' holds 1 NaN")
    assert not (tmp_path / "lang").exists()


def test_base_missing_a_tensor(tiny_llama_dir, tmp_path):
    base = shutil.copytree(tiny_llama_dir, tmp_path / "base")
    tensors = load_file(str(base / "model.safetensors"))
    del tensors["model.layers.0.mlp.up_proj.weight"]
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    one_line_error(train_args(base, tmp_path), "lack 1 tensor(s) the config needs (e.g. 'model.layers.0.mlp.up_proj")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOMP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.mark.parametrize("keep", [10, 200, 0.5, -1])
def test_truncated_gguf(tmp_path, home, keep):
    gguf = write_tiny_gguf("llama", tmp_path / "tiny.gguf")
    size = gguf.stat().st_size
    cut = int(size * keep) if isinstance(keep, float) else (keep if keep > 0 else size - 1)
    gguf.write_bytes(gguf.read_bytes()[:cut])
    line = one_line_error(train_args(gguf, tmp_path), str(gguf))
    assert any(word in line for word in ("truncated GGUF", "damaged GGUF header", "not a little-endian GGUF"))
    entries = [p.name for p in (home / "models").glob("*") if not p.name.startswith(".")] if home.exists() else []
    assert entries == []  # no converted model, whole or partial, in the cache (its lock files are hidden)
    assert not (tmp_path / "lang").exists()


def test_gguf_of_an_unknown_architecture(tmp_path, home):
    import gguf
    import numpy as np

    path = tmp_path / "foreign.gguf"
    writer = gguf.GGUFWriter(str(path), "edgecomp-foreign")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    one_line_error(train_args(path, tmp_path), "GGUF architecture 'edgecomp-foreign' cannot be converted")


def test_onnx_folder_that_is_not_an_export(tiny_llama_dir, tmp_path):
    folder = tmp_path / "foreign"
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copy(tiny_llama_dir / name, folder)
    (folder / "model.onnx").write_bytes(b"\x08\x07 not a protobuf at all")
    article = tmp_path / "a.txt"
    article.write_text("Some text to summarize.", encoding="utf-8")
    one_line_error(["summarize", article, "--model", folder], "model.onnx")
    (folder / "edgecomp-export.json").write_text("{not json")
    one_line_error(["summarize", article, "--model", folder], "edgecomp-export.json is not valid JSON")


def test_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    genuine, calls = loop.causal_lm_loss, []

    def diverging(*args, **kwargs):
        calls.append(1)
        loss = genuine(*args, **kwargs)
        return loss * float("nan") if len(calls) == 4 else loss

    monkeypatch.setattr(loop, "causal_lm_loss", diverging)
    out = tmp_path / "adapter"
    options = TrainOptions(
        kind="language", lang="sw", data=mono_file, out=out, base=str(tiny_llama_dir), steps=6, seq_len=32,
        batch_size=2, rank=4, save_every=3, device="cpu",
    )  # fmt: skip
    with pytest.raises(EdgecompError, match=r"step 4: the loss is nan, so training stopped without writing an adapter"):
        train_adapter(options)
    assert not out.exists()
    assert (checkpoint_folder(out) / "step-000003").is_dir()
    saved = load_file(str(checkpoint_folder(out) / "step-000003" / "adapter.safetensors"))
    assert all(torch.isfinite(t).all() for t in saved.values())


def test_non_finite_checkpoint_is_refused_on_resume(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    out = tmp_path / "adapter"
    options = dict(
        kind="language", lang="sw", data=mono_file, out=out, base=str(tiny_llama_dir), steps=4, seq_len=32,
        batch_size=2, rank=4, save_every=2, device="cpu",
    )  # fmt: skip
    genuine, calls = loop.collate, []

    def crash_at_step_3(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return genuine(*args)

    monkeypatch.setattr(loop, "collate", crash_at_step_3)
    with pytest.raises(RuntimeError):
        train_adapter(TrainOptions(**options))
    monkeypatch.undo()
    file = checkpoint_folder(out) / "step-000002" / "adapter.safetensors"
    name = _poison(file)
    with pytest.raises(EdgecompError, match=f"{file}: tensor '{name}' holds 1 NaN"):
        train_adapter(TrainOptions(**options, resume=True))
    assert not out.exists()
