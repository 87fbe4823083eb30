"""``--format gguf``: the merged model as a GGUF file for llama.cpp and Ollama, with a Modelfile.

The file takes its metadata and tokenizer from the GGUF the base was converted from (the embedded
default, or a ``--base`` given as a ``.gguf``): llama.cpp's tokenizer then reads exactly what it read
for the base, and the architecture keys are the ones its loader expects. The tensors are the merged
weights under the same names and in the same order, in llama.cpp's layout
(:mod:`edgecomp.models.gguf_layout`), as ``f32``, ``f16`` or ``q8_0`` (``gguf``'s own writer and
quantizer; norms and other 1-D tensors stay f32), or as one of llama.cpp's K-quant types
(``q4_k_m``, ``q5_k_m``, ``q6_k``: written as f32, then llama.cpp's own quantizer,
:mod:`edgecomp.export.llamacpp`).

Verified by reading the file back with transformers' GGUF loader (llama.cpp's names and layouts,
dequantized) and comparing its logits with the merged model's in memory: f32 must match within the
ONNX exports' tolerance; the other types are measured (largest difference, top-1 agreement, and
the perplexity of the verification text against the merged model's). Where llama-cpp-python is
installed, llama.cpp runs the file too: the same numbers are recorded, and f32 and q8_0 must match
within :data:`LLAMA_CPP_TOLERANCE`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import EdgecompError
from ..metrics import LOGITS, metric
from ..model_folder import write_manifest
from ..models import gguf_layout
from ..models.families import family_for
from ..models.gguf_convert import load_gguf_model
from . import llamacpp
from .verify import RELATIVE_TOLERANCE, match_logits, measure_logits, model_logits

FORMAT = "gguf"
VERSION = 2  # of the file and its verification, in the export cache key
FILE = "model.gguf"
NATIVE = ("f32", "f16", "q8_0")  # written by the gguf package
# llama.cpp's logits on the file must be the merged model's within this fraction of the largest
# logit: f32 differs by operation order only (the ONNX exports' tolerance); llama.cpp's Q8_0 products
# also round the activations to 8 bits. The other types are measured, not failed.
LLAMA_CPP_TOLERANCE = {"f32": RELATIVE_TOLERANCE, "q8_0": 0.1}
TYPES = (*NATIVE, *llamacpp.TYPES)  # the rest by llama.cpp's quantizer


def _gguf_tensors(model, reader, family) -> dict[str, np.ndarray]:
    """The merged weights under the source GGUF's tensor names, as llama.cpp stores them."""
    config = model.config
    state = model.state_dict()
    modules = {name.rpartition(".")[0] for name in state}
    names = gguf_layout.tensor_names(reader, modules, config.num_hidden_layers)
    by_gguf = {
        f"{names[module]}.{suffix}": hf_name
        for hf_name in state
        for module, _, suffix in [hf_name.rpartition(".")]
        if module in names
    }
    out = {}
    for info in reader.tensors:
        if info.name not in by_gguf:
            raise EdgecompError(f"the base GGUF's tensor {info.name} has no counterpart in the merged model")
        hf_name = by_gguf[info.name]
        data = state[hf_name].detach().float().numpy()
        out[info.name] = gguf_layout.as_stored(
            info.name, data, family, config.to_dict(), norm=hf_name.endswith("norm.weight")
        )
    return out


def _write(path: Path, reader, tensors: dict[str, np.ndarray], quantize: str) -> None:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import LlamaFileType

    writer = gguf.GGUFWriter(str(path), gguf_layout.architecture(reader))
    writer.add_type(gguf.GGUFType.MODEL)
    gguf_layout.copy_metadata(writer, reader)
    writer.add_file_type(
        {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0}[quantize]
    )
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, data in tensors.items():
        if data.ndim == 1 or quantize == "f32":
            writer.add_tensor(name, data)
        elif quantize == "f16":
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, Q.Q8_0), raw_dtype=Q.Q8_0)
    gguf_layout.write(writer)


def perplexity(logits: np.ndarray, ids) -> float:
    """exp of the mean next-token loss of ``ids`` under ``logits`` (positions 0..n-2 predict 1..n-1)."""
    loss = metric("nll", LOGITS).overall(logits[:-1], np.asarray(ids[1:]))["nll"]
    return float(math.exp(loss))


def _measure(logits: np.ndarray, reference: np.ndarray, ids) -> dict:
    ppl, ref = perplexity(logits, ids), perplexity(reference, ids)
    return measure_logits(logits, reference) | {
        "perplexity": ppl,
        "perplexity_merged": ref,
        "perplexity_ratio": ppl / ref,
    }


def export_gguf(model, gguf_source: Path, out_dir: Path, *, quantize: str, manifest: dict, ids: list[int]) -> dict:
    """Write the merged ``model`` as ``out_dir/model.gguf`` (+ ``Modelfile``, manifest) with the
    metadata and tokenizer of ``gguf_source``, as ``quantize`` (one of :data:`TYPES`); verify it on ``ids``."""
    import gguf

    from ..data.modelfile import NAME, modelfile
    from ..data.prompts import instruction

    family = family_for(model.config.to_dict())
    if family is None:
        raise EdgecompError(f"--format gguf does not know model type {model.config.model_type!r}")
    if quantize in llamacpp.TYPES:
        llamacpp.module(f"--quantize {quantize}")  # before any work
    reader = gguf.GGUFReader(str(gguf_source))
    reference = model_logits(model, ids)
    out_dir.mkdir(parents=True)
    tensors = _gguf_tensors(model, reader, family)
    if quantize in NATIVE:
        _write(out_dir / FILE, reader, tensors, quantize)
    else:
        full = out_dir / f".{FILE}.f32"
        _write(full, reader, tensors, "f32")
        llamacpp.quantize(full, out_dir / FILE, quantize)
        full.unlink()
    del tensors
    (out_dir / NAME).write_text(modelfile(instruction(manifest.get("prompt")), f"./{FILE}"), encoding="utf-8")
    back = load_gguf_model(out_dir / FILE)
    written = model_logits(back, ids)
    checks = {"read_back": _measure(written, reference, ids)}
    if quantize == "f32":
        checks["read_back"] |= match_logits(written, reference, "the GGUF's logits differ from the merged model's")
    if llamacpp.available():
        ran = llamacpp.logits(out_dir / FILE, ids)
        checks["llama_cpp"] = {**_measure(ran, reference, ids), "version": llamacpp.version()}
        if quantize in LLAMA_CPP_TOLERANCE:
            atol = LLAMA_CPP_TOLERANCE[quantize] * max(1.0, float(np.abs(reference).max()))
            what = "llama.cpp's logits on the GGUF differ from the merged model's"
            checks["llama_cpp"] |= match_logits(ran, reference, what, atol=atol)
    return write_manifest(out_dir, {**manifest, "format": FORMAT, "quantize": quantize, "verify": checks})
