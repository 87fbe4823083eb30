"""Training throughput and memory: QLoRA (NF4 base) against LoRA on a full-precision base.

Runs edgecomp's own training components (loading, LoRA targets, the loop) on random token ids, so
it needs no data and no tokenizer. ``--random-config`` builds a randomly initialised model from a
config (speed and memory do not depend on the weights' values), ``--base`` uses a real one.

    python benchmarks/train_qlora.py --random-config benchmarks/gemma-3-270m-config.json \
        --seq-len 512 --batch-size 8 --steps 20

Prints one JSON line per mode and the QLoRA/LoRA ratios.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path


def make_random_checkpoint(config_file: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**json.loads(config_file.read_text()))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out, safe_serialization=True)
    return out


def run(base: Path, qlora: bool, args) -> dict:
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from edgecomp.models.load import load_causal_lm
    from edgecomp.train.loop import train_loop
    from edgecomp.train.lora import lora_config

    device = args.device
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = load_causal_lm(base, qlora=qlora, device=device)
    if qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.grad_ckpt)
    elif args.grad_ckpt:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = get_peft_model(model, lora_config(model, args.rank, 2 * args.rank, 0.0))
    rng = random.Random(0)
    vocab = model.config.vocab_size
    examples = [[2] + [rng.randrange(10, vocab) for _ in range(args.seq_len - 1)] for _ in range(64)]
    examples = [(x, x) for x in examples]
    common = dict(batch_size=args.batch_size, grad_accum=1, lr=1e-4, seed=0, pad_id=0, device=device)
    train_loop(model, examples, steps=args.warmup, description="warm-up", **common)
    stats = train_loop(model, examples, steps=args.steps, description="qlora" if qlora else "lora", **common)
    result = {
        "mode": "qlora-nf4" if qlora else "lora-full",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "grad_ckpt": args.grad_ckpt,
        "steps": args.steps,
        "tokens_per_s": round(stats.tokens_per_s, 1),
        "step_s": round(stats.seconds / stats.steps, 4),
    }
    if device == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    del model
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--base", type=Path, help="a checkpoint folder")
    src.add_argument("--random-config", type=Path, help="a config.json to build a random model from")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--grad-ckpt", action="store_true")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base or make_random_checkpoint(args.random_config, Path(tmp) / "random")
        results = [run(base, qlora, args) for qlora in (False, True)]
    for r in results:
        print(json.dumps(r))
    lora, qlora = results
    ratios = {"qlora_over_lora_tokens_per_s": round(qlora["tokens_per_s"] / lora["tokens_per_s"], 3)}
    if "peak_gpu_mb" in lora:
        ratios["qlora_over_lora_peak_memory"] = round(qlora["peak_gpu_mb"] / lora["peak_gpu_mb"], 3)
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
