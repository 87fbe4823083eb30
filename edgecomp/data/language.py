"""The language a document is written in, for choosing its composition (ISO 639-1 code).

Lingua over all 75 of its languages, not only the shipped ones: a document in a language the
library lacks must be recognised as such (and get its own message), not be forced into the nearest
shipped language. Documents are long enough that the low-accuracy mode, which loads far smaller
models, is as accurate as the full one on the project's articles (benchmarks/LANGUAGE_ID.md).
"""

from __future__ import annotations

from functools import lru_cache

from ..errors import EdgecompError


@lru_cache(maxsize=1)
def _detector():
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``'s language; an error when it has nothing to recognise."""
    language = _detector().detect_language_of(text) if text.strip() else None
    if language is None:
        raise EdgecompError("cannot tell the document's language (no words); pass --lang")
    return language.iso_code_639_1.name.lower()
