"""A Hugging Face tokenizer rebuilt from a GGUF file that tokenizes exactly like llama.cpp.

Why this exists: transformers (4.57) turns the vocabulary of a GGUF whose
``tokenizer.ggml.model`` is ``"llama"`` into a *Unigram* model. Gemma 3's vocabulary is a
SentencePiece *BPE* vocabulary (scores are minus the merge rank), and read as Unigram it splits
ordinary words into scraps: "The capital of France is Paris." becomes 14 pieces
(``▁c ap it al ...``) where llama.cpp, and the model's training, give 7 (``▁capital``, ...).

llama.cpp's SPM tokenizer (``llm_tokenizer_spm`` in ``llama-vocab.cpp``) does this:

1. user-defined tokens (runs of spaces or newlines, ``<table>``, ...) are cut out of the raw text
   and emitted as they are; control tokens (``<bos>``, ``<start_of_turn>``, ...) only when
   special-token parsing is on;
2. in the rest, ``" "`` becomes ``"▁"`` (no space prefix for Gemma), the text is split into
   characters and the adjacent pair whose concatenation is the highest-scoring vocabulary entry
   is merged, again and again (the leftmost pair on a tie);
3. a character that is not in the vocabulary falls back to its UTF-8 byte tokens ``<0xXX>``;
4. ``<bos>`` goes first.

The same as a ``tokenizers`` pipeline: added tokens for step 1, ``Replace(" ", "▁")``, a BPE
model whose merges are every split of a vocabulary entry into two vocabulary entries, ranked by
the entry's score, with byte fallback, and a ``<bos>`` template. The result matches llama.cpp
token for token (see ``tests/test_gguf_tokenizer.py``).

Control tokens are registered as *special* added tokens but not parsed out of text by default
(``Tokenizer.encode_special_tokens = True``), which is llama.cpp's ``parse_special=false``:
literal ``"<start_of_turn>"`` in an article stays text. Set it to ``False`` (in transformers:
``split_special_tokens=False``) to get llama.cpp's ``parse_special=true``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from gguf import GGUF_MAGIC, GGUFValueType
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

from ..errors import EdgecompError

# tokenizer.ggml.token_type values (llama.cpp's llama_token_type) that step 1 cuts out
_UNKNOWN, _CONTROL, _USER_DEFINED = 2, 3, 4

# llama.cpp (llama-vocab.cpp) also makes tokens control tokens by their text, whatever the GGUF
# says: its end-of-generation list includes "</s>" (for PaddleOCR), which in Gemma 3 is a
# user-defined token. So llama.cpp parses a literal "</s>" only with parse_special=true (and
# stops generating at it). Follow it.
_LLAMA_CPP_CONTROL = frozenset({"</s>"})

_SCALARS = {
    GGUFValueType.UINT8: np.dtype("<u1"),
    GGUFValueType.INT8: np.dtype("<i1"),
    GGUFValueType.UINT16: np.dtype("<u2"),
    GGUFValueType.INT16: np.dtype("<i2"),
    GGUFValueType.UINT32: np.dtype("<u4"),
    GGUFValueType.INT32: np.dtype("<i4"),
    GGUFValueType.FLOAT32: np.dtype("<f4"),
    GGUFValueType.BOOL: np.dtype("?"),
    GGUFValueType.UINT64: np.dtype("<u8"),
    GGUFValueType.INT64: np.dtype("<i8"),
    GGUFValueType.FLOAT64: np.dtype("<f8"),
}


def read_metadata(path: Path) -> dict:
    """The key/value section of a little-endian GGUF (v2/v3); tensors are not read.

    ``gguf.GGUFReader`` wraps every element of the 262k-entry vocabulary arrays in its own numpy
    view, which is slow; this reads the same values straight from the file (benchmarks/LIBRARY.md).
    """
    return read_sections(path)[0]


def read_sections(path: Path) -> tuple[dict, list[tuple[str, list[int], int, int]], int]:
    """The key/value section, the tensor infos ``(name, dims, ggml type, offset)`` and the offset
    where the infos end, of a little-endian GGUF (v2/v3). Parse errors of a damaged file propagate."""
    buf = np.memmap(path, mode="r")
    mv = memoryview(buf)
    if len(buf) < 24 or int(buf[:4].view("<u4")[0]) != GGUF_MAGIC or int(buf[4:8].view("<u4")[0]) not in (2, 3):
        raise EdgecompError(f"{path} is not a little-endian GGUF v2/v3 file")
    offs = 24  # magic, version, tensor count; the key/value count is the u64 before

    def scalar(dtype: np.dtype):
        nonlocal offs
        offs += dtype.itemsize
        return np.frombuffer(buf, dtype, 1, offs - dtype.itemsize)[0].item()

    def string() -> str:
        nonlocal offs
        n = scalar(_SCALARS[GGUFValueType.UINT64])
        if offs + n > len(buf):
            raise ValueError(f"a string of {n} bytes at offset {offs} runs past the end of the file")
        offs += n
        return str(mv[offs - n : offs], "utf-8")

    def value(vtype: int):
        nonlocal offs
        if vtype == GGUFValueType.STRING:
            return string()
        if vtype != GGUFValueType.ARRAY:
            return scalar(_SCALARS[vtype])
        etype, count = scalar(_SCALARS[GGUFValueType.UINT32]), scalar(_SCALARS[GGUFValueType.UINT64])
        if etype not in _SCALARS:
            return [value(etype) for _ in range(count)]
        arr = np.frombuffer(buf, _SCALARS[etype], count, offs)
        offs += arr.nbytes
        return arr

    n_tensors, n_kv = int(buf[8:16].view("<u8")[0]), int(buf[16:24].view("<u8")[0])
    meta = {string(): value(scalar(_SCALARS[GGUFValueType.UINT32])) for _ in range(n_kv)}
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [scalar(_SCALARS[GGUFValueType.UINT64]) for _ in range(scalar(_SCALARS[GGUFValueType.UINT32]))]
        infos.append((name, dims, scalar(_SCALARS[GGUFValueType.UINT32]), scalar(_SCALARS[GGUFValueType.UINT64])))
    return meta, infos, offs


def tokenizer_from_gguf(gguf_path: str | os.PathLike) -> Tokenizer:
    """The vocabulary of a SentencePiece-BPE GGUF (``tokenizer.ggml.model == "llama"``, no space
    prefix, as Gemma 3) as a ``tokenizers.Tokenizer`` that gives llama.cpp's ids.

    Not ``transformers``' GGUF loader: it reads this vocabulary as Unigram and splits words into
    far too many pieces (see the module docstring). Special tokens are not parsed out of text
    (llama.cpp's ``parse_special=false``) unless ``encode_special_tokens`` is set to ``False``.
    """
    meta = read_metadata(Path(gguf_path))
    if meta.get("tokenizer.ggml.model") != "llama" or meta.get("tokenizer.ggml.add_space_prefix", True):
        raise EdgecompError(
            f"{gguf_path}: only SentencePiece-BPE vocabularies (tokenizer.ggml.model 'llama') "
            "without add_space_prefix are supported"
        )
    tokens: list[str] = meta["tokenizer.ggml.tokens"]
    scores = meta["tokenizer.ggml.scores"].tolist()
    types = meta["tokenizer.ggml.token_type"].tolist()
    vocab = {t: i for i, t in enumerate(tokens)}

    # llama.cpp merges any adjacent pair that spells a vocabulary entry, highest score first.
    merges = sorted(
        (-scores[i], i, token[:cut], token[cut:])
        for i, token in enumerate(tokens)
        for cut in range(1, len(token))
        if token[:cut] in vocab and token[cut:] in vocab
    )
    unk = tokens[meta["tokenizer.ggml.unknown_token_id"]]
    tok = Tokenizer(models.BPE(vocab, [m[2:] for m in merges], unk_token=unk, byte_fallback=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])

    control = [t for t, k in zip(tokens, types) if k in (_CONTROL, _UNKNOWN) or t in _LLAMA_CPP_CONTROL]
    user = [t for t, k in zip(tokens, types) if k == _USER_DEFINED and t not in _LLAMA_CPP_CONTROL]
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in user])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in control])
    tok.encode_special_tokens = True

    if meta.get("tokenizer.ggml.add_bos_token", False):
        bos_id = meta["tokenizer.ggml.bos_token_id"]
        bos = tokens[bos_id]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
        )
    return tok


def save_hf_tokenizer(
    tok: Tokenizer, out_dir: str | os.PathLike, *, bos: str, eos: str, unk: str | None, pad: str | None
) -> None:
    """Write ``tok`` as a transformers fast tokenizer (``tokenizer.json``, ``tokenizer_config.json``,
    ``special_tokens_map.json``) that ``AutoTokenizer.from_pretrained(out_dir)`` loads with these
    special tokens (given as their text, e.g. ``"<bos>"``; ``None`` for none) and the same ids.

    ``split_special_tokens`` is saved as ``tok.encode_special_tokens``, so special tokens in text
    are parsed or not as they are by ``tok``; a call can still pass ``split_special_tokens=False``.
    """
    from transformers import PreTrainedTokenizerFast  # here: the runtime needs only ``tokenizers``

    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        pad_token=pad,
        split_special_tokens=tok.encode_special_tokens,
        clean_up_tokenization_spaces=False,
        model_input_names=["input_ids", "attention_mask"],
    ).save_pretrained(out_dir)
