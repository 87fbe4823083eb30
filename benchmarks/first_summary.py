"""How long ``edgecomp summarize FILE`` (no ``--model``) takes on first use and after.

Each run is a fresh process of the installed ``edgecomp`` command, timed from its start to the
first byte of the summary on stdout (time to first token) and to its exit. The cache starts empty
(a new ``EDGECOMP_HOME``), so the first run pays for everything a new install does: assembling the
default base's GGUF from its package, converting it, building the int8 base export with run-time
LoRA inputs. Then another language (shared export: nothing to build), the same language again,
and with ``--merge`` (one export per composition) a new language and a repeat:

    python benchmarks/first_summary.py --out runs/first-summary.json

Prints one row per run and writes them as JSON. Set ``--home`` to reuse a cache instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

RUNS = [
    ("first use: vi, cache empty", ["data/demo/article_vi.txt"]),
    ("new language: sw", ["data/demo/article_sw.txt"]),
    ("same language again: sw", ["data/demo/article_sw.txt"]),
    ("new language: fr", ["data/demo/article_fr.txt"]),
    ("--merge, new composition: hi", ["data/demo/article_hi.txt", "--merge"]),
    ("--merge, same again: hi", ["data/demo/article_hi.txt", "--merge"]),
]


def timed(args: list[str], env: dict) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["edgecomp", "summarize", *args, "--max-new-tokens", "48"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    first = None
    out = b""
    while True:
        chunk = proc.stdout.read1(4096)
        if not chunk:
            break
        if first is None and chunk.strip():
            first = time.perf_counter() - start
        out += chunk
    err = proc.stderr.read().decode("utf-8", "replace")
    proc.wait()
    return {
        "exit": proc.returncode,
        "first_token_s": round(first, 2) if first else None,
        "total_s": round(time.perf_counter() - start, 2),
        "summary": out.decode("utf-8", "replace").strip(),
        "said": [line for line in err.splitlines() if line.startswith(("language:", "built"))],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--home", type=Path, default=None, help="EDGECOMP_HOME to use (default: a new empty one)")
    args = ap.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="edgecomp-first-"))
    env = {**os.environ, "EDGECOMP_HOME": str(home)}
    rows = []
    for label, run in RUNS:
        row = {"run": label, **timed(run, env)}
        rows.append(row)
        print(
            f"{label:32s} first token {row['first_token_s']} s, total {row['total_s']} s, exit {row['exit']}; "
            f"{' | '.join(row['said'])}",
            flush=True,
        )
        args.out.write_text(
            json.dumps(
                {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "home": str(home), "runs": rows},
                indent=2,
                ensure_ascii=False,
            )
        )


if __name__ == "__main__":
    main()
