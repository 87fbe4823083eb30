"""Composition specs and scenarios, `compose` as a PEFT adapter, the adapter library, the export cache."""

import json
import shutil

import pytest
import torch
from adapters import make_adapter
from peft import PeftModel
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from edgecomp.cli import app
from edgecomp.compose.spec import parse_term_arg, resolve_spec
from edgecomp.errors import EdgecompError
from edgecomp.export.verify import onnx_logits

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def library(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("library")
    base = {"name": "tiny", "spec": str(tiny_llama_dir), "fingerprint": None}
    for i, (kind, lang, loss) in enumerate(
        [
            ("task", "en", 1.0),
            ("task", "ur", 1.5),
            ("language", "vi", 2.0),
            ("language", "en", 2.0),
            ("language", "en", 3.0),
        ]
    ):
        make_adapter(
            tiny_llama_dir,
            root / f"{kind}-{lang}-{i}",
            seed=i,
            meta={"kind": kind, "lang": lang, "final_loss": loss, "base": base},
        )
    return root


def test_term_syntax():
    assert parse_term_arg("runs/a") == {"path": "runs/a", "weight": 1.0}
    assert parse_term_arg("runs/a:-1:attention=0.5,layers=0-1") == {
        "path": "runs/a",
        "weight": "-1",
        "attention": "0.5",
        "layers": "0-1",
    }
    with pytest.raises(EdgecompError, match="unknown option 'rank=2'"):
        parse_term_arg("a:1:rank=2")


def test_arithmetic_scenario_picks_by_kind_and_language(library):
    resolved = resolve_spec({"scenario": "arithmetic", "library": ".", "target": "vi", "lambda_s": 0.5}, library)
    picked = [(t.adapter.path.name, t.weight) for t in resolved.terms]
    assert picked == [("task-en-0", 1.0), ("language-vi-2", 1.0), ("language-en-3", -0.5)]  # lowest loss for en


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"scenario": "arithmetic", "library": ".", "target": "sw"}, "no language adapter for 'sw'"),
        ({"scenario": "arithmetic", "library": ".", "target": "xx"}, "unknown language code 'xx'"),
        ({"scenario": "magic", "library": ".", "target": "vi"}, "unknown scenario 'magic'"),
        ({"scenario": "arithmetic", "target": "vi"}, "needs a target language and a library"),
        ({"adapters": [{"path": "task-en-0", "weight": "heavy"}]}, "'heavy' is not a number"),
        ({"adapters": [{"path": "task-en-0", "layers": "5-2"}]}, "bad layer range 5-2"),
        ({"method": "mean"}, "unknown method 'mean'"),
    ],
)
def test_bad_specs_are_refused(library, spec, message):
    with pytest.raises(EdgecompError, match=message):
        resolve_spec(spec, library)


def test_digest_follows_content_not_paths(library, tmp_path):
    spec = {"adapters": [{"path": "task-en-0", "weight": 1}, {"path": "language-vi-2", "weight": -1}]}
    first = resolve_spec(spec, library).digest()
    assert resolve_spec(spec, library).digest() == first
    shutil.copytree(library, tmp_path / "moved")
    assert resolve_spec(spec, tmp_path / "moved").digest() == first
    spec["adapters"][1]["weight"] = -0.5
    assert resolve_spec(spec, library).digest() != first


def test_compose_writes_a_peft_adapter_that_matches_merging(library, tiny_llama_dir, tmp_path):
    args = [
        "--adapter",
        f"{library / 'task-en-0'}:1",
        "--adapter",
        f"{library / 'language-vi-2'}:1:mlp=0.5",
        "--adapter",
        f"{library / 'language-en-3'}:-1",
    ]
    for name in ("c1", "c2"):
        result = cli("compose", *args, "--method", "delta", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    written = [(tmp_path / n / "adapter_model.safetensors").read_bytes() for n in ("c1", "c2")]
    assert written[0] == written[1]  # the same spec gives the same bytes
    meta = json.loads((tmp_path / "c1" / "edgecomp.json").read_text())
    assert meta["kind"] == "composition" and meta["low_rank"]["exact"] is True
    assert [a["mlp"] for a in meta["composition"]["adapters"]] == [1.0, 0.5, 1.0]

    result = cli("merge-export", "--adapter", tmp_path / "c1", "--base", tiny_llama_dir, "--out", tmp_path / "e1")
    assert result.exit_code == 0, result.output
    ids = [2, 50, 60, 70, 80, 90]
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), tmp_path / "c1").eval()
    with torch.no_grad():
        unmerged = peft(torch.tensor([ids])).logits[0].numpy()
    config = json.loads((tmp_path / "e1" / "config.json").read_text())
    exported = onnx_logits(tmp_path / "e1", config, ids)
    assert abs(exported - unmerged).max() < 1e-4  # served unmerged (PEFT) == merged and exported (ONNX)


def test_export_cache_is_named_by_the_spec(library, tiny_llama_dir, tmp_path, edgecomp_home):
    def exports():
        return {p for p in (edgecomp_home / "exports").iterdir() if p.is_dir()}

    args = ["--adapter", f"{library / 'task-en-0'}:1", "--base", tiny_llama_dir]
    assert cli("merge-export", *args, "--out", tmp_path / "a").exit_code == 0
    entries = exports()
    result = cli("merge-export", *args, "--out", tmp_path / "b")
    assert result.exit_code == 0 and exports() == entries
    a = json.loads((tmp_path / "a" / "edgecomp-export.json").read_text())
    b = json.loads((tmp_path / "b" / "edgecomp-export.json").read_text())
    assert a == b and a["spec_sha256"][:32] in {e.name for e in entries}
    assert (
        cli("merge-export", *args[:1], f"{library / 'task-en-0'}:0.5", *args[2:], "--out", tmp_path / "c").exit_code
        == 0
    )
    assert len(exports()) == len(entries) + 1


def test_spec_file_and_explain(library, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"method: params\nscenario: arithmetic\nlibrary: {library}\ntarget: vi\n", encoding="utf-8")
    result = cli("compose", "--spec", spec, "--explain", "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    assert "language-vi-2" in result.output and "-1.0000" in result.output


def test_adapters_list(library):
    result = cli("adapters", "list", library, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["kind"], r["lang"], r["rank"]) for r in rows] == [
        ("language", "en", 4),
        ("language", "en", 4),
        ("language", "vi", 4),
        ("task", "en", 4),
        ("task", "ur", 4),
    ]
    assert cli("adapters", "list", library).exit_code == 0


def test_related_scenario_weights_urdu_for_hindi(library, tmp_path):
    result = cli("compose", "--library", library, "--target", "hi", "--related", "--explain", "--out", tmp_path / "hi")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "hi" / "edgecomp.json").read_text())
    weights = {a["lang"]: a["weight"] for a in meta["composition"]["adapters"]}
    assert set(weights) == {"ur", "en"} and weights["ur"] > 0.9 and abs(sum(weights.values()) - 1) < 1e-6
    assert {r["lang"] for r in meta["composition"]["related"]} == {"ur", "en"}
    assert "genetic" in result.output and "ur" in result.output
