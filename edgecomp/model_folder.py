"""The files of a checkpoint or export folder, read one way: config, special ids, the export manifest.

Training, export, the runtime, evaluation and the benchmarks all open folders written by
transformers or by ``edgecomp merge-export``; reading them in one place keeps one rule for each fact
(the generation config's special ids over the config's; an id of 0 is an id). Stdlib only: the
runtime imports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgecompError
from .fsutil import sha256_file, write_json
from .hashes import remembered_sha256

CONFIG = "config.json"
GENERATION_CONFIG = "generation_config.json"
MANIFEST = "edgecomp-export.json"


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; one line naming the file when it does not parse or is not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EdgecompError(f"{path} is not valid JSON: {e}") from None
    except UnicodeDecodeError:
        raise EdgecompError(f"{path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise EdgecompError(f"{path}: expected a JSON object")
    return data


def read_config(folder: str | Path) -> dict:
    """The folder's ``config.json`` (a transformers model config)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise EdgecompError(f"{folder} has no {CONFIG}; is it a Hugging Face checkpoint?")
    return read_json(path)


def _ids(value) -> tuple[int, ...]:
    """``eos_token_id`` may be one id, a list of ids or absent."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


@dataclass(frozen=True)
class SpecialIds:
    """The ids generation starts with (``bos``, or None) and stops on (``eos``, possibly several)."""

    bos: int | None
    eos: tuple[int, ...]


def special_ids(folder: str | Path, config: dict | None = None) -> SpecialIds:
    """BOS/EOS ids of a folder: ``generation_config.json``'s where it sets them, else ``config.json``'s."""
    config = read_config(folder) if config is None else config
    path = Path(folder) / GENERATION_CONFIG
    generation = read_json(path) if path.is_file() else {}

    def pick(key: str):
        return generation[key] if key in generation else config.get(key)

    return SpecialIds(pick("bos_token_id"), _ids(pick("eos_token_id")))


def read_manifest(folder: str | Path) -> dict:
    """The export's ``edgecomp-export.json`` ({} when there is none: a plain optimum export)."""
    path = Path(folder) / MANIFEST
    return read_json(path) if path.is_file() else {}


def write_manifest(folder: str | Path, fields: dict) -> dict:
    """Write ``fields`` with the sha256 of every file now in ``folder`` as ``edgecomp-export.json``
    (what :func:`verify_manifest` checks on load); return what was written."""
    folder = Path(folder)
    manifest = {**fields, "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != MANIFEST}}
    write_json(folder / MANIFEST, manifest)
    return manifest


def verify_manifest(folder: str | Path) -> dict:
    """Every file the export's manifest lists exists with its recorded sha256; refuse the export otherwise.

    Exports travel between machines and people: a truncated download or a swapped ``model.onnx``
    must not be run as if it were what was verified at export time. Returns the manifest ({} for a
    plain optimum export, which has none).
    """
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        return {}
    manifest = read_json(folder / MANIFEST)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise EdgecompError(f"{folder / MANIFEST}: no file list to verify the export against")
    for name, expected in sorted(files.items()):
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise EdgecompError(f"{folder}: '{name}' listed in {MANIFEST} is missing")
        if remembered_sha256(path) != expected:
            raise EdgecompError(f"{path}: does not match its sha256 in {MANIFEST} (corrupted or modified)")
    return manifest
