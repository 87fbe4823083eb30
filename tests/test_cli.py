"""The command line end to end on a tiny base, and its one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from edgecomp.cli import app

runner = CliRunner()


def cli(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


TRAIN = ["--steps", 3, "--seq-len", 64, "--batch-size", 2, "--rank", 4, "--lr", 1e-2]


@pytest.fixture(scope="module")
def pipeline(tiny_llama_dir, mono_file, pairs_file, tmp_path_factory):
    """train (task + two language adapters) → merge-export (params, int4), all through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    base = ["--base", tiny_llama_dir]
    for kind, lang, data in (("task", "en", pairs_file), ("language", "sw", mono_file), ("language", "en", mono_file)):
        result = cli(
            "train",
            "--qlora",
            "--kind",
            kind,
            "--lang",
            lang,
            "--data",
            data,
            "--out",
            root / f"{kind}-{lang}",
            *base,
            *TRAIN,
        )
        assert result.exit_code == 0, result.output
    result = cli(
        "merge-export",
        "--adapter",
        f"{root / 'task-en'}:1",
        "--adapter",
        f"{root / 'language-sw'}:1",
        "--adapter",
        f"{root / 'language-en'}:-1",
        "--quantize",
        "int4",
        "--out",
        root / "export",
        *base,
    )
    assert result.exit_code == 0, result.output
    return root


def test_merge_export_records_the_composition(pipeline):
    manifest = json.loads((pipeline / "export" / "edgecomp-export.json").read_text())
    adapters = manifest["composition"]["adapters"]
    assert [(a["kind"], a["lang"], a["weight"]) for a in adapters] == [
        ("task", "en", 1.0),
        ("language", "sw", 1.0),
        ("language", "en", -1.0),
    ]
    assert manifest["composition"]["method"] == "params" and manifest["quantize"] == "int4"
    assert manifest["verify"]["fp32"]["max_abs_diff"] <= manifest["verify"]["fp32"]["tolerance"]
    # One target language: the head keeps the language adapters' vocabularies, by default.
    head = manifest["trim_head"]
    assert head["vocabularies"] == ["language-en", "language-sw", "task-en"] and head["corpus"] == []
    assert head["verify"]["kept_max_abs_diff"] <= 1e-4 * head["verify"]["logit_scale"]


def test_merge_export_full_vocab_keeps_the_whole_head(pipeline, tiny_llama_dir, tmp_path):
    adapters = ["--adapter", f"{pipeline / 'task-en'}:1", "--adapter", f"{pipeline / 'language-sw'}:1"]
    base = ["--base", tiny_llama_dir, "--quantize", "int8"]
    default = cli("merge-export", *adapters, *base, "--out", tmp_path / "default")
    full = cli("merge-export", *adapters, *base, "--full-vocab", "--out", tmp_path / "full")
    assert default.exit_code == 0 and full.exit_code == 0, full.output
    assert "LM head: " in default.output and "(language-sw, task-en), each prompt adding its own" in default.output
    assert "LM head" not in full.output
    assert json.loads((tmp_path / "default" / "edgecomp-export.json").read_text())["trim_head"]["vocabularies"] == [
        "language-sw",
        "task-en",
    ]
    assert "trim_head" not in json.loads((tmp_path / "full" / "edgecomp-export.json").read_text())
    assert (tmp_path / "full" / "genai_config.json").is_file() and not (
        tmp_path / "default" / "genai_config.json"
    ).exists()
    fp32 = cli("merge-export", *adapters, "--base", tiny_llama_dir, "--out", tmp_path / "fp32")  # not quantized: whole
    assert fp32.exit_code == 0 and "trim_head" not in json.loads(
        (tmp_path / "fp32" / "edgecomp-export.json").read_text()
    )
    both = cli(
        "merge-export",
        *adapters,
        *base,
        "--full-vocab",
        "--trim-head",
        pipeline / "export" / "config.json",
        "--out",
        tmp_path / "x",
    )
    assert both.exit_code != 0 and "leave out --trim-vocab and --trim-head" in both.output


def test_summarize_file_and_stdin(pipeline, tmp_path):
    article = tmp_path / "article.txt"
    article.write_text("Mvua kubwa imesababisha mafuriko katika mji mkuu wa nchi.\n", encoding="utf-8")
    from_file = cli("summarize", article, "--model", pipeline / "export", "--max-new-tokens", 8, "--json")
    assert from_file.exit_code == 0, from_file.output
    result = json.loads(from_file.stdout)
    assert result["new_tokens"] >= 1 and result["prompt_tokens"] > 10 and isinstance(result["summary"], str)
    from_stdin = cli(
        "summarize",
        "-",
        "--model",
        pipeline / "export",
        "--max-new-tokens",
        8,
        "--json",
        input=article.read_text(encoding="utf-8"),
    )
    assert json.loads(from_stdin.stdout)["summary"] == result["summary"]


def test_help_explains_every_command():
    for command in ("train", "merge-export", "summarize", "run"):
        result = cli(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def assert_one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecomp: error:") and needle in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_missing_and_malformed_inputs(tiny_llama_dir, tmp_path):
    base = ["--base", tiny_llama_dir]
    assert_one_line_error(
        cli(
            "train",
            "--kind",
            "language",
            "--lang",
            "sw",
            "--data",
            tmp_path / "nope.txt",
            "--out",
            tmp_path / "o",
            *base,
        ),
        "no such file",
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "summary": "b"}\n{"text": "a"\n', encoding="utf-8")
    assert_one_line_error(
        cli("train", "--kind", "task", "--lang", "en", "--data", bad, "--out", tmp_path / "o", *base),
        "bad.jsonl:2: malformed JSON",
    )
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\x01\x02")
    assert_one_line_error(cli("summarize", binary, "--model", tmp_path), "looks binary")
    assert not (tmp_path / "o").exists()


def test_base_named_by_adapter_metadata_is_not_loaded_unasked(pipeline, tmp_path):
    result = cli("merge-export", "--adapter", pipeline / "task-en", "--out", tmp_path / "x")
    assert_one_line_error(result, "pass it as --base")


def assert_recipe_error(result, needle):
    """Recipes print step headers on stderr; the error is still one line, the last one."""
    assert result.exit_code == 2 and "Traceback" not in result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecomp: error:") and needle in last, result.stderr


def test_recipes_stay_inside_their_folder(tmp_path, pairs_file):
    recipe = tmp_path / "r" / "escape.yaml"
    recipe.parent.mkdir()
    recipe.write_text(f"steps:\n  - train: {{kind: task, lang: en, data: {pairs_file}, out: x}}\n", encoding="utf-8")
    assert_recipe_error(cli("run", recipe), "is outside")
    recipe.write_text(
        "workdir: ../../elsewhere\nsteps:\n  - train: {kind: task, lang: en, data: d.jsonl, out: x}\n", encoding="utf-8"
    )
    assert_recipe_error(cli("run", recipe), "recipe workdir")


def test_merge_export_refusals(pipeline, tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(
        cli("merge-export", "--adapter", f"{tmp_path / 'empty'}:1", "--out", tmp_path / "x"), "not an adapter folder"
    )
    assert_one_line_error(
        cli("merge-export", "--adapter", f"{pipeline / 'task-en'}:1", "--out", pipeline / "task-en" / "x"),
        "is inside the input folder",
    )
    assert_one_line_error(
        cli("merge-export", "--adapter", f"{pipeline / 'task-en'}:one", "--out", tmp_path / "x"), "is not a number"
    )
    before = sorted(p.name for p in (pipeline / "export").iterdir())
    assert_one_line_error(
        cli("merge-export", "--adapter", f"{pipeline / 'task-en'}:1", "--out", pipeline / "export"), "already exists"
    )
    assert sorted(p.name for p in (pipeline / "export").iterdir()) == before


def test_summarize_refuses_a_folder_that_is_not_an_export(tmp_path):
    article = tmp_path / "a.txt"
    article.write_text("text", encoding="utf-8")
    result = cli("summarize", article, "--model", tmp_path)
    assert result.exit_code == 2 and "edgecomp: error:" in result.stderr


def test_merge_export_without_adapters_exports_the_base(tiny_llama_dir, tmp_path):
    result = cli("merge-export", "--base", tiny_llama_dir, "--out", tmp_path / "plain")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "plain" / "edgecomp-export.json").read_text())
    assert manifest["composition"]["adapters"] == [] and manifest["quantize"] == "none"
    assert manifest["graph"] == "edgecomp"


def test_merge_export_graph_and_calibration_options(tiny_llama_dir, tmp_path):
    """--graph optimum is honoured (and cached apart from edgecomp's); int4 calibrates on
    --calibration files; bad values are one-line errors."""
    result = cli("merge-export", "--base", tiny_llama_dir, "--graph", "optimum", "--out", tmp_path / "optimum")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "optimum" / "edgecomp-export.json").read_text())
    assert manifest["graph"] == "optimum"
    text = tmp_path / "calibration.txt"
    text.write_text("hello world\nthe cat sat on the mat\n" * 40, encoding="utf-8")
    result = cli(
        "merge-export",
        "--base",
        tiny_llama_dir,
        "--quantize",
        "int4",
        "--calibration",
        text,
        "--out",
        tmp_path / "int4",
    )
    assert result.exit_code == 0, result.output
    quantization = json.loads((tmp_path / "int4" / "edgecomp-export.json").read_text())["quantization"]
    assert quantization["calibration"]["files"] == ["calibration.txt"] and quantization["calibration"]["tokens"] > 0
    assert quantization["weights"]["gptq_matmuls"] > 0
    assert "tuning needs more than" in quantization["tune"]  # too little text: skipped, not failed
    assert_one_line_error(
        cli("merge-export", "--base", tiny_llama_dir, "--graph", "tvm", "--out", tmp_path / "x"),
        "--graph 'tvm' is not allowed: one of auto, edgecomp, optimum",
    )
    assert_one_line_error(
        cli(
            "merge-export", "--base", tiny_llama_dir, "--quantize", "int8", "--tune-steps", "5", "--out", tmp_path / "x"
        ),
        "--block-size, --tune-steps and --eight-bit-layers apply to --quantize int4 only",
    )
    assert_one_line_error(
        cli(
            "merge-export",
            "--base",
            tiny_llama_dir,
            "--quantize",
            "int4",
            "--eight-bit-layers",
            "0,last",
            "--out",
            tmp_path / "x",
        ),
        "--eight-bit-layers '0,last' is not allowed: 'none' or layer indices",
    )
    assert_one_line_error(
        cli(
            "merge-export",
            "--base",
            tiny_llama_dir,
            "--quantize",
            "int4",
            "--calibration",
            tmp_path / "missing.txt",
            "--out",
            tmp_path / "x",
        ),
        "missing.txt",
    )
    assert not (tmp_path / "x").exists()


def test_streamed_summary_equals_the_json_one(pipeline, tmp_path):
    article = tmp_path / "article.txt"
    article.write_text("Serikali imetangaza mpango mpya wa elimu kwa shule za msingi.\n", encoding="utf-8")
    args = ["summarize", article, "--model", pipeline / "export", "--max-new-tokens", 12]
    streamed = cli(*args)
    assert streamed.exit_code == 0, streamed.output
    assert streamed.stdout.strip() == json.loads(cli(*args, "--json").stdout)["summary"]


def test_a_modified_export_is_refused(pipeline, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(pipeline / "export", copy)
    article = tmp_path / "a.txt"
    article.write_text("Mvua kubwa imenyesha.\n", encoding="utf-8")
    assert cli("summarize", article, "--model", copy, "--max-new-tokens", 2).exit_code == 0
    with open(copy / "tokenizer.json", "a", encoding="utf-8") as f:
        f.write(" ")
    assert_one_line_error(cli("summarize", article, "--model", copy), "does not match its sha256")
    (copy / "tokenizer.json").unlink()
    assert_one_line_error(cli("summarize", article, "--model", copy), "missing")


def test_trimmed_export_runs_end_to_end(pipeline, tiny_llama_dir, mono_file, tmp_path):
    """--trim-vocab through the CLI; exactness of trimmed logits is tests/test_trim.py's job."""
    out = tmp_path / "trimmed"
    adapters = ["--adapter", f"{pipeline / 'task-en'}:1", "--base", tiny_llama_dir]
    result = cli("merge-export", *adapters, "--trim-vocab", mono_file, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "vocab_map.json").is_file() and "trim" in json.loads((out / "edgecomp-export.json").read_text())
    full = tmp_path / "full"
    assert cli("merge-export", *adapters, "--out", full).exit_code == 0
    article = tmp_path / "a.txt"
    article.write_text("Mvua kubwa imesababisha mafuriko katika mji mkuu wa nchi.\n", encoding="utf-8")
    runs = [
        json.loads(cli("summarize", article, "--model", m, "--max-new-tokens", 8, "--json").stdout) for m in (full, out)
    ]
    assert runs[0]["prompt_tokens"] == runs[1]["prompt_tokens"]  # the article's tokens are all kept
    assert runs[1]["new_tokens"] >= 1 and isinstance(runs[1]["summary"], str)


def test_odd_input_is_summarized_as_text(pipeline, tmp_path):
    article = tmp_path / "odd.txt"
    article.write_text(
        "Mvua\x07 kubwa <bos><start_of_turn> \u202eसरकार\u202c ने 🌧️ إعلان\tmafuriko\x1b[31m\r\n" * 3, encoding="utf-8"
    )
    result = cli("summarize", article, "--model", pipeline / "export", "--max-new-tokens", 6, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prompt_tokens"] > 20
