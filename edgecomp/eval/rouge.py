"""ROUGE-1/2/L (F1, 0-100) by XL-Sum's multilingual scorer, ``multilingual_rouge``.

It is the scorer XL-Sum's own numbers come from: Unicode-aware tokens for every script (the stock
``rouge-score`` tokenizer deletes non-Latin characters and scores Hindi or Arabic as zero), and a
stemmer per language where it has one. Its Snowball stemmers ask NLTK for a stop-word list that
only NLTK's downloader provides, so they are built without it (stop words get stemmed too); the
Hindi stemmer is its own. Tokens that are only whitespace are dropped before scoring: its Thai and
Chinese segmenters return every space as a token, which would let a summary in another language
share "words" with the reference on spaces alone. Japanese is left out: its segmenter needs a
dictionary that only a download provides.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Sequence

from ..errors import EdgecompError
from ..metrics import SUMMARY, register

# ISO 639-1 → the scorer's language names.
LANGUAGE_NAMES = {
    "en": "english",
    "es": "spanish",
    "fr": "french",
    "pt": "portuguese",
    "sw": "swahili",
    "hi": "hindi",
    "ur": "urdu",
    "ar": "arabic",
    "id": "indonesian",
    "vi": "vietnamese",
    "bn": "bengali",
    "tr": "turkish",
    "ru": "russian",
    "zh": "chinese",
    "th": "thai",
    "my": "burmese",
    "de": "german",
    "it": "italian",
    "nl": "dutch",
}
TYPES = ("rouge1", "rouge2", "rougeL")


class _NoBlankTokens:
    """The scorer's tokenizer for a language, minus tokens that are only whitespace."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, text: str) -> list[str]:
        return [t for t in self.inner(text) if t.strip()]


@lru_cache(maxsize=None)
def scorer(lang: str):
    """The multilingual scorer for ``lang`` (ISO 639-1), stemming where the language has a stemmer."""
    from multilingual_rouge import rouge_scorer
    from multilingual_rouge.stemmers import LANG2STEMMER

    name = LANGUAGE_NAMES.get(lang)
    if name is None:
        raise EdgecompError(
            f"no ROUGE tokenizer settings for language '{lang}' (known: {', '.join(sorted(LANGUAGE_NAMES))})"
        )
    stemmer = None
    if name in LANG2STEMMER:
        from nltk.stem.snowball import SnowballStemmer

        stemmer = SnowballStemmer(name).stem if name in SnowballStemmer.languages else LANG2STEMMER[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "unknown stemmer language" for languages without one
        s = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=stemmer is not None, lang=name, callable_stemmer=stemmer)
    s._tokenizer = _NoBlankTokens(s._tokenizer)
    return s


def tokens(text: str, lang: str) -> list[str]:
    """The tokens ROUGE compares for ``text`` in ``lang`` (lower-cased, segmented, stemmed)."""
    from multilingual_rouge.tokenization_wrapper import tokenize

    s = scorer(lang)
    return tokenize(text, s._stemmer, s._tokenizer)


@register(
    "rouge",
    SUMMARY,
    "ROUGE-1/2/L F1 (0-100) against the reference, XL-Sum's multilingual scorer",
    {t: True for t in TYPES},
)
def rouge(references: Sequence[str], predictions: Sequence[str], lang: str) -> dict[str, list[float]]:
    s = scorer(lang)
    out: dict[str, list[float]] = {t: [] for t in TYPES}
    for ref, pred in zip(references, predictions):
        scores = s.score(ref, pred)
        for t in TYPES:
            out[t].append(100.0 * scores[t].fmeasure)
    return out
