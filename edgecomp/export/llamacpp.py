"""llama.cpp through llama-cpp-python (the ``llamacpp`` extra): its own quantizer for the K-quant
GGUF types, and its logits, so a GGUF export is checked by the program that will run it.

The K-quants (``q4_k_m``: Q4_K with Q6_K/Q5_0 where llama.cpp's recipe puts them, Q5_0 for rows
that are not a multiple of 256) are llama.cpp's ``llama_model_quantize`` itself: the ``gguf``
package has no encoder for them, and a second implementation of llama.cpp's choices would drift
from the files people compare against.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import EdgecompError

# --quantize name → llama.cpp's file type (llama_ftype)
TYPES = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
INSTALL = "pip install 'edgecomp[llamacpp]'"


def module(why: str):
    """``llama_cpp``, or a one-line error saying ``why`` it is needed and how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise EdgecompError(f"{why} needs llama-cpp-python ({INSTALL})") from None
    return llama_cpp


def available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def version() -> str | None:
    return module("llama.cpp").__version__ if available() else None


@contextmanager
def _quiet():
    """llama.cpp logs to the process's stderr from C; keep it off the user's terminal."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def quantize(source: Path, out: Path, kind: str) -> None:
    """Quantize the f32 GGUF ``source`` into ``out`` as llama.cpp's ``kind`` (a :data:`TYPES` key)."""
    llama_cpp = module(f"--quantize {kind}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, TYPES[kind])
    with _quiet():
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0:
        raise EdgecompError(f"llama.cpp could not quantize {source.name} to {kind} (status {status})")


def sequence_logits(gguf: Path, sequences: Iterable[Sequence[int]], lora: Path | None = None) -> Iterator[np.ndarray]:
    """llama.cpp's logits [tokens, vocab] for each sequence (each in one pass, from an empty cache;
    f32 KV cache, so the numbers are the weights' and not the cache's rounding), with the GGUF LoRA
    ``lora`` applied at scale 1 when given. The file is loaded once."""
    llama_cpp = module("checking a GGUF with llama.cpp")
    sequences = [list(ids) for ids in sequences]
    context = max(64, *(len(ids) for ids in sequences))
    options = {"lora_path": str(lora)} if lora else {}
    with _quiet():
        model = llama_cpp.Llama(
            str(gguf),
            n_ctx=context,
            n_batch=context,
            logits_all=True,
            type_k=llama_cpp.GGML_TYPE_F32,
            type_v=llama_cpp.GGML_TYPE_F32,
            verbose=False,
            **options,
        )
    try:
        for ids in sequences:
            model.reset()
            with _quiet():
                model.eval(ids)
            yield np.array(model.scores[: len(ids)], dtype=np.float32)
    finally:
        model.close()


def logits(gguf: Path, ids: Sequence[int], lora: Path | None = None) -> np.ndarray:
    """:func:`sequence_logits` of one sequence."""
    return next(sequence_logits(gguf, [ids], lora))
