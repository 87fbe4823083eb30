"""Weight-only quantization: MatMulNBits' block layout, a tied embedding / LM head stored once and
read by both GatherBlockQuantized and MatMulNBits, fp16, on hand-built graphs (fast, exact checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecomp.errors import EdgecompError
from edgecomp.export.quantization.apply import quantize_model
from edgecomp.export.quantization.codec import block_quantize, dequantize_blocks
from edgecomp.export.quantization.rewrite import find_embedding_and_head, quantize_weight_only, tie_lm_head
from edgecomp.export.quantization.weight_only import WeightOnlyConfig

VOCAB, HIDDEN = 300, 64


def lookup_and_head(tied: bool = True, seed: int = 0) -> onnx.ModelProto:
    """``input_ids`` → Gather(table) → ``embedded``; ``hidden`` → MatMul(W) → ``logits``.

    ``W`` is a separate ``[hidden, vocab]`` initializer, equal to ``table.T`` when ``tied`` (what
    optimum writes for Gemma), plus one ordinary MatMul so the transformer path is covered too.
    """
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32)
    head = table.T.copy() if tied else rng.standard_normal((HIDDEN, VOCAB)).astype(np.float32)
    proj = rng.standard_normal((HIDDEN, HIDDEN)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["embed.weight", "input_ids"], ["embedded"], name="/model/embed_tokens/Gather"),
        helper.make_node("MatMul", ["hidden", "proj.weight"], ["projected"], name="/model/layers.0/mlp/up_proj/MatMul"),
        helper.make_node("MatMul", ["projected", "head.weight"], ["logits"], name="/lm_head/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "lookup_and_head",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "seq", HIDDEN]),
        ],
        [
            helper.make_tensor_value_info("embedded", TensorProto.FLOAT, ["batch", "seq", HIDDEN]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", VOCAB]),
        ],
        initializer=[
            numpy_helper.from_array(table, "embed.weight"),
            numpy_helper.from_array(proj, "proj.weight"),
            numpy_helper.from_array(head, "head.weight"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, ids: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"input_ids": ids, "hidden": hidden}
    if any(i.name == "logits_to_keep" for i in session.get_inputs()):  # quantize_model adds it: 0 = all
        feed["logits_to_keep"] = np.array(0, dtype=np.int64)
    embedded, logits = session.run(["embedded", "logits"], feed)
    return embedded, logits


def inputs(seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.integers(0, VOCAB, size=(2, 5)), rng.standard_normal((2, 5, HIDDEN)).astype(np.float32)


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == name))


@pytest.mark.parametrize("bits, symmetric", [(4, False), (4, True), (8, True)])
@pytest.mark.parametrize("block", [16, 32])
def test_block_quantize_round_trip(bits, symmetric, block):
    rows = np.random.default_rng(0).standard_normal((7, 96)).astype(np.float32)
    packed, scales, zero_points = block_quantize(rows, bits, block, symmetric)
    assert packed.shape == (7, 96 // block, block * bits // 8) and scales.shape == (7, 96 // block)
    assert (zero_points is None) == (symmetric or bits == 8)
    restored = dequantize_blocks(packed, scales, zero_points, bits)
    step = np.repeat(np.abs(scales), block, axis=1)
    # Round to nearest on the block's grid; symmetric 4-bit maps the largest magnitude to -8, so the
    # other sign's extreme may clip at +7 (up to one step away).
    bound = step if (bits, symmetric) == (4, True) else 0.5 * step
    assert np.all(np.abs(restored - rows) <= bound + 1e-6)


def test_eight_bit_reproduces_q8_0_blocks_exactly():
    """llama.cpp's Q8_0 (the default base's embedding): value = d * q, q in [-127, 127], blocks of 32."""
    rng = np.random.default_rng(0)
    q = rng.integers(-127, 128, size=(10, 4, 32))
    q[:, :, 0] = 127 * np.sign(rng.standard_normal((10, 4))).astype(int)  # amax = 127 d, as Q8_0 makes it
    d = rng.uniform(0.001, 0.01, size=(10, 4, 1)).astype(np.float32)
    rows = (q * d).astype(np.float32).reshape(10, 128)
    packed, scales, zero_points = block_quantize(rows, 8, 32, True)
    np.testing.assert_allclose(dequantize_blocks(packed, scales, zero_points, 8), rows, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "config",
    [
        WeightOnlyConfig(accuracy_level=0),  # default: 4-bit MatMuls, 8-bit shared head + embedding
        WeightOnlyConfig(head_bits=4, accuracy_level=0),  # 4-bit asymmetric table: zero points too
        WeightOnlyConfig(head_bits=4, symmetric=True, block_size=16, accuracy_level=0),
        WeightOnlyConfig(bits=8, block_size=64, accuracy_level=0),
    ],
    ids=["q8-head", "q4-head-asym", "q4-head-sym-b16", "all-q8-b64"],
)
def test_tied_table_is_stored_once_and_both_ops_read_it(config):
    model, report = quantize_weight_only(lookup_and_head(), config)
    onnx.checker.check_model(model)
    ops = {n.op_type: n for n in model.graph.node}
    assert {"GatherBlockQuantized", "MatMulNBits"} <= set(ops) and "Gather" not in ops
    gather = ops["GatherBlockQuantized"]
    heads = [n for n in model.graph.node if n.op_type == "MatMulNBits" and n.output[0] == "logits"]
    assert len(heads) == 1 and heads[0].input[1] == gather.input[0]  # one packed table, two readers
    assert report["tied"] and "sharing" in report["embedding"]

    # Stored once: a single initializer has a row per token, and no float table is left.
    blob = config.block_size * config.head_bits // 8
    per_token = [t for t in model.graph.initializer if list(t.dims[:1]) + list(t.dims[2:]) == [VOCAB, blob]]
    assert [t.name for t in per_token] == [gather.input[0]]
    assert not [
        t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and VOCAB in t.dims and HIDDEN in t.dims
    ]
    table_bytes = sum(t.ByteSize() for t in model.graph.initializer if t.dims and t.dims[0] == VOCAB)
    per_value = config.head_bits / 8 + 5 / config.block_size  # packed values, fp32 scales, zero points
    assert table_bytes < VOCAB * HIDDEN * per_value + 1024  # fp32 would be 4 bytes a value, twice

    # The lookup returns exactly the rows the head multiplies with.
    head_inputs = list(heads[0].input)
    zero_points = initializer(model, head_inputs[3]) if len(head_inputs) > 3 else None
    rows = dequantize_blocks(
        initializer(model, head_inputs[1]), initializer(model, head_inputs[2]), zero_points, config.head_bits
    )
    ids, hidden = inputs()
    embedded, logits = run(model, ids, hidden)
    np.testing.assert_array_equal(embedded, rows[ids])
    reference_table = initializer(lookup_and_head(), "embed.weight")
    assert np.abs(embedded - reference_table[ids]).max() < (0.6 if config.head_bits == 4 else 0.03)

    proj_node = next(n for n in model.graph.node if n.output[0] == "projected")
    proj_zero_points = initializer(model, proj_node.input[3]) if len(proj_node.input) > 3 else None
    proj = dequantize_blocks(
        initializer(model, proj_node.input[1]), initializer(model, proj_node.input[2]), proj_zero_points, config.bits
    )
    expected = (hidden @ proj.T) @ rows.T
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-3 * np.abs(expected).max())


def test_untied_head_and_table_are_quantized_separately():
    model, report = quantize_weight_only(lookup_and_head(tied=False), WeightOnlyConfig(accuracy_level=0))
    gather = next(n for n in model.graph.node if n.op_type == "GatherBlockQuantized")
    head = next(n for n in model.graph.node if n.output[0] == "logits")
    assert not report["tied"] and head.op_type == "MatMulNBits" and head.input[1] != gather.input[0]
    ids, hidden = inputs()
    embedded, _ = run(model, ids, hidden)
    assert np.abs(embedded - initializer(lookup_and_head(tied=False), "embed.weight")[ids]).max() < 0.03


def test_embedding_can_stay_fp32():
    model, report = quantize_weight_only(lookup_and_head(), WeightOnlyConfig(quantize_embedding=False))
    ops = [n.op_type for n in model.graph.node]
    assert "Gather" in ops and "GatherBlockQuantized" not in ops and report["embedding"] == "fp32 Gather"


def test_eight_bit_node_selection():
    config = WeightOnlyConfig(eight_bit=("mlp/up_proj",))
    model, report = quantize_weight_only(lookup_and_head(), config)
    bits = {
        n.name: next(a.i for a in n.attribute if a.name == "bits")
        for n in model.graph.node
        if n.op_type == "MatMulNBits"
    }
    assert bits["/model/layers.0/mlp/up_proj/MatMul_Q8"] == 8
    assert report["weights_by_bits"] == {"8": HIDDEN * HIDDEN + VOCAB * HIDDEN}


def test_eight_bit_layers_count_from_either_end():
    config = WeightOnlyConfig(eight_bit_layers=(0, 1, -1))
    widths = [config.bits_for(f"/model/layers.{i}/mlp/down_proj/MatMul", 18) for i in range(18)]
    assert widths == [8, 8] + [4] * 15 + [8]
    assert config.bits_for("/lm_head/MatMul", 18) == 4  # not a decoder layer
    assert WeightOnlyConfig(eight_bit_layers=(18, -19)).bits_for("/model/layers.0/mlp/up_proj/MatMul", 18) == 4
    assert config.bits_for("/model/layers.0/mlp/down_proj/MatMul", 8) == 4  # 3 of 8 layers: too many
    model, report = quantize_weight_only(lookup_and_head(), WeightOnlyConfig(eight_bit_layers=(-1,)))
    assert report["weights_by_bits"]["8"] == VOCAB * HIDDEN  # its one layer is all of it: stays 4-bit
    assert report["eight_bit_layers"] == [] and config.layers_in_8_bit(18) == [0, 1, 17]


def test_tie_lm_head_keeps_logits_and_drops_the_copy():
    model = lookup_and_head()
    ids, hidden = inputs()
    before = run(model, ids, hidden)
    assert tie_lm_head(model)
    assert "head.weight" not in {t.name for t in model.graph.initializer}
    np.testing.assert_array_equal(run(model, ids, hidden)[1], before[1])
    found = find_embedding_and_head(model)
    assert found.tied and found.head_weight is None
    assert not tie_lm_head(model)  # nothing left to tie
    # A graph already tied this way still quantizes with one shared table.
    quantized, report = quantize_weight_only(model, WeightOnlyConfig(accuracy_level=0))
    assert "sharing" in report["embedding"] and "Transpose" not in {n.op_type for n in quantized.graph.node}
    assert not tie_lm_head(lookup_and_head(tied=False))


def save(model: onnx.ModelProto, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "model.onnx"))
    return folder


def test_fp16_mode_keeps_float32_inputs_and_outputs(tmp_path):
    src = save(lookup_and_head(), tmp_path / "src")
    report = quantize_model(src, tmp_path / "fp16", "fp16")
    assert report == {"mode": "fp16", "tied_lm_head": True, "logits_to_keep": True}
    model = onnx.load(str(tmp_path / "fp16" / "model.onnx"))
    assert {v.type.tensor_type.elem_type for v in model.graph.output} == {TensorProto.FLOAT}
    floats = [t for t in model.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert {t.data_type for t in floats} == {TensorProto.FLOAT16}
    assert len([t for t in floats if VOCAB in t.dims]) == 1  # the tied table, once
    ids, hidden = inputs()
    embedded, logits = run(model, ids, hidden)
    reference = run(lookup_and_head(), ids, hidden)
    assert embedded.dtype == np.float32 and logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference[1], rtol=2e-2, atol=2e-2 * np.abs(reference[1]).max())


def test_unknown_modes_and_bad_configs_are_refused(tmp_path):
    src = save(lookup_and_head(), tmp_path / "src")
    with pytest.raises(EdgecompError, match="unknown quantization"):
        quantize_model(src, tmp_path / "x", "int3")
    with pytest.raises(EdgecompError, match="4 or 8 bits"):
        WeightOnlyConfig(bits=2)
    with pytest.raises(EdgecompError, match="power of two"):
        WeightOnlyConfig(block_size=48)


def test_smoothing_a_tied_head_changes_no_output(tiny_base, tmp_path):
    """SmoothQuant on the tied table: the fp32 graph computes the same logits (exact up to rounding),
    through the final norm's scale (edgecomp's graph) or a Mul (a head reading a graph input)."""
    import json as _json

    from edgecomp.export.onnx_export import export_onnx
    from edgecomp.export.quantization.smoothing import smooth_tied_head
    from edgecomp.runtime.session import DecoderSession, KVShape

    path = export_onnx(tiny_base, tmp_path / "raw")
    model = onnx.load(str(path))
    hidden = model.graph.node[-1].input[0]
    mean_square = np.random.default_rng(0).uniform(0.1, 1.0, size=64) ** 2
    mean_square[[3, 40]] = 400.0  # outlier channels
    report = smooth_tied_head(model, mean_square)
    assert report["head_input_scale"] == "final norm scale" and report["max_scale"] > 2 * report["min_scale"]
    assert model.graph.node[-1].input[0] == hidden  # no extra node in front of the head
    (tmp_path / "smooth").mkdir()
    onnx.save(model, str(tmp_path / "smooth" / "model.onnx"))
    shape = KVShape.from_config(_json.loads((tiny_base / "config.json").read_text()))
    ids = np.array([[2, 40, 41, 42, 43, 44, 45, 46, 47, 48]])
    before = DecoderSession(path, shape).run(ids, DecoderSession(path, shape).empty_cache(1))[0]
    smooth = DecoderSession(tmp_path / "smooth" / "model.onnx", shape)
    after = smooth.run(ids, smooth.empty_cache(1))[0]
    np.testing.assert_allclose(after, before, atol=1e-4 * max(1.0, float(np.abs(before).max())))

    toy = lookup_and_head()
    assert smooth_tied_head(toy, mean_square[:HIDDEN])["head_input_scale"] == "Mul before the head"
    ids, hidden_in = inputs()
    expected = run(lookup_and_head(), ids, hidden_in)
    for got, want in zip(run(toy, ids, hidden_in), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_input_scales_fold_into_norms_without_changing_outputs(tiny_base, tmp_path, monkeypatch):
    """AWQ-style scales: 1/s into each norm that feeds only MatMuls, s into their weights, the
    Hessian rescaled to match; the fp32 graph computes the same logits."""
    import json as _json

    from edgecomp.export.onnx_export import export_onnx
    from edgecomp.export.quantization import smoothing as smooth
    from edgecomp.export.quantization.gptq import collect_hessians
    from edgecomp.export.quantization.rewrite import gptq_inputs
    from edgecomp.export.quantization.schemes.int4 import INT4
    from edgecomp.runtime.session import DecoderSession, KVShape

    path = export_onnx(tiny_base, tmp_path / "raw")
    model = onnx.load(str(path))
    shape = KVShape.from_config(_json.loads((tiny_base / "config.json").read_text()))
    rng = np.random.default_rng(2)
    sequences = [[2, *rng.integers(4, 300, size=20).tolist()] for _ in range(4)]
    wanted = gptq_inputs(model, INT4)
    hessians = collect_hessians(model, wanted, sequences, shape)
    before = {name: h.copy() for name, h in hessians.items()}
    monkeypatch.setattr(smooth, "ALPHAS", (0.5,))  # force a scale everywhere it applies
    chosen = smooth.scale_norm_inputs(model, hessians, bits=4, block=32)
    assert len(chosen) >= 2 * shape.num_layers  # q/k/v and gate/up of every layer
    scaled = next(iter(chosen))
    assert not np.allclose(hessians[scaled], before[scaled])
    (tmp_path / "scaled").mkdir()
    onnx.save(model, str(tmp_path / "scaled" / "model.onnx"))
    ids = np.array([sequences[0]])
    plain = DecoderSession(path, shape)
    scaled_session = DecoderSession(tmp_path / "scaled" / "model.onnx", shape)
    want = plain.run(ids, plain.empty_cache(1))[0]
    got = scaled_session.run(ids, scaled_session.empty_cache(1))[0]
    np.testing.assert_allclose(got, want, atol=1e-4 * max(1.0, float(np.abs(want).max())))


def test_fp16_keeps_the_residual_stream_in_fp32(tiny_base, tmp_path):
    """Gemma's residual stream outgrows float16 (the 270M base: 55,008 after layer 7 at BOS, inf
    and NaN logits after layer 8 in a plain float16 graph). The fp16 export runs every residual
    add + norm (SkipSimplifiedLayerNormalization) in float32, its residual input and output never
    float16, and still computes fp32's logits."""
    import json as _json

    from edgecomp.export.onnx_export import export_onnx
    from edgecomp.runtime.session import DecoderSession, KVShape

    config = _json.loads((tiny_base / "config.json").read_text())
    path = export_onnx(tiny_base, tmp_path / "raw")
    quantize_model(path.parent, tmp_path / "fp16", "fp16")
    model = onnx.load(str(tmp_path / "fp16" / "model.onnx"))
    producers = {out: n for n in model.graph.node for out in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    skips = [n for n in model.graph.node if n.op_type == "SkipSimplifiedLayerNormalization"]
    assert len(skips) == 2 * config["num_hidden_layers"]
    for node in skips:
        residual = producers[node.input[1]]
        assert (residual.op_type == "Cast" and residual.attribute[0].i == TensorProto.FLOAT) or (
            residual.op_type == "SkipSimplifiedLayerNormalization" and node.input[1] == residual.output[3]
        )
        assert inits[node.input[2]].data_type == TensorProto.FLOAT
    shape = KVShape.from_config(config)
    ids = np.array([[2, 40, 41, 42, 43, 44, 45, 46]])
    want = DecoderSession(path, shape)
    want = want.run(ids, want.empty_cache(1))[0]
    got = DecoderSession(tmp_path / "fp16" / "model.onnx", shape)
    got = got.run(ids, got.empty_cache(1))[0]
    np.testing.assert_allclose(got, want, atol=0.02 * max(1.0, float(np.abs(want).max())))
