"""Composition applied at run time (one int8 base export, LoRA fed as inputs) against merged into
the weights before quantizing (one int8 export per composition): quality and speed, same run.

For each language: held-out perplexity of the composed model on target-language lines no adapter
saw (shared mono lines 401-460; the language adapters read lines 501 on) and its greedy agreement
with the fp32 merged model, ``edgecomp eval`` on the same documents as docs/results.md (paired
bootstrap), and decode/prefill speed on the demo article (alternating, best of rounds):

    python benchmarks/runtime_adapter.py --shared ../shared/data --out runs/runtime-adapter

Writes OUT/results.json as it goes and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SETS = {
    "vi": ("xlsum", "data/demo/article_vi.txt"),
    "sw": ("masakhanews", "data/demo/article_sw.txt"),
    "fr": ("ntrex_headline", "data/demo/article_fr.txt"),
    "hi": ("ntrex_headline", "data/demo/article_hi.txt"),
}


def _speed(model, prompt: list[int], rounds: int = 3, new: int = 48) -> dict:
    from edgecomp.runtime.decoding import Decoding
    from edgecomp.runtime.generate import generate

    best = None
    for _ in range(rounds):
        out = generate(model.decoder, prompt, Decoding(max_new_tokens=new))
        row = {"prefill_s": out.prefill_s, "decode_tokens_per_s": out.steps / out.decode_s}
        if best is None or row["decode_tokens_per_s"] > best["decode_tokens_per_s"]:
            best = row
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, required=True, help="the shared data folder (held-out mono lines)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()

    from edgecomp.compose.spec import resolve_spec
    from edgecomp.eval.compare import compare, load_scores
    from edgecomp.eval.perplexity import agreement, heldout_lines, perplexity, score_onnx, token_sequences
    from edgecomp.eval.run import EvalOptions, evaluate
    from edgecomp.export.merge_export import cached_export
    from edgecomp.fsutil import write_json
    from edgecomp.library.catalog import Library
    from edgecomp.library.exports import base_export, merged_export
    from edgecomp.runtime.adapter import delta_factors
    from edgecomp.runtime.model import OnnxCausalLM
    from edgecomp.runtime.summarize import _Prompter

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    library = Library.load()
    base, _ = base_export(library)
    shared_model = OnnxCausalLM.load(base)
    for lang, (set_name, article) in SETS.items():
        if lang in results:
            continue
        choice = library.choice(lang)
        factors = delta_factors(choice.terms(library.root))
        merged, _ = merged_export(library, choice, full_vocab=True)  # perplexity needs the whole head
        exact = cached_export(resolve_spec(choice.spec, library.root), base=library.base, quantize="none")
        sequences = token_sequences(base, heldout_lines(args.shared / "mono" / f"{lang}.txt", skip=400, count=60))
        reference = score_onnx(exact, sequences)
        runtime_scores, merged_scores = score_onnx(base, sequences, factors=factors), score_onnx(merged, sequences)
        row = {
            "set": set_name,
            "label": choice.label,
            "perplexity": {
                "fp32 merged": perplexity(reference),
                "int8 run time": perplexity(runtime_scores),
                "int8 merged": perplexity(merged_scores),
            },
            "agreement_with_fp32": {
                "int8 run time": agreement(runtime_scores, reference),
                "int8 merged": agreement(merged_scores, reference),
            },
        }
        evals = {}
        for mode, merge in (("run time", False), ("merged", True)):
            evals[mode] = evaluate(
                EvalOptions(
                    model=None,
                    data=Path(f"data/zero-shot/eval/{set_name}/{lang}.jsonl"),
                    lang=lang,
                    merge=merge,
                    limit=args.limit,
                    max_new_tokens=40,
                    article_tokens=384,
                    force=True,
                    out=args.out / "evals" / lang / mode.replace(" ", "-"),
                )
            )
        d = compare(load_scores(Path(evals["merged"]["out"])), load_scores(Path(evals["run time"]["out"])))
        row["eval"] = {
            mode: {k: evals[mode]["metrics"][k]["mean"] for k in ("rougeL", "target_lang")} for mode in evals
        } | {"rougeL_difference": d["metrics"]["rougeL"]["difference"]}
        shared_model.set_adapter(factors, choice.prompt(library.root))
        own = OnnxCausalLM.load(merged)
        p = _Prompter(own, 48)
        prompt = p.prompt(p.article(Path(article).read_text(encoding="utf-8")))
        speeds = {"int8 run time": [], "int8 merged": []}
        for _ in range(2):
            speeds["int8 run time"].append(_speed(shared_model, prompt))
            speeds["int8 merged"].append(_speed(own, prompt))
        row["speed"] = {k: max(v, key=lambda r: r["decode_tokens_per_s"]) for k, v in speeds.items()} | {
            "prompt_tokens": len(prompt)
        }
        t0 = time.perf_counter()
        shared_model.set_adapter(factors, choice.prompt(library.root))
        row["switch_s"] = time.perf_counter() - t0
        results[lang] = row
        write_json(path, results)
        print(lang, json.dumps(row, indent=1), flush=True)
    lines = [
        "| lang | perplexity fp32 merged | int8 merged | int8 run time | agreement with fp32: merged / run time | "
        "ROUGE-L merged | run time | Δ [95% CI] | decode tokens/s merged / run time | prefill s merged / run time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lang, r in results.items():
        p, a, e, s = r["perplexity"], r["agreement_with_fp32"], r["eval"], r["speed"]
        d = e["rougeL_difference"]
        lines.append(
            f"| {lang} | {p['fp32 merged']:.2f} | {p['int8 merged']:.2f} | {p['int8 run time']:.2f} | "
            f"{a['int8 merged']:.3f} / {a['int8 run time']:.3f} | {e['merged']['rougeL']:.1f} | "
            f"{e['run time']['rougeL']:.1f} | {d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] | "
            f"{s['int8 merged']['decode_tokens_per_s']:.1f} / {s['int8 run time']['decode_tokens_per_s']:.1f} | "
            f"{s['int8 merged']['prefill_s']:.2f} / {s['int8 run time']['prefill_s']:.2f} |"
        )
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
