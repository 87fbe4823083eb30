"""Cut the bundled zero-shot subsets (data/zero-shot) out of the shared data folder.

    python tools/make_zero_shot_data.py ../shared/data data/zero-shot

Deterministic (file order, fixed slices): running it again gives the same bytes. What it takes:

- ``mono/XX.txt``: language-adapter text, lines 501 onward of each shared mono file (lines 1-500
  hold the FLORES lines the quantization table calibrates on and scores), up to ``MONO_BYTES``.
- ``unlabeled/XX.txt``: unlabeled "articles" for choosing λ without labels: consecutive mono lines
  from the last part of each file (disjoint from ``mono/``), joined until ``ARTICLE_WORDS`` words,
  one article a line.
- ``task/*.jsonl``: English XL-Sum and MasakhaNEWS-headline pairs and Urdu XL-Sum pairs for task
  adapters, articles cut to ``ARTICLE_CHARS`` characters (training reads only the first few hundred
  tokens).
- ``eval/SET/XX.jsonl``: the first ``EVAL_DOCS`` documents of each evaluation file, articles cut
  the same way. Evaluation files never go into training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LANGS = ("en", "es", "fr", "sw", "hi", "ar", "id", "vi")
MONO_BYTES = 160_000
UNLABELED_ARTICLES = 24
ARTICLE_WORDS = 120
ARTICLE_CHARS = 2400
TASK_PAIRS = 300
EVAL_DOCS = 60
EVAL_SETS = {
    "xlsum": ("id", "vi"),
    "masakhanews": ("sw", "fr"),
    "ntrex_headline": ("es", "fr", "sw", "hi", "ar", "id", "vi"),
}


def _lines(path: Path) -> list[str]:
    return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _pairs(path: Path, count: int) -> list[dict]:
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()][:count]
    return [
        {"id": r["id"], "lang": r["lang"], "text": r["text"][:ARTICLE_CHARS], "summary": r["summary"]} for r in rows
    ]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(x + "\n" for x in lines), encoding="utf-8")


def _write_pairs(path: Path, rows: list[dict]) -> None:
    _write_lines(path, [json.dumps(r, ensure_ascii=False) for r in rows])


def _articles(lines: list[str]) -> list[str]:
    articles, current = [], []
    for line in lines:
        current.append(line)
        if sum(len(x.split()) for x in current) >= ARTICLE_WORDS:
            articles.append(" ".join(current))
            current = []
        if len(articles) == UNLABELED_ARTICLES:
            break
    return articles


def main(shared: Path, out: Path) -> None:
    for lang in LANGS:
        lines = _lines(shared / "mono" / f"{lang}.txt")
        mono, size = [], 0
        for line in lines[500:]:
            size += len(line.encode()) + 1
            if size > MONO_BYTES:
                break
            mono.append(line)
        _write_lines(out / "mono" / f"{lang}.txt", mono)
        tail = lines[500 + len(mono) :]
        _write_lines(out / "unlabeled" / f"{lang}.txt", _articles(tail[len(tail) // 2 :]))
    _write_pairs(out / "task" / "xlsum_en.jsonl", _pairs(shared / "task/en/xlsum_en.jsonl", TASK_PAIRS))
    _write_pairs(out / "task" / "xlsum_ur.jsonl", _pairs(shared / "task/ur/xlsum_ur.jsonl", TASK_PAIRS))
    for name, langs in EVAL_SETS.items():
        for lang in langs:
            src = shared / "eval" / name / (f"{lang}_dev.jsonl" if name == "masakhanews" else f"{lang}.jsonl")
            _write_pairs(out / "eval" / name / f"{lang}.jsonl", _pairs(src, EVAL_DOCS))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
