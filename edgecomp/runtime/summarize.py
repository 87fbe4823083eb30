"""``summarize``: one article in, one summary out, with the timings a user of the device cares about.

Articles longer than the prompt budget are summarized map-reduce style: the article's tokens are
cut into at most ``max_chunks`` near-equal chunks that each fit the prompt, every chunk is
summarized (several at once, left-padded), and the chunk summaries, joined, are summarized again
(again by chunks if they still do not fit). A rich progress bar on stderr follows the passes.
``summarize_many`` runs a list of articles in batches.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import EdgecompError
from .decoding import Decoding
from .generate import Generation, generate, generate_batch
from .model import OnnxCausalLM
from .stream import TextStream

# Longest prompt plus summary we run: attention cost and KV memory grow with it, and training
# never shows the model longer articles than this.
MAX_CONTEXT = 2048
# Articles needing more chunks than this are cut to this many (the rest is not read), so time and
# memory stay bounded whatever the input.
MAX_CHUNKS = 8
# Chunk prompts summarized together (one left-padded batch).
BATCH_SIZE = 4

OnText = Callable[[str], None]


@dataclass
class _Spent:
    """The decoding settings of one call, and the time and tokens spent so far."""

    decoding: Decoding
    prefill_s: float = 0.0
    decode_s: float = 0.0
    steps: int = 0
    prompt_tokens: int = 0
    final_tokens: int = 0  # new tokens of the last pass (the summary returned), eos included

    def add(self, prompts: Sequence[Sequence[int]], outs: Sequence[Generation], shared: bool) -> None:
        """Count a pass over ``prompts``; a batch (``shared``) spent its time once for all rows."""
        times = outs[:1] if shared else outs
        self.prefill_s += sum(o.prefill_s for o in times)
        self.decode_s += sum(o.decode_s for o in times)
        self.steps += sum(o.steps for o in outs)
        self.prompt_tokens += sum(len(p) for p in prompts)


class _Prompter:
    """Builds ``[bos] + article + instruction`` from token ids (what ``prompt_ids`` builds from text)."""

    def __init__(self, model: OnnxCausalLM, max_new_tokens: int):
        self.model = model
        self.head = [model.bos_id] if model.bos_id is not None else []
        self.tail = list(model.encode(model.instruction))
        context = min(model.max_positions, MAX_CONTEXT)
        self.budget = context - max_new_tokens - len(self.head) - len(self.tail)
        if max_new_tokens < 1 or self.budget < 1:
            raise EdgecompError(
                f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the "
                f"{context}-token context; lower max_new_tokens"
            )

    def article(self, text: str) -> list[int]:
        return list(self.model.encode(text.strip()))

    def prompt(self, article: Sequence[int]) -> list[int]:
        return self.head + list(article[: self.budget]) + self.tail

    def chunks(self, article: Sequence[int], max_chunks: int) -> tuple[list[list[int]], bool]:
        """Near-equal chunks that each fit; at most ``max_chunks`` (True if some text was left out)."""
        count = math.ceil(len(article) / self.budget)
        truncated = count > max_chunks
        if truncated:
            count, article = max_chunks, article[: max_chunks * self.budget]
        size = math.ceil(len(article) / count)
        return [list(article[i : i + size]) for i in range(0, len(article), size)], truncated


def _summaries(
    model: OnnxCausalLM, prompts: list[list[int]], d: _Spent, batch_size: int, advance=None
) -> list[list[int]]:
    """Summary token ids (eos removed) for each prompt: batched for greedy/sampling, one by one for beams."""
    results: list[list[int]] = []
    step = batch_size if d.decoding.num_beams == 1 else 1
    for start in range(0, len(prompts), step):
        group = prompts[start : start + step]
        if len(group) == 1:
            outs, shared = [_one(model, group[0], d)], False
        else:
            outs, shared = generate_batch(model.decoder, group, d.decoding, eos_ids=model.eos_ids), True
        d.add(group, outs, shared)
        results += [[t for t in o.tokens if t not in model.eos_ids] for o in outs]
        if advance is not None:
            advance(len(group))
    return results


def _one(model: OnnxCausalLM, prompt: list[int], d: _Spent, on_token=None) -> Generation:
    return generate(model.decoder, prompt, d.decoding, eos_ids=model.eos_ids, on_token=on_token)


def _final(model: OnnxCausalLM, prompt: list[int], d: _Spent, on_text: OnText | None) -> str:
    stream = TextStream(model.decode, on_text, model.eos_ids) if on_text is not None else None
    out = _one(model, prompt, d, stream.push if stream is not None else None)
    d.add([prompt], [out], shared=False)
    d.final_tokens = len(out.tokens)
    if stream is not None:
        stream.close()
    return model.decode([t for t in out.tokens if t not in model.eos_ids]).strip()


def _map_reduce(
    model: OnnxCausalLM,
    p: _Prompter,
    article: list[int],
    d: _Spent,
    max_chunks: int,
    batch_size: int,
    on_text: OnText | None,
    progress: bool,
) -> tuple[str, int, bool]:
    """Summary of an article longer than the budget; also the number of first-level chunks and
    whether the article was cut to ``max_chunks`` chunks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..console import console

    chunks, truncated = p.chunks(article, max_chunks)
    first = len(chunks)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not progress,
    ) as bar:
        task = bar.add_task(f"Summarizing {first} chunks", total=first + 1)
        level = 0
        while True:
            level += 1
            bar.update(task, description=f"Summarizing chunks (pass {level})")
            summaries = _summaries(model, [p.prompt(c) for c in chunks], d, batch_size, lambda n: bar.advance(task, n))
            joined = p.article("\n".join(model.decode(s).strip() for s in summaries))
            if len(joined) <= p.budget:
                break
            again, _ = p.chunks(joined, max_chunks)
            if len(again) >= len(chunks):  # summaries no shorter than their chunks: stop cutting
                joined = joined[: p.budget]
                break
            chunks = again
            bar.update(task, total=bar.tasks[0].total + len(chunks))
        bar.update(task, description="Summarizing the chunk summaries")
        summary = _final(model, p.prompt(joined), d, on_text)
        bar.advance(task, 1)
    return summary, first, truncated


def _load(model: str | Path | OnnxCausalLM, provider: str, threads: int | None) -> tuple[OnnxCausalLM, float]:
    if isinstance(model, OnnxCausalLM):
        return model, 0.0
    start = time.perf_counter()
    loaded = OnnxCausalLM.load(model, provider, threads=threads)
    return loaded, time.perf_counter() - start


def _result(summary: str, d: _Spent, load_s: float, new_tokens: int, chunks: int, truncated: bool) -> dict:
    return {
        "summary": summary,
        "prompt_tokens": d.prompt_tokens,
        "new_tokens": new_tokens,
        "chunks": chunks,
        "truncated": truncated,
        "timings": {
            "load_s": load_s,
            "prefill_s": d.prefill_s,
            "decode_s": d.decode_s,
            "tokens_per_s": d.steps / d.decode_s if d.steps else 0.0,
        },
    }


def summarize(
    model_dir: str | Path | OnnxCausalLM,
    text: str,
    decoding: Decoding = Decoding(),
    *,
    provider: str = "cpu",
    on_token: OnText | None = None,
    max_chunks: int = MAX_CHUNKS,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    threads: int | None = None,
) -> dict:
    """Summarize ``text`` with the export in ``model_dir`` (or an already loaded model), decoded per ``decoding``.

    Returns ``summary`` (decoded, stripped), ``prompt_tokens`` (summed over passes),
    ``new_tokens`` (of the summary returned), ``chunks`` (1, or how many pieces a long article was
    cut into), ``truncated`` (the article needed more than ``max_chunks`` chunks; the rest was not
    read) and ``timings``: ``load_s``, ``prefill_s`` (prompt passes, each yields a first token),
    ``decode_s`` (every later token) and ``tokens_per_s`` (decode steps per second, summed over
    the rows of a batch; 0 when there were none).

    ``on_token(text)`` receives the summary as it is generated, in pieces that join to
    ``summary`` (only the final pass of a long article streams). ``progress`` shows a bar on
    stderr while the chunks of a long article are summarized.
    """
    if not text.strip():
        raise EdgecompError("nothing to summarize: the input text is empty")
    if max_chunks < 1:
        raise EdgecompError(f"max_chunks must be at least 1 (got {max_chunks})")
    model, load_s = _load(model_dir, provider, threads)
    p = _Prompter(model, decoding.max_new_tokens)
    d = _Spent(decoding)
    article = p.article(text)
    if len(article) <= p.budget:
        summary, chunks, truncated = _final(model, p.prompt(article), d, on_token), 1, False
    else:
        summary, chunks, truncated = _map_reduce(model, p, article, d, max_chunks, batch_size, on_token, progress)
    return _result(summary, d, load_s, d.final_tokens, chunks, truncated)


def summarize_many(
    model_dir: str | Path | OnnxCausalLM,
    texts: Sequence[str],
    decoding: Decoding = Decoding(),
    *,
    provider: str = "cpu",
    batch_size: int = 8,
    max_chunks: int = MAX_CHUNKS,
    progress: bool = True,
    threads: int | None = None,
    article_tokens: int | None = None,
) -> list[dict]:
    """``summarize`` for each text, the model loaded once and articles that fit run ``batch_size``
    at a time (left-padded; greedy and sampling only, beam search goes one by one). Each result
    is what ``summarize`` returns for that text alone, except that a batch's rows share its timings
    (``load_s`` is counted on the first result only). ``article_tokens`` reads only the first N
    tokens of each article (as task training does), so no article is summarized by chunks."""
    if any(not t.strip() for t in texts):
        raise EdgecompError("nothing to summarize: one of the input texts is empty")
    model, load_s = _load(model_dir, provider, threads)
    p = _Prompter(model, decoding.max_new_tokens)
    articles = [p.article(t)[:article_tokens] for t in texts]
    results: list[dict | None] = [None] * len(texts)
    short = [i for i, a in enumerate(articles) if len(a) <= p.budget]
    step = batch_size if decoding.num_beams == 1 else 1
    for start in range(0, len(short), step):
        group = short[start : start + step]
        prompts = [p.prompt(articles[i]) for i in group]
        if len(group) == 1:
            outs = [_one(model, prompts[0], _Spent(decoding))]
        else:
            outs = generate_batch(model.decoder, prompts, decoding, eos_ids=model.eos_ids)
        for i, prompt, out in zip(group, prompts, outs):
            row = _Spent(decoding)
            row.add([prompt], [out], shared=False)
            text = model.decode([t for t in out.tokens if t not in model.eos_ids]).strip()
            results[i] = _result(text, row, 0.0, len(out.tokens), 1, False)
    for i, article in enumerate(articles):
        if results[i] is None:
            d = _Spent(decoding)
            summary, chunks, truncated = _map_reduce(model, p, article, d, max_chunks, BATCH_SIZE, None, progress)
            results[i] = _result(summary, d, 0.0, d.final_tokens, chunks, truncated)
    if results:
        results[0]["timings"]["load_s"] = load_s
    return results  # type: ignore[return-value]
