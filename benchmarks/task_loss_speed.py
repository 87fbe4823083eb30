"""Task-training speed with the LM head on every position against only where the loss reads it.

Real base, real task examples (article → summary, loss on the summary only), the same LoRA and
batches for both losses, alternated over rounds so both see the same machine:

    python benchmarks/task_loss_speed.py --data data/demo/task_en.jsonl --steps 8 --rounds 2 [--qlora]

Prints tokens/s (forward + backward + AdamW step) per loss and round, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--base", default=None)
    ap.add_argument("--qlora", action="store_true")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from edgecomp.data.examples import task_example
    from edgecomp.data.readers import read_pairs
    from edgecomp.data.tokenizer import encoder, load_tokenizer
    from edgecomp.models.load import load_causal_lm
    from edgecomp.models.resolve import resolve_base
    from edgecomp.train.loop import collate
    from edgecomp.train.lora import lora_config
    from edgecomp.train.loss import causal_lm_loss

    base = resolve_base(args.base)
    encode = encoder(load_tokenizer(base.path))
    model = load_causal_lm(base.path, qlora=args.qlora, device="cpu")
    if args.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(0)
    model = get_peft_model(model, lora_config(model, 8, 16.0, 0.0))
    model.train()
    examples = [task_example(p, encode, 2, 1, args.seq_len, 64) for p in read_pairs(args.data)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    losses = {"full": lambda b: model(**b).loss, "label-positions": lambda b: causal_lm_loss(model, b)}
    results: dict[str, list[float]] = {name: [] for name in losses}
    for r in range(args.rounds):
        for name, fn in losses.items():
            tokens, start = 0, time.perf_counter()
            for s in range(args.steps):
                batch = collate(examples[s * args.batch_size : (s + 1) * args.batch_size], 0, "cpu")
                fn(batch).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(batch["attention_mask"].sum())
            results[name].append(tokens / (time.perf_counter() - start))
            print(json.dumps({"round": r, "loss": name, "tokens_per_s": round(results[name][-1], 1)}), flush=True)
    best = {name: max(v) for name, v in results.items()}
    print(
        json.dumps(
            {
                "qlora": args.qlora,
                "seq_len": args.seq_len,
                "best_tokens_per_s": best,
                "ratio": round(best["label-positions"] / best["full"], 2),
            }
        )
    )


if __name__ == "__main__":
    main()
