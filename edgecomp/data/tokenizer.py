"""Load a checkpoint's or export's tokenizer the one way training and the runtime both use.

``tokenizers`` does not store ``encode_special_tokens`` in ``tokenizer.json``; it lives in
``tokenizer_config.json`` as ``split_special_tokens``. Applying it here keeps special-token text in
an article (a literal ``<bos>``) as text, as llama.cpp does, in training and in ``summarize`` alike.
Torch-free: the runtime imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from ..errors import EdgecompError


def load_tokenizer(folder: Path, quick: bool = False):
    """The folder's ``tokenizers.Tokenizer``; with ``quick``, edgecomp's SentencePiece-BPE encoder
    when the tokenizer is one it reproduces (:mod:`.spm_tokenizer`: loads in a fraction of the
    time, encodes and decodes the same), else the same ``tokenizers.Tokenizer``."""
    from tokenizers import Tokenizer

    file = folder / "tokenizer.json"
    if not file.is_file():
        raise EdgecompError(f"{folder}: no tokenizer.json (edgecomp needs a fast tokenizer file)")
    tok = None
    if quick:
        from .spm_tokenizer import compact_tokenizer

        try:
            tok = compact_tokenizer(folder)
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            tok = None  # not a tokenizer it knows: tokenizers reads it (or says why not) below
    try:
        tok = tok or Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise EdgecompError(f"{file}: unreadable tokenizer ({e})") from None
    config = folder / "tokenizer_config.json"
    if config.is_file():
        tok.encode_special_tokens = bool(
            json.loads(config.read_text(encoding="utf-8")).get("split_special_tokens", False)
        )
    return tok


def encoder(tok) -> Callable[[str], list[int]]:
    """Text → ids without special tokens (the prompt template adds BOS/EOS itself)."""
    return lambda text: tok.encode(text, add_special_tokens=False).ids
