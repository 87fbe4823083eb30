"""Throughput of ``edgecomp summarize --input docs.jsonl`` batched against one document at a time.

100 unlabeled articles (20 each of en, sw, vi, fr, id from ``data/zero-shot/unlabeled``), each routed
to its detected language's composition of the shipped library, summarized with ``--batch-size 8``
and with ``--batch-size 1`` (the one-by-one loop), alternating, into fresh outputs; the export cache
is warm (run ``edgecomp summarize`` once before). Reads each run's final line (new tokens, seconds
of summarizing, tokens/s) and prints the ratio:

    python benchmarks/batch_summarize.py --out runs/batch-summarize.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from pathlib import Path

LANGUAGES = ("en", "sw", "vi", "fr", "id")
PER_LANGUAGE = 20
FINAL = re.compile(r"(\d+) summarized.*?; (\d+) new tokens in ([\d.]+) s of summarizing \(([\d.]+) tokens/s\)")


def documents(path: Path) -> None:
    rows = []
    for lang in LANGUAGES:
        lines = [
            line.strip()
            for line in Path(f"data/zero-shot/unlabeled/{lang}.txt").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        rows += [{"id": f"{lang}-{n}", "text": text} for n, text in enumerate(lines[:PER_LANGUAGE])]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def run(docs: Path, out: Path, batch_size: int, max_new_tokens: int) -> dict:
    start = time.perf_counter()
    done = subprocess.run(
        [
            "edgecomp",
            "summarize",
            "--input",
            str(docs),
            "--output",
            str(out),
            "--batch-size",
            str(batch_size),
            "--max-new-tokens",
            str(max_new_tokens),
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    match = FINAL.search(done.stderr)
    if done.returncode or not match:
        raise SystemExit(f"batch size {batch_size} failed: {done.stderr[-2000:]}")
    count, tokens, seconds, rate = match.groups()
    return {
        "batch_size": batch_size,
        "documents": int(count),
        "new_tokens": int(tokens),
        "summarizing_s": float(seconds),
        "tokens_per_s": float(rate),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs.jsonl"
        documents(docs)
        for r in range(args.rounds):
            for batch_size in (8, 1):
                row = {
                    "round": r,
                    **run(docs, Path(tmp) / f"out-{r}-{batch_size}.jsonl", batch_size, args.max_new_tokens),
                }
                rows.append(row)
                print(row, flush=True)
    batched = sum(r["new_tokens"] for r in rows if r["batch_size"] == 8) / sum(
        r["summarizing_s"] for r in rows if r["batch_size"] == 8
    )
    single = sum(r["new_tokens"] for r in rows if r["batch_size"] == 1) / sum(
        r["summarizing_s"] for r in rows if r["batch_size"] == 1
    )
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "runs": rows,
        "tokens_per_s": {"batch_8": round(batched, 1), "one_by_one": round(single, 1)},
        "ratio": round(batched / single, 2),
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"batched {batched:.1f} tokens/s, one by one {single:.1f} tokens/s: {batched / single:.2f}x")


if __name__ == "__main__":
    main()
