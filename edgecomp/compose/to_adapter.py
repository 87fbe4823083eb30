"""``edgecomp compose``: a resolved spec → one standard PEFT adapter folder, without loading the base.

Methods that give exact factors (``output`` ``low_rank``: ``params``, ``delta``) are written
exactly unless ``rank`` asks for a truncated SVD; dense ones (``ties``, ``dare``) need ``rank``.
The SVD's approximation error is reported and stored in ``edgecomp.json``. ``gguf-lora`` writes
the same adapter as a GGUF LoRA for llama.cpp too (:mod:`edgecomp.compose.gguf_lora`), with an
Ollama Modelfile: it reads the base's config and GGUF, not its weights.
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..data.prompts import instruction
from ..errors import EdgecompError
from ..fsutil import atomic_dir, check_output_dir
from .base import base_spec, check_fingerprints
from .gguf_lora import FILE as GGUF_FILE
from .gguf_lora import write_gguf_lora
from .lowrank import check_writable, to_low_rank
from .methods import compose
from .spec import Resolved
from .write import write_peft_adapter


def _common_base(resolved: Resolved) -> dict | None:
    bases = [(t.adapter.meta or {}).get("base") for t in resolved.terms]
    return bases[0] if bases and all(b == bases[0] for b in bases) else None


FORMATS = ("peft", "gguf-lora")


def _gguf_base(resolved: Resolved, base: str | None):
    """The GGUF-born base llama.cpp will apply the adapter to, checked against the adapters."""
    from ..models.fingerprint import weights_fingerprint
    from ..models.resolve import resolve_base

    found = resolve_base(base_spec(resolved, base))
    if found.gguf is None:
        raise EdgecompError(
            "--format gguf-lora needs a base converted from a GGUF file (the embedded default or --base FILE.gguf): "
            "llama.cpp applies the adapter to that file"
        )
    check_fingerprints(resolved, found.name, weights_fingerprint(found.path))
    return found


def compose_adapter(
    resolved: Resolved,
    out: Path,
    *,
    rank: int | None = None,
    target: str | None = None,
    force: bool = False,
    format: str = "peft",
    base: str | None = None,
) -> dict:
    check_output_dir(out, force)
    if format not in FORMATS:
        raise EdgecompError(f"unknown --format {format!r}; choose one of {', '.join(FORMATS)}")
    if not resolved.terms:
        raise EdgecompError("nothing to compose: give adapters, a spec or a scenario")
    if rank is not None and rank < 1:
        raise EdgecompError("--rank must be at least 1")
    check_writable(resolved.method, rank)
    gguf_base = _gguf_base(resolved, base) if format == "gguf-lora" else None
    composed = compose(resolved.terms, resolved.method, resolved.parameters)
    low_rank, scale, report = to_low_rank(composed, rank)
    meta = {
        "format": "edgecomp-adapter/1",
        "edgecomp_version": __version__,
        "kind": "composition",
        "lang": target,
        "base": _common_base(resolved),
        "composition": {**resolved.canonical(), "adapters": resolved.describe(), "related": resolved.related()},
        "spec_sha256": resolved.digest(),
        "prompt": resolved.prompt(),
        "low_rank": report,
    }
    if gguf_base is not None:
        meta["gguf"] = {"file": GGUF_FILE, "base": gguf_base.gguf.name}
    with atomic_dir(out, force=force) as tmp:
        write_peft_adapter(tmp, low_rank, scale, resolved.terms[0].adapter.config, meta)
        if gguf_base is not None:
            from ..data.modelfile import NAME, modelfile
            from ..model_folder import read_config

            write_gguf_lora(tmp / GGUF_FILE, low_rank, scale, gguf_base.gguf, read_config(gguf_base.path))
            tail = instruction(resolved.prompt())
            (tmp / NAME).write_text(modelfile(tail, str(gguf_base.gguf), f"./{GGUF_FILE}"), encoding="utf-8")
    return meta
