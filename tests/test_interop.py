"""Standard callers run edgecomp's ONNX exports: optimum's ORTModelForCausalLM, and a plain
onnxruntime loop that feeds the usual decoder inputs and nothing else."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgecomp.runtime import Decoding, OnnxCausalLM, generate
from edgecomp.runtime.session import session_options

ARTICLE = "Heavy rain flooded the market and traders lost their goods. Mvua kubwa imesababisha mafuriko."


@pytest.mark.parametrize("mode", ["none", "int8", "int4"])
def test_optimum_generate_picks_what_edgecomp_picks(exported, mode):
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoTokenizer

    folder = exported[mode][0]
    ours = OnnxCausalLM.load(folder)
    prompt = [ours.bos_id, *ours.encode(ARTICLE)]
    mine = generate(ours.decoder, prompt, Decoding(max_new_tokens=12), eos_ids=ours.eos_ids).tokens

    theirs = ORTModelForCausalLM.from_pretrained(folder, session_options=session_options())
    ids = torch.tensor([prompt])
    out = theirs.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False)
    assert out[0, len(prompt) :].tolist() == mine

    encoded = AutoTokenizer.from_pretrained(folder)(ARTICLE, return_tensors="pt")
    assert set(encoded) == {"input_ids", "attention_mask"}  # no token_type_ids for generate to pass on
    assert encoded["input_ids"][0].tolist()[-len(prompt) + 1 :] == prompt[1:]


def test_a_plain_onnxruntime_caller_needs_no_logits_to_keep(exported):
    """Feeding only input_ids, attention_mask, position_ids and an empty cache gives every
    position's logits, as feeding logits_to_keep=0 does."""
    folder = exported["int8"][0]
    session = ort.InferenceSession(str(folder / "model.onnx"), session_options(), providers=["CPUExecutionProvider"])
    assert "logits_to_keep" not in {i.name for i in session.get_inputs()}
    config = json.loads((folder / "config.json").read_text())
    heads = config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    ids = np.array([[2, 40, 41, 42, 43]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "position_ids": np.arange(5)[None]}
    for i in range(config["num_hidden_layers"]):
        for kind in ("key", "value"):
            feeds[f"past_key_values.{i}.{kind}"] = np.zeros((1, heads, 0, head_dim), dtype=np.float32)
    every = session.run(["logits"], feeds)[0]
    assert every.shape[:2] == (1, 5)
    np.testing.assert_array_equal(every, session.run(["logits"], {**feeds, "logits_to_keep": np.array(0)})[0])
    last = session.run(["logits"], {**feeds, "logits_to_keep": np.array(1)})[0]
    np.testing.assert_allclose(last[0, -1], every[0, -1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["none", "int8", "int4"])
def test_onnxruntime_genai_generates_what_edgecomp_generates(exported, mode):
    og = pytest.importorskip(
        "onnxruntime_genai", reason="onnxruntime-genai is not installed (pip install 'edgecomp[genai]')"
    )
    folder = exported[mode][0]
    ours = OnnxCausalLM.load(folder)
    prompt = [ours.bos_id, *ours.encode(ARTICLE)]
    mine = generate(ours.decoder, prompt, Decoding(max_new_tokens=12), eos_ids=ours.eos_ids).tokens

    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(prompt) + 12)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(prompt, dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    theirs = [int(t) for t in generator.get_sequence(0)][len(prompt) :]
    # onnxruntime-genai stops on an eos id without keeping it in the sequence
    assert theirs == [t for t in mine if t not in ours.eos_ids] and len(theirs) >= len(mine) - 1


def test_no_genai_config_where_onnxruntime_genai_could_not_run_the_export(tiny_base, tmp_path):
    """A graph with run-time LoRA inputs takes updates onnxruntime-genai would not feed."""
    from edgecomp.export.pipeline import export_checkpoint

    export_checkpoint(tiny_base, tmp_path / "lora", quantize="none", manifest={}, lora_inputs=True)
    assert not (tmp_path / "lora" / "genai_config.json").exists()


def test_hf_format_is_the_merged_model_that_transformers_loads(tiny_base, tmp_path):
    """merge-export --format hf of one adapter gives what PEFT computes with that adapter, loads with
    AutoModelForCausalLM, carries a manifest, and is refused by edgecomp's ONNX runtime in one line."""
    from adapters import make_adapter
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from edgecomp.cli import app
    from edgecomp.fsutil import sha256_file

    adapter = make_adapter(tiny_base, tmp_path / "adapter", seed=3)
    out = tmp_path / "hf"
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["merge-export", "--out", str(out), "--adapter", f"{adapter}:1", "--base", str(tiny_base), "--format", "hf"],
    )
    assert done.exit_code == 0, done.output
    manifest = json.loads((out / "edgecomp-export.json").read_text())
    assert manifest["format"] == "hf" and manifest["verify"]["reload"]["max_abs_diff"] == 0.0
    assert all(sha256_file(out / name) == digest for name, digest in manifest["files"].items())
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= set(manifest["files"])

    ids = torch.tensor([[2, 40, 41, 42, 43, 44]])
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32), adapter)
    with torch.inference_mode():
        np.testing.assert_allclose(merged(ids).logits.numpy(), peft.eval()(ids).logits.numpy(), rtol=1e-4, atol=1e-5)
    assert set(AutoTokenizer.from_pretrained(out)("a b c")) == {"input_ids", "attention_mask"}

    (tmp_path / "x.txt").write_text("Heavy rain flooded the market.", encoding="utf-8")
    refused = runner.invoke(app, ["summarize", str(tmp_path / "x.txt"), "--model", str(out)])
    assert refused.exit_code != 0 and "--format hf export" in refused.output and "Traceback" not in refused.output
    wrong = runner.invoke(
        app,
        [
            "merge-export",
            "--out",
            str(tmp_path / "q"),
            "--adapter",
            f"{adapter}:1",
            "--base",
            str(tiny_base),
            "--format",
            "hf",
            "--quantize",
            "int8",
        ],
    )
    assert wrong.exit_code != 0 and "--quantize applies to ONNX exports" in wrong.output
    assert not (tmp_path / "q").exists()
