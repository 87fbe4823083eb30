"""The id map of a trimmed export: original ↔ trimmed token ids, exact in both directions.

A trimmed export (:mod:`edgecomp.export.trim`) keeps some rows of the embedding table and the LM
head and records them in ``vocab_map.json``; the tokenizer is unchanged and still encodes to
original ids. :class:`IdMap` maps ids at the graph's edges: a token outside the kept set is
re-encoded into the fewest kept pieces that spell it (UTF-8 byte tokens for any character no kept
piece covers), so the text is the same. numpy only: the runtime imports it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import EdgecompError
from .tokenizer import load_tokenizer

VOCAB_MAP = "vocab_map.json"
HEAD_IDS = "head_ids.json"  # a head-trimmed export's kept ids (edgecomp.export.trim_head)
EXTRA_IDS = "extra_ids"  # its graph input: the ids the prompts add to the head
SPACE = "▁"  # SentencePiece's visible space
_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def byte_token_ids(tokenizer) -> dict[int, int]:
    """byte value → token id of ``<0xNN>`` (empty for a tokenizer without byte fallback)."""
    found = {b: tokenizer.token_to_id(f"<0x{b:02X}>") for b in range(256)}
    return {b: token_id for b, token_id in found.items() if token_id is not None}


@dataclass
class IdMap:
    """Original ↔ trimmed ids of a trimmed export.

    ``to_original[t]`` is the original id of trimmed id ``t``; ``to_trimmed[o]`` the trimmed id of
    original id ``o``, or -1 if ``o`` was dropped (then :meth:`to_trimmed_ids` re-encodes it).
    """

    to_original: np.ndarray
    to_trimmed: np.ndarray
    tokenizer: object = field(repr=False)
    _pieces: dict[str, int] | None = field(default=None, repr=False)
    _bytes: dict[int, int] | None = field(default=None, repr=False)
    _longest: int = field(default=0, repr=False)
    _added: frozenset[int] = field(default=frozenset(), repr=False)
    _cache: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_kept(cls, kept: Sequence[int], vocab_size: int, tokenizer) -> "IdMap":
        kept = np.asarray(kept, dtype=np.int64)
        if kept.size == 0 or np.any(np.diff(kept) <= 0) or kept[0] < 0 or kept[-1] >= vocab_size:
            raise EdgecompError("a vocabulary map needs sorted, distinct ids inside the vocabulary")
        to_trimmed = np.full(vocab_size, -1, dtype=np.int64)
        to_trimmed[kept] = np.arange(kept.size)
        return cls(kept, to_trimmed, tokenizer)

    @property
    def size(self) -> int:
        return int(self.to_original.size)

    def _tables(self) -> None:
        if self._pieces is not None:
            return
        special = frozenset(self.tokenizer.get_added_tokens_decoder())
        self._added = special
        pieces = {}
        for original in self.to_original.tolist():
            piece = self.tokenizer.id_to_token(original)
            if piece is not None and original not in special and not _BYTE.match(piece):
                pieces[piece] = int(self.to_trimmed[original])
        self._pieces = pieces
        self._longest = max((len(p) for p in pieces), default=1)
        self._bytes = {b: int(self.to_trimmed[i]) for b, i in byte_token_ids(self.tokenizer).items()}
        if len(self._bytes) != 256 or min(self._bytes.values()) < 0:
            raise EdgecompError("a trimmed vocabulary must keep the 256 byte-fallback tokens")

    def _char_bytes(self, char: str) -> list[int]:
        text = " " if char == SPACE else char  # bytes of the text the piece stands for
        return [self._bytes[b] for b in text.encode("utf-8")]

    def expand(self, original_id: int) -> tuple[int, ...]:
        """Trimmed ids spelling one original token: itself if kept, else the fewest kept pieces
        (UTF-8 byte tokens for characters no kept piece covers)."""
        trimmed = int(self.to_trimmed[original_id])
        if trimmed >= 0:
            return (trimmed,)
        if original_id in self._cache:
            return self._cache[original_id]
        self._tables()
        piece = self.tokenizer.id_to_token(int(original_id))
        if piece is None:
            raise EdgecompError(f"token id {original_id} is not in the tokenizer")
        match = _BYTE.match(piece)
        if match:  # cannot happen (bytes are always kept) unless the map was edited
            raise EdgecompError(f"byte token {piece} is missing from the vocabulary map")
        if original_id in self._added:
            piece = piece.replace(" ", SPACE)  # an added token's content is plain text
        # best[i]: fewest trimmed ids spelling piece[:i]; ties keep the longest first piece.
        n = len(piece)
        best: list[tuple[int, ...] | None] = [()] + [None] * n
        for end in range(1, n + 1):
            options = []
            for start in range(max(0, end - self._longest), end):
                prefix = best[start]
                if prefix is not None and piece[start:end] in self._pieces:
                    options.append(prefix + (self._pieces[piece[start:end]],))
            if best[end - 1] is not None:
                options.append(best[end - 1] + tuple(self._char_bytes(piece[end - 1])))
            best[end] = min(options, key=len)
        self._cache[original_id] = best[n]
        return best[n]

    def to_trimmed_aligned(self, ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """Trimmed ids for original ``ids``, and where each original token's expansion starts."""
        out: list[int] = []
        starts: list[int] = []
        for original in ids:
            starts.append(len(out))
            out.extend(self.expand(int(original)))
        return out, starts

    def to_trimmed_ids(self, ids: Sequence[int]) -> list[int]:
        """Original ids (what the tokenizer produced) → the trimmed ids to feed the graph."""
        return self.to_trimmed_aligned(ids)[0]

    def trimmed_special_ids(self, ids: Iterable[int]) -> tuple[int, ...]:
        """Trimmed ids of special tokens (eos ids: the ids generation stops on); dropped ones go."""
        return tuple(int(self.to_trimmed[i]) for i in ids if 0 <= i < self.to_trimmed.size and self.to_trimmed[i] >= 0)

    def to_original_ids(self, ids: Sequence[int] | np.ndarray) -> list[int]:
        """Trimmed ids (what the graph's logits index) → original ids for the tokenizer."""
        return self.to_original[np.asarray(ids, dtype=np.int64)].tolist()


def load_id_map(export_dir: str | Path, tokenizer=None) -> IdMap | None:
    """The export's :class:`IdMap`, or None when it is not trimmed (no ``vocab_map.json``)."""
    export_dir = Path(export_dir)
    path = export_dir / VOCAB_MAP
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kept, vocab_size = data["kept"], int(data["original_vocab_size"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise EdgecompError(f"{path} is not a vocabulary map ({e})") from None
    return IdMap.from_kept(kept, vocab_size, tokenizer or load_tokenizer(export_dir))


def write_id_map(export_dir: Path, kept: np.ndarray, vocab_size: int, source: dict | None = None) -> Path:
    path = Path(export_dir) / VOCAB_MAP
    payload = {"original_vocab_size": int(vocab_size), "kept_count": int(len(kept)), **(source or {})}
    payload["kept"] = [int(i) for i in kept]
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def write_head_ids(folder: Path, kept: np.ndarray, vocab_size: int) -> Path:
    path = Path(folder) / HEAD_IDS
    payload = {"original_vocab_size": int(vocab_size), "kept": [int(i) for i in kept]}
    path.write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def read_head_ids(folder: str | Path) -> tuple[np.ndarray, int] | None:
    """The kept ids and vocabulary size of a head-trimmed export; None for any other export."""
    path = Path(folder) / HEAD_IDS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kept, size = np.asarray(data["kept"], dtype=np.int64), int(data["original_vocab_size"])
    except (ValueError, KeyError, TypeError) as e:
        raise EdgecompError(f"{path} is not a head-trimming map ({e})") from None
    if kept.ndim != 1 or kept.size == 0 or kept[0] < 0 or kept[-1] >= size or np.any(np.diff(kept) <= 0):
        raise EdgecompError(f"{path}: the kept ids must be sorted, distinct and inside the vocabulary")
    return kept, size
