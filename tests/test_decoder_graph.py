"""edgecomp's own decoder graph: the same logits as PyTorch (and as optimum's graph), step by step
and in left-padded batches, with far fewer nodes; ``auto`` falls back to optimum where it must."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from transformers import AutoModelForCausalLM

from edgecomp.errors import EdgecompError
from edgecomp.export.decoder_graph import unsupported
from edgecomp.export.onnx_export import chosen_graph, export_onnx
from edgecomp.runtime.session import DecoderSession, KVShape


@pytest.fixture(scope="module")
def graphs(tiny_base, tmp_path_factory) -> dict[str, Path]:
    out = {}
    for graph in ("edgecomp", "optimum"):
        work = tmp_path_factory.mktemp(f"graph-{graph}-{tiny_base.name}")
        out[graph] = export_onnx(tiny_base, work, graph)
    return out


def _config(tiny_base: Path) -> dict:
    return json.loads((tiny_base / "config.json").read_text(encoding="utf-8"))


def _reference(tiny_base: Path, ids: list[int]) -> np.ndarray:
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    with torch.inference_mode():
        return model(torch.tensor([ids])).logits[0].numpy()


def test_both_graphs_give_pytorch_logits(tiny_base, graphs):
    ids = np.random.default_rng(11).integers(4, 400, size=41).tolist()  # > Gemma3's 8-token window
    reference = _reference(tiny_base, ids)
    tolerance = 1e-5 * max(1.0, float(np.abs(reference).max()))
    for graph, path in graphs.items():
        decoder = DecoderSession(path, KVShape.from_config(_config(tiny_base)))
        logits, _ = decoder.run(np.array([ids]), decoder.empty_cache(1))
        np.testing.assert_allclose(logits[0], reference, atol=tolerance, err_msg=graph)


def test_edgecomp_graph_is_a_fraction_of_optimums(graphs):
    nodes = {graph: len(onnx.load(str(path)).graph.node) for graph, path in graphs.items()}
    assert nodes["edgecomp"] * 3 < nodes["optimum"], nodes


def test_cache_steps_and_left_padded_batches(tiny_base, graphs):
    """Token-by-token decoding equals the full pass; a left-padded row equals the row alone."""
    ids = np.random.default_rng(5).integers(4, 400, size=24).tolist()
    reference = _reference(tiny_base, ids)
    decoder = DecoderSession(graphs["edgecomp"], KVShape.from_config(_config(tiny_base)))
    _, cache = decoder.prefill(ids[:10])
    for position in range(10, 24):
        logits, cache = decoder.step(np.array([ids[position]]), cache)
        np.testing.assert_allclose(logits[0], reference[position], atol=1e-4)
    short, long_ = ids[:7], ids[:19]
    batch, _ = decoder.prefill_batch([long_, short])
    alone, _ = decoder.prefill(short)
    np.testing.assert_allclose(batch[1], alone[0], atol=1e-4)


def test_what_the_graph_does_not_support_goes_to_optimum(tiny_base, tmp_path):
    config = _config(tiny_base)
    assert unsupported(config) is None
    assert chosen_graph(tiny_base, "auto") == "edgecomp"
    assert "model type 'gpt2'" in unsupported({**config, "model_type": "gpt2"})
    assert "rope scaling 'linear'" in unsupported({**config, "rope_scaling": {"rope_type": "linear", "factor": 2.0}})
    assert "soft-capping" in unsupported({**config, "final_logit_softcapping": 30.0})
    other = tmp_path / "other"
    shutil.copytree(tiny_base, other)
    (other / "config.json").write_text(json.dumps({**config, "attention_bias": True}), encoding="utf-8")
    assert chosen_graph(other, "auto") == "optimum"
    with pytest.raises(EdgecompError, match="does not support biases"):
        export_onnx(other, tmp_path / "out", "edgecomp")
    with pytest.raises(EdgecompError, match="unknown graph"):
        chosen_graph(other, "tvm")
