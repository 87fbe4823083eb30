"""Options declared once (edgecomp.options): ranges, sets and output paths refused in one line,
before any work, on the command line, in recipes and in composition specs alike."""

from __future__ import annotations

import math
import os

import pytest
from typer.testing import CliRunner

from edgecomp import options
from edgecomp.cli import app
from edgecomp.errors import EdgecompError


def error_line(args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecomp: error: "), result.stderr
    return last.removeprefix("edgecomp: error: ")


@pytest.mark.parametrize(
    "rule, good, bad",
    [
        (options.integer(1, 10), [1, 10], [0, 11, -1, True, 2.0, "3"]),
        (options.number(0, 1, open_low=True), [1e-9, 1, 0.5], [0, 1.5, math.nan, math.inf, -math.inf, True, "x"]),
        (options.number(0, 1, open_high=True), [0, 0.99], [1, math.nan]),
        (options.one_of(("a", "b")), ["a", "b"], ["", "c", None and "x", 1]),
        (options.TEXT, ["x", "é☃ 中"], ["", "  ", "a\x00b", "\udcff", 3]),
    ],
)
def test_rules_accept_what_they_declare_and_nothing_else(rule, good, bad):
    for value in good:
        rule.check("--x", value)
    for value in bad:
        if value is None:
            continue
        with pytest.raises(EdgecompError, match=r"^--x .* is not allowed: "):
            rule.check("--x", value)


def test_the_message_names_option_value_and_allowed_values():
    with pytest.raises(EdgecompError) as refused:
        options.check_values("summarize", {"top_p": 1.5})
    assert str(refused.value) == "--top-p 1.5 is not allowed: a finite number in (0, 1]"
    with pytest.raises(EdgecompError) as refused:
        options.check_values("compose", {"method": "average"})
    assert str(refused.value) == "--method 'average' is not allowed: one of dare, delta, params, ties"


def train(data, out, base, *extra):
    return ["train", "--kind", "language", "--lang", "sw", "--data", data, "--out", out, "--base", base,
            "--steps", "1", "--seq-len", "16", *extra]  # fmt: skip


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    file = folder / "mono.txt"
    file.write_text("maneno machache ya Kiswahili\n" * 8, encoding="utf-8")
    return file


def test_output_whose_parent_is_a_file(tiny_llama_dir, data):
    line = error_line(train(data, data / "adapter", tiny_llama_dir))
    assert line == f"--out {data / 'adapter'}: {data} is a file, not a folder"


def test_output_whose_parent_is_missing(tiny_llama_dir, data, tmp_path):
    out = tmp_path / "no" / "such" / "adapter"
    assert error_line(train(data, out, tiny_llama_dir)) == f"--out {out}: its folder {out.parent} does not exist"
    assert not (tmp_path / "no").exists()


def test_output_whose_parent_is_read_only(tiny_llama_dir, data, tmp_path, monkeypatch):
    genuine = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else genuine(p, mode))
    out = tmp_path / "adapter"
    assert error_line(train(data, out, tiny_llama_dir)) == f"--out {out}: its folder {tmp_path} is not writable"


def test_output_equal_to_inside_or_holding_an_input(tiny_llama_dir, data, tmp_path):
    assert "is also an input" in error_line(train(data, data, tiny_llama_dir, "--force"))
    inside = tiny_llama_dir / "adapter"
    assert error_line(train(data, inside, tiny_llama_dir)).endswith(
        f"is inside the input folder {tiny_llama_dir}; choose a path outside it"
    )
    assert not inside.exists()
    line = error_line(train(data, data.parent, tiny_llama_dir, "--force"))  # --force would have deleted the data
    assert line == f"--out {data.parent} holds the input {data}; choose another path"
    assert data.is_file()


def test_recipe_values_are_checked_by_the_same_rules(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "steps:\n  - train: {kind: language, lang: sw, data: d.txt, out: a, steps: 0}\n", encoding="utf-8"
    )
    assert error_line(["run", recipe]).endswith("train step: steps 0 is not allowed: an integer from 1 to 1000000000")
    recipe.write_text("steps:\n  - summarize: {model: m, file: a.txt, top_p: .nan}\n", encoding="utf-8")
    assert error_line(["run", recipe]).endswith("summarize step: top_p nan is not allowed: a finite number in (0, 1]")


def test_spec_values_are_checked_by_the_same_rules(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("method: ties\ndensity: .inf\nadapters: []\n", encoding="utf-8")
    line = error_line(["compose", "--spec", spec, "--out", tmp_path / "out"])
    assert line == f"{spec}: density inf is not allowed: a finite number in (0, 1]"
    assert not (tmp_path / "out").exists()
