"""Which offline language identifier to trust on short summaries: langid.py, langdetect, Lingua.

    python benchmarks/language_id.py ../shared/data/mono

Samples 150 lines of 4-25 words from each mono file (seeded), and reports per-language accuracy
of each identifier over its full label set and, for langid.py and Lingua, restricted to the
project's languages (edgecomp.eval.language_id.CANDIDATES), with the most common confusion and
the time per text. Needs `pip install langid langdetect` beside edgecomp's own Lingua.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

LANGS = ("en", "es", "fr", "sw", "hi", "ar", "id", "vi")


def main(mono: Path) -> None:
    import langid
    from langdetect import DetectorFactory, detect
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    from edgecomp.eval.language_id import CANDIDATES

    rng = random.Random(0)
    samples = {}
    for lang in LANGS:
        lines = [
            x.strip()
            for x in (mono / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
            if 4 <= len(x.split()) <= 25
        ]
        rng.shuffle(lines)
        samples[lang] = lines[:150]
    DetectorFactory.seed = 0
    lingua_all = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models().build()
    lingua_ours = (
        LanguageDetectorBuilder.from_iso_codes_639_1(*(getattr(IsoCode639_1, c.upper()) for c in CANDIDATES))
        .with_preloaded_language_models()
        .build()
    )
    identifier = langid.langid.LanguageIdentifier.from_modelstring(langid.langid.model, norm_probs=False)
    restricted = langid.langid.LanguageIdentifier.from_modelstring(langid.langid.model, norm_probs=False)
    restricted.set_languages(list(CANDIDATES))

    def lingua(detector):
        def guess(text):
            found = detector.detect_language_of(text)
            return found.iso_code_639_1.name.lower() if found else "??"

        return guess

    def langdetect_guess(text):
        try:
            return detect(text)
        except Exception:
            return "??"

    systems = {
        "langid.py (97 languages)": lambda t: identifier.classify(t)[0],
        "langdetect (55 languages)": langdetect_guess,
        "Lingua (75 languages)": lingua(lingua_all),
        f"langid.py ({len(CANDIDATES)} candidates)": lambda t: restricted.classify(t)[0],
        f"Lingua ({len(CANDIDATES)} candidates)": lingua(lingua_ours),
    }
    print("| identifier | mean | " + " | ".join(LANGS) + " | most common confusion | ms/text |")
    print("|---|---|" + "---|" * len(LANGS) + "---|---|")
    for name, guess in systems.items():
        start, acc, confusions = time.perf_counter(), {}, {}
        for lang in LANGS:
            preds = [guess(t) for t in samples[lang]]
            acc[lang] = sum(p == lang for p in preds) / len(preds)
            for p in preds:
                if p != lang:
                    confusions[(lang, p)] = confusions.get((lang, p), 0) + 1
        n = sum(len(v) for v in samples.values())
        worst = max(confusions, key=confusions.get) if confusions else None
        print(
            f"| {name} | {100 * sum(acc.values()) / len(acc):.1f} | "
            + " | ".join(f"{100 * acc[x]:.1f}" for x in LANGS)
            + f" | {f'{worst[0]}→{worst[1]} ({confusions[worst]})' if worst else '-'} | "
            f"{1000 * (time.perf_counter() - start) / n:.1f} |"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
