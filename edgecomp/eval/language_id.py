"""Which language a summary is written in: Lingua, offline, over the languages edgecomp has data for.

Chosen by accuracy on short text (benchmarks/LANGUAGE_ID.md compares langid.py, langdetect and
Lingua, each over its full label set and restricted to these candidates): Lingua restricted was the
most accurate. Over all of its languages it confuses close pairs on short lines (Indonesian with
Malay); a candidate set names the languages a summary could plausibly be in (the project's, plus
the target) and keeps the question the one we ask: the target language, English, or another one we know.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from ..errors import EdgecompError
from ..metrics import SUMMARY, register

CANDIDATES = ("en", "es", "fr", "sw", "hi", "ar", "id", "vi", "ur")
UNKNOWN = "??"


@lru_cache(maxsize=None)
def detector(candidates: tuple[str, ...]):
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = []
    for code in candidates:
        iso = getattr(IsoCode639_1, code.upper(), None)
        if iso is None:
            raise EdgecompError(f"the language identifier does not know '{code}'")
        codes.append(iso)
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()


def identify(texts: Sequence[str], target: str | None = None) -> list[str]:
    """An ISO 639-1 code for each text (``??`` for text with no letters)."""
    found = detector(tuple(sorted(set(CANDIDATES) | ({target} if target else set()))))
    guesses = []
    for text in texts:
        language = found.detect_language_of(text) if text.strip() else None
        guesses.append(language.iso_code_639_1.name.lower() if language is not None else UNKNOWN)
    return guesses


@register(
    "language",
    SUMMARY,
    "share of summaries identified as written in the target language, and in English (0 or 100 per document)",
    {"target_lang": True, "english": None},
)
def language(references: Sequence[str], predictions: Sequence[str], lang: str) -> dict[str, list[float]]:
    guesses = identify(predictions, lang)
    return {
        "target_lang": [100.0 * (g == lang) for g in guesses],
        "english": [100.0 * (g == "en") for g in guesses],
    }
