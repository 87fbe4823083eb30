"""GGUF exports of the default base in llama.cpp: held-out perplexity and file size, against
llama.cpp's own packaged Q4_K_M of the same base.

Scored by llama.cpp (llama-cpp-python, f32 KV cache) on the same token sequences for every file:
``[bos] + line`` for 40 held-out lines each of English and Swahili monolingual text
(``data/zero-shot/mono``, after the 400 lines training reads), cut to 128 tokens, the loss on every
token after BOS. Files: the packaged Q4_K_M; ``merge-export --format gguf`` of the base alone (no
adapters) as f32, q8_0 and q4_k_m; and the library's Swahili composition (task_en + lang_sw −
lang_en) as f32 and q4_k_m, whose q4 is judged against its own f32. Base + ``compose --format
gguf-lora`` of that composition is scored too: llama.cpp applying the adapter at run time must give
the merged f32's perplexity. Prints one JSON line per file and writes them to runs/gguf_quality.json.

    .venv/bin/python benchmarks/gguf_quality.py
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "gguf_quality.json"
LINES, MAX_TOKENS = 40, 128


def perplexity(gguf: Path, sequences: list[list[int]], lora: Path | None = None) -> float:
    import numpy as np

    from edgecomp.export import llamacpp
    from edgecomp.metrics import LOGITS, metric

    nll = metric("nll", LOGITS)
    losses = [
        nll.score(logits[:-1], np.asarray(ids[1:]))["nll"]
        for ids, logits in zip(sequences, llamacpp.sequence_logits(gguf, sequences, lora), strict=True)
    ]
    return math.exp(float(np.concatenate(losses).mean()))


def main() -> None:
    from edgecomp.compose.spec import resolve_spec
    from edgecomp.compose.to_adapter import compose_adapter
    from edgecomp.eval.perplexity import heldout_lines, token_sequences
    from edgecomp.export.merge_export import cached_export
    from edgecomp.library.catalog import Library
    from edgecomp.models.resolve import resolve_base

    base = resolve_base(None)
    mono = ROOT / "data" / "zero-shot" / "mono"
    lines = {lang: heldout_lines(mono / f"{lang}.txt", count=LINES) for lang in ("en", "sw")}
    sequences = {lang: token_sequences(base.path, text, MAX_TOKENS) for lang, text in lines.items()}
    library = Library.load()
    sw = resolve_spec(library.choice("sw").spec, library.root)
    files = {"packaged Q4_K_M": (base.gguf, None)}
    for kind in ("f32", "q8_0", "q4_k_m"):
        files[f"base {kind}"] = (
            cached_export(resolve_spec({}, ROOT), format="gguf", quantize=kind) / "model.gguf",
            None,
        )
    for kind in ("f32", "q4_k_m"):
        export = cached_export(sw, base=library.base, format="gguf", quantize=kind)
        files[f"sw composition {kind}"] = (export / "model.gguf", None)
    adapter = Path(tempfile.mkdtemp()) / "sw-lora"
    compose_adapter(sw, adapter, format="gguf-lora")
    files["base f32 + sw gguf-lora"] = (files["base f32"][0], adapter / "adapter.gguf")
    files["packaged Q4_K_M + sw gguf-lora"] = (base.gguf, adapter / "adapter.gguf")

    rows = []
    OUT.parent.mkdir(exist_ok=True)
    for name, (gguf, lora) in files.items():
        row = {"file": name, "MB": round(gguf.stat().st_size / 1e6, 1)}
        if lora:
            row["lora_MB"] = round(lora.stat().st_size / 1e6, 1)
        for lang, seqs in sequences.items():
            row[f"ppl_{lang}"] = round(perplexity(gguf, seqs, lora), 3)
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        OUT.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
