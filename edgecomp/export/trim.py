"""Vocabulary trimming: keep the embedding / LM-head rows a target language uses, map ids exactly.

Gemma's vocabulary has 262,144 tokens; one language's text uses a few tens of thousands. Slicing
the embedding table and the LM head to those rows shrinks the file and, above all, the LM head:
with a 640-wide model the head is the largest MatMul of every decode step.

What is kept (:func:`kept_ids`): every token the corpus encodes to, every added/special token
(``<bos>``, ``<eos>``, ``<start_of_turn>``...; Gemma's 6,242 ``<unusedN>`` placeholders are dropped
unless ``keep_unused``), the 256 byte-fallback tokens ``<0x00>``..``<0xFF>``, ``▁`` and the tokens of
the prompt template. The tokenizer is unchanged and still encodes to original ids; the export gets
``vocab_map.json`` (the kept original ids, sorted: trimmed id ``i`` is original id ``kept[i]``) and
the runtime maps ids at the graph's edges with :class:`~edgecomp.data.vocab_map.IdMap`:

- inputs, original → trimmed: :meth:`~edgecomp.data.vocab_map.IdMap.to_trimmed_ids`. A token outside the kept set is
  re-encoded into kept tokens: the fewest kept pieces that spell it, and UTF-8 byte tokens for any
  character no kept piece covers (byte fallback covers every character), so the text is the same;
- outputs, trimmed → original: ``id_map.to_original[trimmed_ids]`` (a numpy lookup).

The trimmed graph computes exactly the full graph's logits on the kept ids
(``trimmed_logits == full_logits[..., kept]``): only rows are removed, nothing is recomputed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from ..data.prompts import PROMPTS
from ..data.tokenizer import encoder
from ..data.vocab_map import SPACE, byte_token_ids
from ..errors import EdgecompError
from .onnx_io import external_data_files, save_model
from .quantization.rewrite import find_embedding_and_head

_UNUSED = re.compile(r"^<unused\d+>$")


# --- which ids to keep ------------------------------------------------------------------------


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


# --- slicing the graph --------------------------------------------------------------------------


def trim_model(model: onnx.ModelProto, kept: np.ndarray) -> dict:
    """Keep only rows ``kept`` of the embedding table and the LM head (in place).

    Works on the fp32 / fp16 graphs optimum writes (``Gather`` + ``MatMul``, tied or not, or the
    head reading ``Transpose(table)``); quantize after trimming. Returns the old and new sizes.
    """
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
    src, dst = Path(src_dir) / "model.onnx", Path(dst_dir) / "model.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    external = bool(external_data_files(src))
    model = onnx.load(str(src))
    report = trim_model(model, kept)
    save_model(model, dst, external)
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
