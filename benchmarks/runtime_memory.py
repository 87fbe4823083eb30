"""Where a summarize process's memory goes, stage by stage, for an export.

    .venv/bin/python benchmarks/runtime_memory.py --model EXPORT [--article data/demo/article_sw.txt]

One process, as ``edgecomp summarize`` does it: imports, tokenizer, ONNX Runtime session (with
the weight pages the load no longer needs given back, as the runtime does), one summary. After
each stage: resident memory (RSS, from /proc/self/smaps_rollup) split into file-backed pages
(mapped files: the weights, the libraries) and anonymous ones (heap: repacked weights, arena,
tokenizer tables, KV cache), the export's mapped weights still resident, and the peak so far
(VmHWM, what ``/usr/bin/time -v`` reports). Linux only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def _rollup() -> dict[str, int]:
    fields = {}
    for line in open("/proc/self/smaps_rollup", encoding="utf-8"):
        name, *rest = line.split()
        if name in ("Rss:", "Pss_File:", "Pss_Anon:"):
            fields[name[:-1]] = int(rest[0]) // 1024
    peak = next(line for line in open("/proc/self/status", encoding="utf-8") if line.startswith("VmHWM:"))
    fields["peak"] = int(peak.split()[1]) // 1024
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--article", type=Path, default=Path("data/demo/article_sw.txt"))
    parser.add_argument("--keep-pages", action="store_true", help="Do not give the weight pages back (to compare).")
    args = parser.parse_args()
    rows, start = [], time.perf_counter()

    def stage(name: str) -> None:
        from edgecomp.runtime.resident import _mappings

        weights = sum(r for *_, r, _ in _mappings(str(args.model.resolve()))) // 2**20
        rows.append((name, time.perf_counter() - start, weights, _rollup()))

    from edgecomp.runtime import session
    from edgecomp.runtime.decoding import Decoding
    from edgecomp.runtime.model import OnnxCausalLM
    from edgecomp.runtime.summarize import summarize

    stage("imports (numpy, onnxruntime, edgecomp.runtime)")
    if args.keep_pages:
        session.release_clean_pages = lambda folder: 0
    model = OnnxCausalLM.load(args.model)
    stage("OnnxCausalLM.load (session, then tokenizer)")
    result = summarize(model, args.article.read_text(encoding="utf-8"), Decoding(max_new_tokens=64))
    stage(f"summarize ({result['timings']['tokens_per_s']:.0f} new tokens/s)")
    print("| stage | s | RSS MB | file-backed | anonymous | export's weights resident | peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds, weights, r in rows:
        print(f"| {name} | {seconds:.2f} | {r['Rss']} | {r['Pss_File']} | {r['Pss_Anon']} | {weights} | {r['peak']} |")


if __name__ == "__main__":
    main()
