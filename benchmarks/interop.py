"""Other runtimes on edgecomp's exports of the default base: greedy tokens and decode speed.

For each of the 8 demo articles (data/demo, cut to 256 tokens) the greedy continuation of 32 tokens
from edgecomp's runtime, optimum's ORTModelForCausalLM and onnxruntime-genai on the same int8 ONNX
export of the base; then, for the library's Swahili composition (task_en + lang_sw − lang_en),
edgecomp, optimum and onnxruntime-genai on its fp32 ONNX export and transformers on its
`--format hf` export. Prints one JSON line per measurement and writes them to runs/interop.json.

    .venv/bin/python benchmarks/interop.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
NEW = 32
OUT = ROOT / "runs" / "interop.json"


def prompts(model) -> dict[str, list[int]]:
    return {
        p.stem: [model.bos_id, *model.encode(p.read_text(encoding="utf-8"))[:256]]
        for p in sorted((ROOT / "data" / "demo").glob("article_*.txt"))
    }


def ours(folder: Path, items: dict) -> dict:
    from edgecomp.runtime import Decoding, OnnxCausalLM, generate

    model = OnnxCausalLM.load(folder)
    out, seconds, total, steps = {}, 0.0, 0.0, 0
    for name, ids in items.items():
        g = generate(model.decoder, ids, Decoding(max_new_tokens=NEW), eos_ids=model.eos_ids)
        out[name], seconds, steps = g.tokens, seconds + g.decode_s, steps + g.steps
        total += g.prefill_s + g.decode_s
    return {"tokens": out, "decode_tok_s": steps / seconds, "tok_s_with_prefill": sum(map(len, out.values())) / total}


def optimum(folder: Path, items: dict) -> dict:
    from optimum.onnxruntime import ORTModelForCausalLM

    from edgecomp.runtime.session import session_options

    model = ORTModelForCausalLM.from_pretrained(folder, session_options=session_options())
    out, seconds, steps = {}, 0.0, 0
    for name, ids in items.items():
        x = torch.tensor([ids])
        start = time.perf_counter()
        g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=NEW, do_sample=False)
        seconds += time.perf_counter() - start
        out[name] = g[0, len(ids) :].tolist()
        steps += len(out[name])
    return {"tokens": out, "tok_s_with_prefill": steps / seconds}


def genai(folder: Path, items: dict) -> dict:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    out, seconds, steps = {}, 0.0, 0
    for name, ids in items.items():
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(ids) + NEW)
        generator = og.Generator(model, params)
        start = time.perf_counter()
        generator.append_tokens(np.array(ids, dtype=np.int32))
        while not generator.is_done():
            generator.generate_next_token()
        seconds += time.perf_counter() - start
        out[name] = [int(t) for t in generator.get_sequence(0)][len(ids) :]
        steps += len(out[name])
    return {"tokens": out, "tok_s_with_prefill": steps / seconds}


def transformers_hf(folder: Path, items: dict) -> dict:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out, seconds, steps = {}, 0.0, 0
    for name, ids in items.items():
        x = torch.tensor([ids])
        start = time.perf_counter()
        with torch.inference_mode():
            g = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=NEW, do_sample=False)
        seconds += time.perf_counter() - start
        out[name] = g[0, len(ids) :].tolist()
        steps += len(out[name])
    return {"tokens": out, "tok_s_with_prefill": steps / seconds}


def agreement(a: dict, b: dict, eos: tuple[int, ...]) -> dict:
    """Prompts whose greedy continuations are identical (eos ids dropped: genai does not keep them)."""
    same = [n for n in a if [t for t in a[n] if t not in eos] == [t for t in b[n] if t not in eos]]
    return {"identical": len(same), "of": len(a), "differ": sorted(set(a) - set(same))}


def main() -> None:
    from edgecomp.compose.spec import resolve_spec
    from edgecomp.export.merge_export import cached_export
    from edgecomp.library.catalog import Library
    from edgecomp.runtime import OnnxCausalLM

    results = json.loads(OUT.read_text()) if OUT.is_file() else {}

    def save(key, value):
        results[key] = value
        print(json.dumps({key: {k: v for k, v in value.items() if k != "tokens"}}), flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(results, indent=1))

    base = cached_export(resolve_spec({}, ROOT), quantize="int8")
    model = OnnxCausalLM.load(base)
    items, eos = prompts(model), model.eos_ids
    runs = {"edgecomp": ours(base, items), "optimum": optimum(base, items), "genai": genai(base, items)}
    for name, run in runs.items():
        save(
            f"int8 base/{name}",
            run | ({} if name == "edgecomp" else agreement(runs["edgecomp"]["tokens"], run["tokens"], eos)),
        )

    library = Library.load()
    spec = library.choice("sw").spec
    fp32 = cached_export(resolve_spec(spec, library.root), base=library.base, quantize="none")
    hf = cached_export(resolve_spec(spec, library.root), base=library.base, format="hf")
    mine = ours(fp32, items)
    save("sw composition/edgecomp fp32", mine)
    for name, run in (
        ("optimum fp32", optimum(fp32, items)),
        ("genai fp32", genai(fp32, items)),
        ("transformers hf", transformers_hf(hf, items)),
    ):
        save(f"sw composition/{name}", run | agreement(mine["tokens"], run["tokens"], eos))
    manifest = json.loads((hf / "edgecomp-export.json").read_text())
    save(
        "sw composition/hf verify",
        manifest["verify"]["reload"] | {"mb": sum(p.stat().st_size for p in hf.iterdir()) / 1e6},
    )


if __name__ == "__main__":
    main()
