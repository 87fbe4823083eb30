"""Merging: the merged model equals the base with the adapters applied unmerged."""

import pytest
import torch
from adapters import make_adapter
from peft import PeftModel
from transformers import AutoModelForCausalLM

from edgecomp.compose.adapters import load_adapter
from edgecomp.compose.merge import merged_checkpoint, nf4_dequantize_blocks
from edgecomp.compose.methods import compose
from edgecomp.compose.terms import Term
from edgecomp.models.nf4 import nf4_roundtrip

WEIGHTS = [1.0, 0.5, -1.0]


@pytest.fixture(scope="module")
def adapter_dirs(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("merge-adapters")
    return [make_adapter(tiny_base, root / f"a{i}", seed=10 + i) for i in range(3)]


def unmerged_logits(base_dir, adapter_dirs, weights, ids):
    """Base + Σ wᵢ·(adapter i), run unmerged by PEFT with every adapter active and its scale × wᵢ."""
    model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir), adapter_dirs[0], adapter_name="a0"
    )
    for i, path in enumerate(adapter_dirs[1:], start=1):
        model.load_adapter(path, adapter_name=f"a{i}")
    model.base_model.set_adapter([f"a{i}" for i in range(len(adapter_dirs))])
    for module in model.modules():
        if hasattr(module, "scaling") and isinstance(module.scaling, dict):
            for i, w in enumerate(weights):
                if f"a{i}" in module.scaling:
                    module.scaling[f"a{i}"] *= w
    with torch.no_grad():
        return model.eval()(ids).logits


def merged_logits(path, ids):
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(path).eval()(ids).logits


IDS = torch.tensor([[2, 40, 41, 42, 80, 81, 150, 7, 9, 300]])


def test_delta_merge_equals_unmerged_adapters(tiny_base, adapter_dirs, tmp_path):
    composed = compose([Term(load_adapter(p), w) for p, w in zip(adapter_dirs, WEIGHTS)], "delta")
    out = merged_checkpoint(tiny_base, composed, "original", tmp_path / "merged")
    assert (out / "tokenizer.json").is_file()
    torch.testing.assert_close(
        merged_logits(out, IDS), unmerged_logits(tiny_base, adapter_dirs, WEIGHTS, IDS), rtol=1e-4, atol=1e-4
    )


def test_params_merge_of_one_adapter_equals_peft(tiny_base, adapter_dirs, tmp_path):
    composed = compose([Term(load_adapter(adapter_dirs[1]), 1.0)], "params")
    out = merged_checkpoint(tiny_base, composed, "original", tmp_path / "merged")
    torch.testing.assert_close(
        merged_logits(out, IDS), unmerged_logits(tiny_base, adapter_dirs[1:2], [1.0], IDS), rtol=1e-4, atol=1e-4
    )


def test_dequantized_merge_base_is_the_nf4_round_trip(tiny_base, adapter_dirs, tmp_path):
    composed = compose([Term(load_adapter(adapter_dirs[0]), 1.0)], "params")
    out = merged_checkpoint(tiny_base, composed, "dequantized", tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    merged = AutoModelForCausalLM.from_pretrained(out)
    name = composed.modules[0]
    expected = nf4_roundtrip(base.get_submodule(name).weight.detach()) + composed.delta(name)
    torch.testing.assert_close(merged.get_submodule(name).weight.detach(), expected)
    untouched = "model.layers.0.mlp.up_proj"  # not targeted, still NF4 round-tripped
    torch.testing.assert_close(
        merged.get_submodule(untouched).weight.detach(), nf4_roundtrip(base.get_submodule(untouched).weight.detach())
    )


def test_nf4_round_trip_matches_bitsandbytes_linear4bit(tiny_base):
    """The weights QLoRA trains against: what Linear4bit dequantizes to, after loading in NF4."""
    import bitsandbytes.functional as F

    from edgecomp.models.load import load_causal_lm

    full = load_causal_lm(tiny_base)
    nf4 = load_causal_lm(tiny_base, qlora=True)
    layer = nf4.model.layers[0].self_attn.q_proj
    dequantized = F.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    torch.testing.assert_close(dequantized, nf4_roundtrip(full.model.layers[0].self_attn.q_proj.weight.detach()))
    nf4_dequantize_blocks(full)
    torch.testing.assert_close(full.model.layers[0].self_attn.q_proj.weight.detach(), dequantized)
