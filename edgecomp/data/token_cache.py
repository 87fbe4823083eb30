"""Tokenized training examples cached on disk, so the next run over the same data starts at once.

Tokenizing a large monolingual corpus costs minutes, and it is the same work each time a language
adapter is retrained with other LoRA settings. An entry is keyed by everything that decides the
examples: the tokenizer's files, the data's sha256, the options that shape an example (kind,
sequence length, label sampling and its seed, summary length, prompt text) and the source of the
code that builds them (:mod:`.examples`, :mod:`.prompts`), so changing any of them builds a new
entry. Entries are :func:`~edgecomp.models.cache.cached_entry` folders (``$EDGECOMP_HOME/tokens``):
whole or absent, shared safely by concurrent runs.

Stored as three flat ``int32`` arrays (``.npy``, read without pickle): every example's ids one
after the other, its labels likewise, and the offsets where each example starts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from ..fsutil import sha256_file
from ..hashes import remembered_sha256

Example = tuple[list[int], list[int]]
_FILES = ("ids.npy", "labels.npy", "offsets.npy")


def _source_digest() -> str:
    from . import examples, prompts

    return hashlib.sha256("".join(sha256_file(m.__file__) for m in (examples, prompts)).encode()).hexdigest()


def tokenizer_digest(folder: Path) -> str:
    """sha256 over the files that decide how text is encoded."""
    files = [folder / n for n in ("tokenizer.json", "tokenizer_config.json") if (folder / n).is_file()]
    return hashlib.sha256("".join(remembered_sha256(f) for f in files).encode()).hexdigest()


def cache_key(**parts) -> str:
    """A key over ``parts`` (JSON-serialisable) and the code that builds examples."""
    text = json.dumps({**parts, "code": _source_digest()}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _write(folder: Path, examples: list[Example]) -> dict:
    import numpy as np

    offsets = np.zeros(len(examples) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(ids) for ids, _ in examples])
    np.save(folder / "ids.npy", np.fromiter((t for ids, _ in examples for t in ids), np.int32, int(offsets[-1])))
    np.save(folder / "labels.npy", np.fromiter((t for _, y in examples for t in y), np.int32, int(offsets[-1])))
    np.save(folder / "offsets.npy", offsets)
    return {"examples": len(examples), "tokens": int(offsets[-1])}


def _read(folder: Path) -> list[Example]:
    import numpy as np

    ids, labels, offsets = (np.load(folder / name, allow_pickle=False) for name in _FILES)
    bounds = offsets.tolist()
    flat_ids, flat_labels = ids.tolist(), labels.tolist()
    return [(flat_ids[a:b], flat_labels[a:b]) for a, b in zip(bounds, bounds[1:])]


def cached_examples(key: str, build: Callable[[], list[Example]]) -> tuple[list[Example], bool]:
    """The examples of ``key``, built by ``build()`` and stored when absent; and whether they were cached."""
    from ..models.cache import cached_entry

    built = []

    def make(folder: Path) -> dict:
        built.append(build())
        return _write(folder, built[0])

    entry = cached_entry("tokens", key, make)
    return (built[0] if built else _read(entry)), not built
