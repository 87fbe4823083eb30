"""Properties every composition method should have, on small synthetic adapters (hypothesis), plus the
end-to-end identities: merged model = base + unmerged composed adapter, and byte-identical writes."""

from pathlib import Path

import pytest
import torch
from adapters import make_adapter
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import PeftModel
from transformers import AutoModelForCausalLM

from edgecomp.compose.adapters import WEIGHTS, LoraAdapter, load_adapter
from edgecomp.compose.lowrank import to_low_rank
from edgecomp.compose.merge import merged_checkpoint
from edgecomp.compose.methods import METHODS, compose
from edgecomp.compose.terms import Term
from edgecomp.compose.write import write_peft_adapter
from edgecomp.errors import EdgecompError

SHAPES = {  # module -> (out, in)
    "model.layers.0.self_attn.q_proj": (6, 5),
    "model.layers.0.mlp.down_proj": (4, 7),
    "model.layers.1.self_attn.q_proj": (6, 5),
    "model.layers.1.mlp.down_proj": (4, 7),
}
PROPERTY = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**32 - 1)
weights = st.floats(-2.0, 2.0, allow_nan=False)
densities = st.floats(0.1, 1.0)


def adapter(seed: int, rank: int = 2, alpha: float = 4.0, sign: float | None = None) -> LoraAdapter:
    """Random factors; with ``sign`` every A and B element has that sign, so every ΔW element does too
    (both ±1 give ΔW ≥ 0 elementwise)."""
    gen = torch.Generator().manual_seed(seed)
    factors = {}
    for module, (out, inp) in SHAPES.items():
        a, b = torch.randn(rank, inp, generator=gen), torch.randn(out, rank, generator=gen)
        factors[module] = (a, b) if sign is None else (sign * a.abs(), sign * b.abs())
    config = {"r": rank, "lora_alpha": alpha, "peft_type": "LORA", "target_modules": ["q_proj", "down_proj"]}
    return LoraAdapter(path=Path(f"a{seed}"), config=config, weights=factors, meta=None)


def declared(method: str, density: float, seed: int) -> dict:
    """The parameters ``method`` declares, out of a density and a seed drawn for every method."""
    names = {p.name for p in METHODS[method].params}
    return {k: v for k, v in {"density": density, "seed": seed}.items() if k in names}


def deltas(composed) -> dict:
    return {module: composed.delta(module) for module in composed.modules}


def assert_same(x: dict, y: dict, tol: float = 1e-5) -> None:
    assert sorted(x) == sorted(y)
    for module in x:
        torch.testing.assert_close(x[module], y[module], rtol=tol, atol=tol)


def weighted_sum(terms: list[Term]) -> dict:
    return {
        m: sum(t.weight_for(m) * t.adapter.scale * t.adapter.weights[m][1] @ t.adapter.weights[m][0] for t in terms)
        for m in SHAPES
    }


@PROPERTY
@given(st.sampled_from(sorted(METHODS)), seeds, weights, densities)
def test_weight_zero_removes_an_adapter(method, seed, w, density):
    one, other = adapter(seed), adapter(seed + 1)
    options = declared(method, density, seed)
    assert_same(
        deltas(compose([Term(one, w), Term(other, 0.0)], method, options)),
        deltas(compose([Term(one, w)], method, options)),
    )


@PROPERTY
@given(seeds, weights, weights)
def test_delta_adding_and_subtracting_an_adapter_cancels(seed, w, v):
    a, b = adapter(seed), adapter(seed + 1, rank=3, alpha=1.0)
    assert_same(deltas(compose([Term(a, w), Term(b, v), Term(b, -v)], "delta")), deltas(compose([Term(a, w)], "delta")))


@PROPERTY
@given(seeds, st.lists(weights, min_size=2, max_size=2), st.lists(weights, min_size=2, max_size=2), weights)
def test_delta_is_linear_in_the_weights(seed, w, v, alpha):
    pair = [adapter(seed), adapter(seed + 1, rank=3)]

    def at(ws):
        return deltas(compose([Term(a, x) for a, x in zip(pair, ws)], "delta"))

    assert_same(at([alpha * x for x in w]), {m: alpha * d for m, d in at(w).items()})
    assert_same(at([x + y for x, y in zip(w, v)]), {m: at(w)[m] + at(v)[m] for m in SHAPES})


@PROPERTY
@given(seeds, weights)
def test_params_is_delta_for_one_adapter_and_quadratic_in_its_weight(seed, w):
    """params scales A and B by w each, so one adapter at weight w is w²·ΔW, not w·ΔW."""
    a = adapter(seed)
    unit = deltas(compose([Term(a, 1.0)], "params"))
    assert_same(unit, deltas(compose([Term(a, 1.0)], "delta")))
    assert_same(deltas(compose([Term(a, w)], "params")), {m: w * w * d for m, d in unit.items()})


@PROPERTY
@given(
    st.sampled_from(["ties", "dare"]),
    seeds,
    st.lists(st.floats(0.1, 2.0), min_size=1, max_size=3),
    st.sampled_from([1.0, -1.0]),
    seeds,
)
def test_ties_and_dare_at_density_one_without_conflicts_are_the_weighted_sum(method, seed, ws, sign, option_seed):
    """All factors of one sign make every ΔWᵢ ≥ 0; one sign for all weights leaves no sign conflict."""
    terms = [Term(adapter(seed + i, rank=1 + i, sign=1.0 if i % 2 else -1.0), sign * w) for i, w in enumerate(ws)]
    composed = compose(terms, method, declared(method, 1.0, option_seed))
    assert_same(deltas(composed), weighted_sum(terms))
    assert_same(deltas(composed), deltas(compose(terms, "delta")))


@PROPERTY
@given(seeds, seeds, st.floats(0.2, 0.8), weights.filter(lambda w: abs(w) > 0.1))
def test_dare_is_reproducible_for_a_seed_and_draws_independent_masks(seed, option_seed, density, w):
    terms = [Term(adapter(seed), w), Term(adapter(seed + 1), 1.0)]
    first = deltas(compose(terms, "dare", {"density": density, "seed": option_seed}))
    again = deltas(compose(terms, "dare", {"density": density, "seed": option_seed}))
    other = deltas(compose(terms, "dare", {"density": density, "seed": option_seed + 1}))
    assert all(torch.equal(first[m], again[m]) for m in SHAPES)
    assert any(not torch.equal(first[m], other[m]) for m in SHAPES)
    one = Term(adapter(seed), 1.0)  # each adapter draws its own mask, so twice one adapter ≠ 2 × it
    twice = deltas(compose([one, one], "dare", {"density": density, "seed": option_seed}))
    single = deltas(compose([one], "dare", {"density": density, "seed": option_seed}))
    assert any(not torch.allclose(twice[m], 2 * single[m]) for m in SHAPES)


def test_dare_is_the_weighted_sum_in_expectation():
    terms = [Term(adapter(1), 0.8), Term(adapter(2), -0.5)]
    draws = [deltas(compose(terms, "dare", {"density": 0.5, "seed": s})) for s in range(400)]
    for module, ref in weighted_sum(terms).items():
        mean = torch.stack([d[module] for d in draws]).mean(0)
        assert torch.linalg.matrix_norm(mean - ref) < 0.15 * torch.linalg.matrix_norm(ref)


def test_ties_keeps_tied_magnitudes_and_elects_the_weighted_sign():
    """Trim keeps every element tied with the cut; the −1 weight flips b before it votes and is summed."""
    a = LoraAdapter(
        Path("a"),
        {"r": 1, "lora_alpha": 1, "peft_type": "LORA"},
        {"m": (torch.tensor([[1.0, 1.0, 2.0, 0.5]]), torch.tensor([[1.0]]))},
        None,
    )
    b = LoraAdapter(
        Path("b"),
        {"r": 1, "lora_alpha": 1, "peft_type": "LORA"},
        {"m": (torch.tensor([[3.0, -0.5, -1.0, 1.0]]), torch.tensor([[1.0]]))},
        None,
    )
    # trimmed at density 0.5: a → [1, 1, 2, 0] (tie at 1 kept), b → [3, 0, -1, 1]; weighted b: [-3, 0, 1, -1]
    composed = compose([Term(a, 1.0), Term(b, -1.0)], "ties", {"density": 0.5})
    torch.testing.assert_close(composed.delta("m"), torch.tensor([[-3.0, 1.0, 3.0, -1.0]]))


@PROPERTY
@given(st.sampled_from(sorted(METHODS)), seeds, weights, densities)
def test_module_type_weights_and_layer_ranges_apply_to_every_method(method, seed, w, density):
    pair, options = [adapter(seed), adapter(seed + 1)], declared(method, density, seed)
    full = deltas(compose([Term(a, w) for a in pair], method, options))
    no_attention = deltas(compose([Term(a, w, attention=0.0) for a in pair], method, options))
    upper = deltas(compose([Term(a, w, layers=(1, 1)) for a in pair], method, options))
    for module in SHAPES:
        expect = torch.zeros(SHAPES[module]) if "self_attn" in module else full[module]
        torch.testing.assert_close(no_attention[module], expect)
        expect = torch.zeros(SHAPES[module]) if ".layers.0." in module else full[module]
        torch.testing.assert_close(upper[module], expect)


@PROPERTY
@given(st.sampled_from(["params", "delta"]), seeds, weights)
def test_low_rank_methods_convert_exactly_without_a_rank(method, seed, w):
    composed = compose([Term(adapter(seed), w), Term(adapter(seed + 1), 1.0)], method)
    low_rank, scale, report = to_low_rank(composed)
    assert report == {"exact": True} and scale == composed.scale and low_rank is composed.low_rank


def test_dense_methods_need_a_rank():
    with pytest.raises(EdgecompError, match="pass --rank"):
        to_low_rank(compose([Term(adapter(0))], "ties"))


@PROPERTY
@given(st.sampled_from(sorted(METHODS)), seeds, weights, densities)
def test_svd_at_full_rank_is_exact_and_its_error_falls_with_rank(method, seed, w, density):
    composed = compose([Term(adapter(seed), w), Term(adapter(seed + 1), 0.5)], method, declared(method, density, seed))
    full = max(min(shape) for shape in SHAPES.values())
    low_rank, scale, report = to_low_rank(composed, full + 3)  # clipped to what the update has
    # low-rank compositions need no more than their own rank; dense ones up to min(out, in)
    assert report["rank"] <= full and report["relative_error"]["max"] < 1e-5 and scale == 1.0
    for module, (a, b) in low_rank.items():
        assert a.shape[0] == b.shape[1] == report["rank"]
        delta = composed.delta(module)
        # dense updates are factored in fp32: reconstruction is exact up to fp32 rounding of their scale
        torch.testing.assert_close(b @ a, delta, rtol=1e-5, atol=1e-5 * max(1.0, float(delta.abs().max())))
    errors = [to_low_rank(composed, r)[2]["per_module"] for r in range(1, full + 1)]
    for module in SHAPES:
        assert all(lo[module] <= hi[module] + 1e-6 for hi, lo in zip(errors, errors[1:]))


def written(composed, rank, out: Path, template: dict) -> Path:
    low_rank, scale, report = to_low_rank(composed, rank)
    out.mkdir()
    write_peft_adapter(out, low_rank, scale, template, {"low_rank": report})
    return out


@pytest.mark.parametrize("method,rank", [("params", None), ("delta", None), ("delta", 3), ("ties", 4), ("dare", 4)])
def test_composing_and_writing_twice_gives_identical_bytes(method, rank, tmp_path):
    terms = [Term(adapter(1), 0.7), Term(adapter(2), -0.4, mlp=0.5)]
    paths = [
        written(compose(terms, method, declared(method, 0.6, 11)), rank, tmp_path / f"out{i}", terms[0].adapter.config)
        for i in range(2)
    ]
    assert (paths[0] / WEIGHTS).read_bytes() == (paths[1] / WEIGHTS).read_bytes()


IDS = torch.tensor([[2, 40, 41, 42, 80, 81, 150, 7, 9, 300]])


def logits(model):
    with torch.no_grad():
        return model.eval()(IDS).logits


@pytest.mark.parametrize("method,rank", [("delta", None), ("ties", 64)])
def test_merged_model_is_the_base_plus_the_unmerged_composed_adapter(method, rank, tiny_llama_dir, tmp_path):
    """64 is the largest min(out, in) of the tiny Llama, so the TIES adapter is its SVD at full rank."""
    terms = [
        Term(load_adapter(make_adapter(tiny_llama_dir, tmp_path / f"a{i}", seed=20 + i)), w)
        for i, w in enumerate([1.0, -0.6])
    ]
    composed = compose(terms, method, declared(method, 0.5, 0))
    adapter_dir = written(composed, rank, tmp_path / "composed", terms[0].adapter.config)
    merged = merged_checkpoint(tiny_llama_dir, composed, "original", tmp_path / "merged")
    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), adapter_dir)
    torch.testing.assert_close(
        logits(AutoModelForCausalLM.from_pretrained(merged)), logits(unmerged), rtol=1e-4, atol=1e-4
    )
