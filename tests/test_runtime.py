"""Runtime: our numpy decoding loop picks what transformers' ``generate`` picks, without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from transformers import AutoModelForCausalLM

from edgecomp.data.prompts import prompt_ids
from edgecomp.errors import EdgecompError
from edgecomp.export.pipeline import export_checkpoint
from edgecomp.runtime import OnnxCausalLM, generate, session, summarize

ARTICLE = "Heavy rain flooded the market and traders lost their goods. Mvua kubwa imesababisha mafuriko."


@pytest.fixture(scope="session")
def export_dir(tiny_base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"runtime-{tiny_base.name}") / "export"
    export_checkpoint(tiny_base, out, manifest={})
    return out


@pytest.fixture(scope="session")
def onnx_model(export_dir) -> OnnxCausalLM:
    return OnnxCausalLM.load(export_dir)


@pytest.fixture(scope="session")
def torch_model(tiny_base):
    return AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()


def prompts(model: OnnxCausalLM) -> list[list[int]]:
    """A real summarization prompt and two random ones (longer than Gemma3's 8-token window)."""
    rng = np.random.default_rng(3)
    return [
        prompt_ids(model.encode, ARTICLE, model.bos_id, 200),
        [2, *rng.integers(4, 500, size=15).tolist()],
        [2, *rng.integers(4, 500, size=30).tolist()],
    ]


def hf_new_tokens(torch_model, prompt: list[int], **kwargs) -> list[int]:
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = torch_model.generate(ids, attention_mask=torch.ones_like(ids), pad_token_id=0, **kwargs)
    return out[0, len(prompt) :].tolist()


def test_greedy_equals_transformers(onnx_model, torch_model):
    for prompt in prompts(onnx_model):
        ours = generate(onnx_model.decoder, prompt, max_new_tokens=20, eos_ids=onnx_model.eos_ids)
        assert ours.tokens == hf_new_tokens(torch_model, prompt, do_sample=False, max_new_tokens=20)
        # Stopping: make a token the greedy path produces an eos id; both must stop right there.
        eos = ours.tokens[6]
        stopped = generate(onnx_model.decoder, prompt, max_new_tokens=20, eos_ids=(eos,))
        assert stopped.tokens == ours.tokens[: ours.tokens.index(eos) + 1]
        assert stopped.tokens == hf_new_tokens(
            torch_model, prompt, do_sample=False, max_new_tokens=20, eos_token_id=eos
        )


@pytest.mark.parametrize("eos_choice", ["model", "one", "several"])
def test_beam_search_equals_transformers(onnx_model, torch_model, eos_choice):
    """``one``/``several`` make tokens the model likes into eos ids, so hypotheses finish early and
    the finishing, early-stopping and several-eos rules are exercised, not only the length limit
    (on the Gemma3 base some searches stop after 1 or 7 tokens)."""
    for prompt in prompts(onnx_model):
        greedy = generate(onnx_model.decoder, prompt, max_new_tokens=6).tokens
        eos = {
            "model": list(onnx_model.eos_ids),
            "one": [greedy[1]],
            "several": sorted(set(greedy)),
        }[eos_choice]
        ours = generate(onnx_model.decoder, prompt, max_new_tokens=16, eos_ids=tuple(eos), num_beams=3)
        theirs = hf_new_tokens(
            torch_model,
            prompt,
            do_sample=False,
            num_beams=3,
            early_stopping=True,
            length_penalty=1.0,
            max_new_tokens=16,
            eos_token_id=eos,
        )
        assert ours.tokens == theirs


def test_beam_of_one_token_is_greedy(onnx_model):
    prompt = prompts(onnx_model)[1]
    greedy = generate(onnx_model.decoder, prompt, max_new_tokens=1)
    assert generate(onnx_model.decoder, prompt, max_new_tokens=1, num_beams=4).tokens == greedy.tokens


def test_sampling_is_seeded_and_top_k_1_is_greedy(onnx_model):
    prompt = prompts(onnx_model)[0]
    kwargs = dict(max_new_tokens=15, do_sample=True, temperature=1.5, top_p=0.95)
    first = generate(onnx_model.decoder, prompt, seed=11, **kwargs).tokens
    assert generate(onnx_model.decoder, prompt, seed=11, **kwargs).tokens == first
    others = {tuple(generate(onnx_model.decoder, prompt, seed=s, **kwargs).tokens) for s in range(12, 16)}
    assert others - {tuple(first)}, "different seeds should not all sample the same continuation"

    greedy = generate(onnx_model.decoder, prompt, max_new_tokens=15).tokens
    assert generate(onnx_model.decoder, prompt, max_new_tokens=15, do_sample=True, top_k=1, seed=5).tokens == greedy
    tiny_nucleus = dict(max_new_tokens=15, do_sample=True, top_p=1e-9, temperature=0.7, seed=5)
    assert generate(onnx_model.decoder, prompt, **tiny_nucleus).tokens == greedy


def test_chunked_prefill_equals_one_pass(onnx_model, monkeypatch):
    prompt = prompts(onnx_model)[2]
    decoder = onnx_model.decoder
    full, _ = decoder.run(np.array([prompt]), decoder.empty_cache(1))
    monkeypatch.setattr(session, "PREFILL_CHUNK", 7)
    last, cache = decoder.prefill(prompt)
    assert cache.length == len(prompt)
    np.testing.assert_allclose(last[0], full[0, -1], atol=1e-5)


def test_generate_rejects_bad_arguments(onnx_model):
    for kwargs in [
        dict(num_beams=2, do_sample=True),
        dict(num_beams=0),
        dict(max_new_tokens=0),
        dict(do_sample=True, temperature=0.0),
        dict(do_sample=True, top_p=0.0),
    ]:
        with pytest.raises(EdgecompError):
            generate(onnx_model.decoder, [2, 5, 6], **{"max_new_tokens": 3, **kwargs})


def test_summarize_returns_summary_and_timings(export_dir, onnx_model):
    out = summarize(export_dir, ARTICLE, max_new_tokens=8)
    assert set(out) == {"summary", "prompt_tokens", "new_tokens", "timings"}
    assert isinstance(out["summary"], str) and out["summary"] == out["summary"].strip()
    assert out["prompt_tokens"] == len(prompts(onnx_model)[0])
    assert 1 <= out["new_tokens"] <= 8
    timings = out["timings"]
    assert set(timings) == {"load_s", "prefill_s", "decode_s", "tokens_per_s"}
    assert all(v >= 0 for v in timings.values()) and timings["load_s"] > 0

    beams = summarize(export_dir, ARTICLE, max_new_tokens=8, num_beams=2)
    assert beams["prompt_tokens"] == out["prompt_tokens"]


def test_summarize_refuses_bad_input(export_dir, tmp_path):
    with pytest.raises(EdgecompError, match="empty"):
        summarize(export_dir, "  \n ")
    with pytest.raises(EdgecompError, match="not an edgecomp export"):
        summarize(tmp_path, ARTICLE)
    with pytest.raises(EdgecompError, match="unknown provider"):
        summarize(export_dir, ARTICLE, provider="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(EdgecompError, match="CUDAExecutionProvider"):
            summarize(export_dir, ARTICLE, provider="cuda")
    with pytest.raises(EdgecompError, match="max_new_tokens"):
        summarize(export_dir, ARTICLE, max_new_tokens=400)  # the tiny models have 256 positions


def test_runtime_never_imports_torch(export_dir):
    code = (
        "import json, sys\n"
        "from edgecomp.runtime import summarize\n"
        f"out = summarize({str(export_dir)!r}, {ARTICLE!r}, max_new_tokens=5, num_beams=2)\n"
        "heavy = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'new_tokens': out['new_tokens']}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["new_tokens"] >= 1
