"""edgecomp's quick SentencePiece-BPE encoder gives the ids and text of the ``tokenizers`` tokenizer
it replaces: llama.cpp's recorded ids on Gemma 3's real vocabulary, any text (property test),
special-token handling, and a fallback for tokenizers of another shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import tiny_tokenizer

from edgecomp.data.spm_tokenizer import SpmTokenizer, compact_tokenizer
from edgecomp.data.tokenizer import load_tokenizer
from edgecomp.models.gguf_tokenizer import save_hf_tokenizer, tokenizer_from_gguf

FIXTURE = Path(__file__).parent / "fixtures" / "llamacpp_gemma3_tokens.json"
ODD = [
    "",
    " ",
    "  two  spaces ",
    "\n\n\n\ttab",
    "<bos><start_of_turn>user\n</s>",
    "😀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u200b\x00",
    "a" * 300,
    "▁literal▁marks",
    "ह" * 50 + " नमस्ते",
    "مرحبا بالعالم",
    "Xin chào thế giới",
]


@pytest.fixture(scope="module")
def folder(packaged_gguf, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gemma3-tokenizer")
    save_hf_tokenizer(tokenizer_from_gguf(packaged_gguf), out, bos="<bos>", eos="<eos>", unk="<unk>", pad="<pad>")
    return out


@pytest.fixture(scope="module")
def quick(folder) -> SpmTokenizer:
    tok = load_tokenizer(folder, quick=True)
    assert isinstance(tok, SpmTokenizer)
    return tok


@pytest.fixture(scope="module")
def reference(folder):
    return load_tokenizer(folder)


def test_llama_cpp_ids_and_text_back(quick):
    cases = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]
    for case in cases:
        assert [2] + quick.encode(case["text"]).ids == case["ids"], case["text"]
        if "▁" not in case["text"]:
            assert quick.decode(case["ids"]) == case["text"]


@pytest.mark.parametrize("text", ODD)
def test_odd_text_as_tokenizers_does(quick, reference, text):
    ids = reference.encode(text, add_special_tokens=False).ids
    assert quick.encode(text).ids == ids
    assert quick.decode(ids) == reference.decode(ids, skip_special_tokens=True)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_any_text_as_tokenizers_does(quick, reference, text):
    ids = reference.encode(text, add_special_tokens=False).ids
    assert quick.encode(text).ids == ids
    assert quick.decode(ids) == reference.decode(ids, skip_special_tokens=True)


def test_special_tokens_are_text_unless_asked(quick):
    text = "<start_of_turn>user\n</s>"
    assert quick.encode(text).tokens[:2] == ["<", "start"]
    quick.encode_special_tokens = False
    try:
        assert quick.encode(text).ids == [105, 2364, 107, 212]
    finally:
        quick.encode_special_tokens = True


def test_the_cache_is_rebuilt_when_damaged(folder, edgecomp_home):
    for cached in (edgecomp_home / "tokenizers").glob("*.npz"):
        cached.write_bytes(b"not an npz")
    again = compact_tokenizer(folder)
    assert again is not None and again.encode("The capital of France is Paris.").ids[:2] == [818, 5279]


def test_other_tokenizers_keep_tokenizers(tmp_path):
    tiny_tokenizer().save_pretrained(tmp_path)  # a Split pre-tokenizer: not SentencePiece-BPE
    assert compact_tokenizer(tmp_path) is None
    assert type(load_tokenizer(tmp_path, quick=True)).__name__ == "Tokenizer"


def test_vocabulary_lookups_as_tokenizers_does(quick, reference):
    """What the id map of a trimmed export reads: pieces by id and ids by piece, added tokens."""
    size = reference.get_vocab_size(with_added_tokens=True)
    assert quick.get_vocab_size() == size
    for i in list(range(0, size, 997)) + [0, 1, 2, 105, 106, size - 1]:
        piece = reference.id_to_token(i)
        assert quick.id_to_token(i) == piece
        assert quick.token_to_id(piece) == reference.token_to_id(piece) == i
    assert quick.id_to_token(size) is None and quick.token_to_id("no such piece ✗✗✗") is None
    expected = {i: (t.content, t.special) for i, t in reference.get_added_tokens_decoder().items()}
    assert {i: (t.content, t.special) for i, t in quick.get_added_tokens_decoder().items()} == expected
