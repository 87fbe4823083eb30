"""A SentencePiece-BPE tokenizer that opens far faster than ``tokenizers``.

Why: ``tokenizers`` takes seconds to build Gemma 3's 262,144-token, 514,847-merge BPE from
``tokenizer.json`` (parsing the JSON, then building the merge table), the largest part of the time
before a summary's first token (benchmarks/LIBRARY.md). Summaries tokenize one article,
a few thousand characters, so a small encoder in Python is fast enough if it needs no merge table.

It handles exactly the tokenizers :mod:`edgecomp.models.gguf_tokenizer` writes (what llama.cpp's
SPM tokenizer does): added tokens cut out of the raw text first (leftmost-longest; control tokens
only when ``encode_special_tokens`` is off), ``" "`` → ``"▁"``, then characters merged pairwise,
always the pair with the lowest merge rank first (leftmost on ties), where the merges are every
split of a vocabulary entry into two vocabulary entries, ranked by the entry's score; characters
outside the vocabulary fall back to their UTF-8 byte tokens. Because the merges are all splits,
the table is not needed: two symbols merge when their concatenation is an entry, and the rank of
that merge is the entry's first merge rank plus the split's position, one integer per entry.

:func:`compact_tokenizer` checks that a ``tokenizer.json`` has this shape (every merge, in order)
and caches its vocabulary, ranks and added tokens as one ``.npz`` in edgecomp's cache, keyed by
the file's sha256; any other tokenizer gets ``None`` and the caller keeps ``tokenizers``.
"""

from __future__ import annotations

import heapq
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SPACE = "▁"
FORMAT = 2  # bumped when the cached arrays change meaning


@dataclass
class Encoding:
    ids: list[int]
    tokens: list[str]


@dataclass(frozen=True)
class AddedToken:
    """What ``tokenizers``' ``get_added_tokens_decoder`` gives per id (the fields edgecomp reads)."""

    content: str
    special: bool


class SpmTokenizer:
    """``encode(text).ids`` and ``decode(ids)`` as the ``tokenizers.Tokenizer`` it was built from.

    The vocabulary stays in flat arrays, not Python objects: the pieces as one UTF-8 blob with
    offsets, and an open-addressing hash table (CRC-32 of a piece's bytes → its id) for the
    lookups merging needs. A 262,144-entry vocabulary takes ~8 MB this way, against ~60 MB as a
    list of strings and a dict, and opens in milliseconds (benchmarks/RUNTIME.md).
    """

    def __init__(
        self,
        blob: bytes,
        offsets: np.ndarray,
        first_rank: np.ndarray,
        table: np.ndarray,
        added: list[tuple[str, int, bool]],
        unk: int | None,
        encode_special_tokens: bool = True,
    ):
        self._arrays = (np.ascontiguousarray(offsets, np.int64), np.ascontiguousarray(first_rank, np.int64))
        self._table_array = np.ascontiguousarray(table, np.int32)
        self._blob = blob
        self._offsets, self._rank = (memoryview(a) for a in self._arrays)  # item access gives ints
        self._table = memoryview(self._table_array)
        self._mask = len(self._table_array) - 1
        self.added = added
        self.special = frozenset(i for _, i, special in added if special)
        self.unk = unk
        self.bytes = [self.token_to_id(f"<0x{b:02X}>") for b in range(256)]
        self._byte_value = {i: b for b, i in enumerate(self.bytes) if i is not None}
        self.encode_special_tokens = encode_special_tokens

    def _piece(self, i: int) -> bytes:
        return self._blob[self._offsets[i] : self._offsets[i + 1]]

    def _find(self, piece: bytes) -> int:
        """The id of ``piece`` (UTF-8), or -1."""
        table, mask = self._table, self._mask
        slot = zlib.crc32(piece) & mask
        while (i := table[slot]) >= 0:
            if self._piece(i) == piece:
                return i
            slot = (slot + 1) & mask
        return -1

    def token_to_id(self, token: str) -> int | None:
        found = self._find(token.encode("utf-8"))
        return found if found >= 0 else None

    def id_to_token(self, i: int) -> str | None:
        return self._piece(i).decode("utf-8") if 0 <= i < len(self._offsets) - 1 else None

    def get_added_tokens_decoder(self) -> dict[int, AddedToken]:
        return {i: AddedToken(content, special) for content, i, special in self.added}

    @property
    def encode_special_tokens(self) -> bool:
        return self._encode_special

    @encode_special_tokens.setter
    def encode_special_tokens(self, value: bool) -> None:
        """True: control tokens in text stay text (llama.cpp's ``parse_special=false``)."""
        self._encode_special = bool(value)
        cut = [(c, i) for c, i, special in self.added if c and (not special or not value)]
        self._added_ids = dict(cut)
        self._split = (
            re.compile("|".join(re.escape(c) for c, _ in sorted(cut, key=lambda x: -len(x[0])))) if cut else None
        )

    def get_vocab_size(self, with_added_tokens: bool = True) -> int:
        return len(self._offsets) - 1

    def encode(self, text: str, add_special_tokens: bool = False) -> Encoding:
        if add_special_tokens:
            raise ValueError("add the BOS yourself: edgecomp's prompts do")
        ids: list[int] = []
        start = 0
        for match in self._split.finditer(text) if self._split is not None else ():
            ids += self._bpe(text[start : match.start()])
            ids.append(self._added_ids[match.group()])
            start = match.end()
        ids += self._bpe(text[start:])
        return Encoding(ids, [self.id_to_token(i) for i in ids])

    def _symbols(self, text: str) -> list[int]:
        out = []
        for char in text.replace(" ", SPACE):
            found = self._find(char.encode("utf-8"))
            if found >= 0:
                out.append(found)
                continue
            fallback = [self.bytes[b] for b in char.encode("utf-8")]
            if all(b is not None for b in fallback):
                out += fallback
            elif self.unk is not None:
                out.append(self.unk)
        return out

    def _candidate(self, heap: list, pos: int, left: int, right: int) -> None:
        head = self._piece(left)
        merged = self._find(head + self._piece(right))
        if merged >= 0 and self._rank[merged] >= 0:
            heapq.heappush(heap, (self._rank[merged], len(head), pos, left, right, merged))

    def _bpe(self, text: str) -> list[int]:
        if not text:
            return []
        ids = self._symbols(text)
        n = len(ids)
        after, before = list(range(1, n + 1)), list(range(-1, n - 1))
        heap: list = []
        for pos in range(n - 1):
            self._candidate(heap, pos, ids[pos], ids[pos + 1])
        while heap:
            _, _, pos, left, right, merged = heapq.heappop(heap)
            nxt = after[pos]
            if ids[pos] != left or nxt >= n or ids[nxt] != right:
                continue  # a neighbour changed since this pair was pushed
            ids[pos], ids[nxt] = merged, -1
            after[pos] = after[nxt]
            if after[pos] < n:
                before[after[pos]] = pos
                self._candidate(heap, pos, merged, ids[after[pos]])
            if before[pos] >= 0:
                self._candidate(heap, before[pos], ids[before[pos]], merged)
        return [i for i in ids if i >= 0]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        out, pending = [], bytearray()
        for i in ids:
            if skip_special_tokens and i in self.special:
                continue
            byte = self._byte_value.get(i)
            if byte is not None:
                pending.append(byte)
                continue
            if pending:
                out.append(_bytes_text(pending))
                pending = bytearray()
            out.append(self._piece(i).decode("utf-8").replace(SPACE, " "))
        if pending:
            out.append(_bytes_text(pending))
        return "".join(out)


def _bytes_text(data: bytearray) -> str:
    """``tokenizers``' ByteFallback: the bytes as UTF-8, or one U+FFFD per byte if they are not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "\ufffd" * len(data)


def _ranks(model: dict, pieces: list[str], vocab: dict[str, int]) -> np.ndarray | None:
    """Each entry's first merge rank (-1: none), if the merges are exactly every split of every
    entry into two entries, grouped by entry and ordered by split position; else None."""
    first = np.full(len(pieces), -1, dtype=np.int64)
    expected_next: dict[int, int] = {}  # entry -> the cut its next merge must have
    merges = model.get("merges") or []
    for rank, merge in enumerate(merges):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        merged = vocab.get(left + right)
        if merged is None or left not in vocab or right not in vocab:
            return None
        if first[merged] < 0:
            first[merged] = rank
        elif rank - first[merged] != expected_next.get(merged):
            return None
        expected_next[merged] = rank - first[merged] + 1
    total = sum(1 for piece in pieces for cut in range(1, len(piece)) if piece[:cut] in vocab and piece[cut:] in vocab)
    return first if total == len(merges) else None


def _supported(config: dict) -> bool:
    model = config.get("model") or {}
    decoder = config.get("decoder") or {}
    steps = [d.get("type") for d in decoder.get("decoders", [])] if decoder.get("type") == "Sequence" else []
    return (
        model.get("type") == "BPE"
        and model.get("byte_fallback")
        and not model.get("fuse_unk")
        and not model.get("dropout")
        and not model.get("continuing_subword_prefix")
        and not model.get("end_of_word_suffix")
        and not model.get("ignore_merges")
        and config.get("pre_tokenizer") is None
        and config.get("normalizer") == {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
        and steps == ["Replace", "ByteFallback", "Fuse"]
        and all(
            not a.get("normalized") and not a.get("lstrip") and not a.get("rstrip") and not a.get("single_word")
            for a in config.get("added_tokens", [])
        )
    )


def _build(file: Path) -> dict | None:
    config = json.loads(file.read_text(encoding="utf-8"))
    if not _supported(config):
        return None
    vocab = config["model"]["vocab"]
    pieces = [""] * len(vocab)
    for piece, i in vocab.items():
        if not 0 <= i < len(pieces) or pieces[i]:
            return None
        pieces[i] = piece
    first = _ranks(config["model"], pieces, vocab)
    if first is None:
        return None
    added = config.get("added_tokens", [])
    if any(pieces[a["id"]] != a["content"] for a in added if a["id"] < len(pieces)):
        return None
    unk = config["model"].get("unk_token")
    encoded = [piece.encode("utf-8") for piece in pieces]
    return {
        "format": np.int64(FORMAT),
        "pieces_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        "pieces_offsets": np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64),
        "table": _hash_table(encoded),
        "first_rank": first,
        **_strings("added", [a["content"] for a in added]),
        "added_id": np.array([a["id"] for a in added], dtype=np.int64),
        "added_special": np.array([a["special"] for a in added], dtype=bool),
        "unk": np.int64(vocab.get(unk, -1) if unk else -1),
    }


def _hash_table(encoded: list[bytes]) -> np.ndarray:
    """Open addressing, linear probing, at most half full: slot → id, -1 where empty."""
    size = 1 << max(4, (2 * len(encoded) - 1).bit_length())
    table = [-1] * size
    for i, piece in enumerate(encoded):
        slot = zlib.crc32(piece) & (size - 1)
        while table[slot] >= 0:
            slot = (slot + 1) & (size - 1)
        table[slot] = i
    return np.array(table, dtype=np.int32)


def _strings(name: str, items: list[str]) -> dict[str, np.ndarray]:
    """Strings as one UTF-8 byte array and their byte lengths (no pickle in the cache)."""
    encoded = [s.encode("utf-8") for s in items]
    return {
        f"{name}_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8),
        f"{name}_lengths": np.array([len(e) for e in encoded], dtype=np.int64),
    }


def _unstrings(arrays, name: str) -> list[str]:
    blob = arrays[f"{name}_bytes"].tobytes()
    ends = np.cumsum(arrays[f"{name}_lengths"]).tolist()
    starts = [0] + ends[:-1]
    return [blob[a:b].decode("utf-8") for a, b in zip(starts, ends)]


def _load(arrays) -> SpmTokenizer:
    added = list(zip(_unstrings(arrays, "added"), arrays["added_id"].tolist(), arrays["added_special"].tolist()))
    unk = int(arrays["unk"])
    return SpmTokenizer(
        arrays["pieces_bytes"].tobytes(),
        arrays["pieces_offsets"],
        arrays["first_rank"],
        arrays["table"],
        added,
        unk if unk >= 0 else None,
    )


def compact_tokenizer(folder: Path) -> SpmTokenizer | None:
    """The fast tokenizer for ``folder/tokenizer.json``, from the cache (built and cached on first
    use); None when the file is not a SentencePiece-BPE tokenizer of the supported shape."""
    from ..fsutil import atomic_write_bytes, home
    from ..hashes import remembered_sha256

    file = Path(folder) / "tokenizer.json"
    cached = home() / "tokenizers" / f"{remembered_sha256(file)[:32]}-{FORMAT}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as arrays:
                if arrays["format"].item() == 0:
                    return None
                return _load(arrays)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt
    arrays = _build(file) or {"format": np.int64(0)}
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cached, buffer.getvalue())
    return _load(arrays) if arrays["format"].item() else None
