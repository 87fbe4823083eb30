"""QLoRA training on tiny models: the loss moves, the adapter is a loadable PEFT folder, metadata is right."""

import hashlib
import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from edgecomp.data.vocabulary import read_vocabulary
from edgecomp.errors import EdgecompError
from edgecomp.options import check_values
from edgecomp.train.adapter import TrainOptions, train_adapter


def options(base, data, out, **kw):
    defaults = dict(kind="language", lang="sw", steps=12, seq_len=32, batch_size=2, lr=2e-2, rank=4)
    return TrainOptions(base=str(base), data=data, out=out, **{**defaults, **kw})


@pytest.fixture(scope="module")
def qlora_language(tiny_base, mono_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "lang-sw"
    return out, train_adapter(options(tiny_base, mono_file, out, qlora=True))


def test_qlora_moves_the_loss_and_records_metadata(qlora_language, mono_file):
    out, meta = qlora_language
    assert meta["quantization"] == "nf4"
    assert meta["final_loss"] < meta["first_loss"] - 0.3
    saved = json.loads((out / "edgecomp.json").read_text())
    assert saved == meta
    assert saved["kind"] == "language" and saved["lang"] == "sw" and saved["steps"] == 12
    assert saved["base"]["fingerprint"].startswith("sha256:")
    assert saved["data"] == {
        "file": mono_file.name,
        "sha256": hashlib.sha256(mono_file.read_bytes()).hexdigest(),
        "examples": saved["data"]["examples"],
    }
    assert saved["tokens_per_s"] > 0


def test_a_language_adapter_records_the_vocabulary_of_its_text(qlora_language, tiny_base, mono_file):
    from edgecomp.data.examples import language_blocks
    from edgecomp.data.readers import read_lines
    from edgecomp.data.tokenizer import encoder, load_tokenizer
    from edgecomp.data.vocabulary import read_vocabulary
    from edgecomp.model_folder import special_ids

    out, meta = qlora_language
    ids = special_ids(tiny_base)
    blocks = language_blocks(read_lines(mono_file), encoder(load_tokenizer(tiny_base)), ids.bos, ids.eos[0], 32)
    assert len(blocks) == meta["data"]["examples"]
    assert read_vocabulary(out).tolist() == sorted({i for block in blocks for i in block})


def test_adapter_is_a_loadable_peft_folder_targeting_block_linears(qlora_language, tiny_base):
    out, _ = qlora_language
    config = json.loads((out / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    model = PeftModel.from_pretrained(base, out)
    ids = torch.tensor([[2, 30, 31, 32, 33]])
    with torch.no_grad():
        adapted = model(ids).logits
        with model.disable_adapter():
            plain = model(ids).logits
    assert not torch.allclose(adapted, plain)  # training moved B away from its zero init


def test_task_adapter_full_precision(tiny_llama_dir, pairs_file, tmp_path):
    meta = train_adapter(options(tiny_llama_dir, pairs_file, tmp_path / "task-en", kind="task", lang="en", seq_len=64))
    assert meta["quantization"] == "none" and meta["kind"] == "task"
    examples = meta["data"]["examples"]
    assert examples > 0 and read_vocabulary(tmp_path / "task-en").size > 10  # the task text's tokens too
    assert meta["final_loss"] < meta["first_loss"]


def test_same_seed_same_adapter_the_second_from_cached_tokens(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from edgecomp.train import adapter

    monkeypatch.setenv("EDGECOMP_HOME", str(tmp_path / "home"))
    genuine, builds = adapter.build_examples, []
    monkeypatch.setattr(adapter, "build_examples", lambda *a: builds.append(1) or genuine(*a))
    for name in ("a", "b"):
        train_adapter(options(tiny_llama_dir, mono_file, tmp_path / name, steps=3))
    assert len(builds) == 1  # the second run read the tokens from the cache
    train_adapter(options(tiny_llama_dir, mono_file, tmp_path / "c", steps=3, seq_len=24))
    assert len(builds) == 2  # another sequence length is another entry
    a = load_file(str(tmp_path / "a" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "b" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_gradient_checkpointing_trains_the_same_adapter(tiny_base, mono_file, tmp_path, monkeypatch):
    """Recomputing the blocks' activations in backward changes memory and time, not the result."""
    import transformers.modeling_utils as modeling_utils
    from safetensors.torch import load_file

    calls = []
    checkpoint = modeling_utils.checkpoint
    monkeypatch.setattr(modeling_utils, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    for name, checkpointing in (("plain", False), ("checkpointed", True)):
        train_adapter(
            options(tiny_base, mono_file, tmp_path / name, steps=3, dropout=0.0, gradient_checkpointing=checkpointing)
        )
        assert bool(calls) == checkpointing  # the blocks went through torch's checkpoint exactly when asked
    a = load_file(str(tmp_path / "plain" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "checkpointed" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.parametrize(
    "change, message",
    [
        (["--kind", "style"], "--kind 'style' is not allowed: one of language, task"),
        (["--lang", "swahili"], "--lang 'swahili': unknown language code 'swahili'"),
        (["--lang", "qq"], "unknown language code 'qq'"),
        (["--seq-len", "8"], "--seq-len 8 is not allowed: an integer from 16 to"),
        (["--steps", "0"], "--steps 0 is not allowed: an integer from 1 to"),
        (["--lr", "nan"], "--lr nan is not allowed: a finite number in (0, 1]"),
        (["--dropout", "1"], "--dropout 1.0 is not allowed: a finite number in [0, 1)"),
        (["--report-to", "wandb"], "--report-to 'wandb' is not allowed: one of none, tensorboard"),
    ],
)
def test_bad_options_are_refused_before_any_work(tiny_llama_dir, mono_file, tmp_path, change, message):
    from typer.testing import CliRunner

    from edgecomp.cli import app

    args = ["train", "--kind", "language", "--lang", "sw", "--data", mono_file, "--out", tmp_path / "x",
            "--base", tiny_llama_dir, "--steps", "2", *change]  # fmt: skip
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("edgecomp: error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "x").exists()


def test_options_shared_by_the_python_api_are_checked_there(tiny_llama_dir, mono_file, tmp_path):
    with pytest.raises(EdgecompError, match="unknown language code 'qq'"):
        train_adapter(options(tiny_llama_dir, mono_file, tmp_path / "x", lang="qq"))
    assert not (tmp_path / "x").exists()


def test_tensorboard_gets_the_metrics_of_metrics_jsonl(tiny_llama_dir, mono_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "adapter"
    train_adapter(options(tiny_llama_dir, mono_file, out, steps=3, report_to="tensorboard"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(out / "runs"))
    events.Reload()
    logged = events.Scalars("train/loss")
    assert [e.step for e in logged] == [r["step"] for r in rows] == [1, 2, 3]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert {"train/lr", "train/tokens_per_s", "train/peak_rss_mb"} <= set(events.Tags()["scalars"])


def test_tensorboard_missing_is_one_line_before_any_work(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    import importlib.util

    genuine = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else genuine(name, *a)
    )
    with pytest.raises(EdgecompError, match=r"needs tensorboard: pip install 'edgecomp\[tensorboard\]'"):
        train_adapter(options(tiny_llama_dir, mono_file, tmp_path / "x", report_to="tensorboard"))
    assert not (tmp_path / "x").exists()


def test_existing_output_is_refused_and_kept(tiny_llama_dir, mono_file, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(EdgecompError, match="already exists"):
        train_adapter(options(tiny_llama_dir, mono_file, out))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_language_adapter_with_sampled_label_positions(tiny_llama_dir, mono_file, tmp_path):
    meta = train_adapter(options(tiny_llama_dir, mono_file, tmp_path / "lang", label_fraction=0.5))
    assert meta["final_loss"] < meta["first_loss"] and meta["options"]["label_fraction"] == 0.5
    with pytest.raises(EdgecompError, match=r"--label-fraction 0.0 is not allowed: a finite number in \(0, 1\]"):
        check_values("train", {"label_fraction": 0.0})  # what `train` and recipe steps check first
    with pytest.raises(EdgecompError, match="for language adapters"):
        train_adapter(options(tiny_llama_dir, mono_file, tmp_path / "task", kind="task", label_fraction=0.5))
