"""Size, held-out perplexity, agreement with fp32 and decode speed of each quantization of a base.

    EDGECOMP_HOME=/tmp/eh python benchmarks/quantization_table.py --work /tmp/qtable

Exports the base once (fp32, ``--base`` or the embedded default; edgecomp's graph where it
applies, else optimum's), derives every
variant from that graph with ``edgecomp.export.quantization.apply`` (and, with ``--trim``, vocabulary-trimmed
int4 exports per language with ``edgecomp.export.trim``), then scores each on the same held-out
lines of the mono files: lines after the first 400 (those 400 ship in data/demo and
data/scenarios and train adapters). Reported per variant: file size, perplexity per language,
the largest perplexity ratio to fp32, teacher-forced greedy agreement with fp32, and decode speed
(one token per step after a 64-token prompt, the runtime's session, this machine's threads).

Exports and scores are kept under ``--work`` (``scores/*.npz``), so a rerun only adds what is new.
Prints a Markdown table and writes ``table.json`` there.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecomp.eval.perplexity import Scores, heldout_lines, score_onnx, score_torch, token_sequences  # noqa: E402
from edgecomp.export.quantization.apply import quantize_model  # noqa: E402
from edgecomp.export.quantization.weight_only import WeightOnlyConfig  # noqa: E402

MONO = Path(os.environ.get("EDGECOMP_MONO", "/work/shared/data/mono"))
LANGS = ("en", "sw", "hi", "vi")
TOKENIZER_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)

import dataclasses  # noqa: E402

from edgecomp.export.quantization.schemes.int4 import INT4  # noqa: E402
from edgecomp.export.quantization.schemes.int8 import INT8  # noqa: E402

# name → (mode, weight-only configuration or None for the mode's own); "dynamic" (onnxruntime's
# quantize_dynamic, MatMulInteger with per-tensor activation scales) can be added for comparison.
# The default before end-to-end scale tuning and 8-bit edge layers: the ablations below are of it.
B32 = dataclasses.replace(INT4, tune=None, eight_bit_layers=())
TUNED = dataclasses.replace(INT4, eight_bit_layers=())
VARIANTS: dict[str, tuple[str, WeightOnlyConfig | None]] = {
    "fp32": ("none", None),
    "fp16": ("fp16", None),
    "int8: q8 b32, smoothed q8 head+embedding": ("int8", None),
    "int8 without head smoothing": ("int8", dataclasses.replace(INT8, smooth_head=False)),
    "int4 (default): GPTQ b32 + input scales, scales tuned end to end; layers 0, 1, 3, 17 in q8; "
    "smoothed q8 head b128": ("int4", None),
    "int4 tuned, layers 0, 1, 17 in q8": ("int4", dataclasses.replace(INT4, eight_bit_layers=(0, 1, -1))),
    "int4 all layers 4-bit: GPTQ b32 + input scales, scales tuned (the previous default)": ("int4", TUNED),
    "int4 --block-size 16: GPTQ b16, scales tuned": ("int4", dataclasses.replace(TUNED, block_size=16)),
    "int4 GPTQ b16, scales not tuned": ("int4", dataclasses.replace(B32, block_size=16)),
    "int4 GPTQ b32, not tuned": ("int4", B32),
    "int4 round-to-nearest b32, q8 head b32 (no calibration)": (
        "int4",
        WeightOnlyConfig(bits=4, head_bits=8, smooth_head=False),
    ),
    "int4 GPTQ b32 without input scales": (
        "int4",
        dataclasses.replace(B32, gptq=dataclasses.replace(B32.gptq, scale_inputs=False)),
    ),
    "int4 GPTQ b32, head b64": ("int4", dataclasses.replace(B32, head_block_size=64)),
    "int4 GPTQ b32 + q8 gate/up": ("int4", dataclasses.replace(B32, eight_bit=("mlp/gate_up_proj",))),
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def model_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.glob("model.onnx*")) / 1e6


def base_checkpoint(spec: str | None) -> Path:
    from edgecomp.models.resolve import resolve_base

    return resolve_base(spec).path


def raw_export(checkpoint: Path, work: Path) -> Path:
    """The export step's fp32 graph, untouched (every variant starts from it)."""
    from edgecomp.export.onnx_export import export_onnx

    raw = work / "raw-fp32"
    if not (raw / "model.onnx").is_file():
        export_onnx(checkpoint, raw)
    for name in TOKENIZER_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, raw / name)
    return raw


def build(raw: Path, out: Path, mode: str, config: WeightOnlyConfig | None) -> dict:
    if not (out / "model.onnx").is_file():
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        start = time.perf_counter()
        if mode == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            tmp.mkdir(parents=True)
            quantize_dynamic(
                raw / "model.onnx",
                tmp / "model.onnx",
                op_types_to_quantize=["MatMul"],
                weight_type=QuantType.QInt8,
                per_channel=True,
            )
            report = {"mode": "dynamic int8 (MatMulInteger)"}
        else:
            report = quantize_model(raw, tmp, mode, config)
            report["quantize_s"] = round(time.perf_counter() - start, 1)
        for name in TOKENIZER_FILES:
            shutil.copy2(raw / name, tmp / name)
        (tmp / "quantization.json").write_text(json.dumps(report, indent=1))
        tmp.rename(out)
    return json.loads((out / "quantization.json").read_text())


def build_trimmed(raw: Path, out: Path, lang: str, config: WeightOnlyConfig, skip: int, count: int) -> None:
    """int4 export trimmed to the vocabulary of ``lang``'s mono text minus the held-out lines."""
    from edgecomp.data.tokenizer import load_tokenizer
    from edgecomp.data.vocab_map import write_id_map
    from edgecomp.export.trim import kept_ids, trim_onnx

    if (out / "model.onnx").is_file():
        return
    lines = (MONO / f"{lang}.txt").read_text(encoding="utf-8").splitlines()
    held = set(heldout_lines(MONO / f"{lang}.txt", skip=skip, count=count))
    corpus = [line for line in lines if line.strip() and line not in held]
    kept = kept_ids(load_tokenizer(raw), corpus)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trimmed = out.with_name(out.name + ".fp32tmp")
    shutil.rmtree(trimmed, ignore_errors=True)
    info = trim_onnx(raw, trimmed, kept)
    report = quantize_model(trimmed, tmp, "int4", config)
    shutil.rmtree(trimmed)
    for name in TOKENIZER_FILES:
        shutil.copy2(raw / name, tmp / name)
    write_id_map(tmp, kept, info["original_vocab_size"], {"corpus_lines": len(corpus)})
    (tmp / "quantization.json").write_text(json.dumps({**report, "trim": {**info, "corpus_lines": len(corpus)}}))
    tmp.rename(out)


def cached_scores(path: Path, compute) -> Scores:
    if path.is_file():
        data = np.load(path, allow_pickle=False)
        n = int(data["n"])
        return Scores([data[f"nll{i}"] for i in range(n)], [data[f"top{i}"] for i in range(n)])
    scores = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"nll{i}": x for i, x in enumerate(scores.nll)} | {f"top{i}": x for i, x in enumerate(scores.top1)}
    np.savez(path, n=len(scores.nll), **arrays)
    return scores


def decode_speed(folder: Path, steps: int = 48, prompt: int = 64) -> float:
    """Decode tokens per second: ``steps`` single-token passes after a ``prompt``-token prefill."""
    from edgecomp.runtime.model import OnnxCausalLM

    model = OnnxCausalLM.load(folder)
    ids = list(range(1000, 1000 + prompt))
    if (folder / "vocab_map.json").is_file():
        from edgecomp.data.vocab_map import load_id_map

        ids = load_id_map(folder, model.tokenizer).to_trimmed_ids(ids)
    best = 0.0
    for _ in range(2):
        logits, cache = model.decoder.prefill(ids)
        start = time.perf_counter()
        for _ in range(steps):
            logits, cache = model.decoder.step(np.array([int(np.argmax(logits[0]))]), cache)
        best = max(best, steps / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default=None, help="base spec (default: the embedded Gemma 3 270M)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/qtable"))
    parser.add_argument("--lines", type=int, default=100, help="held-out lines per language")
    parser.add_argument("--skip", type=int, default=400, help="lines at the top of each mono file not scored")
    parser.add_argument("--langs", default=",".join(LANGS))
    parser.add_argument(
        "--only", default=None, help="'|'-separated substrings: build and score only these variants (fp32 always)"
    )
    parser.add_argument("--torch", action="store_true", help="also score the PyTorch checkpoint")
    parser.add_argument("--trim", action="store_true", help="add vocabulary-trimmed int4 exports per language")
    parser.add_argument("--speed", action="store_true", help="measure decode tokens/s")
    args = parser.parse_args()

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    langs = args.langs.split(",")
    checkpoint = base_checkpoint(args.base)
    raw = raw_export(checkpoint, work)
    sequences = {
        lang: token_sequences(raw, heldout_lines(MONO / f"{lang}.txt", skip=args.skip, count=args.lines))
        for lang in langs
    }
    tag = f"{args.skip}-{args.lines}"

    variants = dict(VARIANTS)
    if args.only:
        keep = args.only.split("|")
        variants = {k: v for k, v in variants.items() if k == "fp32" or any(s in k for s in keep)}
    rows = []
    fp32: dict[str, Scores] = {}

    def score(name: str, folder: Path, lang_list) -> dict[str, Scores]:
        out = {}
        for lang in lang_list:
            start = time.perf_counter()
            out[lang] = cached_scores(
                work / "scores" / f"{slug(name)}-{lang}-{tag}.npz",
                lambda lang=lang: score_onnx(folder, sequences[lang]),
            )
            print(
                f"  {name} {lang}: ppl {out[lang].perplexity:.3f} ({time.perf_counter() - start:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        return out

    if args.torch:
        torch_scores = {
            lang: cached_scores(
                work / "scores" / f"pytorch-{lang}-{tag}.npz",
                lambda lang=lang: score_torch(checkpoint, sequences[lang]),
            )
            for lang in langs
        }
    for name, (mode, config) in variants.items():
        folder = work / slug(name)
        print(f"building {name}", file=sys.stderr, flush=True)
        report = build(raw, folder, mode, config)
        scores = score(name, folder, langs)
        if name == "fp32":
            fp32 = scores
        rows.append(row(name, folder, report, scores, fp32, args.speed))
        if name == "fp32" and args.torch:
            rows.append(row("pytorch fp32 (reference)", None, {}, torch_scores, fp32, False))

    if args.trim:
        for lang in langs:
            name = f"int4, vocabulary trimmed to {lang}"
            folder = work / slug(name)
            print(f"building {name}", file=sys.stderr, flush=True)
            build_trimmed(raw, folder, lang, INT4, args.skip, args.lines)
            report = json.loads((folder / "quantization.json").read_text())
            rows.append(row(name, folder, report, score(name, folder, [lang]), fp32, args.speed))

    (work / "table.json").write_text(json.dumps(rows, indent=1))
    print_table(rows, langs)


def row(name, folder, report, scores: dict[str, Scores], fp32: dict[str, Scores], speed: bool) -> dict:
    ppl = {lang: s.perplexity for lang, s in scores.items()}
    ratio = {lang: ppl[lang] / fp32[lang].perplexity for lang in ppl if lang in fp32}
    agree_n = sum(int(sum((a == b).sum() for a, b in zip(s.top1, fp32[lang].top1))) for lang, s in scores.items())
    total = sum(s.tokens for s in scores.values())
    out = {
        "variant": name,
        "size_mb": model_mb(folder) if folder else None,
        "ppl": ppl,
        "ppl_ratio": ratio,
        "max_ratio": max(ratio.values()) if ratio else None,
        "agreement": agree_n / total,
        "tokens": {lang: s.tokens for lang, s in scores.items()},
        "report": report,
    }
    if report.get("trim"):
        out["vocab"] = report["trim"]["vocab_size"]
        out["variant"] = f"{name} ({out['vocab']:,} of {report['trim']['original_vocab_size']:,} tokens)"
    if speed and folder is not None:
        out["decode_tok_s"] = decode_speed(folder)
    print(json.dumps({k: v for k, v in out.items() if k != "report"}), file=sys.stderr, flush=True)
    return out


def print_table(rows, langs) -> None:
    head = ["variant", "MB", *[f"ppl {lang}" for lang in langs], "max ratio", "agree", "tok/s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["variant"], f"{r['size_mb']:.0f}" if r["size_mb"] else "-"]
        cells += [f"{r['ppl'][lang]:.2f}" if lang in r["ppl"] else "" for lang in langs]
        cells += [f"{r['max_ratio']:.3f}" if r["max_ratio"] else "-", f"{r['agreement']:.3f}"]
        cells += [f"{r['decode_tok_s']:.1f}" if "decode_tok_s" in r else "-"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
