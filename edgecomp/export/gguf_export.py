"""``--format gguf``: the merged model as a GGUF file for llama.cpp and Ollama, with a Modelfile.

The file takes its metadata and tokenizer from the GGUF the base was converted from (the embedded
default, or a ``--base`` given as a ``.gguf``): llama.cpp's tokenizer then reads exactly what it read
for the base, and the architecture keys are the ones its loader expects. The tensors are the merged
weights under the same names and in the same order, written back the way llama.cpp's converter
writes them (Gemma's RMSNorm scales as ``1 + w``, Llama's q/k rows permuted), as ``f32``, ``f16`` or
``q8_0`` (``gguf``'s own quantizer; norms and other 1-D tensors stay f32).

Verified by reading the file back with transformers' GGUF loader (llama.cpp's names and layouts,
dequantized) and comparing its logits with the merged model's in memory: f32 must match within the
ONNX exports' tolerance; f16 and q8_0 are measured (largest difference, top-1 agreement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EdgecompError
from ..model_folder import write_manifest
from ..models.families import family_for
from .verify import match_logits, measure_logits, model_logits

FORMAT = "gguf"
FILE = "model.gguf"
MODELFILE = "Modelfile"


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order from HF's (the inverse of transformers' ``_reverse_permute_weights``)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _gguf_tensors(model, reader, family) -> dict[str, np.ndarray]:
    """The merged weights under the source GGUF's tensor names, as llama.cpp stores them."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch_name = reader.fields["general.architecture"].contents()
    arch = next(k for k, v in MODEL_ARCH_NAMES.items() if v == arch_name)
    config = model.config
    names = get_tensor_name_map(arch, config.num_hidden_layers)
    by_gguf = {}
    for hf_name, tensor in model.state_dict().items():
        module, _, suffix = hf_name.rpartition(".")
        gguf_name = names.get_name(module)
        if gguf_name is not None:
            by_gguf[f"{gguf_name}.{suffix}"] = (hf_name, tensor)
    out = {}
    for info in reader.tensors:
        if info.name not in by_gguf:
            raise EdgecompError(f"the base GGUF's tensor {info.name} has no counterpart in the merged model")
        hf_name, tensor = by_gguf[info.name]
        data = tensor.detach().float().numpy()
        if hf_name.endswith("norm.weight"):
            data = data + family.norm_offset
        if family.gguf_permute_qk and ".attn_q." in info.name:
            data = _permute(data, config.num_attention_heads)
        if family.gguf_permute_qk and ".attn_k." in info.name:
            data = _permute(data, config.num_key_value_heads or config.num_attention_heads)
        out[info.name] = np.ascontiguousarray(data, dtype=np.float32)
    return out


def _write(path: Path, reader, tensors: dict[str, np.ndarray], quantize: str) -> None:
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf import LlamaFileType

    writer = gguf.GGUFWriter(str(path), reader.fields["general.architecture"].contents())
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in (
            "general.architecture",
            "general.file_type",
            "general.quantization_version",
        ):
            continue
        writer.add_key_value(name, field.contents(), field.types[0], field.types[-1] if len(field.types) > 1 else None)
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
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def modelfile(prompt_tail: str, max_new_tokens: int = 64) -> str:
    """An Ollama Modelfile for the export: the article as the prompt, then edgecomp's instruction;
    greedy, as ``edgecomp summarize`` decodes by default."""
    template = "{{ .Prompt }}" + prompt_tail
    return (
        f'FROM ./{FILE}\nTEMPLATE """{template}"""\nPARAMETER temperature 0\nPARAMETER num_predict {max_new_tokens}\n'
    )


def export_gguf(model, gguf_source: Path, out_dir: Path, *, quantize: str, manifest: dict, ids: list[int]) -> dict:
    """Write the merged ``model`` as ``out_dir/model.gguf`` (+ ``Modelfile``, manifest) with the
    metadata and tokenizer of ``gguf_source``, as ``quantize`` (f32, f16, q8_0); verify it on ``ids``."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    from ..data.prompts import instruction

    family = family_for(model.config.to_dict())
    if family is None:
        raise EdgecompError(f"--format gguf does not know model type {model.config.model_type!r}")
    reader = gguf.GGUFReader(str(gguf_source))
    reference = model_logits(model, ids)
    out_dir.mkdir(parents=True)
    _write(out_dir / FILE, reader, _gguf_tensors(model, reader, family), quantize)
    (out_dir / MODELFILE).write_text(modelfile(instruction(manifest.get("prompt"))), encoding="utf-8")
    back = AutoModelForCausalLM.from_pretrained(out_dir, gguf_file=FILE, dtype=torch.float32)
    written = model_logits(back, ids)
    check = measure_logits(written, reference)
    if quantize == "f32":
        check |= match_logits(written, reference, "the GGUF's logits differ from the merged model's")
    return write_manifest(out_dir, {**manifest, "format": FORMAT, "quantize": quantize, "verify": {"read_back": check}})
