"""Write ``data/demo/article_XX.txt``: one news article in each shipped language but Swahili.

The same NTREX-128 document in every language (its body, without the headline), taken from past
the 60 documents ``data/zero-shot/eval`` keeps, so no demo article is an evaluation document:

    python tools/make_demo_articles.py ../shared/data data/demo
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LANGUAGES = ("en", "hi", "vi", "id", "fr", "es", "ar")
DOCUMENT = 64  # 0-based line of the NTREX files: a short story (175 English words)


def main(shared: Path, out: Path) -> None:
    for lang in LANGUAGES:
        lines = (shared / "eval" / "ntrex_headline" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()
        doc = json.loads(lines[DOCUMENT])
        (out / f"article_{lang}.txt").write_text(doc["text"].strip() + "\n", encoding="utf-8")
        print(f"article_{lang}.txt: {doc['id']}, {len(doc['text'].split())} words")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
