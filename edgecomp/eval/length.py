"""Summary length in words (whitespace-separated), beside the reference's."""

from __future__ import annotations

from typing import Sequence

from ..metrics import SUMMARY, register


@register("length", SUMMARY, "summary and reference length in words", {"words": None, "reference_words": None})
def length(references: Sequence[str], predictions: Sequence[str], lang: str) -> dict[str, list[float]]:
    return {
        "words": [float(len(p.split())) for p in predictions],
        "reference_words": [float(len(r.split())) for r in references],
    }
