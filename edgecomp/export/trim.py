"""Vocabulary trimming: keep the embedding / LM-head rows a target language uses, map ids exactly.

Gemma's vocabulary has 262,144 tokens; one language's text uses a few tens of thousands. Slicing
the embedding table and the LM head to those rows shrinks the file and, above all, the LM head:
with a 640-wide model the head is the largest MatMul of every decode step.

What is kept (:func:`kept_ids`): every token the corpus encodes to, every added/special token
(``<bos>``, ``<eos>``, ``<start_of_turn>``...; Gemma's 6,242 ``<unusedN>`` placeholders are dropped
unless ``keep_unused``), the 256 byte-fallback tokens ``<0x00>``..``<0xFF>``, ``▁`` and the tokens of
the prompt template. The tokenizer is unchanged and still encodes to original ids; the export gets
``vocab_map.json`` (the kept original ids, sorted: trimmed id ``i`` is original id ``kept[i]``) and
the runtime maps ids at the graph's edges with :class:`IdMap`:

- inputs, original → trimmed: :meth:`IdMap.to_trimmed_ids`. A token outside the kept set is
  re-encoded into kept tokens: the fewest kept pieces that spell it, and UTF-8 byte tokens for any
  character no kept piece covers (byte fallback covers every character), so the text is the same;
- outputs, trimmed → original: ``id_map.to_original[trimmed_ids]`` (a numpy lookup).

The trimmed graph computes exactly the full graph's logits on the kept ids
(``trimmed_logits == full_logits[..., kept]``): only rows are removed, nothing is recomputed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..data.prompts import PROMPTS
from ..data.tokenizer import encoder, load_tokenizer
from ..errors import EdgecompError

if TYPE_CHECKING:  # the runtime imports this module for IdMap: onnx loads only to trim a graph
    import onnx

VOCAB_MAP = "vocab_map.json"
SPACE = "▁"  # SentencePiece's visible space
_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_UNUSED = re.compile(r"^<unused\d+>$")


# --- which ids to keep ------------------------------------------------------------------------


def byte_token_ids(tokenizer) -> dict[int, int]:
    """byte value → token id of ``<0xNN>`` (empty for a tokenizer without byte fallback)."""
    out = {}
    for piece, token_id in tokenizer.get_vocab(with_added_tokens=True).items():
        match = _BYTE.match(piece)
        if match:
            out[int(match.group(1), 16)] = token_id
    return out


def kept_ids(
    tokenizer,
    corpus: Iterable[str],
    *,
    extra_ids: Iterable[int] = (),
    keep_unused: bool = False,
) -> np.ndarray:
    """Sorted original ids to keep for a corpus (see the module docstring for what is kept)."""
    encode = encoder(tokenizer)
    keep: set[int] = set(int(i) for i in extra_ids)
    for line in corpus:
        keep.update(encode(line))
    for text in (*PROMPTS.values(), " ", "\n"):
        keep.update(encode(text))
    keep.update(byte_token_ids(tokenizer).values())
    for token_id, added in tokenizer.get_added_tokens_decoder().items():
        if keep_unused or not _UNUSED.match(added.content):
            keep.add(token_id)
    space = tokenizer.token_to_id(SPACE)
    if space is not None:
        keep.add(space)
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    return np.array(sorted(i for i in keep if 0 <= i < size), dtype=np.int64)


# --- the id map the runtime uses ---------------------------------------------------------------


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


# --- slicing the graph --------------------------------------------------------------------------


def trim_model(model: onnx.ModelProto, kept: np.ndarray) -> dict:
    """Keep only rows ``kept`` of the embedding table and the LM head (in place).

    Works on the fp32 / fp16 graphs optimum writes (``Gather`` + ``MatMul``, tied or not, or the
    head reading ``Transpose(table)``); quantize after trimming. Returns the old and new sizes.
    """
    from onnx import numpy_helper

    from .quantization.apply import find_embedding_and_head

    found = find_embedding_and_head(model)
    if found is None or found.head is None:
        raise EdgecompError("cannot trim: no embedding Gather and LM-head MatMul found in the graph")
    inits = {t.name: t for t in model.graph.initializer}
    table = numpy_helper.to_array(inits[found.table])
    vocab = table.shape[0]
    kept = np.asarray(kept, dtype=np.int64)
    if kept.size == 0 or kept.max() >= vocab:
        raise EdgecompError("kept ids fall outside the model's vocabulary")
    inits[found.table].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(table[kept]), found.table))
    if found.head_weight is not None:
        weight = numpy_helper.to_array(inits[found.head_weight])
        inits[found.head_weight].CopyFrom(
            numpy_helper.from_array(np.ascontiguousarray(weight[:, kept]), found.head_weight)
        )
    # Declared shapes: the logits' last axis (and any intermediate annotated with the vocabulary).
    for value in list(model.graph.output) + list(model.graph.value_info):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value == vocab:
            dims[-1].dim_value = int(kept.size)
    return {"original_vocab_size": int(vocab), "vocab_size": int(kept.size)}


def trim_onnx(src_dir: Path, dst_dir: Path, kept: np.ndarray) -> dict:
    """``src_dir/model.onnx`` (fp32/fp16) with its vocabulary cut to ``kept`` → ``dst_dir``."""
    import onnx

    from .quantization.apply import _save, external_data_files

    src, dst = Path(src_dir) / "model.onnx", Path(dst_dir) / "model.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    external = bool(external_data_files(src))
    model = onnx.load(str(src))
    report = trim_model(model, kept)
    _save(model, dst, external)
    return report


def corpus_lines(paths: Iterable[str | Path]) -> list[str]:
    """Non-empty lines of text files (``.txt``) or the ``text``/``summary`` fields of ``.jsonl``."""
    lines: list[str] = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise EdgecompError(f"trim corpus {path} does not exist")
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            if path.suffix == ".jsonl":
                row = json.loads(raw)
                lines.extend(str(row[k]) for k in ("text", "summary", "article") if row.get(k))
            else:
                lines.append(raw)
    if not lines:
        raise EdgecompError("the trim corpus has no text")
    return lines
