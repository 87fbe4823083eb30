"""Named prompts: a task adapter's prompt travels into its composition and export, and summarize uses it."""

from __future__ import annotations

import pytest
from adapters import make_adapter

from edgecomp.compose.spec import resolve_spec
from edgecomp.data.examples import task_example
from edgecomp.data.prompts import PROMPTS, instruction
from edgecomp.errors import EdgecompError
from edgecomp.export.merge_export import merge_export
from edgecomp.runtime.model import OnnxCausalLM


def encode(text):
    return [10 + ord(c) % 100 for c in text]


def test_task_examples_end_with_the_named_prompt():
    for name, tail in PROMPTS.items():
        ids, labels = task_example({"text": "An article.", "summary": "S."}, encode, 2, 1, 64, 8, instruction(name))
        prompt_len = labels.count(-100)
        assert ids[prompt_len - len(encode(tail)) : prompt_len] == encode(tail)
    with pytest.raises(EdgecompError, match="unknown prompt"):
        instruction("klingon")


def _task(base, path, seed, prompt):
    meta = {"kind": "task", "lang": "en", "options": {"prompt": prompt}}
    return make_adapter(base, path, seed=seed, meta=meta)


def test_export_records_the_task_adapters_prompt_and_summarize_uses_it(tiny_llama_dir, tmp_path):
    task = _task(tiny_llama_dir, tmp_path / "task", 1, "neutral")
    lang = make_adapter(tiny_llama_dir, tmp_path / "lang", seed=2, meta={"kind": "language", "lang": "sw"})
    resolved = resolve_spec({"adapters": [f"{task}:1", f"{lang}:1"]}, tmp_path)
    assert resolved.prompt() == "neutral"
    manifest = merge_export(resolved, tmp_path / "export", base=str(tiny_llama_dir))
    assert manifest["prompt"] == "neutral"
    assert OnnxCausalLM.load(tmp_path / "export").instruction == PROMPTS["neutral"]
    plain = resolve_spec({"adapters": [f"{lang}:1"]}, tmp_path)
    assert plain.prompt() == "english"  # no task adapter: the default


def test_task_adapters_with_different_prompts_are_refused(tiny_llama_dir, tmp_path):
    a = _task(tiny_llama_dir, tmp_path / "a", 1, "neutral")
    b = _task(tiny_llama_dir, tmp_path / "b", 2, "english")
    with pytest.raises(EdgecompError, match="different prompts"):
        resolve_spec({"adapters": [f"{a}:1", f"{b}:1"]}, tmp_path).prompt()
