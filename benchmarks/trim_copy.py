"""What a trimmed vocabulary costs summaries, and what keeping the article's own tokens would win back.

One full-vocabulary export, three ways of decoding greedily on the same documents, all with the
same weights (so quantization plays no part in the differences):

- ``full``: every token allowed;
- ``trimmed``: only the tokens a trimmed export keeps (the language's and English's unlabeled text
  of ``data/zero-shot/mono``, plus special, byte and prompt tokens), the article re-spelled into them
  as a trimmed export's id map does: what ``--trim-vocab`` gives, computed on the full model;
- ``trimmed + article``: the kept tokens and every token of the article being summarized, the article
  as it is: what an export would give whose LM head adds the article's rows at run time.

    python benchmarks/trim_copy.py --model EXPORT --lang vi --data data/zero-shot/eval/xlsum/vi.jsonl

Prints ROUGE-L and the target-language share of each, with paired 95% intervals against ``full``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a full-vocabulary export")
    ap.add_argument("--lang", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--article-tokens", type=int, default=448)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, help="write the summaries and scores here (JSON)")
    args = ap.parse_args()

    from edgecomp.data.readers import read_pairs
    from edgecomp.data.tokenizer import load_tokenizer
    from edgecomp.data.vocab_map import IdMap
    from edgecomp.eval.bootstrap import mean_interval, paired_difference
    from edgecomp.eval.metrics import score_documents
    from edgecomp.export.trim import corpus_lines, kept_ids
    from edgecomp.runtime.model import OnnxCausalLM

    model = OnnxCausalLM.load(args.model)
    full_tokenizer = load_tokenizer(args.model)
    mono = Path("data/zero-shot/mono")
    kept = kept_ids(full_tokenizer, corpus_lines([mono / f"{args.lang}.txt", mono / "en.txt"]))
    vocab = full_tokenizer.get_vocab_size(with_added_tokens=True)
    id_map = IdMap.from_kept(kept, vocab, full_tokenizer)
    head = [model.bos_id] if model.bos_id is not None else []
    tail = model.encode(model.instruction)
    eos = set(model.eos_ids)

    def greedy(prompt: list[int], allowed: np.ndarray | None) -> str:
        mask = None
        if allowed is not None:
            mask = np.full(vocab, -np.inf, dtype=np.float32)
            mask[allowed] = 0.0
        logits, cache = model.decoder.prefill(prompt)
        out: list[int] = []
        for _ in range(args.max_new_tokens):
            row = logits[0] if mask is None else logits[0] + mask
            token = int(np.argmax(row))
            if token in eos:
                break
            out.append(token)
            logits, cache = model.decoder.step(np.array([token]), cache)
        return model.decode(out)

    docs = read_pairs(args.data)[: args.limit]
    predictions: dict[str, list[str]] = {"full": [], "trimmed": [], "trimmed + article": []}
    for n, doc in enumerate(docs, 1):
        article = model.encode(doc["text"].strip())[: args.article_tokens]
        respelled = id_map.to_original[np.asarray(id_map.to_trimmed_ids(article), dtype=np.int64)].tolist()
        predictions["full"].append(greedy(head + article + tail, None))
        predictions["trimmed"].append(greedy(head + respelled + tail, kept))
        predictions["trimmed + article"].append(greedy(head + article + tail, np.union1d(kept, article)))
        print(f"{n}/{len(docs)}", flush=True)
    references = [d["summary"] for d in docs]
    scores = {k: score_documents(references, v, args.lang) for k, v in predictions.items()}
    rows = {}
    for name, values in scores.items():
        rows[name] = {m: mean_interval(values[m]).as_dict() for m in ("rougeL", "target_lang")}
        if name != "full":
            rows[name]["rougeL_difference"] = paired_difference(scores["full"]["rougeL"], values["rougeL"]).as_dict()
            rows[name]["same_as_full"] = sum(a == b for a, b in zip(predictions["full"], predictions[name]))
    print(json.dumps({"kept_tokens": int(kept.size), "documents": len(docs), **rows}, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "predictions": predictions}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
