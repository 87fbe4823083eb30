"""Head trimming: the kept rows are the full head's, each prompt's own tokens are scored too, and
callers see the whole vocabulary's ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from tiny import CORPUS

from edgecomp.data.tokenizer import encoder, load_tokenizer
from edgecomp.data.vocab_map import HEAD_IDS, read_head_ids
from edgecomp.errors import EdgecompError
from edgecomp.eval.perplexity import score_onnx
from edgecomp.export.pipeline import export_checkpoint
from edgecomp.runtime import Decoding, OnnxCausalLM, generate
from edgecomp.runtime.session import HeadIds

ENGLISH = [line for line in CORPUS if line.isascii()][:4]


@pytest.fixture(scope="module")
def exports(tiny_base, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp(f"head-{tiny_base.name}")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(ENGLISH) + "\n", encoding="utf-8")
    out = {"full": root / "full", "head": root / "head"}
    export_checkpoint(tiny_base, out["full"], manifest={}, quantize="int8")
    export_checkpoint(tiny_base, out["head"], manifest={}, quantize="int8", head_corpus=[corpus])
    return out


def test_the_manifest_records_the_head_and_its_check(exports):
    manifest = json.loads((exports["head"] / "edgecomp-export.json").read_text())
    head = manifest["trim_head"]
    kept, size = read_head_ids(exports["head"])
    assert head["head_size"] == kept.size < size == head["original_vocab_size"]
    assert head["verify"]["kept_max_abs_diff"] <= 1e-4 * head["verify"]["logit_scale"]
    assert head["corpus"] == ["corpus.txt"] and not (exports["head"] / "genai_config.json").exists()
    assert (exports["full"] / "genai_config.json").exists()


def test_the_graph_stays_in_topological_order(exports):
    graph = onnx.load(str(exports["head"] / "model.onnx"), load_external_data=False).graph
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        assert set(node.input) <= known, (node.name, set(node.input) - known)
        known |= set(node.output)


def test_logits_are_the_full_heads_on_kept_and_prompt_ids_and_minus_inf_elsewhere(exports, tiny_base):
    full, head = OnnxCausalLM.load(exports["full"]), OnnxCausalLM.load(exports["head"])
    kept, size = read_head_ids(exports["head"])
    for line in CORPUS:  # other scripts too: tokens outside the kept set
        ids = full.encode(line)
        a, _ = full.decoder.run(np.array([ids]), full.decoder.empty_cache(1))
        b, _ = head.decoder.run(np.array([ids]), head.decoder.empty_cache(1))
        scored = np.union1d(kept, ids)
        np.testing.assert_allclose(b[0][:, kept], a[0][:, kept], atol=1e-4 * np.abs(a).max())
        np.testing.assert_allclose(b[0][:, scored], a[0][:, scored], atol=0.02 * np.abs(a).max())
        assert np.isneginf(np.delete(b[0], scored, axis=1)).all() and b.shape == a.shape


def test_generation_writes_only_kept_and_prompt_tokens_and_the_text_decodes(exports):
    model = OnnxCausalLM.load(exports["head"])
    kept, _ = read_head_ids(exports["head"])
    for line in CORPUS:
        prompt = model.encode(line)
        out = generate(model.decoder, prompt, Decoding(max_new_tokens=10))
        assert set(out.tokens) <= set(kept.tolist()) | set(prompt)
        assert isinstance(model.decode(out.tokens), str)


def test_a_new_sequence_starts_a_new_extra_set():
    ids = HeadIds(np.array([0, 2, 5]), 10)
    assert ids.indices(np.array([[5, 7, 2, 9]]), fresh=True).tolist() == [[2, 3, 1, 4]]
    assert ids.extra.tolist() == [7, 9]
    assert ids.indices(np.array([[8]]), fresh=False).tolist() == [[4]] and ids.extra.tolist() == [7, 8, 9]
    assert ids.indices(np.array([[0, 9]]), fresh=False).tolist() == [[0, 5]]
    assert ids.indices(np.array([[0]]), fresh=True).tolist() == [[0]] and ids.extra.size == 0
    logits = ids.full_logits(np.array([[1.0, 2.0, 3.0]]))
    assert logits[0, [0, 2, 5]].tolist() == [1.0, 2.0, 3.0] and np.isneginf(logits[0, [1, 3, 4, 6, 7, 8, 9]]).all()
    with pytest.raises(EdgecompError, match=r"lie in \[0, 10\)"):
        ids.indices(np.array([[10]]), fresh=True)


def test_perplexity_of_a_head_trimmed_export_is_refused(exports, tiny_base):
    ids = [encoder(load_tokenizer(tiny_base))(ENGLISH[0])]
    with pytest.raises(EdgecompError, match="not comparable"):
        score_onnx(exports["head"], ids)


def test_a_damaged_map_is_one_line(exports, tmp_path):
    (tmp_path / HEAD_IDS).write_text('{"kept": [3, 1], "original_vocab_size": 10}')
    with pytest.raises(EdgecompError, match="sorted, distinct"):
        read_head_ids(tmp_path)
    (tmp_path / HEAD_IDS).write_text("not json")
    with pytest.raises(EdgecompError, match="not a head-trimming map"):
        read_head_ids(tmp_path)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"quantize": "none"}, "--quantize int8 or int4"),
        ({"quantize": "int8", "trim_corpus": True}, "without --trim-vocab"),
        ({"quantize": "int8", "lora_inputs": True}, "run-time LoRA inputs"),
    ],
)
def test_refusals_come_before_any_work(tiny_llama_dir, tmp_path, options, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world\n", encoding="utf-8")
    if options.pop("trim_corpus", False):
        options["trim_corpus"] = [corpus]
    with pytest.raises(EdgecompError, match=message):
        export_checkpoint(tiny_llama_dir, tmp_path / "out", manifest={}, head_corpus=[corpus], **options)
    assert not (tmp_path / "out").exists()


def test_merge_export_cuts_the_head_of_the_cached_full_export(tiny_llama_dir, tmp_path):
    from typer.testing import CliRunner

    from edgecomp.cli import app

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(ENGLISH) + "\n", encoding="utf-8")
    base = ["--base", str(tiny_llama_dir), "--quantize", "int8"]
    full = CliRunner().invoke(app, ["merge-export", *base, "--out", str(tmp_path / "full")])
    head = CliRunner().invoke(app, ["merge-export", *base, "--trim-head", str(corpus), "--out", str(tmp_path / "head")])
    assert full.exit_code == 0 and head.exit_code == 0, head.output
    manifest = json.loads((tmp_path / "head" / "edgecomp-export.json").read_text())
    assert manifest["trim_head"]["corpus"] == ["corpus.txt"] and manifest["quantize"] == "int8"
    assert (
        manifest["spec_sha256"] != json.loads((tmp_path / "full" / "edgecomp-export.json").read_text())["spec_sha256"]
    )
    assert (tmp_path / "full" / "model.onnx.data").read_bytes() != (tmp_path / "head" / "model.onnx.data").read_bytes()
    summary = CliRunner().invoke(
        app, ["summarize", "-", "--model", str(tmp_path / "head"), "--max-new-tokens", "6"], input=CORPUS[0]
    )
    assert summary.exit_code == 0, summary.output
    refused = CliRunner().invoke(
        app,
        ["merge-export", "--base", str(tiny_llama_dir), "--trim-head", str(corpus), "--out", str(tmp_path / "fp32")],
    )
    assert refused.exit_code != 0 and "--quantize int8 or int4" in refused.output and not (tmp_path / "fp32").exists()
