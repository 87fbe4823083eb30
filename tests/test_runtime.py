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
from tiny import CORPUS
from transformers import AutoModelForCausalLM

from edgecomp.data.prompts import prompt_ids
from edgecomp.errors import EdgecompError
from edgecomp.export.pipeline import export_checkpoint
from edgecomp.runtime import (
    Decoding,
    OnnxCausalLM,
    TextStream,
    generate,
    generate_batch,
    session,
    summarize,
    summarize_many,
)

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
        ours = generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=20), eos_ids=onnx_model.eos_ids)
        assert ours.tokens == hf_new_tokens(torch_model, prompt, do_sample=False, max_new_tokens=20)
        # Stopping: make a token the greedy path produces an eos id; both must stop right there.
        eos = ours.tokens[6]
        stopped = generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=20), eos_ids=(eos,))
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
        greedy = generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=6)).tokens
        eos = {
            "model": list(onnx_model.eos_ids),
            "one": [greedy[1]],
            "several": sorted(set(greedy)),
        }[eos_choice]
        ours = generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=16, num_beams=3), eos_ids=tuple(eos))
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
    greedy = generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=1))
    assert generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=1, num_beams=4)).tokens == greedy.tokens


def test_sampling_is_seeded_and_top_k_1_is_greedy(onnx_model):
    prompt = prompts(onnx_model)[0]
    kwargs = dict(max_new_tokens=15, do_sample=True, temperature=1.5, top_p=0.95)
    first = generate(onnx_model.decoder, prompt, Decoding(seed=11, **kwargs)).tokens
    assert generate(onnx_model.decoder, prompt, Decoding(seed=11, **kwargs)).tokens == first
    others = {tuple(generate(onnx_model.decoder, prompt, Decoding(seed=s, **kwargs)).tokens) for s in range(12, 16)}
    assert others - {tuple(first)}, "different seeds should not all sample the same continuation"

    greedy = generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=15)).tokens
    assert (
        generate(onnx_model.decoder, prompt, Decoding(max_new_tokens=15, do_sample=True, top_k=1, seed=5)).tokens
        == greedy
    )
    tiny_nucleus = dict(max_new_tokens=15, do_sample=True, top_p=1e-9, temperature=0.7, seed=5)
    assert generate(onnx_model.decoder, prompt, Decoding(**tiny_nucleus)).tokens == greedy


def test_chunked_prefill_equals_one_pass(onnx_model, monkeypatch):
    prompt = prompts(onnx_model)[2]
    decoder = onnx_model.decoder
    full, _ = decoder.run(np.array([prompt]), decoder.empty_cache(1))
    monkeypatch.setattr(decoder, "prefill_chunk", 7)
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
            generate(onnx_model.decoder, [2, 5, 6], Decoding(**{"max_new_tokens": 3, **kwargs}))


def test_summarize_returns_summary_and_timings(export_dir, onnx_model):
    out = summarize(export_dir, ARTICLE, Decoding(max_new_tokens=8))
    assert set(out) == {"summary", "prompt_tokens", "new_tokens", "chunks", "truncated", "timings"}
    assert out["chunks"] == 1 and out["truncated"] is False
    assert isinstance(out["summary"], str) and out["summary"] == out["summary"].strip()
    assert out["prompt_tokens"] == len(prompts(onnx_model)[0])
    assert 1 <= out["new_tokens"] <= 8
    timings = out["timings"]
    assert set(timings) == {"load_s", "prefill_s", "decode_s", "tokens_per_s"}
    assert all(v >= 0 for v in timings.values()) and timings["load_s"] > 0

    beams = summarize(export_dir, ARTICLE, Decoding(max_new_tokens=8, num_beams=2))
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
        summarize(export_dir, ARTICLE, Decoding(max_new_tokens=400))  # the tiny models have 256 positions


def test_runtime_never_imports_torch(export_dir):
    code = (
        "import json, sys\n"
        "from edgecomp.runtime import Decoding, summarize, summarize_many\n"
        f"out = summarize({str(export_dir)!r}, {ARTICLE!r}, Decoding(max_new_tokens=5, num_beams=2))\n"
        f"summarize_many({str(export_dir)!r}, [{ARTICLE!r}] * 2 + [{ARTICLE * 40!r}], Decoding(max_new_tokens=5),"
        " progress=False)\n"
        "heavy = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'new_tokens': out['new_tokens']}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == [] and result["new_tokens"] >= 1


# --- batches, streaming, long articles, the logits_to_keep graph, providers --------------------


def test_batch_generation_equals_one_at_a_time(onnx_model):
    """Left-padded batches (prompts of 3 lengths) pick, row by row, what one prompt alone picks."""
    batch = prompts(onnx_model)
    decoder = onnx_model.decoder
    alone = [generate(decoder, p, Decoding(max_new_tokens=12)).tokens for p in batch]
    assert [g.tokens for g in generate_batch(decoder, batch, Decoding(max_new_tokens=12))] == alone
    # Rows that stop early leave the batch; the others go on unchanged.
    eos = (alone[0][3],)
    stopped = [generate(decoder, p, Decoding(max_new_tokens=12), eos_ids=eos).tokens for p in batch]
    assert [g.tokens for g in generate_batch(decoder, batch, Decoding(max_new_tokens=12), eos_ids=eos)] == stopped
    kwargs = dict(max_new_tokens=10, do_sample=True, temperature=1.3, top_k=50, seed=4)
    sampled = [generate(decoder, p, Decoding(**kwargs)).tokens for p in batch]
    assert [g.tokens for g in generate_batch(decoder, batch, Decoding(**kwargs))] == sampled
    # Chunked batch prefill (2 rows × 3 tokens a pass) changes nothing either.
    decoder_chunk = decoder.prefill_chunk
    try:
        decoder.prefill_chunk = 6
        assert [g.tokens for g in generate_batch(decoder, batch, Decoding(max_new_tokens=12))] == alone
    finally:
        decoder.prefill_chunk = decoder_chunk


def test_summarize_many_equals_summarize(onnx_model):
    texts = [ARTICLE, "Scientists found a new species of frog.", "La ville a approuvé un budget. " * 3]
    one = [summarize(onnx_model, t, Decoding(max_new_tokens=10)) for t in texts]
    many = summarize_many(onnx_model, texts, Decoding(max_new_tokens=10), batch_size=3)
    assert [m["summary"] for m in many] == [o["summary"] for o in one]
    assert [m["prompt_tokens"] for m in many] == [o["prompt_tokens"] for o in one]
    assert [m["new_tokens"] for m in many] == [o["new_tokens"] for o in one]
    with pytest.raises(EdgecompError, match="empty"):
        summarize_many(onnx_model, [ARTICLE, " "])


def test_text_stream_holds_back_partial_characters(onnx_model):
    """Byte-fallback tokens split characters the tiny vocabulary lacks (Tamil, CJK, emoji) into
    bytes; no piece may carry half a character. (The tiny tokenizer marks its byte tokens special,
    Gemma's does not: decode keeps them here.)"""
    text = "सरकार ने தமிழ் நாடு 東京で大雨 🌧️ Serikali imetangaza mpango."
    ids = onnx_model.encode(text)
    assert sum(onnx_model.tokenizer.id_to_token(i).startswith("<0x") for i in ids) > 20  # byte fallback

    def decode(tokens):
        return onnx_model.tokenizer.decode(tokens, skip_special_tokens=False)

    pieces: list[str] = []
    stream = TextStream(decode, pieces.append, onnx_model.eos_ids)
    for token in [*ids, *onnx_model.eos_ids]:
        stream.push(token)
    stream.close()
    assert "".join(pieces) == decode(ids).strip() == text
    assert not any("\ufffd" in piece for piece in pieces) and len(pieces) > 5


def test_summarize_streams_the_summary(onnx_model):
    for kwargs in (dict(), dict(num_beams=2), dict(do_sample=True, seed=3)):
        pieces: list[str] = []
        out = summarize(onnx_model, ARTICLE, Decoding(max_new_tokens=12, **kwargs), on_token=pieces.append)
        assert "".join(pieces) == out["summary"]


def test_long_article_is_summarized_by_chunks(onnx_model):
    """The tiny models have 256 positions: a 1,000-token article needs several chunk passes."""
    long_text = " ".join(CORPUS * 12)
    assert len(onnx_model.encode(long_text)) > 900
    pieces: list[str] = []
    out = summarize(onnx_model, long_text, Decoding(max_new_tokens=8), on_token=pieces.append, progress=False)
    assert out["chunks"] >= 4 and not out["truncated"]
    assert "".join(pieces) == out["summary"] and 1 <= out["new_tokens"] <= 8
    assert out["prompt_tokens"] > len(onnx_model.encode(long_text))  # every chunk, then the reduce pass
    capped = summarize(onnx_model, long_text, Decoding(max_new_tokens=8), max_chunks=2, progress=False)
    assert capped["chunks"] == 2 and capped["truncated"]
    # In a batch, a long article goes by chunks too, and equals summarize's result.
    many = summarize_many(onnx_model, [ARTICLE, long_text], Decoding(max_new_tokens=8), progress=False)
    assert many[1]["summary"] == out["summary"] and many[1]["chunks"] == out["chunks"]
    with pytest.raises(EdgecompError, match="max_chunks"):
        summarize(onnx_model, long_text, max_chunks=0)


def test_logits_to_keep_patch(export_dir, onnx_model, tiny_base, tmp_path):
    """Every export carries ``logits_to_keep``; the patched graph computes the unpatched graph's
    logits (all positions with 0, the last with 1), prefills in one pass, and generates the same
    tokens."""
    import shutil

    from edgecomp.export.logits_to_keep import add_logits_to_keep
    from edgecomp.export.onnx_export import export_onnx

    assert not add_logits_to_keep(export_dir / "model.onnx")  # already there: the file is untouched
    raw_dir = tmp_path / "raw"
    export_onnx(tiny_base, raw_dir)
    for extra in export_dir.iterdir():
        if not extra.name.startswith("model.onnx") and extra.name != "edgecomp-export.json":
            shutil.copy2(extra, raw_dir / extra.name)
    patched, onnx_model = onnx_model, OnnxCausalLM.load(raw_dir)  # onnx_model: the unpatched graph below
    assert patched.decoder.has_logits_to_keep and not onnx_model.decoder.has_logits_to_keep
    prompt = prompts(onnx_model)[2]
    ids = np.array([prompt])
    full, _ = onnx_model.decoder.run(ids, onnx_model.decoder.empty_cache(1))
    every, _ = patched.decoder.run(ids, patched.decoder.empty_cache(1))
    last, _ = patched.decoder.run(ids, patched.decoder.empty_cache(1), last_only=True)
    np.testing.assert_allclose(every, full, atol=1e-5)
    assert last.shape == (1, 1, full.shape[-1])
    np.testing.assert_allclose(last[0, -1], full[0, -1], atol=1e-5)
    for p in prompts(onnx_model):
        assert (
            generate(patched.decoder, p, Decoding(max_new_tokens=10)).tokens
            == generate(onnx_model.decoder, p, Decoding(max_new_tokens=10)).tokens
        )
    batch = prompts(onnx_model)
    assert [g.tokens for g in generate_batch(patched.decoder, batch, Decoding(max_new_tokens=8))] == [
        g.tokens for g in generate_batch(onnx_model.decoder, batch, Decoding(max_new_tokens=8))
    ]


def test_provider_selection(export_dir, monkeypatch):
    assert session.check_provider("cpu") == "CPUExecutionProvider"
    with pytest.raises(EdgecompError, match="unknown provider 'tpu'"):
        session.check_provider("tpu")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(EdgecompError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
        session.check_provider("cuda")

    # CUDA "available" but the session silently falls back to CPU (missing CUDA libraries).
    made = {}

    class FallbackSession:
        def __init__(self, path, options, providers):
            made.update(providers=providers, threads=options.intra_op_num_threads)

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FallbackSession)
    with pytest.raises(EdgecompError, match="could not be initialised"):
        session.create_session(export_dir / "model.onnx", "cuda")
    assert made["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert made["threads"] == session.physical_cores() >= 1


def test_session_options():
    options = session.session_options(threads=3, spinning=False)
    assert options.intra_op_num_threads == 3
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session.session_options().intra_op_num_threads == session.physical_cores()


def test_cuda_session_end_to_end(export_dir):
    """Runs only where onnxruntime-gpu and a GPU are present: IO binding keeps the cache on the GPU."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("no CUDAExecutionProvider here")
    cpu = OnnxCausalLM.load(export_dir)
    try:
        gpu = OnnxCausalLM.load(export_dir, "cuda")
    except EdgecompError as e:
        pytest.skip(str(e))
    p = prompts(cpu)[0]
    _, cache = gpu.decoder.prefill(p)
    assert cache.tensors[0].device_name().lower() == "cuda"
    assert (
        generate(gpu.decoder, p, Decoding(max_new_tokens=10)).tokens
        == generate(cpu.decoder, p, Decoding(max_new_tokens=10)).tokens
    )
    batch = prompts(cpu)
    assert [g.tokens for g in generate_batch(gpu.decoder, batch, Decoding(max_new_tokens=8))] == [
        generate(cpu.decoder, q, Decoding(max_new_tokens=8)).tokens for q in batch
    ]
    assert (
        generate(gpu.decoder, p, Decoding(max_new_tokens=8, num_beams=3)).tokens
        == generate(cpu.decoder, p, Decoding(max_new_tokens=8, num_beams=3)).tokens
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pages are given back on Linux only")
def test_clean_pages_are_given_back_and_read_again_dirty_ones_kept(tmp_path):
    import mmap

    from edgecomp.runtime import resident

    data = np.random.default_rng(0).integers(0, 255, 64 * mmap.PAGESIZE, dtype=np.uint8).tobytes()
    (tmp_path / "weights.bin").write_bytes(data)
    (tmp_path / "written.bin").write_bytes(data)
    with open(tmp_path / "weights.bin", "rb") as f, open(tmp_path / "written.bin", "r+b") as g:
        clean = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
        dirty = mmap.mmap(g.fileno(), 0, access=mmap.ACCESS_COPY)
        assert clean[:] == data and dirty[:] == data  # every page resident
        dirty[5] = (data[5] + 1) % 256  # a private change the file does not have
        assert sum(r for *_, r, _ in resident._mappings(str(tmp_path))) == 2 * len(data)
        assert resident.release_clean_pages(tmp_path) == len(data)  # the clean mapping's pages only
        after = resident._mappings(str(tmp_path))
        assert sorted(r for *_, r, _ in after) == [0, len(data)] and sorted(w for *_, w in after) == [0, mmap.PAGESIZE]
        assert clean[:] == data  # read back from the file
        assert dirty[5] == (data[5] + 1) % 256 and dirty[:5] == data[:5]  # the written mapping kept as it was
        clean.close()
        dirty.close()


def test_generation_is_unchanged_by_giving_weight_pages_back(exported, monkeypatch):
    from edgecomp.runtime import resident, session

    folder = exported["int4"][0]
    released = OnnxCausalLM.load(folder)
    assert sum(r for *_, r, _ in resident._mappings(str(folder.resolve()))) == 0  # ONNX Runtime maps the weights
    monkeypatch.setattr(session, "release_clean_pages", lambda folder: 0)
    kept = OnnxCausalLM.load(folder)
    for prompt in prompts(kept):
        decoding = Decoding(max_new_tokens=12)
        assert generate(released.decoder, prompt, decoding).tokens == generate(kept.decoder, prompt, decoding).tokens
