"""LoRA applied at run time: the numpy composition equals compose's ``delta``, the graph inputs lay
out fused layers right, and a base export fed the update gives the merged export's logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from adapters import make_adapter

from edgecomp.compose.methods import compose
from edgecomp.compose.spec import resolve_spec
from edgecomp.errors import EdgecompError
from edgecomp.export.merge_export import cached_export
from edgecomp.runtime.adapter import delta_factors, lora_feeds
from edgecomp.runtime.model import OnnxCausalLM

TOKENS = [2, 40, 41, 42, 43, 44, 45, 50, 60, 70, 80, 90, 100, 110]


@pytest.fixture(scope="module")
def adapters(tiny_base, tmp_path_factory) -> list[Path]:
    """Three adapters of q, v and down only (so fused q/k/v and gate/up layers get zero blocks), one
    of another rank."""
    root = tmp_path_factory.mktemp("runtime-adapters")
    return [
        make_adapter(tiny_base, root / "a", 1),
        make_adapter(tiny_base, root / "b", 2),
        make_adapter(tiny_base, root / "c", 3, rank=2),
    ]


def _spec(adapters, weights):
    return {"adapters": [f"{a}:{w}" for a, w in zip(adapters, weights)], "method": "delta"}


def test_numpy_delta_equals_compose_delta(adapters, tmp_path):
    weights = (1.0, 0.7, -1.3)
    terms = resolve_spec(_spec(adapters[:2], weights[:2]), tmp_path).terms
    reference = compose(terms, "delta")
    factors = delta_factors(zip(adapters[:2], weights[:2]))
    assert set(factors) == set(reference.low_rank)
    for module, (a, b) in reference.low_rank.items():
        expected = reference.scale * (b @ a).numpy()
        got = factors[module][1] @ factors[module][0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _logits(model: OnnxCausalLM) -> np.ndarray:
    logits, _ = model.decoder.run(np.asarray([TOKENS]), model.decoder.empty_cache(1))
    return logits[0]


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_run_time_update_gives_the_merged_exports_logits(tiny_base, adapters, tmp_path, quantize):
    weights = (1.0, 0.5, -1.0)
    base = OnnxCausalLM.load(
        cached_export(resolve_spec({}, tmp_path), base=str(tiny_base), quantize=quantize, lora_inputs=True)
    )
    plain = OnnxCausalLM.load(cached_export(resolve_spec({}, tmp_path), base=str(tiny_base), quantize=quantize))
    merged = OnnxCausalLM.load(
        cached_export(resolve_spec(_spec(adapters, weights), tmp_path), base=str(tiny_base), quantize=quantize)
    )
    np.testing.assert_allclose(_logits(base), _logits(plain), atol=1e-5)  # zero update: the base itself
    base.set_adapter(delta_factors(zip(adapters, weights)))
    reference, got = _logits(merged), _logits(base)
    scale = max(1.0, float(np.abs(reference).max()))
    if quantize == "none":
        assert float(np.abs(got - reference).max()) <= 1e-4 * scale
    else:  # int8 rounds W + ΔW in one case and W alone (ΔW exact) in the other: both as far from fp32
        exact = _logits(
            OnnxCausalLM.load(cached_export(resolve_spec(_spec(adapters, weights), tmp_path), base=str(tiny_base)))
        )
        merged_error = float(np.abs(reference - exact).mean())
        assert float(np.abs(got - exact).mean()) <= 1.5 * merged_error
    assert float(np.abs(got - _logits(plain)).max()) > 1e-3  # the update does something
    base.set_adapter(None)
    np.testing.assert_allclose(_logits(base), _logits(plain), atol=1e-5)


def test_run_time_inputs_are_checked(tiny_base, adapters, tmp_path):
    base = OnnxCausalLM.load(cached_export(resolve_spec({}, tmp_path), base=str(tiny_base), lora_inputs=True))
    factors = delta_factors([(adapters[0], 1.0)])
    module = next(iter(factors))
    with pytest.raises(EdgecompError, match="not finite"):
        base.set_adapter({**factors, module: (factors[module][0] * np.nan, factors[module][1])})
    with pytest.raises(EdgecompError, match="takes no run-time update"):
        base.set_adapter({"model.layers.9.mlp.up_proj": factors[module]})
    with pytest.raises(EdgecompError, match="adapter update is"):
        base.set_adapter({module: (factors[module][0][:, :-1], factors[module][1])})
    plain = OnnxCausalLM.load(cached_export(resolve_spec({}, tmp_path), base=str(tiny_base)))
    with pytest.raises(EdgecompError, match="takes no run-time adapter"):
        plain.set_adapter(factors)
    with pytest.raises(EdgecompError, match="int4"):
        cached_export(resolve_spec({}, tmp_path), base=str(tiny_base), quantize="int4", lora_inputs=True)


def test_fused_layers_get_block_layouts():
    layout = {"lora.l.qkv": {"parts": ["l.q", "l.k", "l.v"], "in": 3, "out": [2, 1, 1]}}
    rng = np.random.default_rng(0)
    q = (rng.standard_normal((2, 3), dtype=np.float32), rng.standard_normal((2, 2), dtype=np.float32))
    v = (rng.standard_normal((1, 3), dtype=np.float32), rng.standard_normal((1, 1), dtype=np.float32))
    feeds = lora_feeds(layout, {"l.q": q, "l.v": v})
    a, b = feeds["lora.l.qkv.a"], feeds["lora.l.qkv.b"]
    assert a.shape == (3, 3) and b.shape == (3, 4)
    x = rng.standard_normal((5, 3), dtype=np.float32)
    out = x @ a @ b
    np.testing.assert_allclose(out[:, :2], x @ (q[1] @ q[0]).T, rtol=1e-5)
    np.testing.assert_allclose(out[:, 2:3], 0.0)  # k: no update
    np.testing.assert_allclose(out[:, 3:], x @ (v[1] @ v[0]).T, rtol=1e-5)
    empty = lora_feeds(layout, {})
    assert empty["lora.l.qkv.a"].shape == (3, 1) and not empty["lora.l.qkv.b"].any()
