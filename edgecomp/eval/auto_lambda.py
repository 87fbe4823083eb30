"""Choosing λ (``task + λ·lang_tgt − λ·lang_src``) from unlabeled target-language text only.

Each candidate composition summarizes the same unlabeled articles, and each summary gets

    score = [written in the target language] × support × distinct-2

- *target language*: the language identifier's guess (:mod:`.language_id`);
- *support*: the share of the summary's words (ROUGE tokens: segmented, stemmed) that occur in
  its article. A summary in the wrong language shares almost none, one that drifts off the article
  (too large a λ turns the task adapter into a language model) shares few;
- *distinct-2*: the share of distinct word bigrams, which falls when decoding loops.

The λ with the highest mean score wins (ties go to the smaller λ, the smaller change to the task
adapter). No reference summary is read. The criterion was fixed before it was compared with the
labelled best λ; docs/results.md reports that comparison per language.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..console import progress
from ..errors import EdgecompError


def distinct_2(tokens: Sequence[str]) -> float:
    bigrams = list(zip(tokens, tokens[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def support(summary_tokens: Sequence[str], article_tokens: Sequence[str]) -> float:
    if not summary_tokens:
        return 0.0
    seen = set(article_tokens)
    return sum(t in seen for t in summary_tokens) / len(summary_tokens)


def summary_scores(articles: Sequence[str], summaries: Sequence[str], lang: str) -> dict[str, float]:
    """Mean score, and its three factors, of ``summaries`` of ``articles`` in target ``lang``."""
    from .language_id import identify
    from .rouge import tokens

    guesses = identify(summaries, lang)
    rows = []
    for article, summary, guess in zip(articles, summaries, guesses):
        s = tokens(summary, lang)
        rows.append((float(guess == lang), support(s, tokens(article, lang)), distinct_2(s)))
    n = len(rows)
    return {
        "score": sum(a * b * c for a, b, c in rows) / n,
        "target_lang": sum(r[0] for r in rows) / n,
        "support": sum(r[1] for r in rows) / n,
        "distinct_2": sum(r[2] for r in rows) / n,
    }


def unlabeled_scores(
    grid: dict[float, Path],
    unlabeled: Path,
    lang: str,
    *,
    limit: int = 16,
    batch_size: int = 8,
    max_new_tokens: int = 64,
    article_tokens: int = 448,
) -> dict[str, dict]:
    """``{λ: scores and two example summaries}`` for each candidate export in ``grid``."""
    from ..data.readers import read_lines
    from ..runtime.decoding import Decoding
    from ..runtime.model import OnnxCausalLM
    from ..runtime.summarize import summarize_many

    articles = read_lines(unlabeled)[:limit]
    if len(articles) < 2:
        raise EdgecompError(f"{unlabeled}: need at least 2 unlabeled articles (one a line) to choose λ")
    table = {}
    with progress(f"summarizing {len(articles)} unlabeled articles for {len(grid)} values of λ", len(grid)) as advance:
        for lam, export in sorted(grid.items()):
            model = OnnxCausalLM.load(export)
            summaries = [
                r["summary"]
                for r in summarize_many(
                    model,
                    articles,
                    Decoding(max_new_tokens=max_new_tokens),
                    batch_size=batch_size,
                    article_tokens=article_tokens,
                    progress=False,
                )
            ]
            table[f"{lam:g}"] = {
                **{k: round(v, 4) for k, v in summary_scores(articles, summaries, lang).items()},
                "examples": summaries[:2],
            }
            advance(1)
    return table


def choose_lambda(table: dict[str, dict]) -> float:
    """The λ with the best score; the smaller one on a tie."""
    return min((float(lam) for lam in table), key=lambda lam: (-table[f"{lam:g}"]["score"], lam))


def pick_lambda(
    resolve,
    grid: list[float],
    unlabeled: Path,
    lang: str,
    *,
    quantize: str = "int8",
    base: str | None = None,
    **decoding,
) -> float:
    """Export ``resolve(λ)`` — the composition with λt = λs = λ — for each λ in ``grid`` (cached)
    and return the best-scored λ for target ``lang``, printing the table."""
    from rich.table import Table

    from ..console import console
    from ..export.merge_export import cached_export

    exports = {lam: cached_export(resolve(lam), quantize=quantize, base=base) for lam in grid}
    table = unlabeled_scores(exports, unlabeled, lang, **decoding)
    shown = Table(title=f"λ from unlabeled {lang} text ({unlabeled.name})")
    for column in ("λ", "score", "in target language", "support", "distinct-2"):
        shown.add_column(column, justify="right")
    for lam, row in table.items():
        shown.add_row(
            lam, f"{row['score']:.3f}", f"{row['target_lang']:.2f}", f"{row['support']:.2f}", f"{row['distinct_2']:.2f}"
        )
    console.print(shown)
    return choose_lambda(table)
