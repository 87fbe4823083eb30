"""Export: fp32 ONNX equals PyTorch, quantized graphs carry the quantized ops (and store a tied
embedding / LM head once), fp16 runs, writes are atomic."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny import MODES
from transformers import AutoModelForCausalLM

from edgecomp.errors import EdgecompError
from edgecomp.export import verify
from edgecomp.export.onnx_io import external_data_files
from edgecomp.export.pipeline import export_checkpoint
from edgecomp.export.quantization.apply import quantize_onnx
from edgecomp.fsutil import sha256_file
from edgecomp.model_folder import MANIFEST
from edgecomp.runtime import Decoding, OnnxCausalLM, generate


def raw_onnx_logits(model_path: Path, ids: list[int]) -> np.ndarray:
    """Logits straight from onnxruntime, feeds built from the graph's own input metadata."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    feeds = {}
    for spec in session.get_inputs():
        if spec.name == "input_ids":
            feeds[spec.name] = np.array([ids], dtype=np.int64)
        elif spec.name == "attention_mask":
            feeds[spec.name] = np.ones((1, len(ids)), dtype=np.int64)
        elif spec.name == "position_ids":
            feeds[spec.name] = np.arange(len(ids), dtype=np.int64)[None]
        elif spec.name == "logits_to_keep":
            feeds[spec.name] = np.array(0, dtype=np.int64)  # every position
        else:  # past_key_values.*: [batch, kv_heads, past, head_dim], past empty
            _, heads, _, head_dim = spec.shape
            feeds[spec.name] = np.zeros((1, heads, 0, head_dim), dtype=np.float32)
    return session.run(["logits"], feeds)[0][0]


def op_counts(model_path: Path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(model_path)).graph.node)


def test_fp32_export_matches_pytorch(tiny_base, exported):
    out, manifest = exported["none"]
    check = manifest["verify"]["fp32"]
    assert 0 <= check["max_abs_diff"] <= check["tolerance"]
    assert check["max_abs_diff"] < 1e-4  # fp32 vs fp32: far inside the tolerance, not near it
    assert check["tokens"] > 10

    ids = np.random.default_rng(7).integers(4, 400, size=37).tolist()  # not the verify sequence
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    with torch.inference_mode():
        reference = model(torch.tensor([ids])).logits[0].numpy()
    scale = max(1.0, float(np.abs(reference).max()))
    np.testing.assert_allclose(raw_onnx_logits(out / "model.onnx", ids), reference, atol=1e-5 * scale)


def test_export_folder_contents_and_manifest(tiny_base, exported):
    out, manifest = exported["none"]
    names = {p.name for p in out.iterdir()}
    assert {
        "model.onnx",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        MANIFEST,
    } <= names
    on_disk = json.loads((out / MANIFEST).read_text())
    assert on_disk == manifest
    assert manifest["base"] == tiny_base.name and manifest["quantize"] == "none"
    assert set(manifest["files"]) == names - {MANIFEST}
    assert all(sha256_file(out / n) == h for n, h in manifest["files"].items())
    assert (out / "config.json").read_bytes() == (tiny_base / "config.json").read_bytes()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.parametrize(
    "mode, expected_ops",
    [
        ("int8", {"MatMulNBits", "GatherBlockQuantized"}),
        ("int4", {"MatMulNBits", "GatherBlockQuantized"}),
        ("fp16", {"Cast"}),
    ],
)
def test_quantized_exports_carry_quantized_ops_and_run(exported, mode, expected_ops):
    out, manifest = exported[mode]
    ops = op_counts(out / "model.onnx")
    assert all(ops[op] > 0 for op in expected_ops), ops
    if mode != "fp16":
        assert ops["MatMul"] < op_counts(exported["none"][0] / "model.onnx")["MatMul"]
    assert manifest["quantize"] == mode and manifest["quantization"]["mode"] == mode

    measured = manifest["verify"][mode]
    assert np.isfinite(measured["max_abs_diff"]) and 0 <= measured["greedy_agreement"] <= 1
    assert manifest["verify"]["fp32"]["max_abs_diff"] <= manifest["verify"]["fp32"]["tolerance"]

    model = OnnxCausalLM.load(out)
    logits, _ = model.decoder.prefill(model.encode("Heavy rain flooded the market."))
    assert np.isfinite(logits).all() and logits.dtype == np.float32
    assert len(generate(model.decoder, [2, 40, 41], Decoding(max_new_tokens=5)).tokens) == 5


def vocab_tables(model_path: Path, vocab: int, hidden: int) -> list[onnx.TensorProto]:
    """Weights with a row (or column) per token of ``hidden`` values: the embedding table and the
    LM head (packed: hidden/2 bytes a token at 4 bits), not their per-block scales."""
    return [
        t
        for t in onnx.load(str(model_path)).graph.initializer
        if vocab in t.dims and len(t.dims) >= 2 and np.prod(t.dims) // vocab >= hidden // 2
    ]


@pytest.mark.parametrize("mode", MODES)
def test_tied_embedding_and_lm_head_are_stored_once(tiny_base, exported, mode):
    config = json.loads((tiny_base / "config.json").read_text())
    tables = vocab_tables(exported[mode][0] / "model.onnx", config["vocab_size"], config["hidden_size"])
    assert len(tables) == 1, [(t.name, list(t.dims)) for t in tables]
    if mode in ("int8", "int4"):
        weights = exported[mode][1]["quantization"]["weights"]
        assert weights["tied"] and weights["embedding"].endswith("sharing the LM head's blocks")
        assert tables[0].data_type == onnx.TensorProto.UINT8


def test_int4_export_is_smaller_than_the_embedding_alone_in_fp32(tiny_base, exported):
    config = json.loads((tiny_base / "config.json").read_text())
    fp32_table = config["vocab_size"] * config["hidden_size"] * 4

    def size(folder: Path) -> int:  # the graph and its external weights
        return sum(p.stat().st_size for p in folder.glob("model.onnx*"))

    assert size(exported["int4"][0]) < 0.75 * fp32_table + size(exported["none"][0]) - fp32_table


def test_existing_out_dir_is_refused_unless_forced(tiny_llama_dir, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(EdgecompError, match="already exists"):
        export_checkpoint(tiny_llama_dir, out, manifest={})
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]

    export_checkpoint(tiny_llama_dir, out, manifest={}, force=True)
    assert not (out / "keep.txt").exists() and (out / "model.onnx").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_failed_verification_writes_nothing(tiny_llama_dir, tmp_path, monkeypatch):
    genuine = verify.torch_logits
    monkeypatch.setattr(verify, "torch_logits", lambda *a: genuine(*a) + 0.5)
    with pytest.raises(EdgecompError, match="differ from PyTorch"):
        export_checkpoint(tiny_llama_dir, tmp_path / "export", manifest={})
    assert list(tmp_path.iterdir()) == []


def test_bad_requests_fail_before_any_work(tiny_llama_dir, tmp_path):
    with pytest.raises(EdgecompError, match="unknown quantization"):
        export_checkpoint(tiny_llama_dir, tmp_path / "a", quantize="int3", manifest={})
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((tiny_llama_dir / "config.json").read_text())
    with pytest.raises(EdgecompError, match="tokenizer.json"):
        export_checkpoint(bare, tmp_path / "b", manifest={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare"]


@pytest.mark.parametrize("mode", MODES)
def test_quantize_keeps_external_data_format(exported, tmp_path, mode):
    """A source with external weights gives a result with external weights that still runs."""
    src = tmp_path / "src"
    src.mkdir()
    model = onnx.load(str(exported["none"][0] / "model.onnx"))
    # onnx's default threshold: shape constants stay inline (ONNX Runtime cannot run the source otherwise)
    onnx.save_model(
        model, src / "model.onnx", save_as_external_data=True, location="model.onnx_data", size_threshold=1024
    )
    for extra in exported["none"][0].iterdir():  # config and tokenizer: int4's GPTQ calibrates with them
        if not extra.name.startswith("model.onnx"):
            shutil.copy2(extra, src / extra.name)
    assert external_data_files(src / "model.onnx") == ["model.onnx_data"]

    dst = quantize_onnx(src, tmp_path / "dst", mode)
    data = external_data_files(dst)
    assert data and all((dst.parent / name).is_file() for name in data)
    ids = [2, 30, 31, 32]
    assert np.isfinite(raw_onnx_logits(dst, ids)).all()
