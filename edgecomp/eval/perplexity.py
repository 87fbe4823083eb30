"""Held-out perplexity of an ONNX export (through the runtime's own session) or a PyTorch checkpoint.

Every model is scored on the same token sequences: ``[bos] + line`` for each held-out line, the
loss on every token after BOS (the ``nll`` logit metric of :mod:`edgecomp.metrics`), averaged over
tokens (a token-weighted mean over lines). With the per-position scores kept (:class:`Scores`), two
models can also be compared position by position: how often their most likely next token is the
same (the ``top1_agreement`` metric: greedy agreement, teacher-forced).

A trimmed export (``vocab_map.json``) predicts over its kept ids only. Its input is re-encoded
with :class:`~edgecomp.data.vocab_map.IdMap` (a dropped token becomes several kept ones), and the loss
of an original token is the sum of the losses of its pieces (the chain rule), so its scores stay
aligned with, and comparable to, the untrimmed model's on the same original tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.tokenizer import encoder, load_tokenizer
from ..errors import EdgecompError
from ..logit_metrics import top1
from ..metrics import LOGITS, metric
from ..model_folder import read_config, read_manifest, special_ids

# Positions scored per graph pass: bounds the logits held at once (tokens x vocab floats).
CHUNK = 128


@dataclass
class Scores:
    """Per sequence: the loss of each token after the first, and the model's top-1 guess for it
    (original ids), position for position."""

    nll: list[np.ndarray]
    top1: list[np.ndarray]

    @property
    def tokens(self) -> int:
        return int(sum(len(x) for x in self.nll))

    @property
    def mean_nll(self) -> float:
        return metric("nll", LOGITS).reduce(_flat(self.nll))

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_nll)


def _flat(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Per-sequence values as one array over every position."""
    return np.concatenate(arrays) if arrays else np.zeros(0)


def agreement(a: Scores, b: Scores) -> float:
    """Share of positions where both models rank the same next token first."""
    m = metric("top1_agreement", LOGITS)
    return m.reduce(_flat([m.score(x, y)["top1_agreement"] for x, y in zip(a.top1, b.top1, strict=True)]))


def heldout_lines(path: str | Path, *, skip: int = 400, count: int = 100) -> list[str]:
    """``count`` non-empty lines after the first ``skip`` lines of a text file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()[skip:]
    out = [line for line in lines if line.strip()][:count]
    if not out:
        raise EdgecompError(f"{path} has no lines after the first {skip}")
    return out


def token_sequences(folder: str | Path, lines: Sequence[str], max_tokens: int = 256) -> list[list[int]]:
    """``[bos] + tokens(line)`` per line (cut to ``max_tokens``) with the tokenizer in ``folder``."""
    folder = Path(folder)
    encode, bos = encoder(load_tokenizer(folder)), special_ids(folder).bos
    head = [bos] if bos is not None else []
    return [(head + list(encode(line)))[:max_tokens] for line in lines]


def _score_logits(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loss of ``targets`` [n] under ``logits`` [n, vocab] (the ``nll`` metric), and the id ranked first."""
    return metric("nll", LOGITS).score(logits, targets)["nll"], top1(logits)


def _aligned(nll: np.ndarray, top1: np.ndarray, starts: list[int], to_original) -> tuple[np.ndarray, np.ndarray]:
    """Scores over a re-encoded (trimmed) sequence → scores per original token.

    ``nll[k]``/``top1[k]`` predict trimmed position ``k + 1``; original token ``j`` spans trimmed
    positions ``starts[j] .. starts[j+1]-1``.
    """
    ends = starts[1:] + [len(nll) + 1]
    out_nll = np.array([nll[s - 1 : e - 1].sum() for s, e in zip(starts[1:], ends[1:])])
    out_top = to_original[top1[np.asarray(starts[1:], dtype=np.int64) - 1]]
    return out_nll, out_top


def score_onnx(
    export_dir: str | Path, sequences: Sequence[Sequence[int]], provider: str = "cpu", factors: dict | None = None
) -> Scores:
    """Score an export folder (``model.onnx`` + config; trimmed or not) on original-id sequences;
    ``factors``: a LoRA update applied at run time (an export with ``lora_inputs``)."""
    from ..data.vocab_map import load_id_map
    from ..runtime.adapter import lora_feeds
    from ..runtime.session import DecoderSession, KVShape

    export_dir = Path(export_dir)
    config = read_config(export_dir)
    decoder = DecoderSession(export_dir / "model.onnx", KVShape.from_config(config), provider)
    if decoder.head is not None:
        raise EdgecompError(
            f"{export_dir}: a head-trimmed export scores the text's own tokens as well, so its "
            "perplexity of that text is not comparable (score the export built without --trim-head)"
        )
    if factors is not None:
        layout = read_manifest(export_dir).get("lora_inputs")
        if layout is None:
            raise EdgecompError(f"{export_dir} takes no run-time adapter")
        decoder.set_adapter(lora_feeds(layout, factors))
    id_map = load_id_map(export_dir)
    scores = Scores([], [])
    for original in sequences:
        if len(original) < 2:
            scores.nll.append(np.zeros(0))
            scores.top1.append(np.zeros(0, dtype=np.int64))
            continue
        if id_map is None:
            ids, starts = list(original), None
        else:
            ids, starts = id_map.to_trimmed_aligned(original)
        ids_arr = np.asarray(ids, dtype=np.int64)
        cache = decoder.empty_cache(1)
        nll_parts, top_parts = [], []
        for begin in range(0, len(ids) - 1, CHUNK):
            chunk = ids_arr[begin : min(begin + CHUNK, len(ids) - 1)]
            logits, cache = decoder.run(chunk[None, :], cache)
            nll, top = _score_logits(logits[0], ids_arr[begin + 1 : begin + 1 + len(chunk)])
            nll_parts.append(nll)
            top_parts.append(top)
        nll, top = np.concatenate(nll_parts), np.concatenate(top_parts)
        if id_map is not None:
            nll, top = _aligned(nll, top, starts, id_map.to_original)
        scores.nll.append(nll)
        scores.top1.append(top.astype(np.int64))
    return scores


def score_torch(checkpoint_dir: str | Path, sequences: Sequence[Sequence[int]]) -> Scores:
    """Score a PyTorch checkpoint (fp32, eval mode) on the same sequences."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.float32, local_files_only=True).eval()
    scores = Scores([], [])
    with torch.inference_mode():
        for ids in sequences:
            if len(ids) < 2:
                scores.nll.append(np.zeros(0))
                scores.top1.append(np.zeros(0, dtype=np.int64))
                continue
            logits = model(torch.tensor([list(ids)])).logits[0, :-1].float().numpy()
            nll, top = _score_logits(logits, np.asarray(ids[1:], dtype=np.int64))
            scores.nll.append(nll)
            scores.top1.append(top.astype(np.int64))
    return scores


def perplexity(scores: Scores) -> float:
    return scores.perplexity
