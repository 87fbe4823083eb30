"""``metrics.jsonl``: one JSON line per optimizer step, for plots and for following a run from
another terminal (``tail -f <out>.checkpoint/metrics.jsonl``).

Each line holds the step, its loss, the learning rate, tokens so far, tokens/s, seconds, and peak
memory: GPU memory allocated and reserved by PyTorch on CUDA, the process's peak resident set on
CPU. The file lives beside the checkpoints while training and is copied into the adapter folder at
the end; a resumed run keeps the lines up to the step it resumes from and appends after them.

With ``report_to="tensorboard"`` the same numbers also go to TensorBoard event files in ``runs/``
beside it (``tensorboard --logdir <out>/runs``), through ``torch.utils.tensorboard``; a resumed run
purges the events of the steps it redoes.
"""

from __future__ import annotations

import resource
from pathlib import Path

from ..errors import EdgecompError
from ..fsutil import append_jsonl, atomic_write_text, read_jsonl_prefix

FILE = "metrics.jsonl"
TENSORBOARD_DIR = "runs"
REPORT_TO = ("none", "tensorboard")


def check_report_to(report_to: str) -> None:
    """Refuse TensorBoard where it is not installed, before any work (the sinks there are:
    ``REPORT_TO``, checked with every option's range by :mod:`edgecomp.options`)."""
    import importlib.util

    if report_to == "tensorboard" and importlib.util.find_spec("tensorboard") is None:
        raise EdgecompError("--report-to tensorboard needs tensorboard: pip install 'edgecomp[tensorboard]'")


def peak_memory(device: str) -> dict[str, float]:
    """Peak memory so far in MiB: ``gpu_allocated_mb``/``gpu_reserved_mb`` on CUDA, else ``peak_rss_mb``."""
    if device.startswith("cuda"):
        import torch

        return {
            "gpu_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "gpu_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
        }
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}  # Linux: KiB


class MetricsLog:
    def __init__(self, path: Path, resumed_step: int = 0, report_to: str = "none"):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_step:  # the whole lines up to that step; a torn line and the steps redone go
            read_jsonl_prefix(path, lambda row: isinstance(row.get("step"), int) and row["step"] <= resumed_step)
        else:
            atomic_write_text(path, "")
        self.tensorboard = None
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(path.parent / TENSORBOARD_DIR), purge_step=resumed_step + 1)

    def write(self, row: dict) -> None:
        append_jsonl(self.path, [row])
        if self.tensorboard is not None:
            for name, value in row.items():
                if name != "step":
                    self.tensorboard.add_scalar(f"train/{name}", value, row["step"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
