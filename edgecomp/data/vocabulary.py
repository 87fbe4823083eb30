"""The vocabulary of a language adapter's training text: the token ids it holds, kept beside it.

A language adapter learns its language from its text, and the ids that text encodes to are what an
export for that language keeps when its vocabulary is trimmed (:mod:`edgecomp.export.trim`):
``merge-export`` trims a single-language composition to its language adapters' vocabularies by
default. ``edgecomp train`` writes ``vocabulary.json`` next to ``edgecomp.json``: the ids as a bitmap
over the tokenizer's ids, zlib-compressed and base64-encoded (a few kB for 262,144 ids).
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import EdgecompError

VOCABULARY = "vocabulary.json"
FORMAT = "edgecomp-vocabulary/1"


def vocabulary_payload(ids: Iterable[int], vocab_size: int) -> dict:
    """What ``vocabulary.json`` holds for ``ids`` (token ids below ``vocab_size``)."""
    mask = np.zeros(vocab_size, dtype=bool)
    found = np.fromiter((int(i) for i in ids), dtype=np.int64)
    if found.size and (found.min() < 0 or found.max() >= vocab_size):
        raise EdgecompError(f"a vocabulary's ids must lie in [0, {vocab_size})")
    mask[found] = True
    packed = zlib.compress(np.packbits(mask).tobytes(), 9)
    return {
        "format": FORMAT,
        "vocab_size": int(vocab_size),
        "count": int(mask.sum()),
        "bitmap": base64.b64encode(packed).decode("ascii"),
    }


def read_vocabulary(folder: str | Path) -> np.ndarray | None:
    """The sorted ids of ``folder/vocabulary.json``; None when the folder has none."""
    path = Path(folder) / VOCABULARY
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
        size = int(data["vocab_size"])
        bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(data["bitmap"])), dtype=np.uint8))
        if bits.size < size or bits[size:].any():
            raise ValueError("the bitmap does not match vocab_size")
        ids = np.flatnonzero(bits[:size])
        if ids.size != int(data["count"]):
            raise ValueError("the bitmap does not hold count ids")
    except (OSError, ValueError, KeyError, TypeError, zlib.error, binascii.Error) as e:
        raise EdgecompError(f"{path} is not a vocabulary file ({e})") from None
    return ids.astype(np.int64)
