"""Checkpoints and --resume: an interrupted run, resumed, writes the very adapter an uninterrupted one writes.

Dropout is on (0.05), so this holds only if the checkpoint restores the RNG as well as the weights,
AdamW's moments, the scheduler and the position in the data stream.
"""

import itertools
import json
import os
import signal

import pytest

from edgecomp.errors import EdgecompError
from edgecomp.train import loop
from edgecomp.train.adapter import TrainOptions, train_adapter
from edgecomp.train.checkpoint import TrainingInterrupted, checkpoint_folder
from edgecomp.train.loop import micro_batches

STEPS = 8


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a busy machine two OpenMP threads spin-wait each other into 50× slower steps."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def options(base, data, out, **kw):
    defaults = dict(
        kind="language", lang="sw", steps=STEPS, seq_len=32, batch_size=2, lr=2e-2, rank=4, save_every=3, device="cpu"
    )
    return TrainOptions(base=str(base), data=data, out=out, **{**defaults, **kw})


def stop_during_step(monkeypatch, step: int, how: str) -> None:
    """During optimizer step ``step``: Ctrl-C (a real SIGINT to this process) or a crash."""
    genuine, calls = loop.collate, itertools.count(1)

    def collate(*args):
        if next(calls) == step:  # grad_accum is 1: one micro-batch per step
            if how == "crash":
                raise RuntimeError("simulated crash")
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler, "Ctrl-C would not be deferred"
            os.kill(os.getpid(), signal.SIGINT)
        return genuine(*args)

    monkeypatch.setattr(loop, "collate", collate)


def adapter_bytes(out):
    return (out / "adapter_model.safetensors").read_bytes()


@pytest.fixture(scope="module", params=["full", "qlora"])
def case(request, tiny_base, mono_file, tmp_path_factory):
    """(base, qlora, adapter bytes of an uninterrupted run), on both tiny bases."""
    qlora = request.param == "qlora"
    out = tmp_path_factory.mktemp("reference") / "adapter"
    train_adapter(options(tiny_base, mono_file, out, qlora=qlora, save_every=None))
    return tiny_base, qlora, adapter_bytes(out)


def test_ctrl_c_saves_then_resume_gives_the_same_adapter(case, mono_file, tmp_path, monkeypatch):
    base, qlora, reference = case
    out = tmp_path / "adapter"
    stop_during_step(monkeypatch, 5, "ctrl-c")
    with pytest.raises(TrainingInterrupted) as stopped:
        train_adapter(options(base, mono_file, out, qlora=qlora))
    folder = checkpoint_folder(out)
    assert str(stopped.value) == (
        f"interrupted at step 5/{STEPS}; checkpoint saved in {folder}; resume with the same command plus --resume"
    )
    assert isinstance(stopped.value, EdgecompError)
    assert not out.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.jsonl", "step-000005"]  # step 3's was replaced
    state = json.loads((folder / "step-000005" / "state.json").read_text())
    assert state["stats"]["steps"] == 5 and len(state["stats"]["losses"]) == 5

    monkeypatch.undo()
    meta = train_adapter(options(base, mono_file, out, qlora=qlora, resume=True))
    assert adapter_bytes(out) == reference
    assert meta["steps"] == STEPS
    assert not folder.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_crash_resumes_from_the_last_periodic_checkpoint(case, mono_file, tmp_path, monkeypatch):
    base, qlora, reference = case
    out = tmp_path / "adapter"
    stop_during_step(monkeypatch, 5, "crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_adapter(options(base, mono_file, out, qlora=qlora))
    assert sorted(p.name for p in checkpoint_folder(out).iterdir()) == ["metrics.jsonl", "step-000003"]
    logged = [json.loads(line)["step"] for line in (checkpoint_folder(out) / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4]  # step 4 ran after the last checkpoint
    monkeypatch.undo()
    train_adapter(options(base, mono_file, out, qlora=qlora, resume=True))
    assert adapter_bytes(out) == reference
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # the resumed run redid step 4, logged once
    assert all(r["tokens_per_s"] > 0 and r["peak_rss_mb"] > 0 and r["lr"] >= 0 for r in rows)


@pytest.fixture
def interrupted(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    """An output folder whose training was stopped by Ctrl-C after step 2."""
    out = tmp_path / "adapter"
    stop_during_step(monkeypatch, 2, "ctrl-c")
    with pytest.raises(TrainingInterrupted):
        train_adapter(options(tiny_llama_dir, mono_file, out, steps=4))
    monkeypatch.undo()
    return out


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(lr=1e-2), "lr: 0.02 then, 0.01 now"),
        (dict(seed=1), "seed"),
        (dict(steps=5), "steps: 4 then, 5 now"),
        (dict(rank=8), "rank"),
    ],
)
def test_resume_with_other_options_is_refused(interrupted, tiny_llama_dir, mono_file, change, named):
    with pytest.raises(EdgecompError, match="cannot resume from .*step-000002: it was made with other options") as e:
        train_adapter(options(tiny_llama_dir, mono_file, interrupted, **{"steps": 4, **change}, resume=True))
    assert named in str(e.value)
    assert not interrupted.exists() and (checkpoint_folder(interrupted) / "step-000002").is_dir()


def test_resume_with_other_data_is_refused(interrupted, tiny_llama_dir, mono_file, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text(mono_file.read_text(encoding="utf-8") + "Mstari mmoja zaidi.\n", encoding="utf-8")
    with pytest.raises(EdgecompError, match="data_sha256"):
        train_adapter(options(tiny_llama_dir, other, interrupted, steps=4, resume=True))


def test_a_checkpoint_is_neither_ignored_nor_silently_dropped(interrupted, tiny_llama_dir, mono_file):
    with pytest.raises(EdgecompError, match="holds a checkpoint of an interrupted run .*add --resume"):
        train_adapter(options(tiny_llama_dir, mono_file, interrupted, steps=4))
    train_adapter(options(tiny_llama_dir, mono_file, interrupted, steps=4, force=True))  # starts over
    assert (interrupted / "adapter_model.safetensors").is_file() and not checkpoint_folder(interrupted).exists()


def test_resume_without_checkpoint_is_refused_before_any_work(tiny_llama_dir, mono_file, tmp_path):
    with pytest.raises(EdgecompError, match="no checkpoint to resume from in .*adapter.checkpoint"):
        train_adapter(options(tiny_llama_dir, mono_file, tmp_path / "adapter", resume=True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n, batch_size", [(7, 2), (4, 4), (5, 1)])
def test_micro_batches_resume_mid_stream(n, batch_size):
    per_epoch = -(-n // batch_size)
    whole = list(itertools.islice(micro_batches(n, batch_size, seed=3), 6 * per_epoch))
    for epoch in range(6):  # each epoch is a permutation
        assert sorted(sum(whole[epoch * per_epoch : (epoch + 1) * per_epoch], [])) == list(range(n))
    assert len({tuple(sum(whole[e * per_epoch : (e + 1) * per_epoch], [])) for e in range(6)}) > 1
    for start in (1, 3, 5):
        assert (
            list(itertools.islice(micro_batches(n, batch_size, seed=3, start=start), len(whole) - start))
            == whole[start:]
        )


def test_resumed_tensorboard_log_holds_each_step_once(tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "adapter"
    stop_during_step(monkeypatch, 5, "crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_adapter(options(tiny_llama_dir, mono_file, out, report_to="tensorboard"))
    monkeypatch.undo()
    train_adapter(options(tiny_llama_dir, mono_file, out, report_to="tensorboard", resume=True))
    events = EventAccumulator(str(out / "runs"))
    events.Reload()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = events.Scalars("train/loss")
    assert [e.step for e in logged] == list(range(1, STEPS + 1))  # step 4, redone, purged from the first file
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
