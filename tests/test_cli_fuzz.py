"""Every command fuzzed: Hypothesis draws option values from each option's declared rule
(:mod:`edgecomp.options`: valid, boundary and invalid values; NaN, infinities, huge numbers, empty
and odd Unicode text; paths to every kind of damaged or foreign file) and the command must either
succeed or exit non-zero with a few lines on stderr: never a traceback, never a partial output,
never a changed input.

Derandomized and small in CI (``EDGECOMP_FUZZ_EXAMPLES``, default 5 per command); set it higher
for a longer local run. Valid values of the options that decide how much work a run does
(``WORK``) stay small, and every run is on a tiny base: a valid draw really trains, exports or
summarizes. Commands whose valid run measures the real default base (``bench compare``,
``bench train``) always get one invalid value too; ``tests/test_bench*.py`` run them.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import typer.main
from adapters import make_adapter
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from tiny_gguf import write_tiny_gguf
from typer.testing import CliRunner

from edgecomp import options
from edgecomp.cli import app

EXAMPLES = int(os.environ.get("EDGECOMP_FUZZ_EXAMPLES", "5"))
MAX_STDERR_LINES = 8  # click's usage errors take a usage line, a hint and a boxed message
FRESH = "<fresh output>"  # replaced by a path nothing has used yet
FRESH_NAMES = itertools.count()


def _commands() -> dict[str, object]:
    found = {}

    def walk(group, prefix=""):
        for name, sub in group.commands.items():
            if hasattr(sub, "commands"):
                walk(sub, f"{prefix}{name} ")
            else:
                found[f"{prefix}{name}"] = sub

    walk(typer.main.get_command(app))
    return found


COMMANDS = _commands()
EXPENSIVE = {"bench compare": ["--repeats", "0"], "bench train": ["--steps", "0"]}  # an invalid value each
# Options always given: never the real default base nor the shipped library's exports, and what a
# run needs to do anything (the others are given or left at their defaults at random).
ALWAYS = {
    "eval": ("model", "data", "lang"),
    "summarize": ("model", "files"),
    "compose": ("adapter", "base"),
    "merge-export": ("base", "adapter"),
}
WORK = {
    "steps": [1, 2],
    "epochs": [0.01, 0.5],
    "seq_len": [16, 24],
    "max_new_tokens": [1, 4],
    "prompt_tokens": [4, 8],
    "new_tokens": [1, 2],
    "repeats": [1],
    "warmup": [0],
    "tune_steps": [0, 1],
    "max_chunks": [1, 2],
    "batch_size": [1, 2],
    "grad_accum": [1, 2],
    "rank": [1, 2],
    "limit": [1, 2],
    "article_tokens": [16, 32],
    "num_beams": [1, 2],
    "top_k": [0, 1],
    "block_size": [16, 32],
    "save_every": [0, 1],
    "threads": [1],
}


def test_every_command_option_has_a_declared_rule():
    for command, cmd in COMMANDS.items():
        assert getattr(cmd.callback, "checked_command", None) == command, f"`edgecomp {command}` is not @checked"
        for param in cmd.params:
            options.rule(command, param.name)  # raises LookupError for an undeclared option


def _poison(file: Path) -> None:
    tensors = load_file(str(file))
    name = sorted(tensors)[0]
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(file))


@pytest.fixture(scope="module")
def zoo(tiny_llama_dir, mono_file, pairs_file, tmp_path_factory) -> dict[str, Path]:
    """Inputs of every kind: valid ones on the tiny base, and damaged or foreign ones."""
    from edgecomp.export.pipeline import export_checkpoint

    root = tmp_path_factory.mktemp("zoo")
    z = {"base": tiny_llama_dir}
    z["text"], z["pairs"] = Path(shutil.copy(mono_file, root)), Path(shutil.copy(pairs_file, root))
    z["adapter"] = make_adapter(tiny_llama_dir, root / "adapter", seed=3, rank=2)
    z["nan_adapter"] = Path(shutil.copytree(z["adapter"], root / "nan-adapter"))
    _poison(z["nan_adapter"] / "adapter_model.safetensors")
    z["lying_adapter"] = Path(shutil.copytree(z["adapter"], root / "lying-adapter"))
    raw = json.dumps({"x": {"dtype": "F32", "shape": [1 << 20], "data_offsets": [0, 4 << 20]}}).encode()
    (z["lying_adapter"] / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 64)
    z["export"] = root / "export"
    export_checkpoint(tiny_llama_dir, z["export"], quantize="none", manifest={"base": "tiny"})
    z["bad_manifest"] = Path(shutil.copytree(z["export"], root / "bad-manifest"))
    (z["bad_manifest"] / "edgecomp-export.json").write_text("{not json")
    z["foreign_onnx"] = root / "foreign-onnx"
    z["foreign_onnx"].mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer.json"):
        shutil.copy(tiny_llama_dir / name, z["foreign_onnx"])
    (z["foreign_onnx"] / "model.onnx").write_bytes(b"\x08\x07 not a protobuf")
    z["nan_base"] = Path(shutil.copytree(tiny_llama_dir, root / "nan-base"))
    _poison(z["nan_base"] / "model.safetensors")
    gguf = write_tiny_gguf("llama", root / "tiny.gguf")
    z["truncated_gguf"] = root / "truncated.gguf"
    z["truncated_gguf"].write_bytes(gguf.read_bytes()[: gguf.stat().st_size // 2])
    gguf.unlink()
    z["empty"] = root / "empty.txt"
    z["empty"].write_bytes(b"")
    z["binary"] = root / "binary.bin"
    z["binary"].write_bytes(bytes(range(256)) * 4)
    z["bad_json"] = root / "bad.jsonl"
    z["bad_json"].write_text('{"text": "a", "summary": ', encoding="utf-8")
    z["unicode"] = root / "é☃ 中.txt"
    z["unicode"].write_text("Habari za leo. Mvua ilinyesha jana.\n", encoding="utf-8")
    z["articles"] = root / "articles"
    z["articles"].mkdir()
    (z["articles"] / "a.txt").write_text("Rain fell in the city all night and the river rose.", encoding="utf-8")
    z["empty_dir"] = root / "empty-dir"
    z["empty_dir"].mkdir()
    z["root"] = root
    z["good_recipe"] = root / "good-recipe.yaml"
    z["good_recipe"].write_text("steps:\n  - compose:\n      adapters: ['../adapter:1']\n      out: composed\n")
    z["recipe"] = root / "recipe.yaml"
    z["recipe"].write_text("steps:\n  - dance: {}\n", encoding="utf-8")
    z["config"] = root / "config.json"
    z["config"].write_text(json.dumps({"model_type": "llama", "hidden_size": -4}), encoding="utf-8")
    z["missing"] = root / "missing.txt"
    z["outputs"] = Path(tmp_path_factory.mktemp("outputs"))
    return z


def _damaged(z) -> list[str]:
    """Paths to every kind of file an input option should refuse (or read, where it takes them)."""
    names = ("nan_adapter", "lying_adapter", "bad_manifest", "foreign_onnx", "nan_base", "truncated_gguf", "empty",
             "binary", "bad_json", "unicode", "empty_dir", "recipe", "config", "missing", "text", "export")  # fmt: skip
    return [str(z[n]) for n in names] + ["", str(z["text"] / "x")]


# Inputs that work, by option name (the others get a text file).
GOOD_INPUTS = {
    "data": ["text", "pairs"], "model": ["export"], "library": ["empty_dir"], "spec": ["recipe"],
    "calibration": ["text"], "trim_vocab": ["text", "pairs"], "input_jsonl": ["pairs"], "folder": ["adapter"],
    "adapter": ["adapter"], "root": ["root"], "files": ["articles", "unicode"], "base": ["base"],
    "recipe": ["good_recipe"],
}  # fmt: skip


def _numbers(rule, name: str) -> tuple[list, list]:
    low, high = rule.bounds
    if name in WORK:
        good = WORK[name]
    elif any(isinstance(v, float) for v in (low, high)):
        lo, hi = (low if low is not None else -1.0), (high if high is not None else 1.0)
        good = [lo + (hi - lo) / 4, lo + (hi - lo) / 2]
    else:
        good = [v for v in (low, (low or 0) + 1) if v is not None]
    if any(isinstance(v, float) for v in (*good, low, high)):
        return good, ["nan", "inf", "-inf", "x", "-1", "1e308", "0", *([low] if low is not None else [])]
    edges = [*([low - 1] if low is not None else []), *([high + 1] if high is not None else [])]
    return good, ["x", "", *edges, 10**30, "-1", "0", *([high] if high is not None and name not in WORK else [])]


def pool(command: str, name: str, z) -> tuple[list, list]:
    """(values that should work, values that should not or that are odd) for ``command``'s ``name``."""
    rule = options.rule(command, name)
    special = {
        "lang": (["sw", "en"], ["xx", "", "swahili", "zho", "☃", "\udcff"]),
        "target": (["sw"], ["xx", "", "zho"]),
        "source": (["en"], ["xx", ""]),
        "device": (["cpu"], ["cuda:x", "tpu", "cuda"]),
        "adapter": ([f"{z['adapter']}:1", f"{z['adapter']}:-1"] if command in ("compose", "merge-export") else [],
                    [f"{z['nan_adapter']}:1", f"{z['lying_adapter']}:1", f"{z['adapter']}:x", f"{z['missing']}:1",
                     ":", f"{z['adapter']}:1:layers=9-1", f"{z['adapter']}:nan"]),
        "lambda_grid": (["1,2"], ["1", "a,b", "nan,1", ""]),
        "eight_bit_layers": (["0,1", "none"], ["x", "", "0,,1"]),
        "files": ([str(z["articles"] / "a.txt"), str(z["unicode"]), "-"], [str(z["binary"]), str(z["missing"]), ""]),
        "auto_lambda": ([], [str(z["missing"]), str(z["binary"])]),  # a valid one builds several λ exports
    }  # fmt: skip
    if name in special and (special[name][0] or name != "adapter"):
        return special[name]
    if rule.path == options.OUTPUT:
        return [FRESH], [str(z["text"] / "x"), str(z["missing"] / "x"), str(z["adapter"] / "x"), str(z["text"]), "."]
    if rule.path == options.INPUT:
        return [str(z[n]) for n in GOOD_INPUTS.get(name, ["text"])], _damaged(z)
    if rule.choices is not None:
        return list(rule.choices()), ["", "☃", "None", "CPU"]
    if rule.bounds != (None, None) or name in WORK:
        return _numbers(rule, name)
    if rule.allowed == options.TEXT.allowed:
        return ["text", "é☃ 中"], ["", " ", "a\x00b", "\udcff", "x" * 5000]
    raise AssertionError(f"no values to draw for {command} {name}")


@st.composite
def invocation(draw, command: str, z) -> list[str]:
    """Arguments for ``command``: all of them valid, one of them not, or any mixture."""
    cmd = COMMANDS[command]
    mode = draw(st.sampled_from(["valid", "valid", "one bad", "mixed"]))
    args, positional, drawn = command.split(), [], []
    for param in cmd.params:
        if param.name in ("as_json", "explain"):
            continue  # how the output looks
        if not (param.required or param.name in ALWAYS.get(command, ("base", "model")) or draw(st.booleans())):
            continue  # a default; never the real default base, nor the shipped library's exports
        if getattr(param, "is_flag", False):
            args.append(param.opts[0])
            continue
        good, bad = pool(command, param.name, z)
        several = param.multiple or param.nargs == -1
        count = 2 if param.nargs == 2 else (draw(st.integers(1, 2)) if several else 1)
        drawn.append((param, count, good, bad))
    spoiled = draw(st.integers(0, max(0, len(drawn) - 1))) if mode == "one bad" and drawn else None
    for n, (param, count, good, bad) in enumerate(drawn):
        values = {"valid": good or bad, "mixed": good + bad, "one bad": bad if n == spoiled else good or bad}[mode]
        chosen = [draw(st.sampled_from(values)) for _ in range(count)]
        if param.param_type_name == "argument":
            positional += chosen
        elif param.nargs == 2:
            args += [param.opts[0], *map(str, chosen)]
        else:
            args += [token for v in chosen for token in (param.opts[0], str(v))]
    if command in EXPENSIVE:
        args += EXPENSIVE[command]
    return args + [str(p) for p in positional]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_fuzz(command, zoo, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    inputs_root = zoo["adapter"].parent
    runner = CliRunner()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def run(data):
        args = data.draw(invocation(command, zoo))
        fresh = [zoo["outputs"] / f"out-{next(FRESH_NAMES)}" for a in args if a == FRESH]
        fresh_iter = iter(fresh)
        args = [str(next(fresh_iter)) if a == FRESH else a for a in args]
        before = _snapshot(inputs_root)
        result = runner.invoke(app, args, input="Rain fell all night in the city.\n")
        stderr = result.stderr.strip().splitlines()
        event(f"exit {result.exit_code}")  # --hypothesis-show-statistics: how many draws ran through
        where = f"edgecomp {' '.join(args)}\n{result.output[-2000:]}"
        assert result.exception is None or isinstance(result.exception, SystemExit), where
        assert "Traceback" not in result.output, where
        if result.exit_code != 0:
            assert stderr and len(stderr) <= MAX_STDERR_LINES, where
            assert not any(p.exists() for p in fresh), f"a failed run left its output: {where}"
        debris = [p.name for p in zoo["outputs"].iterdir() if p.name.startswith(".") and ".tmp-" in p.name]
        assert not debris, f"temporary folders left: {debris}: {where}"
        after = _snapshot(inputs_root)
        changed = [name for name, stat in before.items() if after.get(name) != stat]
        assert not changed, f"files that were there changed or went: {changed}: {where}"

    run()
