"""Resumable training checkpoints in ``<out>.checkpoint/step-NNNNNN/``.

A sibling of the output folder, so that the output appears only once training finished, whole. One
folder per step, each written in a temporary sibling and renamed into place before older ones are
removed: a crash at any moment leaves the previous checkpoint or the new one, never neither.

A checkpoint holds everything that decides the rest of the run, so resuming gives the adapter an
uninterrupted run gives, bit for bit: the LoRA weights, AdamW's moments, the scheduler, the losses
and token count so far, and the RNG state (torch CPU, and CUDA when used: LoRA dropout draws from
it). The data order needs none: it is replayed from the seed (``loop.micro_batches``). On a GPU,
"bit for bit" holds as far as its kernels are deterministic, as between two uninterrupted runs.
Tensors are stored as safetensors and the rest as JSON, so resuming unpickles nothing.

The options that decide the result are fingerprinted; resuming with different ones is refused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..errors import EdgecompError
from ..finite import check_finite
from ..fsutil import atomic_dir, write_json
from .metrics_log import TENSORBOARD_DIR

FORMAT = "edgecomp-checkpoint/1"
STATE = "state.json"


class TrainingInterrupted(EdgecompError):
    """Training stopped on Ctrl-C after a checkpoint was saved; the message says how to resume."""

    exit_code = 130  # the shell's code for "stopped by Ctrl-C", as for any other interruption


def checkpoint_folder(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest whole checkpoint in ``folder`` (temporary folders are hidden and never match)."""
    steps = sorted(folder.glob("step-*")) if folder.is_dir() else []
    return steps[-1] if steps else None


def _nothing_to_resume(folder: Path) -> EdgecompError:
    return EdgecompError(f"no checkpoint to resume from in {folder}; run without --resume to start over")


def check_start(out: Path, resume: bool, force: bool) -> None:
    """Before any work: ``resume`` needs a checkpoint; without it an existing one is kept unless ``force``."""
    folder = checkpoint_folder(out)
    found = latest_checkpoint(folder)
    if resume and found is None:
        raise _nothing_to_resume(folder)
    if not resume and found is not None and not force:
        raise EdgecompError(
            f"{folder} holds a checkpoint of an interrupted run ({found.name}); "
            "add --resume to continue it, or --force to start over"
        )


def _rng_state(device: str) -> dict:
    import torch

    state = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        state |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    cuda = sorted((int(k.split(".")[1]), v) for k, v in state.items() if k.startswith("cuda."))
    if cuda:
        torch.cuda.set_rng_state_all([v for _, v in cuda])


def _split_optimizer(state_dict: dict) -> tuple[dict, dict]:
    """AdamW's ``state_dict`` as (tensors for safetensors, the JSON rest)."""
    import torch

    tensors, plain = {}, {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.contiguous()
            else:
                plain.setdefault(str(index), {})[name] = value
    return tensors, {"state": plain, "param_groups": state_dict["param_groups"]}


def _join_optimizer(tensors: dict, plain: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in plain["state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": plain["param_groups"]}


def _differences(saved: dict, current: dict) -> list[str]:
    return [
        f"{k}: {saved.get(k)!r} then, {current.get(k)!r} now"
        for k in sorted(saved.keys() | current.keys())
        if saved.get(k) != current.get(k)
    ]


class Checkpoints:
    """The checkpoints of one training run (output ``out``, options ``fingerprint``), every ``every`` steps.

    ``every=None`` saves only when interrupted.
    """

    def __init__(self, out: Path, fingerprint: dict, every: int | None):
        self.folder = checkpoint_folder(out)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # as it reads back: tuples → lists
        self.every = every

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def save(self, model, optimizer, scheduler, stats, device: str) -> Path:
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        path = self.folder / f"step-{stats.steps:06d}"
        tensors, plain = _split_optimizer(optimizer.state_dict())
        with atomic_dir(path, force=True) as tmp:
            save_file(
                {k: v.contiguous() for k, v in get_peft_model_state_dict(model).items()}, tmp / "adapter.safetensors"
            )
            save_file(tensors, tmp / "optimizer.safetensors")
            save_file(_rng_state(device), tmp / "rng.safetensors")
            write_json(
                tmp / STATE,
                {
                    "format": FORMAT,
                    "fingerprint": self.fingerprint,
                    "stats": {
                        "steps": stats.steps,
                        "tokens": stats.tokens,
                        "seconds": stats.seconds,
                        "losses": stats.losses,
                    },
                    "optimizer": plain,
                    "scheduler": scheduler.state_dict(),
                },
            )
        for old in self.folder.iterdir():  # older steps, and temporary folders of dead runs
            if old.is_dir() and old != path and old.name != TENSORBOARD_DIR:
                shutil.rmtree(old, ignore_errors=True)
        return path

    def check(self) -> Path:
        """The checkpoint to resume from; refuses a missing one and one made with other options."""
        path = latest_checkpoint(self.folder)
        if path is None:
            raise _nothing_to_resume(self.folder)
        try:
            state = json.loads((path / STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise EdgecompError(f"{path}: unreadable checkpoint; remove {self.folder} to start over") from None
        if state.get("format") != FORMAT:
            raise EdgecompError(f"{path}: not an {FORMAT} checkpoint; remove {self.folder} to start over")
        changed = _differences(state["fingerprint"], self.fingerprint)
        if changed:
            raise EdgecompError(
                f"cannot resume from {path}: it was made with other options or data ({'; '.join(changed)}); "
                f"rerun with the same ones, or remove {self.folder} to start over"
            )
        return path

    def restore(self, path: Path, model, optimizer, scheduler) -> dict:
        """Put model, optimizer, scheduler and RNG back as they were after the checkpoint's step.

        Returns the saved ``LoopStats`` fields.
        """
        from peft import get_peft_model_state_dict, set_peft_model_state_dict
        from safetensors.torch import load_file

        state = json.loads((path / STATE).read_text(encoding="utf-8"))
        tensors = {name: _load(path / f"{name}.safetensors", load_file) for name in ("adapter", "optimizer", "rng")}
        expected = get_peft_model_state_dict(model)
        for key, tensor in tensors["adapter"].items():
            if key not in expected or expected[key].shape != tensor.shape:
                raise EdgecompError(
                    f"{path}: adapter tensor '{key}' {tuple(tensor.shape)} does not fit the model; "
                    f"remove {self.folder} to start over"
                )
        set_peft_model_state_dict(model, tensors["adapter"])
        optimizer.load_state_dict(_join_optimizer(tensors["optimizer"], state["optimizer"]))
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(tensors["rng"])
        return state["stats"]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _load(file: Path, load_file) -> dict:
    """A checkpoint's safetensors file, whole and finite, or one line saying which is not."""
    from safetensors import SafetensorError

    try:
        tensors = load_file(file)
    except (SafetensorError, OSError, ValueError) as e:
        raise EdgecompError(
            f"{file}: damaged checkpoint file ({e}); remove {file.parent.parent} to start over"
        ) from None
    check_finite(tensors.items(), file)
    return tensors
