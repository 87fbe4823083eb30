"""Language-adapter training on CPU with three losses: transformers' full loss (``model(...,
labels=...).loss``, what a plain PEFT script computes), the head only at labelled positions
(``logits_to_keep``; every position for a language adapter), and edgecomp's chunked frozen-head loss
(:mod:`edgecomp.train.loss`), with chunks of 1,024 rows and of 256 (the default), and the last with
gradient checkpointing (``train --gradient-checkpointing``).

Real base, real monolingual text in blocks of ``--seq-len`` tokens, the same LoRA (rank 8, every
block linear), batches and seed for each loss; each loss runs in its own process so its peak
resident memory is its own. Prints one JSON line per loss (tokens/s over the timed steps after one
warm-up step, peak RSS, loss after each step) and the ratios against the full loss:

    .venv/bin/python benchmarks/train_loss_memory.py --data data/zero-shot/mono/sw.txt --steps 4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

LOSSES = ("full", "logits_to_keep", "chunked", "chunked-256", "chunked-256-checkpointed")


def run(loss: str, args) -> dict:
    import torch
    from peft import get_peft_model

    from edgecomp.data.examples import language_blocks
    from edgecomp.data.readers import read_lines
    from edgecomp.data.tokenizer import encoder, load_tokenizer
    from edgecomp.models.load import load_causal_lm
    from edgecomp.models.resolve import resolve_base
    from edgecomp.train.loop import collate
    from edgecomp.train.lora import lora_config
    from edgecomp.train.loss import causal_lm_loss, label_positions

    torch.set_num_threads(args.threads)
    base = resolve_base(args.base)
    encode = encoder(load_tokenizer(base.path))
    blocks = language_blocks(read_lines(args.data), encode, 2, 1, args.seq_len)
    model = load_causal_lm(base.path, qlora=False, device="cpu")
    if loss.endswith("-checkpointed"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(0)
    model = get_peft_model(model, lora_config(model, 8, 16.0, 0.0))
    model.train()

    def keep(batch):
        positions = label_positions(batch["labels"])
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions)
        logits = out.logits.float()
        targets = batch["labels"][:, positions + 1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    fn = {
        "full": lambda b: model(**b).loss,
        "logits_to_keep": keep,
        "chunked": lambda b: causal_lm_loss(model, b, chunk=1024),
        "chunked-256": lambda b: causal_lm_loss(model, b, chunk=256),
    }[loss.removesuffix("-checkpointed")]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    losses, tokens, seconds = [], 0, 0.0
    for step in range(args.steps + 1):
        batch = collate([(b, list(b)) for b in blocks[step * args.batch_size : (step + 1) * args.batch_size]], 0, "cpu")
        start = time.perf_counter()
        value = fn(batch)
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first step warms up
            seconds += time.perf_counter() - start
            tokens += int(batch["attention_mask"].sum())
        losses.append(round(value.item(), 4))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"loss": loss, "tokens_per_s": round(tokens / seconds, 1), "peak_rss_mb": round(peak), "losses": losses}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--base", default=None)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", choices=LOSSES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run(args.one, args)))
        return
    rows = {}
    for loss in LOSSES:
        argv = [sys.executable, __file__, *sys.argv[1:], "--one", loss]
        rows[loss] = json.loads(
            subprocess.run(argv, check=True, capture_output=True, text=True).stdout.splitlines()[-1]
        )
        print(json.dumps(rows[loss]), flush=True)
    full = rows["full"]
    for loss in LOSSES[1:]:
        ratio = {
            "speed_vs_full": round(rows[loss]["tokens_per_s"] / full["tokens_per_s"], 2),
            "peak_rss_vs_full": round(rows[loss]["peak_rss_mb"] / full["peak_rss_mb"], 2),
        }
        print(json.dumps({"loss": loss, **ratio}), flush=True)


if __name__ == "__main__":
    main()
