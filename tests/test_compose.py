"""Composition methods against references computed here, and the refusals."""

import math

import pytest
import torch
from adapters import make_adapter
from safetensors.torch import load_file

from edgecomp.compose.adapters import load_adapter
from edgecomp.compose.methods import compose
from edgecomp.compose.terms import Term
from edgecomp.errors import EdgecompError


@pytest.fixture(scope="module")
def trio(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return [load_adapter(make_adapter(tiny_llama_dir, root / f"a{i}", seed=i)) for i in range(3)]


def raw(adapter, module):
    tensors = load_file(str(adapter.path / "adapter_model.safetensors"))
    key = f"base_model.model.{module}"
    return tensors[f"{key}.lora_A.weight"], tensors[f"{key}.lora_B.weight"]


WEIGHTS = [1.0, 0.7, -1.0]


def test_params_is_the_weighted_sum_of_a_and_of_b(trio):
    composed = compose([Term(a, w) for a, w in zip(trio, WEIGHTS)], "params")
    assert composed.modules == sorted(trio[0].weights) and len(composed.modules) == 6
    scale = 8.0 / 4
    for module in composed.modules:
        a = sum(w * raw(ad, module)[0] for ad, w in zip(trio, WEIGHTS))
        b = sum(w * raw(ad, module)[1] for ad, w in zip(trio, WEIGHTS))
        torch.testing.assert_close(composed.delta(module), scale * b @ a)


def test_delta_is_the_exact_weighted_sum_of_updates(trio):
    composed = compose([Term(a, w) for a, w in zip(trio, WEIGHTS)], "delta")
    for module in composed.modules:
        ref = sum(w * 2.0 * raw(ad, module)[1] @ raw(ad, module)[0] for ad, w in zip(trio, WEIGHTS))
        torch.testing.assert_close(composed.delta(module), ref, rtol=1e-5, atol=1e-6)
        assert composed.low_rank[module][0].shape[0] == 3 * 4  # ranks concatenated


def test_params_and_delta_differ_by_the_cross_terms(trio):
    p = compose([Term(a) for a in trio[:2]], "params")
    d = compose([Term(a) for a in trio[:2]], "delta")
    module = p.modules[0]
    (a0, b0), (a1, b1) = raw(trio[0], module), raw(trio[1], module)
    torch.testing.assert_close(p.delta(module) - d.delta(module), 2.0 * (b0 @ a1 + b1 @ a0), rtol=1e-4, atol=1e-5)


def test_params_refuses_unequal_ranks(tiny_llama_dir, tmp_path, trio):
    other = load_adapter(make_adapter(tiny_llama_dir, tmp_path / "r8", seed=5, rank=8, alpha=16.0))
    with pytest.raises(EdgecompError, match="r8: rank 8"):
        compose([Term(trio[0], 1.0), Term(other, 1.0)], "params")
    compose([Term(trio[0], 1.0), Term(other, 1.0)], "delta")  # delta takes any ranks


def test_refuses_other_target_modules(tiny_llama_dir, tmp_path, trio):
    other = load_adapter(make_adapter(tiny_llama_dir, tmp_path / "qk", seed=6, targets=("q_proj", "k_proj")))
    with pytest.raises(EdgecompError, match="qk: target modules differ"):
        compose([Term(trio[0], 1.0), Term(other, 1.0)], "delta")


def test_refuses_other_base_fingerprint(tiny_llama_dir, tmp_path):
    a = load_adapter(make_adapter(tiny_llama_dir, tmp_path / "fa", 1, meta={"base": {"fingerprint": "sha256:aa"}}))
    b = load_adapter(make_adapter(tiny_llama_dir, tmp_path / "fb", 2, meta={"base": {"fingerprint": "sha256:bb"}}))
    with pytest.raises(EdgecompError, match="fb: trained on another base"):
        compose([Term(a, 1.0), Term(b, 1.0)], "params")


@pytest.mark.parametrize("weight", [math.nan, math.inf])
def test_refuses_non_finite_weights(trio, weight):
    with pytest.raises(EdgecompError, match="not a finite number"):
        compose([Term(trio[0], weight)], "params")


def test_refuses_unknown_method(trio):
    with pytest.raises(EdgecompError, match="unknown method 'ties2'"):
        compose([Term(trio[0], 1.0)], "ties2")


def test_refuses_folders_that_are_not_adapters(tmp_path, trio):
    with pytest.raises(EdgecompError, match="not an adapter folder"):
        load_adapter(tmp_path)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text((trio[0].path / "adapter_config.json").read_text())
    (broken / "adapter_model.safetensors").write_bytes((trio[0].path / "adapter_model.safetensors").read_bytes()[:100])
    with pytest.raises(EdgecompError, match="corrupted safetensors"):
        load_adapter(broken)
    (broken / "adapter_model.safetensors").unlink()
    (broken / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(EdgecompError, match="pickle adapter_model.bin is not loaded"):
        load_adapter(broken)


def test_refuses_other_shapes_and_dtypes(trio):
    import dataclasses
    from pathlib import Path

    module = next(iter(trio[0].weights))
    a, b = trio[1].weights[module]
    wide = dataclasses.replace(
        trio[1], path=Path("wide"), weights={**trio[1].weights, module: (torch.zeros(a.shape[0], a.shape[1] + 1), b)}
    )
    with pytest.raises(
        EdgecompError, match=rf"wide: module '{module}' is \d+x{a.shape[1] + 1}, \d+x{a.shape[1]} in a0"
    ):
        compose([Term(trio[0]), Term(wide)], "delta")
    half = dataclasses.replace(trio[1], path=Path("half"), stored_dtype="bfloat16")
    with pytest.raises(EdgecompError, match="half: weights are bfloat16, float32 in a0"):
        compose([Term(trio[0]), Term(half)], "params")
