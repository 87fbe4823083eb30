"""GGUF exports and GGUF LoRAs on tiny GGUF-born bases (Gemma 3 and Llama, written by
``tests/tiny_gguf.py``): names, layouts and metadata as llama.cpp reads them, checked against
PyTorch; and, where llama-cpp-python is installed, against llama.cpp itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
from adapters import make_adapter
from tiny_gguf import write_tiny_gguf
from typer.testing import CliRunner

from edgecomp.cli import app
from edgecomp.export import llamacpp

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")
IDS = [2, *range(10, 40)]  # longer than the Gemma model's sliding window (8)
needs_llama_cpp = pytest.mark.skipif(
    not llamacpp.available(), reason="llama-cpp-python is not installed (pip install 'edgecomp[llamacpp]')"
)


@pytest.fixture(scope="module", params=["gemma3", "llama"])
def gguf_base(request, tmp_path_factory):
    """(the tiny GGUF, its converted checkpoint, two adapters on it)."""
    from edgecomp.models.resolve import resolve_base

    root = tmp_path_factory.mktemp(f"gguf-{request.param}")
    gguf_file = write_tiny_gguf(request.param, root / f"tiny-{request.param}.gguf")
    checkpoint = resolve_base(str(gguf_file)).path
    adapters = [make_adapter(checkpoint, root / f"a{seed}", seed=seed, targets=TARGETS) for seed in (1, 2)]
    return gguf_file, checkpoint, adapters


def _terms(adapters) -> list[str]:
    return ["--adapter", f"{adapters[0]}:1", "--adapter", f"{adapters[1]}:-0.5"]


def _merged_logits(checkpoint, adapters):
    from edgecomp.compose.merge import merged_model
    from edgecomp.compose.methods import compose
    from edgecomp.compose.spec import parse_term_arg, resolve_spec
    from edgecomp.export.verify import model_logits

    terms = [parse_term_arg(f"{adapters[0]}:1"), parse_term_arg(f"{adapters[1]}:-0.5")]
    resolved = resolve_spec({"adapters": terms}, adapters[0].parent)
    model = merged_model(checkpoint, compose(resolved.terms, resolved.method, resolved.parameters), "original")
    return model_logits(model, IDS)


@pytest.fixture(scope="module")
def exports(gguf_base, tmp_path_factory):
    """``merge-export --format gguf`` as f32 and q8_0, and ``compose --format gguf-lora``."""
    gguf_file, _, adapters = gguf_base
    root, runner, out = tmp_path_factory.mktemp("exports"), CliRunner(), {}
    for kind in ("f32", "q8_0"):
        out[kind] = root / kind
        args = ["merge-export", *_terms(adapters), "--base", str(gguf_file), "--format", "gguf", "--quantize", kind]
        result = runner.invoke(app, [*args, "--out", str(out[kind])])
        assert result.exit_code == 0, result.output
    out["lora"] = root / "lora"
    args = ["compose", *_terms(adapters), "--base", str(gguf_file), "--format", "gguf-lora", "--out", str(out["lora"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


def test_tiny_gguf_converts_back(gguf_base):
    """The fixture writes what transformers' GGUF loader reads back as the same model (so the
    exporter's checks below compare against a right base), and llama.cpp's config rules apply."""
    import torch
    from tiny import tiny_model, tiny_tokenizer
    from tiny_gguf import _OVERRIDES

    from edgecomp.export.verify import model_logits, torch_logits
    from edgecomp.model_folder import read_config

    gguf_file, checkpoint, _ = gguf_base
    kind = "gemma3" if "gemma3" in gguf_file.name else "llama"
    torch.manual_seed(0)
    original = tiny_model(kind, len(tiny_tokenizer()), **_OVERRIDES[kind])
    np.testing.assert_allclose(torch_logits(checkpoint, IDS), model_logits(original, IDS), atol=1e-5)
    if kind == "gemma3":
        assert read_config(checkpoint)["query_pre_attn_scalar"] == 16  # head_dim, as llama.cpp scales


def test_merged_gguf_is_the_merged_model_in_llama_cpp_layout(gguf_base, exports):
    import gguf

    base = gguf.GGUFReader(str(gguf_base[0]))
    for kind, types in (("f32", {"F32"}), ("q8_0", {"F32", "Q8_0"})):
        manifest = json.loads((exports[kind] / "edgecomp-export.json").read_text())
        assert manifest["format"] == "gguf" and manifest["quantize"] == kind
        written = gguf.GGUFReader(str(exports[kind] / "model.gguf"))
        assert [t.name for t in written.tensors] == [t.name for t in base.tensors]
        assert {t.tensor_type.name for t in written.tensors} == types
        assert written.fields["general.type"].contents() == "model"
        for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "general.architecture"):
            assert written.fields[key].contents() == base.fields[key].contents()
        check = manifest["verify"]["read_back"]
        assert check["greedy_agreement"] >= (1.0 if kind == "f32" else 0.9), check
    assert manifest["verify"]["read_back"]["perplexity_ratio"] == pytest.approx(1.0, abs=0.05)
    modelfile = (exports["f32"] / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model.gguf\n") and "PARAMETER temperature 0" in modelfile


def test_gguf_lora_is_the_merged_delta_as_llama_cpp_applies_it(gguf_base, exports):
    """llama.cpp computes W x + (alpha / r) B (A x) on the base GGUF's tensors: doing that in numpy
    on the files gives the merged GGUF's tensors, name for name (permuted q/k rows included)."""
    import gguf

    lora = gguf.GGUFReader(str(exports["lora"] / "adapter.gguf"))
    assert lora.fields["general.type"].contents() == "adapter"
    assert lora.fields["adapter.type"].contents() == "lora"
    alpha = lora.fields["adapter.lora.alpha"].contents()
    factors = {t.name: np.array(t.data) for t in lora.tensors}
    base = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(gguf_base[0])).tensors}
    merged = {t.name: np.array(t.data) for t in gguf.GGUFReader(str(exports["f32"] / "model.gguf")).tensors}
    adapted = {name.removesuffix(".lora_a") for name in factors if name.endswith(".lora_a")}
    assert len(adapted) == 2 * len(TARGETS) and adapted <= set(base)
    for name, weight in base.items():
        if name in adapted:
            a, b = factors[f"{name}.lora_a"], factors[f"{name}.lora_b"]
            weight = weight + alpha / a.shape[0] * (b @ a)
        np.testing.assert_allclose(weight, merged[name], atol=1e-5, err_msg=name)
    meta = json.loads((exports["lora"] / "edgecomp.json").read_text())
    assert meta["gguf"] == {"file": "adapter.gguf", "base": gguf_base[0].name}
    assert (exports["lora"] / "adapter_model.safetensors").is_file()  # still a PEFT adapter
    assert "ADAPTER ./adapter.gguf" in (exports["lora"] / "Modelfile").read_text()


@needs_llama_cpp
def test_llama_cpp_runs_the_merged_gguf_as_pytorch_does(gguf_base, exports):
    from edgecomp.export.verify import default_tolerance

    reference = _merged_logits(gguf_base[1], gguf_base[2])
    f32 = llamacpp.logits(exports["f32"] / "model.gguf", IDS)
    assert np.abs(f32 - reference).max() <= default_tolerance(reference)
    q8 = llamacpp.logits(exports["q8_0"] / "model.gguf", IDS)
    # llama.cpp's Q8_0 products quantize the activations to 8 bits too: looser than the read-back
    assert np.abs(q8 - reference).max() <= 0.1 * np.abs(reference).max()
    assert (q8.argmax(-1) == reference.argmax(-1)).mean() >= 0.75
    recorded = json.loads((exports["f32"] / "edgecomp-export.json").read_text())["verify"]["llama_cpp"]
    assert recorded["greedy_agreement"] == 1.0 and recorded["version"] == llamacpp.version()


@needs_llama_cpp
def test_llama_cpp_base_plus_gguf_lora_equals_the_merged_gguf(gguf_base, exports):
    from edgecomp.export.verify import default_tolerance

    merged = llamacpp.logits(exports["f32"] / "model.gguf", IDS)
    applied = llamacpp.logits(gguf_base[0], IDS, lora=exports["lora"] / "adapter.gguf")
    assert np.abs(applied - merged).max() <= default_tolerance(merged)
    assert np.abs(llamacpp.logits(gguf_base[0], IDS) - merged).max() > 10 * default_tolerance(merged)


@needs_llama_cpp
def test_q4_k_m_is_llama_cpp_quantized_and_measured(gguf_base, tmp_path):
    import gguf

    gguf_file, _, adapters = gguf_base
    args = ["merge-export", *_terms(adapters), "--base", str(gguf_file), "--format", "gguf", "--quantize", "q4_k_m"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "q4")])
    assert result.exit_code == 0, result.output
    written = gguf.GGUFReader(str(tmp_path / "q4" / "model.gguf"))
    assert written.fields["general.file_type"].contents() == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert {t.tensor_type.name for t in written.tensors} - {"F32"}  # quantized, whatever llama.cpp chose
    verify = json.loads((tmp_path / "q4" / "edgecomp-export.json").read_text())["verify"]
    for check in (verify["read_back"], verify["llama_cpp"]):
        assert 0.8 < check["perplexity_ratio"] < 1.25, check
    assert sorted(p.name for p in (tmp_path / "q4").iterdir()) == ["Modelfile", "edgecomp-export.json", "model.gguf"]


def test_llama_cpp_types_without_llama_cpp_fail_in_one_line(gguf_base, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    gguf_file, _, adapters = gguf_base
    args = ["merge-export", *_terms(adapters), "--base", str(gguf_file), "--format", "gguf", "--quantize", "q4_k_m"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "q4")])
    assert result.exit_code != 0
    assert "--quantize q4_k_m needs llama-cpp-python (pip install 'edgecomp[llamacpp]')" in result.output
    assert not (tmp_path / "q4").exists()


def test_gguf_lora_needs_a_gguf_born_base(tiny_base, tmp_path):
    adapter = make_adapter(tiny_base, tmp_path / "adapter", seed=5)
    runner = CliRunner()
    args = ["compose", "--adapter", f"{adapter}:1", "--base", str(tiny_base)]
    refused = runner.invoke(app, [*args, "--format", "gguf-lora", "--out", str(tmp_path / "a")])
    assert refused.exit_code != 0 and "--format gguf-lora needs a base converted from a GGUF" in refused.output
    unknown = runner.invoke(app, [*args, "--format", "ggml", "--out", str(tmp_path / "b")])
    assert unknown.exit_code != 0 and "--format 'ggml' is not allowed: one of peft, gguf-lora" in unknown.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
