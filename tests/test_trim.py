"""Vocabulary trimming: exact logits on the kept ids, exact id maps, dropped tokens re-encoded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny import CORPUS

from edgecomp.data.prompts import INSTRUCTION, prompt_ids
from edgecomp.data.tokenizer import encoder, load_tokenizer
from edgecomp.data.vocab_map import VOCAB_MAP, IdMap, byte_token_ids, load_id_map
from edgecomp.errors import EdgecompError
from edgecomp.eval.perplexity import score_onnx, token_sequences
from edgecomp.export.pipeline import export_checkpoint
from edgecomp.export.trim import corpus_lines, kept_ids, trim_model
from edgecomp.fsutil import sha256_file
from edgecomp.model_folder import MANIFEST
from edgecomp.runtime import Decoding, OnnxCausalLM, generate
from edgecomp.runtime.session import KVCache

ENGLISH = [
    line
    for line in CORPUS
    if line.isascii()
    and "Serikali" not in line
    and "Mvua" not in line
    and "Wanasayansi" not in line
    and "La ville" not in line
]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trim-corpus") / "en.txt"
    path.write_text("\n".join(ENGLISH) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def exports(tiny_base, corpus_file, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp(f"trim-{tiny_base.name}")
    runs = {
        "full": {},
        "trimmed": {"trim_corpus": [corpus_file]},
        "trimmed-int4": {"trim_corpus": [corpus_file], "quantize": "int4"},
    }
    return {
        name: (root / name, export_checkpoint(tiny_base, root / name, manifest={}, **kwargs))
        for name, kwargs in runs.items()
    }


@pytest.fixture(scope="module")
def tokenizer(tiny_base):
    return load_tokenizer(tiny_base)


def test_kept_ids_cover_corpus_specials_bytes_and_template(tokenizer, corpus_file):
    kept = set(kept_ids(tokenizer, corpus_lines([corpus_file])).tolist())
    encode = encoder(tokenizer)
    assert all(set(encode(line)) <= kept for line in ENGLISH)
    assert set(encode(INSTRUCTION)) <= kept
    assert {0, 1, 2, 3} <= kept  # pad, eos, bos, unk
    assert set(byte_token_ids(tokenizer).values()) <= kept and len(byte_token_ids(tokenizer)) == 256
    hindi = set(encode(CORPUS[-1])) - set(byte_token_ids(tokenizer).values())
    assert hindi and not hindi <= kept  # another script's pieces are dropped
    assert len(kept) < tokenizer.get_vocab_size()


def test_unused_placeholders_are_dropped_unless_asked(tokenizer):
    from tokenizers import AddedToken

    tokenizer = load_tokenizer_copy(tokenizer)
    tokenizer.add_special_tokens([AddedToken("<unused0>", special=True), AddedToken("<start_of_turn>", special=True)])
    unused, turn = tokenizer.token_to_id("<unused0>"), tokenizer.token_to_id("<start_of_turn>")
    assert unused not in kept_ids(tokenizer, ENGLISH) and turn in kept_ids(tokenizer, ENGLISH)
    assert unused in kept_ids(tokenizer, ENGLISH, keep_unused=True)


def load_tokenizer_copy(tokenizer):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(tokenizer.to_str())


def test_trimmed_export_files_and_manifest(exports, tokenizer):
    out, manifest = exports["trimmed"]
    data = json.loads((out / VOCAB_MAP).read_text())
    assert data["original_vocab_size"] == tokenizer.get_vocab_size() and data["kept_count"] == len(data["kept"])
    assert manifest["trim"]["vocab_size"] == len(data["kept"]) and manifest["trim"]["map"] == VOCAB_MAP
    assert manifest["trim"]["corpus"] == ["en.txt"] and manifest["files"][VOCAB_MAP] == sha256_file(out / VOCAB_MAP)
    assert manifest["verify"]["trim"]["max_abs_diff"] <= manifest["verify"]["trim"]["tolerance"]
    assert json.loads((out / MANIFEST).read_text()) == manifest
    assert load_id_map(exports["full"][0]) is None
    graph = onnx.load(str(out / "model.onnx")).graph
    logits = next(o for o in graph.output if o.name == "logits")
    assert logits.type.tensor_type.shape.dim[-1].dim_value == len(data["kept"])


def test_trimmed_logits_equal_full_logits_on_kept_ids(exports):
    full = OnnxCausalLM.load(exports["full"][0])
    trimmed = OnnxCausalLM.load(exports["trimmed"][0])
    id_map = load_id_map(exports["trimmed"][0], trimmed.tokenizer)
    ids = prompt_ids(full.encode, ENGLISH[0] + " " + ENGLISH[1], full.bos_id, 64)
    assert id_map.to_trimmed_ids(ids) == id_map.to_trimmed[ids].tolist()  # all kept: a plain lookup
    a, _ = full.decoder.run(np.array([ids]), full.decoder.empty_cache())
    b, _ = trimmed.decoder.run(np.array([id_map.to_trimmed_ids(ids)]), trimmed.decoder.empty_cache())
    assert b.shape[-1] == id_map.size
    np.testing.assert_allclose(b, a[..., id_map.to_original], rtol=1e-6, atol=1e-6 * np.abs(a).max())


def test_trimmed_int4_export_runs_with_a_smaller_table(exports):
    out, manifest = exports["trimmed-int4"]
    id_map = load_id_map(out)
    graph = onnx.load(str(out / "model.onnx")).graph
    gather = next(n for n in graph.node if n.op_type == "GatherBlockQuantized")
    table = next(t for t in graph.initializer if t.name == gather.input[0])
    assert table.dims[0] == id_map.size
    assert manifest["verify"]["int4"]["tokens"] > 10
    # The calibration text re-spelled into kept pieces stays in sequences of one length: tuned.
    assert "full calibration sequences" not in str(manifest["quantization"]["tune"])
    model = OnnxCausalLM.load(out)
    logits, _ = model.decoder.prefill(model.encode(ENGLISH[0]))
    assert logits.shape == (1, id_map.size) and np.isfinite(logits).all()


def text(tokenizer, ids) -> str:
    # The tiny tokenizer registers its byte tokens as special (Gemma's are ordinary vocabulary), so
    # they must not be skipped here.
    return tokenizer.decode(ids, skip_special_tokens=False)


def test_dropped_tokens_are_re_encoded_into_kept_pieces_and_bytes(exports, tokenizer):
    id_map = load_id_map(exports["trimmed"][0], tokenizer)
    byte_ids = set(byte_token_ids(tokenizer).values())
    for line in CORPUS + ["Zebras wander 🦓 — 42 km², naïve café."]:
        original = tokenizer.encode(line, add_special_tokens=False).ids
        trimmed, starts = id_map.to_trimmed_aligned(original)
        assert len(starts) == len(original) and starts == sorted(starts)
        assert min(trimmed) >= 0 and max(trimmed) < id_map.size
        back = id_map.to_original_ids(trimmed)
        assert text(tokenizer, back) == text(tokenizer, original)  # the same text, exactly
    # A Devanagari piece: no kept piece spells its characters, so it becomes their UTF-8 bytes.
    dropped = [i for i in tokenizer.encode(CORPUS[-1], add_special_tokens=False).ids if id_map.to_trimmed[i] < 0]
    assert dropped
    for token in dropped:
        pieces = id_map.to_original_ids(id_map.expand(token))
        spelled = tokenizer.id_to_token(token).replace("▁", " ")
        if all(ord(c) > 0x7F for c in spelled):
            assert set(pieces) <= byte_ids and len(pieces) == len(spelled.encode("utf-8"))
        assert text(tokenizer, pieces) == text(tokenizer, [token])


def test_kept_tokens_map_one_to_one(exports, tokenizer):
    id_map = load_id_map(exports["trimmed"][0], tokenizer)
    assert np.array_equal(id_map.to_trimmed[id_map.to_original], np.arange(id_map.size))
    assert np.array_equal(np.sort(id_map.to_original), id_map.to_original)
    assert id_map.trimmed_special_ids([1, 10**9]) == (int(id_map.to_trimmed[1]),)
    with pytest.raises(EdgecompError, match="sorted"):
        IdMap.from_kept([5, 3], 10, tokenizer)


class MaskedDecoder:
    """The full model with the logits of dropped ids at -inf: what a trimmed model must reproduce."""

    def __init__(self, decoder, kept: np.ndarray):
        self.decoder, self.mask = decoder, np.full(decoder.session.get_outputs()[0].shape[-1], -np.inf, np.float32)
        self.mask[kept] = 0

    def prefill(self, ids):
        logits, cache = self.decoder.prefill(ids)
        return logits + self.mask, cache

    def step(self, tokens, cache: KVCache):
        logits, cache = self.decoder.step(tokens, cache)
        return logits + self.mask, cache


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_through_the_id_map_matches_the_masked_full_model(exports, num_beams):
    """The runtime wiring: map the prompt in, generate over trimmed ids, map the tokens out."""
    full = OnnxCausalLM.load(exports["full"][0])
    trimmed = OnnxCausalLM.load(exports["trimmed"][0])
    id_map = load_id_map(exports["trimmed"][0], trimmed.tokenizer)
    prompt = prompt_ids(full.encode, ENGLISH[1], full.bos_id, 64)
    reference = generate(
        MaskedDecoder(full.decoder, id_map.to_original),
        prompt,
        Decoding(max_new_tokens=8, num_beams=num_beams),
        eos_ids=full.eos_ids,
    ).tokens
    out = generate(
        trimmed.decoder,
        id_map.to_trimmed_ids(prompt),
        Decoding(max_new_tokens=8, num_beams=num_beams),
        eos_ids=id_map.trimmed_special_ids(trimmed.eos_ids),
    )
    assert id_map.to_original_ids(out.tokens) == reference


def test_perplexity_of_a_trimmed_export_is_per_original_token(exports, tiny_base):
    sequences = token_sequences(tiny_base, ENGLISH + [CORPUS[-1]])
    full = score_onnx(exports["full"][0], sequences)
    trimmed = score_onnx(exports["trimmed"][0], sequences)
    assert trimmed.tokens == full.tokens  # aligned on the original tokens
    # Sequences inside the kept set: the kept rows' logits renormalised over fewer ids, so the loss
    # can only drop, and the greedy choice is the same unless the full model's was a dropped id.
    for a, b in zip(full.nll[:-1], trimmed.nll[:-1]):
        assert np.all(b <= a + 1e-5)
    assert np.isfinite(trimmed.nll[-1]).all()


def test_trim_needs_an_embedding_and_head():
    graph = onnx.helper.make_graph([], "empty", [], [])
    with pytest.raises(EdgecompError, match="cannot trim"):
        trim_model(onnx.helper.make_model(graph), np.arange(3))


def test_corpus_lines_read_text_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\ntwo\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "three", "summary": "four"}) + "\n", encoding="utf-8")
    assert corpus_lines([tmp_path / "a.txt", tmp_path / "b.jsonl"]) == ["one", "two", "three", "four"]
    with pytest.raises(EdgecompError, match="does not exist"):
        corpus_lines([tmp_path / "missing.txt"])
