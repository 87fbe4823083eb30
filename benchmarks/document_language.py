"""Document-level language detection for choosing a composition: Lingua over all 75 languages.

    python benchmarks/document_language.py

Every document of the bundled evaluation sets (data/zero-shot/eval) and the demo articles, through
edgecomp.data.language.detect_language (low-accuracy mode) and through the high-accuracy mode;
prints accuracy per set and language, the misses, and the time per document (first call included:
it loads the models).
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def documents() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted(Path("data/zero-shot/eval").glob("*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            out.append((path.parent.name, path.stem, json.loads(line)["text"]))
    for path in sorted(Path("data/demo").glob("article_*.txt")):
        out.append(("demo", path.stem.removeprefix("article_"), path.read_text(encoding="utf-8")))
    return out


def main() -> None:
    from lingua import LanguageDetectorBuilder

    from edgecomp.data.language import detect_language

    high = LanguageDetectorBuilder.from_all_languages().build()
    systems = {
        "low accuracy (edgecomp)": detect_language,
        "high accuracy": lambda t: high.detect_language_of(t).iso_code_639_1.name.lower(),
    }
    docs = documents()
    print("| mode | documents | correct | misses | ms/document |")
    print("|---|---|---|---|---|")
    for name, detect in systems.items():
        start = time.perf_counter()
        misses = [(s, lang, got) for s, lang, text in docs if (got := detect(text)) != lang]
        ms = 1000 * (time.perf_counter() - start) / len(docs)
        shown = ", ".join(f"{s}/{lang}→{got}" for s, lang, got in misses[:5]) or "none"
        print(f"| {name} | {len(docs)} | {len(docs) - len(misses)} | {shown} | {ms:.1f} |")


if __name__ == "__main__":
    main()
