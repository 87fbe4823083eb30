"""``tokenizer_from_gguf`` against llama.cpp: the recorded fixture always, live when it is installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from edgecomp.fsutil import sha256_file
from edgecomp.models.gguf_tokenizer import read_metadata, save_hf_tokenizer, tokenizer_from_gguf

FIXTURE = Path(__file__).parent / "fixtures" / "llamacpp_gemma3_tokens.json"
MONO_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "mono"
FRANCE = "The capital of France is Paris."


@pytest.fixture(scope="session")
def recorded() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def tok(packaged_gguf):
    return tokenizer_from_gguf(packaged_gguf)


def test_fixture_was_recorded_from_this_gguf(packaged_gguf, recorded):
    assert sha256_file(packaged_gguf) == recorded["gguf_sha256"]


def test_ids_equal_llamacpp(tok, recorded):
    cases = recorded["cases"]
    ours = tok.encode_batch([c["text"] for c in cases])
    wrong = [(c["text"], c["ids"], e.ids) for c, e in zip(cases, ours) if e.ids != c["ids"]]
    assert not wrong, f"{len(wrong)}/{len(cases)} differ from llama.cpp, first: {wrong[0]}"
    assert len(cases) >= 90


def test_decode_gives_the_text_back(tok, recorded):
    cases = [c for c in recorded["cases"] if "▁" not in c["text"]]  # a literal "▁" comes back as " "
    assert len(cases) == len(recorded["cases"]) - 1
    for case in cases:
        assert tok.decode(case["ids"], skip_special_tokens=True) == case["text"]


def test_special_tokens_are_text_unless_asked(tok):
    text = "<start_of_turn>user\n</s>"
    assert tok.encode(text).tokens[:3] == ["<bos>", "<", "start"]
    tok.encode_special_tokens = False
    try:
        assert tok.encode(text).ids == [2, 105, 2364, 107, 212]
    finally:
        tok.encode_special_tokens = True


def test_saved_folder_loads_with_autotokenizer(tok, recorded, tmp_path):
    save_hf_tokenizer(tok, tmp_path, bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>")
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(hf, PreTrainedTokenizerFast)
    assert (hf.bos_token_id, hf.eos_token_id, hf.unk_token_id, hf.pad_token_id) == (2, 1, 3, 0)
    cases = recorded["cases"]
    assert hf([c["text"] for c in cases])["input_ids"] == [c["ids"] for c in cases]
    assert hf("<start_of_turn>", split_special_tokens=False)["input_ids"] == [2, 105]


def test_live_llamacpp_on_mono_text(tok, packaged_gguf):
    llama_cpp = pytest.importorskip("llama_cpp")
    if not MONO_DIR.is_dir():
        pytest.skip(f"no shared data at {MONO_DIR}")
    llm = llama_cpp.Llama(model_path=str(packaged_gguf), vocab_only=True, verbose=False)
    for lang in ["en", "sw", "hi", "ar", "vi"]:
        lines = (MONO_DIR / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
        ours = tok.encode_batch(lines)
        wrong = [t for t, e in zip(lines, ours) if e.ids != llm.tokenize(t.encode(), add_bos=True, special=False)]
        assert not wrong, f"{lang}: {len(wrong)}/{len(lines)} lines differ from llama.cpp, first: {wrong[0]!r}"


def test_transformers_gguf_tokenizer_is_wrong_for_this_vocab(packaged_gguf, recorded):
    """Why ``tokenizer_from_gguf`` exists; if this fails, transformers has fixed its converter."""
    from transformers.integrations.ggml import convert_gguf_tokenizer  # what gguf_file= loading uses

    meta = read_metadata(packaged_gguf)
    fields = {k.removeprefix("tokenizer.ggml."): v for k, v in meta.items() if k.startswith("tokenizer.ggml.")}
    fields["scores"], fields["token_type"] = fields["scores"].tolist(), fields["token_type"].tolist()
    theirs, _ = convert_gguf_tokenizer("gemma3_text", fields)
    assert theirs.encode(FRANCE).tokens[1:5] == ["▁c", "ap", "it", "al"]
    assert recorded["cases"][0] == {"text": FRANCE, "ids": [2, 818, 5279, 529, 7001, 563, 9079, 236761]}
