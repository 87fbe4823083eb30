"""What packing the adapter library costs in quality: rank, module types and dtype against size.

Packs the trained library (``recipes/zero-shot.yaml``'s adapters) with each choice, composes the
shipped default per set (``task + 1·(lang_tgt − lang_en)``, ``delta``; Hindi: the Urdu task
adapter alone), exports int8 and runs ``edgecomp eval`` on the same documents as docs/results.md;
each packed system is paired against the unpacked one by bootstrap:

    python benchmarks/library_size.py --library runs/zero-shot --out runs/library-size

Results go to OUT/results.json after every evaluation (rerun to resume) and a markdown table to
OUT/table.md (copied into benchmarks/LIBRARY.md by hand, with the machine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PACKS = {  # name: (rank, modules, dtype), or one per kind {"task": ..., "language": ...}; None: as trained
    "trained (r8, all, fp32)": None,
    "r2, all, fp16": (2, "all", "float16"),
    "r4, attention, fp16": (4, "attention", "float16"),
    "r8, attention, fp16": (8, "attention", "float16"),
    "r4, all, fp16": (4, "all", "float16"),
    "task r4 + language r1, all, fp16": {"task": (4, "all", "float16"), "language": (1, "all", "float16")},
}
ADAPTERS = {
    "task": "variants/neutral/task-en",
    "en": "library/lang-en",
    "vi": "library/lang-vi",
    "sw": "library/lang-sw",
    "fr": "library/lang-fr",
    "ur": "library/task-ur",
}
SETS = [("xlsum", "vi"), ("masakhanews", "sw"), ("ntrex_headline", "fr"), ("ntrex_headline", "hi")]
LIBRARY_ADAPTERS = {"task": 2, "language": 8}  # task-en, task-ur and eight language adapters
KIND = {"task": "task", "ur": "task"}  # the rest are language adapters


def _spec(paths: dict, lang: str, method: str) -> dict:
    if lang == "hi":
        return {"adapters": [f"{paths['ur']}:1"]}
    return {"adapters": [f"{paths['task']}:1", f"{paths[lang]}:1", f"{paths['en']}:-1"], "method": method}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--library", type=Path, required=True, help="workdir of recipes/zero-shot.yaml")
    ap.add_argument("--data", type=Path, default=Path("data/zero-shot/eval"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()

    from edgecomp.compose.pack import pack_adapter
    from edgecomp.compose.spec import resolve_spec
    from edgecomp.eval.compare import compare, load_scores
    from edgecomp.eval.run import EvalOptions, evaluate
    from edgecomp.export.merge_export import cached_export
    from edgecomp.fsutil import write_json

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for pack_name, pack in PACKS.items():
        paths, sizes = {}, {}
        for key, rel in ADAPTERS.items():
            src, kind = args.library / rel, KIND.get(key, "language")
            choice = pack[kind] if isinstance(pack, dict) else pack
            if choice is None:
                paths[key] = src.resolve()
            else:
                dst = args.out / "packed" / pack_name.replace(", ", "-").replace(" ", "_") / key
                if not dst.is_dir():
                    pack_adapter(src, dst, rank=choice[0], modules=choice[1], dtype=choice[2])
                paths[key] = dst.resolve()
            sizes[kind] = max(sizes.get(kind, 0), (paths[key] / "adapter_model.safetensors").stat().st_size)
        library_mb = sum(sizes[k] * n for k, n in LIBRARY_ADAPTERS.items()) / 2**20
        methods = ["delta", "params"] if pack is None else ["delta"]
        for method in methods:
            for set_name, lang in SETS:
                if lang == "hi" and method == "params":
                    continue
                key = f"{set_name}/{lang}/{pack_name}/{method}"
                if key in results:
                    continue
                t0 = time.perf_counter()
                export = cached_export(
                    resolve_spec(_spec(paths, lang, method), Path.cwd()), quantize="int8", full_vocab=True
                )
                scores = evaluate(
                    EvalOptions(
                        model=export,
                        data=args.data / set_name / f"{lang}.jsonl",
                        lang=lang,
                        limit=args.limit,
                        max_new_tokens=40,
                        article_tokens=384,
                        out=args.out / "evals" / key.replace(", ", "-"),
                        force=True,
                    )
                )
                results[key] = {
                    "set": set_name,
                    "lang": lang,
                    "pack": pack_name,
                    "method": method,
                    "adapter_bytes": sizes,
                    "library_mb": library_mb,
                    "metrics": scores["metrics"],
                    "out": scores["out"],
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                write_json(results_path, results)
    rows = [
        "| set | lang | packing | method | library MB | ROUGE-L [95% CI] | target lang "
        "| Δ ROUGE-L vs trained (delta) [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results.values(), key=lambda r: (r["set"], r["lang"], list(PACKS).index(r["pack"]), r["method"])):
        ref = results.get(f"{r['set']}/{r['lang']}/{next(iter(PACKS))}/delta")
        rl, tl = r["metrics"]["rougeL"], r["metrics"]["target_lang"]
        delta = ""
        if ref and ref is not r:
            d = compare(load_scores(Path(ref["out"])), load_scores(Path(r["out"])))["metrics"]["rougeL"]["difference"]
            delta = f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"
        rows.append(
            f"| {r['set']} | {r['lang']} | {r['pack']} | {r['method']} | {r['library_mb']:.1f} | "
            f"{rl['mean']:.1f} [{rl['low']:.1f}, {rl['high']:.1f}] | {tl['mean']:.0f}% | {delta} |"
        )
    (args.out / "table.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
