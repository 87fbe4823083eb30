"""A plain PyTorch training loop: AdamW, linear warm-up/decay, gradient accumulation, a rich progress bar.

Kept small on purpose (rather than ``transformers.Trainer``) so the bar shows loss and tokens/s
(plain lines, about every tenth of the run, when stderr is not a terminal), and step counts mean
optimizer steps whatever the accumulation. The loss is :func:`.loss.causal_lm_loss`: logits only
where a label needs them.

With ``checkpoints`` the loop saves every few steps and can start from a saved step (see
:mod:`.checkpoint`), and Ctrl-C stops it cleanly: the first one lets the current optimizer step
finish, saves a checkpoint and raises :class:`TrainingInterrupted` (a half-applied AdamW update could
not be resumed exactly); a second one stops at once. During the last step, Ctrl-C lets training
finish, since the result is then one write away.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..console import console
from ..data.examples import IGNORE
from ..errors import EdgecompError
from . import distributed
from .checkpoint import Checkpoints, TrainingInterrupted, latest_checkpoint
from .loss import causal_lm_loss, labelled_tokens
from .metrics_log import MetricsLog, peak_memory


@dataclass
class LoopStats:
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        tail = self.losses[-max(1, min(10, len(self.losses) // 5)) :]
        return sum(tail) / len(tail)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def collate(batch: list[tuple[list[int], list[int]]], pad_id: int, device: str):
    """Right-pad a list of ``(input_ids, labels)`` into tensors with an attention mask."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (x, y) in enumerate(batch):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def total_steps(n_examples: int, batch_size: int, grad_accum: int, steps: int | None, epochs: float) -> int:
    if steps:
        return steps
    return max(1, math.ceil(epochs * n_examples / (batch_size * grad_accum)))


def micro_batches(n: int, batch_size: int, seed: int, start: int = 0) -> Iterator[list[int]]:
    """An endless stream of shuffled index batches, reshuffled each epoch, reproducible by seed.

    The first ``start`` batches are skipped by replaying the shuffles (cheap: only permutations of
    ``n``), so a resumed run gets exactly the batches an uninterrupted one would, with no state saved.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    index = 0
    while True:
        order = torch.randperm(n, generator=gen).tolist()
        for i in range(0, n, batch_size):
            if index >= start:
                yield order[i : i + batch_size]
            index += 1


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn the first Ctrl-C into a flag the loop checks between optimizer steps.

    The second Ctrl-C raises KeyboardInterrupt as usual. Signal handlers exist only in the main
    thread, and a handler someone else installed is left alone: then the flag stays False.
    """
    hit = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield lambda: False
        return

    def handler(signum, frame):
        hit.append(signum)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _diverged(step: int, loss: float, norm: float, checkpoints: Checkpoints | None) -> EdgecompError:
    """The error for a non-finite loss or gradient: nothing of that step is applied or saved."""
    what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {norm}"
    kept = ""
    if checkpoints is not None:
        last = latest_checkpoint(checkpoints.folder)
        kept = f"; the last checkpoint ({last}) is kept" if last else "; there is no checkpoint to keep"
    return EdgecompError(
        f"step {step}: {what}, so training stopped without writing an adapter{kept}; lower --lr, or check the data"
    )


def train_loop(
    model,
    examples: list[tuple[list[int], list[int]]],
    *,
    steps: int,
    batch_size: int,
    grad_accum: int,
    lr: float,
    seed: int,
    pad_id: int,
    device: str,
    description: str,
    checkpoints: Checkpoints | None = None,
    resume_from: Path | None = None,
    metrics_file: Path | None = None,
    report_to: str = "none",
) -> LoopStats:
    """Train for ``steps`` optimizer steps, from ``resume_from`` (a checkpoint of ``checkpoints``) if
    given, writing a line per step to ``metrics_file`` (:mod:`.metrics_log`, and TensorBoard with
    ``report_to``) if given."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from transformers import get_linear_schedule_with_warmup

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warmup = min(10, steps // 10)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, steps)
    stats = LoopStats()
    if resume_from is not None:
        stats = LoopStats(**checkpoints.restore(resume_from, model, optimizer, scheduler))
        console.print(f"[bold]resuming[/] at step {stats.steps}/{steps} from {resume_from}")
    world = distributed.world(device)
    distributed.check_split(batch_size, world.size)
    metrics = MetricsLog(metrics_file, stats.steps, report_to) if metrics_file is not None and world.main else None
    batches = micro_batches(len(examples), batch_size, seed, start=stats.steps * grad_accum)
    model.train()
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[tps]} tok/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    start = time.perf_counter() - stats.seconds
    interrupt = deferred_interrupt() if checkpoints is not None else contextlib.nullcontext(lambda: False)
    closing = contextlib.closing(metrics) if metrics is not None else contextlib.nullcontext()
    with closing, interrupt as interrupted, Progress(*columns, console=console, disable=not world.main) as bar:
        task = bar.add_task(description, total=steps, completed=stats.steps, loss="-", tps="-")
        while stats.steps < steps:
            step_loss = 0.0
            for _ in range(grad_accum):
                mine = world.share(next(batches))
                batch = collate([examples[i] for i in mine], pad_id, device) if mine else None
                local = labelled_tokens(batch["labels"]) if batch else 0
                labelled = world.sum(local)
                if local:
                    loss = causal_lm_loss(model, batch, normalizer=int(labelled))
                    (loss / grad_accum).backward()
                    step_loss += loss.item() / grad_accum
                stats.tokens += int(world.sum(int(batch["attention_mask"].sum()) if batch else 0))
            if world.size > 1:
                step_loss = world.sum(step_loss)
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    world.sum(p.grad)
            norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
            if not (math.isfinite(step_loss) and math.isfinite(norm)):
                raise _diverged(stats.steps + 1, step_loss, norm, checkpoints)
            lr_now = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            stats.steps += 1
            stats.losses.append(step_loss)
            stats.seconds = time.perf_counter() - start
            bar.update(task, advance=1, loss=f"{step_loss:.3f}", tps=f"{stats.tokens_per_s:.0f}")
            if metrics is not None:
                metrics.write(
                    {
                        "step": stats.steps,
                        "loss": round(step_loss, 6),
                        "lr": lr_now,
                        "tokens": stats.tokens,
                        "tokens_per_s": round(stats.tokens_per_s, 2),
                        "seconds": round(stats.seconds, 3),
                        **peak_memory(device),
                    }
                )
            if (
                world.main
                and not console.is_terminal
                and (stats.steps % max(1, steps // 10) == 0 or stats.steps == steps)
            ):
                console.print(
                    f"{description}: step {stats.steps}/{steps}, loss {step_loss:.3f}, "
                    f"{stats.tokens_per_s:.0f} tok/s, {stats.seconds:.0f} s",
                    highlight=False,
                )
            if checkpoints is not None and stats.steps < steps and (interrupted() or checkpoints.due(stats.steps)):
                if world.main:
                    checkpoints.save(model, optimizer, scheduler, stats, device)
                world.sum(0)  # the others wait for the checkpoint
                if interrupted():
                    raise TrainingInterrupted(
                        f"interrupted at step {stats.steps}/{steps}; checkpoint saved in {checkpoints.folder}; "
                        "resume with the same command plus --resume"
                    )
    return stats
