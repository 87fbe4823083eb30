"""Greedy search, beam search and sampling over a :class:`~edgecomp.runtime.session.DecoderSession`.

This loop is the product, so it is ours, in numpy: the prompt runs once (``prefill``), then every
step feeds one token per live sequence and reuses the KV cache. Beam search follows Hugging Face's
``generate(num_beams=N, early_stopping=True)`` step for step (same candidate count, same finishing
rule, same length normalisation), so a PyTorch reference and this runtime pick the same summary.
``generate_batch`` runs several prompts at once (left-padded, greedy or sampled); each row picks
what ``generate`` picks for that prompt alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from ..errors import EdgecompError
from .decoding import Decoding
from .session import KVCache

OnToken = Callable[[int], None]


class Decoder(Protocol):
    def prefill(self, ids: Sequence[int]) -> tuple[np.ndarray, KVCache]: ...

    def prefill_batch(self, prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, KVCache]: ...

    def step(self, tokens: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]: ...


@dataclass(frozen=True)
class Generation:
    """New tokens (ending with an eos id if one was produced) and where the time went.

    ``steps`` counts decode passes: each feeds one token per live sequence (one, or ``num_beams``),
    so ``steps / decode_s`` is the decode speed in tokens per second per sequence.
    """

    tokens: list[int]
    prefill_s: float
    decode_s: float
    steps: int


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _one_sequence(
    decoder: Decoder,
    logits: np.ndarray,
    cache: KVCache,
    choose: Callable[[np.ndarray], int],
    max_new_tokens: int,
    eos_ids: tuple[int, ...],
    on_token: OnToken | None = None,
) -> tuple[list[int], int]:
    """Greedy or sampled decoding: choose a token, stop on eos or the budget, else feed it back."""
    tokens: list[int] = []
    steps = 0
    while True:
        token = choose(logits[0])
        tokens.append(token)
        if on_token is not None:
            on_token(token)
        if token in eos_ids or len(tokens) == max_new_tokens:
            return tokens, steps
        logits, cache = decoder.step(np.array([token]), cache)
        steps += 1


def _beam_search(
    decoder: Decoder,
    logits: np.ndarray,
    cache: KVCache,
    num_beams: int,
    max_new_tokens: int,
    eos_ids: tuple[int, ...],
    length_penalty: float,
) -> tuple[list[int], int]:
    """Hugging Face's beam search with ``early_stopping=True``, for one prompt.

    Each step scores every continuation of every live beam by summed log-probability and keeps the
    best ``max(2, 1 + len(eos_ids)) * num_beams`` (enough that ``num_beams`` of them do not end).
    Of the best ``num_beams`` candidates, those ending in eos (or reaching the budget) become
    hypotheses scored ``sum_logprob / new_tokens ** length_penalty``; the best ``num_beams``
    unfinished candidates live on. Search stops once ``num_beams`` hypotheses exist.
    """
    vocab = logits.shape[-1]
    keep = max(2, 1 + len(eos_ids)) * num_beams
    scores = np.zeros(1)  # summed log-probs of the live beams; the prompt is one beam at first
    beams: list[list[int]] = [[]]
    finished: list[tuple[float, list[int]]] = []
    steps = 0
    for length in range(1, max_new_tokens + 1):
        totals = (log_softmax(logits.astype(np.float64)) + scores[:, None]).ravel()
        best = np.argpartition(-totals, keep - 1)[:keep]
        best = best[np.argsort(-totals[best], kind="stable")]
        origin, token, total = best // vocab, best % vocab, totals[best]
        ends = np.isin(token, eos_ids) | (length == max_new_tokens)

        for i in np.flatnonzero(ends[:num_beams]):
            finished.append((total[i] / length**length_penalty, beams[origin[i]] + [int(token[i])]))
        finished = sorted(finished, key=lambda h: h[0], reverse=True)[:num_beams]
        live = np.flatnonzero(~ends)[:num_beams]
        if len(finished) == num_beams or live.size == 0:
            break

        beams = [beams[origin[i]] + [int(token[i])] for i in live]
        scores = total[live]
        logits, cache = decoder.step(token[live], cache.select(origin[live]))
        steps += 1
    return finished[0][1], steps


def generate(
    decoder: Decoder,
    prompt: Sequence[int],
    decoding: Decoding,
    *,
    eos_ids: tuple[int, ...] = (),
    on_token: OnToken | None = None,
) -> Generation:
    """Continue ``prompt`` per ``decoding``: greedy, beam search (``num_beams > 1``) or sampling.

    ``on_token(id)`` is called with each new token as it is chosen (greedy and sampling); beam
    search knows its tokens only at the end and reports them all then.
    """
    if not prompt:
        raise EdgecompError("cannot generate from an empty prompt")
    d = decoding
    start = time.perf_counter()
    logits, cache = decoder.prefill(prompt)
    prefilled = time.perf_counter()
    if d.num_beams > 1:
        tokens, steps = _beam_search(decoder, logits, cache, d.num_beams, d.max_new_tokens, eos_ids, d.length_penalty)
        for token in tokens if on_token is not None else ():
            on_token(token)
    else:
        tokens, steps = _one_sequence(decoder, logits, cache, d.chooser(), d.max_new_tokens, eos_ids, on_token)
    return Generation(tokens, prefilled - start, time.perf_counter() - prefilled, steps)


def generate_batch(
    decoder: Decoder,
    prompts: Sequence[Sequence[int]],
    decoding: Decoding,
    *,
    eos_ids: tuple[int, ...] = (),
) -> list[Generation]:
    """Greedy or sampled continuations of several prompts in one left-padded batch (no beams).

    Row i picks what ``generate(prompts[i], ...)`` picks (sampling rows each draw from their own
    generator seeded with ``seed``). Finished rows leave the batch. Timings are the batch's: every
    row reports the shared prefill and decode time and its own decode steps.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise EdgecompError("cannot generate from an empty prompt")
    if decoding.num_beams > 1:
        raise EdgecompError("beam search runs one prompt at a time (generate), not in a batch")
    max_new_tokens = decoding.max_new_tokens
    choose = [decoding.chooser() for _ in prompts]
    tokens: list[list[int]] = [[] for _ in prompts]
    steps = [0] * len(prompts)

    start = time.perf_counter()
    logits, cache = decoder.prefill_batch(prompts)
    prefilled = time.perf_counter()
    live = list(range(len(prompts)))  # prompt index of each cache row
    while True:
        chosen = []
        for row, index in enumerate(live):
            token = choose[index](logits[row])
            tokens[index].append(token)
            chosen.append(token)
        going = [
            row for row, index in enumerate(live) if chosen[row] not in eos_ids and len(tokens[index]) < max_new_tokens
        ]
        if not going:
            break
        if len(going) < len(live):
            cache = cache.select(going)
            live = [live[row] for row in going]
            chosen = [chosen[row] for row in going]
        logits, cache = decoder.step(np.array(chosen), cache)
        for index in live:
            steps[index] += 1
    decode_s = time.perf_counter() - prefilled
    return [Generation(t, prefilled - start, decode_s, s) for t, s in zip(tokens, steps)]
