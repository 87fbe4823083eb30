"""How llama.cpp names and lays out a model's tensors in a GGUF, for the files edgecomp writes
(the merged model, ``--format gguf``; the composed adapter, ``--format gguf-lora``).

Names come from ``gguf``'s own tensor-name map for the architecture the base GGUF declares; the
layout follows llama.cpp's ``convert_hf_to_gguf.py``: Gemma's RMSNorm scales stored as ``1 + w``
(the family's ``norm_offset``), Llama's q/k rows permuted (``gguf_permute_qk``). Metadata of a
written file is the base GGUF's own, so llama.cpp reads the same architecture and tokenizer.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgecompError

# Keys a written file sets itself rather than copying from the base GGUF.
OWN_KEYS = ("general.architecture", "general.type", "general.file_type", "general.quantization_version")


def permute_qk(rows: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's q/k row order from HF's (the inverse of transformers' ``_reverse_permute_weights``)."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def architecture(reader) -> str:
    return reader.fields["general.architecture"].contents()


def tensor_names(reader, hf_modules, layers: int) -> dict[str, str]:
    """HF module name → llama.cpp's tensor base name (no ``.weight``), for the modules llama.cpp
    knows in the base GGUF's architecture."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch_name = architecture(reader)
    arch = next((k for k, v in MODEL_ARCH_NAMES.items() if v == arch_name), None)
    if arch is None:
        raise EdgecompError(f"the base GGUF's architecture {arch_name!r} is unknown to the gguf package")
    names = get_tensor_name_map(arch, layers)
    return {module: name for module in hf_modules if (name := names.get_name(module)) is not None}


def as_stored(gguf_name: str, rows: np.ndarray, family, config: dict, *, norm: bool) -> np.ndarray:
    """``rows`` (an HF weight, or a LoRA B factor: the weight's rows) in llama.cpp's layout."""
    if norm:
        rows = rows + family.norm_offset
    heads = config["num_attention_heads"]
    if family.gguf_permute_qk and ".attn_q." in gguf_name:
        rows = permute_qk(rows, heads)
    if family.gguf_permute_qk and ".attn_k." in gguf_name:
        rows = permute_qk(rows, config.get("num_key_value_heads") or heads)
    return np.ascontiguousarray(rows, dtype=np.float32)


def copy_metadata(writer, reader) -> None:
    """Every key of the base GGUF except those in :data:`OWN_KEYS` and the reader's own ``GGUF.*``."""
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in OWN_KEYS:
            continue
        writer.add_key_value(name, field.contents(), field.types[0], field.types[-1] if len(field.types) > 1 else None)


def write(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
