"""``edgecomp bench train``: edgecomp's trainer against the plain HF ``Trainer`` + PEFT script
users write, on the same model, data, LoRA settings, batches and seed, each in its own process.

Both sides get the same examples in the same order (the baseline's sampler is sequential over the
order edgecomp's loop draws), the same LoRA (rank, alpha, every block linear, initialised under the
same seed), AdamW with the same learning rate, linear warm-up/decay, clipping at 1.0 and no weight
decay, and the same dtype; so their loss curves must agree step for step, and what differs is the
trainer: edgecomp's loop and chunked frozen-head loss (:mod:`edgecomp.train.loss`) against
``Trainer`` with ``model(..., labels=...).loss``. Measured per side: tokens/s over the whole run
(non-padding tokens over the training call's wall time), peak memory (GPU allocated and reserved
on CUDA, the process's peak RSS on CPU), and the loss at every step.

``random_config``: a config.json whose model is built with random weights (speed and memory do not
depend on the values), trained on random token ids; otherwise the base's own tokenizer on the
bundled data (``data/demo``: monolingual English for language adapters, English pairs for task).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import EdgecompError

TRAINERS = ("edgecomp", "hf-trainer")
DATA = Path(__file__).resolve().parents[2] / "data" / "demo"


@dataclass(frozen=True)
class TrainBench:
    kind: str = "language"
    base: str | None = None
    random_config: Path | None = None
    seq_len: int = 512
    batch_size: int = 4
    steps: int = 8
    rank: int = 8
    lr: float = 2e-4
    seed: int = 0
    qlora: bool = False
    device: str = "auto"
    memory_cap_gb: float | None = None

    def check(self) -> None:
        """What the options decide together (each option's range: ``edgecomp.options``)."""
        if self.random_config is not None:
            from transformers import CONFIG_MAPPING

            if _read(self.random_config).get("model_type") not in CONFIG_MAPPING:
                raise EdgecompError(f"--random-config {self.random_config}: no model_type transformers knows")
        if self.memory_cap_gb is not None and not self.resolved_device().startswith("cuda"):
            raise EdgecompError("--memory-cap-gb limits GPU memory; this run is on the CPU")

    def resolved_device(self) -> str:
        from ..models.load import check_device

        return check_device(self.device)


def _first_unlabelled(examples):
    """The first token of an example is never predicted; ``Trainer`` still counts its label when it
    divides the summed loss (``num_items_in_batch``), which would lower its loss by (n - 1) / n.
    Unlabelled on both sides, the two losses mean the same thing; edgecomp's is unchanged."""
    from ..data.examples import IGNORE

    return [(ids, [IGNORE, *labels[1:]]) for ids, labels in examples]


def _model(o: TrainBench, device: str):
    """(model with LoRA, examples, pad id)."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    from ..train.lora import lora_config

    if o.random_config is not None:
        from transformers import AutoConfig, AutoModelForCausalLM

        from ..models.load import compute_dtype

        fields = _read(o.random_config)
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        torch.manual_seed(o.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=compute_dtype(device)).to(device)
        examples = _random_examples(o, config.vocab_size)
        pad_id = 0
    else:
        from ..models.load import load_causal_lm
        from ..models.resolve import resolve_base

        base = resolve_base(o.base)
        model = load_causal_lm(base.path, qlora=o.qlora, device=device)
        examples, pad_id = _examples(o, base.path)
    if o.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    torch.manual_seed(o.seed)
    return get_peft_model(model, lora_config(model, o.rank, 2.0 * o.rank, 0.0)), _first_unlabelled(examples), pad_id


def _read(path) -> dict:
    from ..model_folder import read_json

    return read_json(Path(path))


def _random_examples(o: TrainBench, vocab: int) -> list[tuple[list[int], list[int]]]:
    """Random ids; language: every token labelled; task: the last quarter (the "summary")."""
    import torch

    from ..data.examples import IGNORE

    g = torch.Generator().manual_seed(o.seed)
    out = []
    for _ in range(o.steps * o.batch_size):
        ids = torch.randint(4, vocab, (o.seq_len,), generator=g).tolist()
        cut = 0 if o.kind == "language" else o.seq_len * 3 // 4
        out.append((ids, [IGNORE] * cut + ids[cut:]))
    return out


def _examples(o: TrainBench, base_path: Path):
    from ..data.tokenizer import load_tokenizer
    from ..model_folder import special_ids
    from ..train.adapter import TrainOptions, build_examples, read_data

    data = DATA / ("mono_en.txt" if o.kind == "language" else "task_en.jsonl")
    options = TrainOptions(kind=o.kind, lang="en", data=data, out=Path("unused"), seq_len=o.seq_len, seed=o.seed)
    ids = special_ids(base_path)
    examples = build_examples(options, read_data(options), load_tokenizer(base_path), ids.bos, ids.eos[0])
    if not examples:
        raise EdgecompError(f"{data}: no training examples at --seq-len {o.seq_len}")
    return examples, 0


def _order(o: TrainBench, n: int) -> list[int]:
    """The example indices edgecomp's loop draws, batch after batch."""
    from ..train.loop import micro_batches

    batches = micro_batches(n, o.batch_size, o.seed)
    return [i for _ in range(o.steps) for i in next(batches)]


def _run_edgecomp(o: TrainBench, model, examples, pad_id, device) -> tuple[list[float], int]:
    from ..train.loop import train_loop

    stats = train_loop(
        model,
        examples,
        steps=o.steps,
        batch_size=o.batch_size,
        grad_accum=1,
        lr=o.lr,
        seed=o.seed,
        pad_id=pad_id,
        device=device,
        description="edgecomp trainer",
    )
    return stats.losses, stats.tokens


def _run_hf_trainer(o: TrainBench, model, examples, pad_id, device) -> tuple[list[float], int]:
    import tempfile

    import torch
    from transformers import Trainer, TrainingArguments

    from ..train.loop import collate

    ordered = [examples[i] for i in _order(o, len(examples))]

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return torch.utils.data.SequentialSampler(self.train_dataset)

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=o.batch_size,
            max_steps=o.steps,
            learning_rate=o.lr,
            lr_scheduler_type="linear",
            warmup_steps=min(10, o.steps // 10),
            weight_decay=0.0,
            max_grad_norm=1.0,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=o.seed,
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        trainer = InOrder(
            model=model,
            args=args,
            train_dataset=ordered,
            data_collator=lambda batch: {k: v.cpu() for k, v in collate(batch, pad_id, "cpu").items()},
        )
        trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    tokens = sum(len(ids) for ids, _ in ordered)
    return losses, tokens


def _worker(conn, trainer: str, o: TrainBench) -> None:
    """Child process: train with ``trainer``, send the result. Its stdout goes to stderr: progress
    lines and ``Trainer``'s printed logs must not mix into the parent's ``--json`` output."""
    os.dup2(2, 1)
    try:
        import torch

        from ..train.metrics_log import peak_memory

        device = o.resolved_device()
        if o.memory_cap_gb is not None:
            total = torch.cuda.get_device_properties(0).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, o.memory_cap_gb * 2**30 / total))
        model, examples, pad_id = _model(o, device)
        run = _run_edgecomp if trainer == "edgecomp" else _run_hf_trainer
        start = time.perf_counter()
        losses, tokens = run(o, model, examples, pad_id, device)
        seconds = time.perf_counter() - start
        conn.send(
            {
                "trainer": trainer,
                "device": device,
                "tokens": tokens,
                "seconds": round(seconds, 3),
                "tokens_per_s": round(tokens / seconds, 2),
                "losses": [round(x, 5) for x in losses],
                **peak_memory(device),
            }
        )
    except BaseException as e:
        message = str(e) if isinstance(e, EdgecompError) else f"{type(e).__name__}: {e}"
        conn.send({"trainer": trainer, "error": message, "traceback": traceback.format_exc()})
    finally:
        conn.close()


def _in_child(trainer: str, o: TrainBench) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=_worker, args=(child, trainer, o), daemon=True)
    process.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        result = {"trainer": trainer, "error": f"the {trainer} process died (exit code {process.exitcode})"}
    process.join(timeout=30)
    return result


def bench_train(o: TrainBench) -> dict:
    """Both trainers, one after the other (each alone on the machine); their results and ratios."""
    o.check()
    results = {trainer: _in_child(trainer, o) for trainer in TRAINERS}
    for result in results.values():
        if "error" in result:
            raise EdgecompError(f"{result['trainer']}: {result['error']}")
    ours, theirs = results["edgecomp"], results["hf-trainer"]
    memory = next(k for k in ("gpu_allocated_mb", "peak_rss_mb") if k in ours)
    return {
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()},
        "trainers": results,
        "ratios": {
            "tokens_per_s": round(ours["tokens_per_s"] / theirs["tokens_per_s"], 3),
            memory: round(ours[memory] / theirs[memory], 3),
        },
        "largest_loss_gap": round(max(abs(a - b) for a, b in zip(ours["losses"], theirs["losses"])), 5),
    }
