"""``edgecomp summarize`` without ``--model``: a tiny shipped-style library, language detection, the
choice of composition, the export cache (hit without PyTorch), ``--lang``, unshipped languages,
packing, and many documents (folder, JSONL, resume, bad documents)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from adapters import make_adapter
from typer.testing import CliRunner

from edgecomp.cli import app
from edgecomp.compose.adapters import load_adapter
from edgecomp.compose.pack import pack_adapter
from edgecomp.errors import EdgecompError
from edgecomp.library.catalog import Library
from edgecomp.library.exports import base_export, merged_export

runner = CliRunner()

SW = (
    "Serikali imetangaza mpango mpya wa elimu kwa shule za msingi nchini kote. Wanafunzi wengi watapata "
    "vitabu na walimu wapya mwaka huu, na wazazi wamefurahi sana kusikia habari hizo."
)
EN = (
    "The council approved the new budget for schools and roads on Monday. Heavy rain flooded the market "
    "and traders lost their goods, officials said on Tuesday evening."
)
FR = "La ville a approuvé un nouveau budget pour les écoles et les routes, a annoncé le maire lundi soir."
DE = (
    "Der Stadtrat hat am Montag einen neuen Haushalt für Schulen und Straßen beschlossen, sagte der "
    "Bürgermeister am Abend in einer kurzen Erklärung."
)
SW_LABEL = "task_en + lang_sw − lang_en"


def cli(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def library(tiny_llama_dir, tmp_path_factory) -> Path:
    """Packed random adapters (kinds and languages in their manifests) and a library.json."""
    raw, root = tmp_path_factory.mktemp("trained"), tmp_path_factory.mktemp("library")
    for seed, (name, kind, lang) in enumerate(
        (
            ("task-en", "task", "en"),
            ("lang-en", "language", "en"),
            ("lang-sw", "language", "sw"),
            ("lang-fr", "language", "fr"),
        )
    ):
        make_adapter(
            tiny_llama_dir, raw / name, seed, meta={"kind": kind, "lang": lang, "options": {"prompt": "neutral"}}
        )
        pack_adapter(raw / name, root / name, rank=2, dtype="float16")
    arith = lambda lang: {"adapters": ["task-en:1", f"lang-{lang}:1", "lang-en:-1"], "method": "delta"}  # noqa: E731
    (root / "library.json").write_text(
        json.dumps(
            {
                "format": "edgecomp-library/1",
                "base": str(tiny_llama_dir),
                "languages": {
                    "en": {"label": "task_en", "spec": {"adapters": ["task-en:1"]}},
                    "sw": {"label": SW_LABEL, "spec": arith("sw")},
                    "fr": {"label": "task_en + lang_fr − lang_en", "spec": arith("fr")},
                },
            }
        )
    )
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def summarize(library, *args):
    return cli("summarize", *args, "--library", library, "--quantize", "none", "--max-new-tokens", 6)


def test_packing_keeps_the_update_at_full_rank_and_reports_the_loss_below(tiny_llama_dir, tmp_path):
    src = make_adapter(tiny_llama_dir, tmp_path / "src", 3, rank=4, meta={"kind": "language", "lang": "sw"})
    original = load_adapter(src)
    for rank, modules in ((4, "all"), (1, "all"), (4, "attention")):
        out = tmp_path / f"r{rank}-{modules}"
        meta = pack_adapter(src, out, rank=rank, modules=modules, dtype="float32")
        packed = load_adapter(out)
        assert meta["kind"] == "language" and meta["packed"]["rank"] == rank
        kept = {m for m in original.weights if modules == "all" or "self_attn" in m}
        assert set(packed.weights) == kept
        errors = []
        for module in kept:
            a, b = original.weights[module]
            pa, pb = packed.weights[module]
            full = original.scale * (b @ a)
            errors.append(float(torch.linalg.norm(packed.scale * (pb @ pa) - full) / torch.linalg.norm(full)))
        if rank == 4:
            assert max(errors) < 1e-5
        else:
            assert 0 < max(errors) == pytest.approx(meta["packed"]["relative_error"]["max"], rel=1e-3)
    half = pack_adapter(src, tmp_path / "fp16", rank=2, dtype="float16")
    assert load_adapter(tmp_path / "fp16").stored_dtype == "float16" and half["packed"]["dtype"] == "float16"
    assert (tmp_path / "fp16" / "adapter_model.safetensors").stat().st_size < (
        src / "adapter_model.safetensors"
    ).stat().st_size / 3
    with pytest.raises(EdgecompError, match="--modules"):
        pack_adapter(src, tmp_path / "bad", rank=2, modules="embeddings")


def test_detected_language_picks_its_composition(library, tmp_path):
    result = summarize(library, write(tmp_path / "sw.txt", SW), "--json")
    assert result.exit_code == 0, result.output
    assert f"language: sw (detected) · composition: {SW_LABEL}" in result.stderr
    out = json.loads(result.stdout)
    assert out["lang"] == "sw" and out["composition"] == SW_LABEL and out["new_tokens"] >= 1
    merged = summarize(library, tmp_path / "sw.txt", "--merge", "--json")
    assert merged.exit_code == 0, merged.output
    assert json.loads(merged.stdout)["summary"] == out["summary"]  # run-time composition = merged weights
    lib = Library.load(library)
    manifest = json.loads((merged_export(lib, lib.choice("sw"), "none")[0] / "edgecomp-export.json").read_text())
    assert [(a["lang"], a["weight"]) for a in manifest["composition"]["adapters"]] == [
        ("en", 1.0),
        ("sw", 1.0),
        ("en", -1.0),
    ]
    assert manifest["composition"]["method"] == "delta" and manifest["prompt"] == "neutral"


def test_lang_overrides_detection(library, tmp_path):
    result = summarize(library, write(tmp_path / "en.txt", EN), "--lang", "sw", "--json")
    assert result.exit_code == 0, result.output
    assert "language: sw (from --lang)" in result.stderr and json.loads(result.stdout)["lang"] == "sw"
    english = json.loads(summarize(library, tmp_path / "en.txt", "--json").stdout)
    assert english["lang"] == "en" and english["composition"] == "task_en"


def test_a_cached_export_is_found_again_without_building_or_torch(library, tmp_path, edgecomp_home):
    lib = Library.load(library)
    for find in (lambda: merged_export(lib, lib.choice("fr"), "none"), lambda: base_export(lib, "none")):
        first, built = find()
        again, rebuilt = find()
        assert again == first and rebuilt is None and (built is None or built > 0)
    assert json.loads((base_export(lib, "none")[0] / "edgecomp-export.json").read_text())["lora_inputs"]
    # a new process on the cached path imports no PyTorch
    code = (
        "import sys; from edgecomp.cli import main; sys.argv = ['edgecomp', 'summarize', sys.argv[1], "
        "'--library', sys.argv[2], '--quantize', 'none', '--max-new-tokens', '4', '--lang', 'fr']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(write(tmp_path / "fr.txt", FR)), str(library)],
        capture_output=True,
        text=True,
        env={**os.environ, "EDGECOMP_HOME": str(edgecomp_home)},
    )
    assert done.returncode == 0, done.stderr


def test_an_unshipped_language_names_the_closest_and_falls_back_only_when_asked(library, tmp_path):
    doc = write(tmp_path / "de.txt", DE)
    refused = summarize(library, doc)
    assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "no shipped adapter for 'de'" in refused.stderr and "closest by URIEL: " in refused.stderr
    assert "edgecomp train --kind language --lang de" in refused.stderr and "--fallback" in refused.stderr
    closest = Library.load(library).closest("de")[0][0]
    fallback = summarize(library, doc, "--fallback", "--json")
    assert fallback.exit_code == 0, fallback.output
    assert f"language: de (detected; not shipped, using {closest}'s)" in fallback.stderr


def test_a_folder_of_documents_with_bad_ones_resumes(library, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    write(docs / "a.txt", SW)
    write(docs / "b.txt", EN)
    write(docs / "empty.txt", "  \n")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    (docs / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    write(docs / "c.txt", FR)
    out = tmp_path / "summaries.jsonl"
    result = summarize(library, docs, "--output", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["id"]).name for r in rows) == ["a.txt", "b.txt", "c.txt"]
    assert {Path(r["id"]).name: r["lang"] for r in rows} == {"a.txt": "sw", "b.txt": "en", "c.txt": "fr"}
    for bad in ("empty.txt", "binary.txt", "latin1.txt"):
        assert f"skipped {docs / bad}:" in result.stderr
    assert "3 summarized, 3 skipped" in result.stderr and "tokens/s" in result.stderr
    # a torn last line (killed mid-write) is cut off and that document summarized again
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][:10])
    again = summarize(library, docs, "--output", out)
    assert again.exit_code == 0, again.output
    assert "1 summarized, 2 already in the output, 3 skipped" in again.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [r["id"] for r in rows[:2]] + [
        rows[2]["id"]
    ]


def test_jsonl_input_with_a_text_field(library, tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text(
        "\n".join(
            [
                json.dumps({"id": "x1", "body": SW}),
                "{broken",
                json.dumps({"id": "x3", "body": ""}),
                json.dumps({"id": "x4", "body": FR}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    result = summarize(library, "--input", data, "--text-field", "body", "--output", out, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["x1", "x4"]
    assert (
        "skipped 2: line 2: malformed JSON" in result.stderr
        and "skipped x3: line 3: no text in field 'body'" in result.stderr
    )
    same = summarize(library, "--input", data, "--output", data)
    assert same.exit_code == 2 and "is also an input; choose another path" in same.stderr


def test_several_files_without_output_print_json_lines(library, tmp_path):
    result = summarize(library, write(tmp_path / "1.txt", SW), write(tmp_path / "2.txt", FR), "--lang", "sw")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["lang"] for r in rows] == ["sw", "sw"] and all(r["composition"] == SW_LABEL for r in rows)


def test_batched_summaries_equal_one_by_one(library, tmp_path):
    files = [write(tmp_path / f"{i}.txt", text) for i, text in enumerate((SW, SW + " Habari njema.", SW[:80]))]
    out = tmp_path / "batch.jsonl"
    assert summarize(library, *files, "--output", out, "--batch-size", 3).exit_code == 0
    batched = {json.loads(line)["id"]: json.loads(line)["summary"] for line in out.read_text().splitlines()}
    for f in files:
        one = json.loads(summarize(library, f, "--json").stdout)["summary"]
        assert batched[str(f)] == one


def test_library_errors_are_one_line(tmp_path):
    article = write(tmp_path / "a.txt", SW)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "library.json").write_text("{}")
    for args, message in (
        ([], "nothing to summarize"),
        ([article, "--library", tmp_path], "not an adapter library"),
        ([article, "--library", tmp_path / "bad"], "not an adapter library index"),
        ([article, "--lang", "xx"], "unknown language code"),
        ([article, "--input", article], "give files or --input"),
        ([article, "--model", tmp_path, "--lang", "sw"], "with --model there is nothing to choose"),
    ):
        result = cli("summarize", *args)
        assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1, (
            args,
            result.stderr,
        )


def test_eval_without_a_model_scores_the_library_composition(library, tmp_path):
    data = tmp_path / "sw.jsonl"
    data.write_text(
        "\n".join(
            json.dumps({"id": str(i), "text": SW, "summary": "Serikali imetangaza mpango mpya"}) for i in range(3)
        )
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "eval"
    result = cli(
        "eval", "--data", data, "--lang", "sw", "--library", library, "--out", out, "--max-new-tokens", 4, "--json"
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert scores["model"] == f"library sw: {SW_LABEL}" and scores["documents"] == 3
    assert (
        scores["composition"]["applied"] == "run time"
        and "lang-sw/adapter_model.safetensors" in scores["composition"]["files"]
    )
    again = cli("eval", "--data", data, "--lang", "sw", "--library", library, "--out", out, "--max-new-tokens", 4)
    assert again.exit_code == 0 and "resuming" in again.stderr
    unshipped = cli("eval", "--data", data, "--lang", "de", "--library", library, "--out", tmp_path / "de")
    assert unshipped.exit_code == 2 and "no shipped adapter for 'de'" in unshipped.stderr


def test_pack_command_and_recipe_step(tiny_llama_dir, tmp_path):
    src = make_adapter(
        tiny_llama_dir,
        tmp_path / "work" / "lang-sw",
        5,
        meta={"kind": "language", "lang": "sw", "base": {"spec": "tiny"}},
    )
    result = cli("adapters", "pack", src, tmp_path / "small", "--rank", 1)
    assert result.exit_code == 0, result.output
    assert "rank 4 → 1, all, float16" in result.stdout
    assert json.loads((tmp_path / "small" / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"
    bad = cli("adapters", "pack", src, tmp_path / "bad", "--rank", 0)
    assert bad.exit_code == 2 and "--rank 0 is not allowed: an integer from 1 to 4096" in bad.stderr
    assert not (tmp_path / "bad").exists()
    recipe = tmp_path / "pack.yaml"
    recipe.write_text(
        "workdir: work\nsteps:\n  - pack: {adapter: lang-sw, out: packed/lang-sw, rank: 2, modules: mlp}\n"
    )
    ran = cli("run", recipe)
    assert ran.exit_code == 0, ran.output
    packed = load_adapter(tmp_path / "work" / "packed" / "lang-sw")
    assert packed.rank == 2 and all("mlp" in m for m in packed.weights)
