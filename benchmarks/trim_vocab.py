"""Trimmed-vocabulary and trimmed-head exports against the full one, for the library's
compositions: size, speed, held-out perplexity, greedy agreement and ``edgecomp eval`` scores.

For each language: the library's composition merged into the int4 export with the whole
262,144-token vocabulary (``--full-vocab``); the same trimmed (``--trim-vocab``) to the tokens of
the language's unlabeled text and English's (``data/zero-shot/mono/{lang,en}.txt``, what the
shipped language adapters were trained on); and ``merge-export``'s default, the full export with
only its head trimmed to the tokens of the composition's adapters' training text, each prompt
adding its own. Then:

- perplexity on held-out target-language lines no adapter saw (shared mono lines 401-460) and
  the share of positions where both exports rank the same next token first; a trimmed export's
  loss of a dropped token is the sum over the kept pieces that spell it (edgecomp.eval.perplexity;
  not for the trimmed head, which would score the text's own tokens);
- ``edgecomp eval`` on the same documents (paired bootstrap of the difference), and how many of
  the summaries are the same text;
- decode and prefill speed on the demo article (alternating, best of rounds) and the files' size.

    python benchmarks/trim_vocab.py --shared ../shared/data --out runs/trim-vocab [--langs vi sw hi]

Writes OUT/results.json as it goes (a rerun skips the languages done) and OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SETS = {
    "vi": ("xlsum", "data/demo/article_vi.txt"),
    "sw": ("masakhanews", "data/demo/article_sw.txt"),
    "hi": ("ntrex_headline", "data/demo/article_hi.txt"),
    "fr": ("ntrex_headline", "data/demo/article_fr.txt"),
    "ar": ("ntrex_headline", "data/demo/article_ar.txt"),
}
MONO = Path("data/zero-shot/mono")


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("model.onnx*")) / 1e6


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


def _same_summaries(a: Path, b: Path) -> tuple[int, int]:
    def read(folder: Path) -> dict:
        rows = (json.loads(line) for line in (folder / "predictions.jsonl").read_text(encoding="utf-8").splitlines())
        return {row["id"]: row["prediction"] for row in rows}

    x, y = read(a), read(b)
    return sum(x[k] == y.get(k) for k in x), len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, required=True, help="the shared data folder (held-out mono lines)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--langs", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--lines", type=int, default=60)
    args = ap.parse_args()

    from edgecomp.compose.spec import resolve_spec
    from edgecomp.eval.compare import compare, load_scores
    from edgecomp.eval.perplexity import agreement, heldout_lines, perplexity, score_onnx, token_sequences
    from edgecomp.eval.run import EvalOptions, evaluate
    from edgecomp.export.merge_export import cached_export
    from edgecomp.fsutil import write_json
    from edgecomp.library.catalog import Library
    from edgecomp.runtime.model import OnnxCausalLM
    from edgecomp.runtime.summarize import _Prompter

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    library = Library.load()
    for lang in args.langs:
        if lang in results:
            continue
        set_name, article = SETS[lang]
        choice = library.choice(lang)
        resolved = resolve_spec(choice.spec, library.root)
        corpus = [MONO / f"{lang}.txt", MONO / "en.txt"]
        folders = {
            "full": cached_export(resolved, base=library.base, quantize="int4", full_vocab=True),
            "trimmed": cached_export(resolved, base=library.base, quantize="int4", trim_corpus=corpus),
            "head": cached_export(resolved, base=library.base, quantize="int4"),  # the default
        }
        print(lang, {k: str(v) for k, v in folders.items()}, flush=True)
        kept = json.loads((folders["trimmed"] / "vocab_map.json").read_text())["kept_count"]
        sequences = token_sequences(
            folders["full"], heldout_lines(args.shared / "mono" / f"{lang}.txt", skip=400, count=args.lines)
        )
        scores = {k: score_onnx(folders[k], sequences) for k in ("full", "trimmed")}
        row = {
            "set": set_name,
            "label": choice.label,
            "kept_tokens": kept,
            "size_mb": {k: _size_mb(v) for k, v in folders.items()},
            "perplexity": {k: perplexity(v) for k, v in scores.items()},
            "top1_agreement": agreement(scores["trimmed"], scores["full"]),
        }
        print(lang, json.dumps(row), flush=True)
        evals = {
            k: evaluate(
                EvalOptions(
                    model=v,
                    data=Path(f"data/zero-shot/eval/{set_name}/{lang}.jsonl"),
                    lang=lang,
                    limit=args.limit,
                    force=True,
                    out=args.out / "evals" / lang / k,
                )
            )
            for k, v in folders.items()
        }
        row["eval"] = {k: {m: evals[k]["metrics"][m]["mean"] for m in ("rougeL", "target_lang")} for k in evals}
        for k in ("trimmed", "head"):
            d = compare(load_scores(Path(evals["full"]["out"])), load_scores(Path(evals[k]["out"])))
            row["eval"][k] |= {
                "rougeL_difference": d["metrics"]["rougeL"]["difference"],
                "target_lang_difference": d["metrics"]["target_lang"]["difference"],
                "same_summaries": _same_summaries(Path(evals["full"]["out"]), Path(evals[k]["out"])),
            }
        models = {k: OnnxCausalLM.load(v) for k, v in folders.items()}
        speeds: dict[str, list] = {k: [] for k in models}
        for _ in range(2):
            for k, model in models.items():
                p = _Prompter(model, 48)
                speeds[k].append(_speed(model, p.prompt(p.article(Path(article).read_text(encoding="utf-8")))))
        row["speed"] = {k: max(v, key=lambda r: r["decode_tokens_per_s"]) for k, v in speeds.items()}
        del models
        results[lang] = row
        write_json(path, results)
        print(lang, json.dumps(row), flush=True)
    lines = [
        "| lang | export | MB | perplexity | top-1 agreement | ROUGE-L | Δ vs full [95% CI] | target language | "
        "same summaries as full | decode tok/s | prefill s |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for lang, r in results.items():
        for k in ("full", "trimmed", "head"):
            e, speed = r["eval"][k], r["speed"][k]
            d, same = e.get("rougeL_difference"), e.get("same_summaries")
            cells = [
                f"{lang} ({r['kept_tokens']:,} kept)",
                k,
                f"{r['size_mb'][k]:.0f}",
                f"{r['perplexity'][k]:.2f}" if k in r["perplexity"] else "–",
                f"{r['top1_agreement']:.3f}" if k == "trimmed" else "–",
                f"{e['rougeL']:.1f}",
                f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]" if d else "–",
                f"{e['target_lang']:.0f}%",
                f"{same[0]}/{same[1]}" if same else "–",
                f"{speed['decode_tokens_per_s']:.1f}",
                f"{speed['prefill_s']:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
