"""λ from unlabeled text, the zero-shot experiment on a tiny library, and its report."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from adapters import make_adapter
from tiny import CORPUS

from edgecomp.eval.auto_lambda import choose_lambda, distinct_2, summary_scores, support, unlabeled_scores
from edgecomp.eval.experiment import run_experiment
from edgecomp.eval.report import write_report
from edgecomp.export.pipeline import export_checkpoint

ARTICLES = [
    "Serikali imetangaza mpango mpya wa elimu kwa shule za msingi katika mikoa yote ya nchi.",
    "Mvua kubwa imesababisha mafuriko katika mji mkuu wa nchi na wafanyabiashara wamepoteza mali.",
    "Wanasayansi wamegundua aina mpya ya chura msituni karibu na mlima mrefu wa kaskazini.",
]
# What each candidate λ "writes" for those articles: English at λ=1 (accidental translation), an
# on-topic Swahili sentence at λ=2, a Swahili loop that leaves the article behind at λ=3.
WRITTEN = {
    1.0: [
        "The government announced a new plan for schools.",
        "Heavy rain flooded the capital city.",
        "Scientists found a new frog in the forest.",
    ],
    2.0: [
        "Serikali imetangaza mpango mpya wa elimu kwa shule za msingi.",
        "Mvua kubwa imesababisha mafuriko mjini.",
        "Wanasayansi wamegundua aina mpya ya chura msituni.",
    ],
    3.0: [
        "habari za leo habari za leo habari za leo habari za leo",
        "habari za leo habari za leo habari za leo",
        "watu wengi watu wengi watu wengi watu wengi watu wengi",
    ],
}


def test_score_factors():
    assert distinct_2(["a", "b", "a", "b"]) == pytest.approx(2 / 3)
    assert distinct_2(["a"]) == 0.0
    assert support(["a", "b", "c", "d"], ["a", "c", "x"]) == 0.5
    assert support([], ["a"]) == 0.0
    good = summary_scores(ARTICLES, WRITTEN[2.0], "sw")
    assert good["target_lang"] == 1.0 and good["support"] > 0.8 and good["score"] > 0.7
    assert summary_scores(ARTICLES, WRITTEN[1.0], "sw")["score"] == 0.0


def test_choose_lambda_prefers_the_best_score_then_the_smaller_lambda():
    assert choose_lambda({"1": {"score": 0.2}, "2": {"score": 0.5}, "3": {"score": 0.4}}) == 2.0
    assert choose_lambda({"1": {"score": 0.5}, "2": {"score": 0.5}}) == 1.0


@pytest.fixture(scope="module")
def tiny_export(tiny_llama_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("auto-lambda") / "export"
    export_checkpoint(tiny_llama_dir, out, manifest={})
    return out


def test_auto_lambda_picks_the_lambda_constructed_to_be_best(tiny_export, tmp_path, monkeypatch):
    """Three exports of a tiny model; what each writes is set by the test, through the real runtime path."""
    grid = {}
    for lam in WRITTEN:
        grid[lam] = tmp_path / f"export-{lam:g}"
        grid[lam].symlink_to(tiny_export, target_is_directory=True)
    unlabeled = tmp_path / "sw.txt"
    unlabeled.write_text("\n".join(ARTICLES) + "\n", encoding="utf-8")
    summarize = importlib.import_module("edgecomp.runtime.summarize")
    real = summarize.summarize_many
    loaded = importlib.import_module("edgecomp.runtime.model").OnnxCausalLM.load

    def writes(model, texts, *args, **kw):
        real(model, texts, *args, **kw)  # the tiny model really runs
        lam = model.lam
        return [{"summary": s} for s in WRITTEN[lam][: len(texts)]]

    def load(path, *a, **kw):
        model = loaded(path, *a, **kw)
        model.lam = float(Path(path).name.split("-")[1])
        return model

    monkeypatch.setattr(summarize, "summarize_many", writes)
    monkeypatch.setattr("edgecomp.runtime.model.OnnxCausalLM.load", load)
    table = unlabeled_scores(grid, unlabeled, "sw", max_new_tokens=4)
    assert set(table) == {"1", "2", "3"}
    assert table["1"]["target_lang"] == 0.0 and table["3"]["distinct_2"] < 0.5
    assert choose_lambda(table) == 2.0


@pytest.fixture(scope="module")
def tiny_library(tiny_llama_dir, tmp_path_factory) -> Path:
    from edgecomp.models.fingerprint import weights_fingerprint

    work = tmp_path_factory.mktemp("experiment")
    base = {"fingerprint": weights_fingerprint(tiny_llama_dir)}
    for i, (kind, lang) in enumerate([("task", "en"), ("language", "en"), ("language", "sw"), ("task", "fr")]):
        make_adapter(
            tiny_llama_dir,
            work / "library" / f"{kind}-{lang}",
            seed=i,
            meta={
                "kind": kind,
                "lang": lang,
                "base": base,
                "final_loss": 1.0,
                "steps": 3,
                "tokens": 10,
                "seconds": 1.0,
                "tokens_per_s": 10.0,
                "first_loss": 2.0,
                "data": {"file": "x", "examples": 1},
                "options": {"batch_size": 1, "seq_len": 8, "lr": 0.1},
            },
        )
    data = work / "sw.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": " ".join(CORPUS[i : i + 3]), "summary": CORPUS[i]}) + "\n"
            for i in range(3)
        ),
        encoding="utf-8",
    )
    (work / "sw.txt").write_text("\n".join(ARTICLES) + "\n", encoding="utf-8")
    return work


def test_experiment_and_report_on_a_tiny_library(tiny_library, tiny_llama_dir, tmp_path):
    work = tiny_library
    cfg = {
        "base": str(tiny_llama_dir),
        "quantize": "none",
        "limit": 3,
        "max_new_tokens": 4,
        "batch_size": 2,
        "task": "library/task-en",
        "source": "library/language-en",
        "lambdas": [1, 2],
        "delta_lambdas": [1, 3],
        "auto_method": "delta",
        "unlabeled_limit": 3,
        "targets": {
            "sw": {"adapter": "library/language-sw", "eval": {"masakhanews": "sw.jsonl"}, "unlabeled": "sw.txt"}
        },
        "related": {"sw": {"library": "library", "adapters": ["library/task-fr"]}},
    }
    out = work / "experiment"
    results = run_experiment(cfg, work, out, lambda path, what: path)
    systems = {e["system"] for e in results["evaluations"].values()}
    assert systems == {
        "base",
        "task",
        "task+lang",
        "arith-1",
        "arith-2",
        "delta-1",
        "delta-3",
        "related-task-fr",
        "related",
    }
    for e in results["evaluations"].values():
        assert e["documents"] == 3
    assert results["auto_lambda"]["sw"]["chosen"] in (1.0, 3.0)  # over the delta grid
    # resuming finds every evaluation done and changes nothing
    again = run_experiment(cfg, work, out, lambda path, what: path)
    assert {k: e["metrics"] for k, e in again["evaluations"].items()} == {
        k: e["metrics"] for k, e in results["evaluations"].items()
    }
    notes = tmp_path / "notes.md"
    notes.write_text("## What we tried\n\nA note.\n")
    page = tmp_path / "docs" / "results.md"
    write_report(out, page, work=work, notes=str(notes))
    text = page.read_text()
    assert "## MasakhaNEWS (article → headline): sw" in text and "A note." in text
    assert "λ chosen without labels" in text and "task_en + 2·(lang_sw − lang_en), params" in text
    assert f"`delta-{results['auto_lambda']['sw']['chosen']:g}`" in text
    assert json.loads((page.parent / "results" / "results.json").read_text())["evaluations"]
    for name in ("lambda.png", "systems.png"):
        png = page.parent / "results" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recipe_with_eval_experiment_and_report_steps(tiny_library, tiny_llama_dir, tmp_path):
    import yaml

    from edgecomp.recipes import run_recipe

    work = tiny_library
    (work / "notes.md").write_text("## Notes\n\nhand-written\n")
    recipe = {
        "base": str(tiny_llama_dir),
        "workdir": ".",
        "force": True,
        "steps": [
            {"merge-export": {"adapters": ["library/task-en:1"], "out": "export-task"}},
            {
                "eval": {
                    "model": "export-task",
                    "data": "sw.jsonl",
                    "lang": "sw",
                    "limit": 2,
                    "max_new_tokens": 3,
                    "out": "eval-task",
                }
            },
            {
                "experiment": {
                    "out": "exp",
                    "quantize": "none",
                    "limit": 2,
                    "max_new_tokens": 3,
                    "task": "library/task-en",
                    "source": "library/language-en",
                    "lambdas": [1, 2],
                    "targets": {"sw": {"adapter": "library/language-sw", "eval": {"masakhanews": "sw.jsonl"}}},
                }
            },
            {"report": {"experiment": "exp", "out": "docs/results.md", "notes": "notes.md"}},
        ],
    }
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True))
    run_recipe(path)
    assert json.loads((work / "eval-task" / "scores.json").read_text())["documents"] == 2
    assert "hand-written" in (work / "docs" / "results.md").read_text()


def test_compose_auto_lambda_command(tiny_library, tiny_llama_dir, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "composed"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecomp.cli",
            "compose",
            "--library",
            str(tiny_library / "library"),
            "--target",
            "sw",
            "--auto-lambda",
            str(tiny_library / "sw.txt"),
            "--lambda-grid",
            "1,2",
            "--quantize",
            "none",
            "--base",
            str(tiny_llama_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    chosen = float(r.stdout.split("λ from")[1].split(":")[1].split()[0])
    assert chosen in (1.0, 2.0)
    terms = json.loads((out / "edgecomp.json").read_text())["composition"]["adapters"]
    assert {t["lang"]: t["weight"] for t in terms if t["kind"] == "language"} == {"sw": chosen, "en": -chosen}
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgecomp.cli",
            "compose",
            "--library",
            str(tiny_library / "library"),
            "--target",
            "sw",
            "--auto-lambda",
            str(tiny_library / "sw.txt"),
            "--lambda-grid",
            "2",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("edgecomp: error: --lambda-grid '2': needs at least two")


def test_report_tables_a_variant(tiny_library, tiny_llama_dir, tmp_path):
    work = tiny_library
    cfg = {
        "base": str(tiny_llama_dir),
        "quantize": "none",
        "limit": 2,
        "max_new_tokens": 3,
        "task": "library/task-en",
        "source": "library/language-en",
        "lambdas": [1],
        "targets": {"sw": {"adapter": "library/language-sw", "eval": {"masakhanews": "sw.jsonl"}}},
        "variants": {"other": {"task": "library/task-fr", "targets": ["sw"], "lambdas": [1]}},
    }
    run_experiment(cfg, work, work / "exp-variant", lambda path, what: path)
    page = tmp_path / "results.md"
    write_report(work / "exp-variant", page, work=work, default="arith-1")
    text = page.read_text()
    assert "## Variant `other`: task adapter library/task-fr" in text
    row = next(x for x in text.splitlines() if x.startswith("| masakhanews | sw |") and x.count("|") == 8)
    assert row.count("[") == 2  # both paired differences are there


def test_experiment_evaluates_a_shipped_style_library(tiny_library, tiny_llama_dir, tmp_path):
    work = tiny_library
    (work / "library" / "library.json").write_text(
        json.dumps(
            {
                "format": "edgecomp-library/1",
                "base": str(tiny_llama_dir),
                "languages": {
                    "sw": {
                        "label": "task_en + lang_sw − lang_en",
                        "spec": {"adapters": ["task-en:1", "language-sw:1", "language-en:-1"], "method": "delta"},
                    }
                },
            }
        )
    )
    cfg = {
        "base": str(tiny_llama_dir),
        "quantize": "none",
        "limit": 2,
        "max_new_tokens": 3,
        "task": "library/task-en",
        "source": "library/language-en",
        "lambdas": [1],
        "shipped": "library",
        "targets": {"sw": {"adapter": "library/language-sw", "eval": {"masakhanews": "sw.jsonl"}}},
    }
    results = run_experiment(cfg, work, work / "exp-shipped", lambda path, what: path)
    shipped = results["evaluations"]["masakhanews/sw/shipped"]
    assert shipped["documents"] == 2 and results["systems"]["sw/shipped"]["label"].endswith("lang_sw − lang_en")
    # delta at λ=1 is what the library composes: the same summaries as the delta-1 export
    same = [json.loads(x)["prediction"] for x in (Path(shipped["out"]) / "predictions.jsonl").read_text().splitlines()]
    delta = [
        json.loads(x)["prediction"]
        for x in (Path(results["evaluations"]["masakhanews/sw/delta-1"]["out"]) / "predictions.jsonl")
        .read_text()
        .splitlines()
    ]
    assert same == delta
    page = tmp_path / "results.md"
    write_report(work / "exp-shipped", page, work=work, default="arith-1")
    assert "## The shipped library" in page.read_text()


def test_an_unknown_experiment_key_is_refused_at_every_level(tmp_path):
    from edgecomp.errors import EdgecompError
    from edgecomp.eval.experiment import run_experiment

    good = {"task": "t", "source": "s", "targets": {"vi": {"adapter": "a"}}}
    cases = [
        ({**good, "lamdas": [1]}, "unknown key 'lamdas'"),
        ({**good, "targets": {"vi": {"adapter": "a", "evals": {}}}}, "target 'vi': unknown key 'evals'"),
        ({**good, "variants": {"n": {"task": "t", "lambda": [1]}}}, "variant 'n': unknown key 'lambda'"),
        ({"task": "t", "targets": {}}, "'source' is required"),
    ]
    for cfg, message in cases:
        with pytest.raises(EdgecompError, match=message):
            run_experiment(cfg, tmp_path, tmp_path / "out", lambda path, what: path)
    assert not (tmp_path / "out").exists()
