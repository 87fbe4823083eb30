"""Every registered model family (edgecomp.models.families) works end to end on its tiny model:
edgecomp's graph gives PyTorch's logits (whole pass and cached steps), int8 and int4 exports work
(the int4 graph read back into PyTorch computes what ONNX Runtime does), and run-time LoRA inputs
give the PEFT model's logits. Also: the registry is what the graph accepts, and module types for
composition come from it (an unknown module with an attention/MLP weight is refused).

The session-wide ``tiny_base`` fixture stays Llama and Gemma3 (the whole suite runs on it); the
other families are covered here only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from adapters import make_adapter
from tiny import CORPUS, save_tiny, tiny_model
from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM

from edgecomp.compose.adapters import LoraAdapter
from edgecomp.compose.terms import Term, module_type
from edgecomp.errors import EdgecompError
from edgecomp.export.decoder_graph import unsupported
from edgecomp.export.onnx_export import chosen_graph, export_onnx
from edgecomp.export.pipeline import export_checkpoint
from edgecomp.export.quantization.apply import quantize_model
from edgecomp.export.quantization.weight_only import GPTQConfig, WeightOnlyConfig
from edgecomp.models.families import FAMILIES, family_for, model_types
from edgecomp.runtime.adapter import delta_factors
from edgecomp.runtime.model import OnnxCausalLM
from edgecomp.runtime.session import DecoderSession, KVShape
from edgecomp.train.lora import block_linear_suffixes, lora_targets

TOKENS = [2, 40, 41, 42, 43, 44, 45, 50, 60, 70, 80, 90, 100, 110, 7, 9, 300, 12, 13]
# blocks of 16 on a hidden size of 64, exact integer arithmetic (accuracy_level 0): as tests/test_tune.py
INT4 = WeightOnlyConfig(
    bits=4,
    block_size=16,
    head_bits=8,
    head_block_size=32,
    accuracy_level=0,
    gptq=GPTQConfig(sequence_length=32, tokens=32 * 16),
)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_base(request, tmp_path_factory) -> Path:
    """A tiny random checkpoint of each registered family."""
    return save_tiny(request.param, tmp_path_factory.mktemp(f"family-{request.param}"))


def _config(checkpoint: Path) -> dict:
    return json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))


def _reference(checkpoint: Path, model=None) -> np.ndarray:
    model = model or AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    with torch.inference_mode():
        return model.eval()(torch.tensor([TOKENS])).logits[0].numpy()


def test_edgecomp_graph_gives_pytorch_logits_and_steps_through_the_cache(family_base, tmp_path):
    assert chosen_graph(family_base, "auto") == "edgecomp"
    path = export_onnx(family_base, tmp_path / "fp32", "edgecomp")
    reference = _reference(family_base)
    decoder = DecoderSession(path, KVShape.from_config(_config(family_base)))
    logits, _ = decoder.run(np.array([TOKENS]), decoder.empty_cache(1))
    np.testing.assert_allclose(logits[0], reference, atol=1e-5 * max(1.0, float(np.abs(reference).max())))
    _, cache = decoder.prefill(TOKENS[:8])
    for position in range(8, len(TOKENS)):
        logits, cache = decoder.step(np.array([TOKENS[position]]), cache)
        np.testing.assert_allclose(logits[0], reference[position], atol=1e-4)


def test_int8_export_is_verified_and_close_to_fp32(family_base, tmp_path):
    manifest = export_checkpoint(family_base, tmp_path / "int8", quantize="int8", graph="edgecomp", manifest={})
    assert manifest["graph"] == "edgecomp"
    assert manifest["verify"]["fp32"]["max_abs_diff"] <= manifest["verify"]["fp32"]["tolerance"]
    assert manifest["verify"]["int8"]["greedy_agreement"] > 0.8


def test_int4_graph_read_back_into_pytorch_computes_what_onnx_runtime_does(family_base, tmp_path):
    """The scale-tuning mirror (quantized_torch) undoes the family's folded constants and splits fused
    weights and biases by rows: its logits are the int4 graph's."""
    from edgecomp.export.quantization.quantized_torch import QuantizedStudent

    calibration = tmp_path / "calibration.txt"
    calibration.write_text("\n".join(CORPUS * 40) + "\n", encoding="utf-8")
    raw = export_onnx(family_base, tmp_path / "raw", "edgecomp").parent
    quantize_model(raw, tmp_path / "q", "int4", INT4, tokenizer_dir=family_base, calibration=[calibration])
    config = _config(family_base)
    decoder = DecoderSession(tmp_path / "q" / "model.onnx", KVShape.from_config(config))
    want = decoder.run(np.array([TOKENS]), decoder.empty_cache(1))[0][0]
    student = QuantizedStudent(onnx.load(str(tmp_path / "q" / "model.onnx")), raw)
    with torch.no_grad():
        got = (student.hidden(torch.tensor([TOKENS]))[0] @ student.head.T).numpy()
    np.testing.assert_allclose(got, want, atol=2e-3 * float(np.abs(want).max()))


def test_run_time_lora_inputs_give_the_peft_models_logits(family_base, tmp_path):
    from peft import PeftModel

    export_checkpoint(family_base, tmp_path / "lora", graph="edgecomp", lora_inputs=True, manifest={})
    adapter = make_adapter(family_base, tmp_path / "adapter", seed=3)
    model = OnnxCausalLM.load(tmp_path / "lora")
    model.set_adapter(delta_factors([(adapter, 1.0)]))
    logits, _ = model.decoder.run(np.asarray([TOKENS]), model.decoder.empty_cache(1))
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(family_base, dtype=torch.float32), adapter)
    reference, plain = _reference(family_base, peft), _reference(family_base)
    assert float(np.abs(reference - plain).max()) > 1e-2  # the adapter changes the logits
    np.testing.assert_allclose(logits[0], reference, atol=1e-4 * max(1.0, float(np.abs(reference).max())))


def test_the_registry_is_exactly_what_the_graph_accepts():
    """No transformers model type gets past the graph's model-type check without a family, and each
    family's types are real transformers types whose tiny config the graph builds."""
    accepted = {kind for kind in CONFIG_MAPPING if not unsupported({"model_type": kind}).startswith("model type")}
    assert accepted == model_types()
    for name, family in FAMILIES.items():
        config = tiny_model(name, 300).config.to_dict()
        for kind in family.model_types:
            assert kind in CONFIG_MAPPING
            assert family_for({**config, "model_type": kind}) is family
            assert unsupported({**config, "model_type": kind}) is None, kind


def test_what_a_family_leaves_out_is_unsupported():
    for name in ("qwen2", "qwen3"):
        config = AutoConfig.for_model(FAMILIES[name].model_types[0], use_sliding_window=True).to_dict()
        assert unsupported(config) == "use_sliding_window=True"
    biased = AutoConfig.for_model("qwen3", attention_bias=True).to_dict()  # o_proj too: not Qwen2's layout
    assert unsupported(biased) == "biases in attention or MLP"


def test_module_types_and_lora_targets_come_from_the_family():
    """Every linear layer of each family's blocks has its module type; LoRA targets are those layers."""
    for name in sorted(FAMILIES):
        model = tiny_model(name, 300)
        linears = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in n]
        assert linears, name
        for module in linears:
            assert module_type(module) == ("attention" if ".self_attn." in module else "mlp"), module
        assert lora_targets(model) == block_linear_suffixes(model), name
    assert module_type("model.layers.0.self_attn.q_proj") == "attention"
    assert module_type("model.layers.5.mlp.gate_proj") == "mlp"
    assert module_type("transformer.h.0.attn.c_attn") is None


def _adapter(modules: list[str]) -> LoraAdapter:
    weights = {m: (torch.ones(1, 4), torch.ones(4, 1)) for m in modules}
    return LoraAdapter(Path("odd"), {"r": 1, "lora_alpha": 1, "peft_type": "LORA"}, weights, None)


def test_attention_or_mlp_weight_on_an_unknown_module_is_refused():
    odd = _adapter(["model.layers.0.self_attn.q_proj", "transformer.h.0.attn.c_attn"])
    assert Term(odd, 0.5).weight_for("transformer.h.0.attn.c_attn") == 0.5  # plain weights need no type
    for weights in ({"attention": 0.5}, {"mlp": 0.0}):
        with pytest.raises(EdgecompError, match="'transformer.h.0.attn.c_attn'"):
            Term(odd, 1.0, **weights)
    known = Term(_adapter(["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj"]), 1.0, attention=0.5)
    assert known.weight_for("model.layers.0.self_attn.q_proj") == 0.5
    assert known.weight_for("model.layers.0.mlp.up_proj") == 1.0
