"""Refuse a GGUF that cannot be converted, in one line, before any work: one that is truncated or
damaged, or whose architecture transformers' GGUF loader does not know.

The header is parsed without reading the tensors (:func:`.gguf_tokenizer.read_sections`); the file
must be at least as long as the data its tensor infos describe, so a download cut short is caught
here instead of as a NumPy error deep in the conversion.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import EdgecompError
from .gguf_tokenizer import read_sections


def check_gguf(path: Path) -> dict:
    """The GGUF's key/value metadata, once the file is known whole and convertible."""
    from gguf import GGML_QUANT_SIZES
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        meta, infos, end = read_sections(path)
    except EdgecompError:
        raise
    except (ValueError, IndexError, KeyError, OverflowError, UnicodeDecodeError) as e:
        raise EdgecompError(f"{path}: damaged GGUF header ({e})") from None
    architecture = meta.get("general.architecture")
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise EdgecompError(
            f"{path}: GGUF architecture {architecture!r} cannot be converted "
            f"(transformers reads {', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})"
        )
    alignment = int(meta.get("general.alignment", 32))
    start = -(-end // alignment) * alignment
    needed = start
    for name, dims, kind, offset in infos:
        if kind not in GGML_QUANT_SIZES:
            raise EdgecompError(f"{path}: tensor '{name}' has an unknown GGML type {kind}")
        block, size = GGML_QUANT_SIZES[kind]
        needed = max(needed, start + offset + math.prod(dims) // block * size)
    actual = path.stat().st_size
    if actual < needed:
        raise EdgecompError(f"{path}: truncated GGUF ({actual:,} bytes; its tensors need {needed:,})")
    return meta
