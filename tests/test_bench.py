"""``edgecomp bench``: engines in their own processes, the same prompt for all, ratios to llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from edgecomp.bench.cli import bench_app, bench_compare, bench_decode
from edgecomp.bench.engines import BENCH_TEXT, bench_prompt, onnx_files
from edgecomp.bench.measure import EngineSpec, Result, measure, ratios
from edgecomp.data.tokenizer import encoder, load_tokenizer
from edgecomp.errors import EdgecompError
from edgecomp.export.pipeline import export_checkpoint


@pytest.fixture(scope="module")
def export_dir(tiny_llama_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "export"
    export_checkpoint(tiny_llama_dir, out, manifest={})
    return out


def test_bench_prompt_has_exactly_n_tokens(tiny_llama_dir):
    encode = encoder(load_tokenizer(tiny_llama_dir))
    once = encode(BENCH_TEXT)
    for n in (1, 7, len(once) + 1, 300):
        prompt = bench_prompt(encode, 2, n)
        assert len(prompt) == n and prompt[0] == 2
        assert prompt[1 : min(n, len(once) + 1)] == once[: n - 1]
    assert bench_prompt(encode, None, 5) == once[:5]
    with pytest.raises(EdgecompError):
        bench_prompt(encode, 2, 0)


def test_bench_decode(export_dir):
    out = bench_decode(export_dir, prompt_tokens=24, new_tokens=6, repeats=2, warmup=1)
    assert out["engine"] == "edgecomp-onnx" and out["error"] is None
    assert out["prompt_tokens"] == 24 and out["new_tokens"] == 6 and out["repeats"] == 2
    assert len(out["decode_tok_s_runs"]) == 2 and out["decode_tok_s"] > 0 and out["prefill_tok_s"] > 0
    assert out["model_bytes"] == sum(p.stat().st_size for p in onnx_files(export_dir)) > 0
    assert out["peak_rss_mb"] > 20 and out["load_s"] > 0 and out["threads"] >= 1


def test_compare_runs_every_engine_and_divides_by_llama_cpp(export_dir, tiny_llama_dir, packaged_gguf):
    pytest.importorskip("llama_cpp")
    out = bench_compare(
        export_dir, gguf=packaged_gguf, base=str(tiny_llama_dir), prompt_tokens=16, new_tokens=4, repeats=1, warmup=0
    )
    engines = {r["engine"]: r for r in out["engines"]}
    assert set(engines) == {"edgecomp-onnx", "pytorch", "llama.cpp"}
    assert all(r["error"] is None and r["decode_tok_s"] > 0 for r in engines.values()), engines
    assert engines["llama.cpp"]["model_bytes"] == packaged_gguf.stat().st_size
    assert engines["pytorch"]["model_bytes"] == sum(p.stat().st_size for p in tiny_llama_dir.glob("*.safetensors"))
    assert out["vs_llama_cpp"]["llama.cpp"] == {"prefill": 1.0, "decode": 1.0}
    assert set(out["vs_llama_cpp"]) == set(engines)


def test_compare_runs_a_trimmed_export_as_a_second_engine(export_dir, tiny_llama_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(BENCH_TEXT + "\n", encoding="utf-8")
    trimmed = tmp_path / "trimmed"
    export_checkpoint(tiny_llama_dir, trimmed, manifest={}, trim_corpus=[corpus])
    out = bench_compare(
        export_dir, trimmed=trimmed, prompt_tokens=16, new_tokens=4, repeats=1, warmup=0, engines=("onnx",)
    )
    engines = {r["engine"]: r for r in out["engines"]}
    assert set(engines) == {"edgecomp-onnx", "edgecomp-onnx-trimmed"}
    assert all(r["error"] is None and r["decode_tok_s"] > 0 for r in engines.values()), engines
    assert engines["edgecomp-onnx-trimmed"]["model_bytes"] < engines["edgecomp-onnx"]["model_bytes"]
    with pytest.raises(EdgecompError, match="not an edgecomp export"):
        bench_compare(export_dir, trimmed=tmp_path, engines=("onnx",))


def test_a_failing_engine_is_reported_and_the_others_go_on(export_dir, tmp_path):
    specs = [
        EngineSpec("broken", "onnx", {"model": str(tmp_path / "missing")}),
        EngineSpec("ok", "onnx", {"model": str(export_dir)}),
    ]
    broken, ok = measure(specs, prompt_tokens=8, new_tokens=3, repeats=1, warmup=0)
    assert "does not exist" in broken.error and broken.repeats == 0
    assert ok.error is None and ok.repeats == 1 and ok.decode_tok_s > 0
    with pytest.raises(EdgecompError):
        measure(specs[1:], prompt_tokens=8, new_tokens=1)


def test_ratios():
    results = [
        Result("llama.cpp", prefill_tok_s=100.0, decode_tok_s=50.0),
        Result("edgecomp-onnx", prefill_tok_s=50.0, decode_tok_s=75.0),
        Result("pytorch", error="boom"),
    ]
    assert ratios(results, "llama.cpp") == {
        "llama.cpp": {"prefill": 1.0, "decode": 1.0},
        "edgecomp-onnx": {"prefill": 0.5, "decode": 1.5},
    }
    assert ratios(results[1:], "llama.cpp") == {}


def _cli():
    app = typer.Typer()
    app.add_typer(bench_app, name="bench")

    @app.command()
    def other():  # a second command, so Typer keeps "bench" as a sub-command name
        pass

    return app


def test_cli_decode_json_and_errors(export_dir, tmp_path):
    runner = CliRunner()
    args = [
        "bench",
        "decode",
        "--model",
        str(export_dir),
        "--prompt-tokens",
        "12",
        "--new-tokens",
        "4",
        "--repeats",
        "1",
        "--warmup",
        "0",
    ]
    done = runner.invoke(_cli(), [*args, "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert {"prefill_tok_s", "decode_tok_s", "peak_rss_mb", "model_bytes"} <= set(result)

    table = runner.invoke(_cli(), args)
    assert table.exit_code == 0 and "decode" in table.stdout

    missing = runner.invoke(_cli(), ["bench", "decode", "--model", str(tmp_path)])
    assert missing.exit_code == 2 and "not an edgecomp export" in missing.output
    tpu = runner.invoke(_cli(), [*args, "--provider", "tpu"])
    assert tpu.exit_code == 2 and "--provider 'tpu' is not allowed: one of cpu, cuda" in tpu.output
