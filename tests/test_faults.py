"""Faults: processes killed at random moments, a full disk, damaged cache entries, untrusted checkpoints.

Whenever a process dies, an output folder is absent or whole; temporary siblings are hidden, and the
next run of the same command removes those of dead processes; a surviving checkpoint resumes, to the
adapter an uninterrupted run writes.

The killed processes run the real CLI (``edgecomp.cli.main``), forked from a forkserver that imported
torch, transformers and edgecomp once, so a run costs its work and not 6 s of imports. In them, JSON
writes and file copies sleep a little (``SLOW``): that widens the saving windows, so that kills aimed
at a save (synchronised on its temporary folder appearing) land inside it. Torch runs on one thread
there and in the reference run: on a busy machine two OpenMP threads spin-wait each other to 50×
slower steps, and the reference adapter must come from the same arithmetic.
"""

import errno
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from typer.testing import CliRunner

from edgecomp import fsutil
from edgecomp.cli import app
from edgecomp.errors import EdgecompError
from edgecomp.models.cache import MANIFEST, cached_entry, verify_entry
from edgecomp.models.load import load_causal_lm
from edgecomp.models.resolve import resolve_base
from edgecomp.train.adapter import TrainOptions, train_adapter
from edgecomp.train.checkpoint import checkpoint_folder, latest_checkpoint

SLOW = 0.3
PRELOAD = [
    "torch",
    "transformers",
    "peft",
    "safetensors.torch",
    "transformers.models.llama.modeling_llama",
    "optimum.exporters.onnx",
    "edgecomp.cli",
    "edgecomp.train.adapter",
    "edgecomp.export.merge_export",
    "test_faults",
]
TRAIN = dict(kind="language", lang="sw", steps=200, seq_len=32, batch_size=2, rank=4, lr=2e-2, device="cpu")


def _child(argv: list[str], log: str, home: str, train_options: dict) -> None:
    """A forked process: the CLI with ``argv``, output to ``log``, slow writes, extra train options."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ["EDGECOMP_HOME"] = home
    torch.set_num_threads(1)
    from edgecomp.cli import main

    write, copy = fsutil.atomic_write_text, shutil.copy2

    def slow_write(*args):
        write(*args)
        time.sleep(SLOW)

    def slow_copy(*args, **kwargs):
        time.sleep(SLOW / 4)
        return copy(*args, **kwargs)

    fsutil.atomic_write_text, shutil.copy2 = slow_write, slow_copy
    extra = [f"--save-every={train_options['save_every']}"] if "save_every" in train_options else []
    extra += ["--resume"] if train_options.get("resume") else []
    sys.argv = ["edgecomp", *map(str, argv), *extra]
    main()


@pytest.fixture
def one_thread():
    """In-process training on one thread too (see the module's docstring)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


class Runs:
    """CLI runs in forked processes, each killed once ``ready(log, pid)`` and then ``delay`` seconds passed."""

    def __init__(self, ctx, home: Path, logs: Path):
        self.ctx, self.home, self.logs, self.count = ctx, home, logs, 0

    def run(self, argv, ready=None, delay: float | None = None, sig=signal.SIGKILL, **train_options):
        self.count += 1
        log = self.logs / f"run-{self.count}.log"
        proc = self.ctx.Process(target=_child, args=(argv, str(log), str(self.home), train_options))
        proc.start()
        deadline = time.monotonic() + 120
        if delay is not None:
            while ready is not None and not ready(log, proc.pid) and proc.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(delay)
            if proc.is_alive():
                os.kill(proc.pid, sig)
        proc.join(max(1.0, deadline - time.monotonic()))
        if proc.exitcode is None:
            proc.kill()
            proc.join()
            pytest.fail(f"run {self.count} hung: {log.read_text()}")
        return proc.exitcode, log.read_text(errors="replace"), proc.pid


def _says(text: str):
    return lambda log, pid: log.is_file() and text in log.read_text(errors="replace")


def _appears(folder: Path, pattern: str):
    """``pattern`` (with ``{pid}``: this run's temporary folders, not those a killed run left) exists."""
    return lambda log, pid: folder.is_dir() and any(folder.glob(pattern.format(pid=pid)))


def assert_adapter_absent_or_whole(out: Path) -> None:
    if not out.exists():
        return
    assert {"adapter_config.json", "adapter_model.safetensors", "edgecomp.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "edgecomp.json").read_text())["steps"] == TRAIN["steps"]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == TRAIN["rank"]
    assert load_file(out / "adapter_model.safetensors")


def assert_checkpoints_whole(folder: Path) -> None:
    if not folder.exists():
        return
    for entry in folder.iterdir():
        assert entry.name.startswith((".", "step-")) or entry.name == "metrics.jsonl", entry
        if entry.name.startswith("step-"):
            assert json.loads((entry / "state.json").read_text())["stats"]["steps"] == int(entry.name[5:])
            for name in ("adapter", "optimizer", "rng"):
                load_file(entry / f"{name}.safetensors")


def assert_only_hidden_debris(folder: Path, *results: Path) -> None:
    """Besides the results (and the checkpoint folder), only hidden temporary siblings."""
    allowed = {r.name for r in results} | {checkpoint_folder(r).name for r in results}
    assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} <= allowed


def test_train_killed_at_random_moments_then_resumed(forkserver, one_thread, tiny_llama_dir, mono_file, tmp_path):
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir(), logs.mkdir()
    out, folder = work / "adapter", checkpoint_folder(work / "adapter")
    reference = tmp_path / "reference"
    train_adapter(TrainOptions(base=str(tiny_llama_dir), data=mono_file, out=reference, save_every=None, **TRAIN))

    runs = Runs(forkserver, tmp_path / "home", logs)
    argv = [
        "train",
        "--base",
        tiny_llama_dir,
        "--data",
        mono_file,
        "--out",
        out,
        *[x for k, v in TRAIN.items() for x in (f"--{k.replace('_', '-')}", v)],
    ]
    training = _says("optimizer steps on")
    saving = (0.0, 0.5 * SLOW)  # delays that land inside a save: its temporary folder lives > SLOW
    plan = [  # (what the kill aims at, when to start the delay, delay range, signal)
        ("loading", None, (0.0, 0.4), signal.SIGKILL),
        ("training", training, (0.0, 0.6), signal.SIGKILL),
        ("checkpoint save", _appears(folder, ".step-*.tmp-{pid}@*"), saving, signal.SIGKILL),
        ("training", training, (0.1, 0.6), signal.SIGINT),
        ("result save", _appears(work, ".adapter.tmp-{pid}@*"), saving, signal.SIGKILL),
    ]
    rng = random.Random(1729)
    for aim, ready, (low, high), sig in plan:
        if out.exists():
            break
        resume = latest_checkpoint(folder) is not None
        code, log, pid = runs.run(argv, ready, rng.uniform(low, high), sig, save_every=40, resume=resume)
        if aim.endswith("save"):
            assert code == -signal.SIGKILL and ready(log, pid), f"the kill missed the {aim}: {log}"
        if sig == signal.SIGINT and code != 0:
            step = latest_checkpoint(folder).name[5:].lstrip("0")
            assert (
                f"edgecomp: error: interrupted at step {step}/{TRAIN['steps']}; checkpoint saved in {folder}; "
                "resume with the same command plus --resume" in " ".join(log.split())
            )
            assert code == 130
        else:
            assert code in (-signal.SIGKILL, 0), (aim, code, log)
        assert_adapter_absent_or_whole(out)
        assert_checkpoints_whole(folder)
        assert_only_hidden_debris(work, out)

    if not out.exists():
        code, log, _ = runs.run(argv, save_every=40, resume=latest_checkpoint(folder) is not None)
        assert code == 0, log
    assert_adapter_absent_or_whole(out)
    assert (out / "adapter_model.safetensors").read_bytes() == (reference / "adapter_model.safetensors").read_bytes()
    assert [p.name for p in work.iterdir()] == ["adapter"]  # dead runs' temporary folders were removed


def assert_export_absent_or_whole(out: Path) -> None:
    if not out.exists():
        return
    manifest = json.loads((out / "edgecomp-export.json").read_text())
    assert set(manifest["files"]) == {p.name for p in out.iterdir()} - {"edgecomp-export.json"}
    assert all(fsutil.sha256_file(out / name) == digest for name, digest in manifest["files"].items())


def assert_cache_whole(root: Path) -> None:
    for entry in root.iterdir() if root.is_dir() else []:
        if not entry.name.startswith("."):
            assert verify_entry(entry, full=True) is None, entry


def test_merge_export_killed_at_random_moments(forkserver, tiny_llama_dir, tmp_path):
    work, logs, home = tmp_path / "work", tmp_path / "logs", tmp_path / "home"
    work.mkdir(), logs.mkdir()
    out = work / "export"
    runs = Runs(forkserver, home, logs)
    argv = ["merge-export", "--base", tiny_llama_dir, "--out", out]
    plan = [
        ("loading", None, (0.0, 0.4)),
        ("merging and exporting", _appears(home / "exports", ".*.tmp-{pid}@*"), (0.0, 1.0)),
        (
            "cache entry save",
            _appears(home / "exports", ".*.tmp-{pid}@*/export/edgecomp-export.json"),
            (0.0, 0.5 * SLOW),
        ),
        ("output save", _appears(work, ".export.tmp-{pid}@*"), (0.0, SLOW)),  # 7 copies, SLOW / 4 each
    ]
    rng = random.Random(4104)
    for aim, ready, (low, high) in plan:
        if out.exists():
            break
        code, log, pid = runs.run(argv, ready, rng.uniform(low, high))
        assert code in (-signal.SIGKILL, 0), (aim, code, log)
        if aim.endswith("save"):
            assert code == -signal.SIGKILL and ready(log, pid), f"the kill missed the {aim}: {log}"
        assert_export_absent_or_whole(out)
        assert_cache_whole(home / "exports")
        assert_only_hidden_debris(work, out)

    if not out.exists():
        code, log, _ = runs.run(argv)
        assert code == 0, log
    assert_export_absent_or_whole(out)
    assert [p.name for p in work.iterdir()] == ["export"]


def test_ctrl_c_during_export_leaves_nothing(forkserver, tiny_llama_dir, tmp_path):
    """SIGINT (Ctrl-C) in the middle of the export: exit 130, no output, no visible debris, cache whole.

    With an adapter to merge: the base alone is exported as it is, too fast to be interrupted."""
    from adapters import make_adapter

    work, logs, home = tmp_path / "work", tmp_path / "logs", tmp_path / "home"
    work.mkdir(), logs.mkdir()
    out = work / "export"
    runs = Runs(forkserver, home, logs)
    adapter = make_adapter(tiny_llama_dir, tmp_path / "adapter", 0)
    argv = ["merge-export", "--base", tiny_llama_dir, "--adapter", f"{adapter}:1", "--out", out]
    code, log, pid = runs.run(argv, _appears(home / "exports", ".*.tmp-{pid}@*"), 0.2, signal.SIGINT)
    assert code == 130 and "interrupted" in log, log
    assert not out.exists() and list(work.iterdir()) == []
    assert_cache_whole(home / "exports")
    assert not [p for p in (home / "exports").iterdir() if p.name.startswith(".") and p.is_dir()]


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_saving_an_adapter(one_thread, tiny_llama_dir, mono_file, tmp_path, monkeypatch):
    out = tmp_path / "adapter"
    genuine = fsutil.atomic_write_text
    monkeypatch.setattr(
        fsutil, "atomic_write_text", lambda p, t: _disk_full() if Path(p).name == "edgecomp.json" else genuine(p, t)
    )
    args = [
        "train",
        "--base",
        tiny_llama_dir,
        "--data",
        mono_file,
        "--out",
        out,
        "--kind",
        "language",
        "--lang",
        "sw",
        "--steps",
        2,
        "--seq-len",
        32,
        "--batch-size",
        2,
        "--rank",
        4,
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 2
    assert f"edgecomp: error: disk full while writing {out}; nothing was written" in result.output
    assert list(tmp_path.iterdir()) == []


def test_disk_full_in_a_rust_writer_while_saving_a_checkpoint(
    one_thread, tiny_llama_dir, mono_file, tmp_path, monkeypatch
):
    """safetensors reports ENOSPC as a SafetensorError whose message ends in "(os error 28)"."""
    import safetensors.torch

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "adapter"
    options = TrainOptions(base=str(tiny_llama_dir), data=mono_file, out=out, save_every=2, **{**TRAIN, "steps": 4})
    with pytest.raises(EdgecompError, match=f"disk full while writing {checkpoint_folder(out) / 'step-000002'}"):
        train_adapter(options)
    assert not out.exists() and not checkpoint_folder(out).exists()  # no checkpoint: no folder (metrics alone)


def test_disk_full_while_exporting(one_thread, tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECOMP_HOME", str(tmp_path / "home"))
    genuine = fsutil.atomic_write_text
    monkeypatch.setattr(
        fsutil,
        "atomic_write_text",
        lambda p, t: _disk_full() if Path(p).name == "edgecomp-export.json" else genuine(p, t),
    )
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["merge-export", "--base", str(tiny_llama_dir), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"edgecomp: error: disk full while writing {tmp_path / 'home' / 'exports'}" in result.output
    assert not out.exists()
    assert [p.name for p in (tmp_path / "home" / "exports").iterdir() if not p.name.endswith(".lock")] == []


def test_stale_temporary_siblings_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    live, host = os.getpid(), fsutil._host()
    leftovers = [f".out.tmp-{dead.pid}@{host}-abc12345", f".out.old-{dead.pid}@{host}"]
    kept = [f".out.tmp-{live}@{host}-abc12345", f".out.tmp-{dead.pid}@0000ffff-abc12345", ".other.tmp-1@x-y"]
    for name in leftovers + kept:
        (tmp_path / name).mkdir()
    with fsutil.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "x").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["out"])


def test_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGECOMP_HOME", str(tmp_path))
    builds = []

    def build(tmp):
        builds.append(1)
        (tmp / "weights.bin").write_bytes(bytes(range(256)) * 4)
        return {}

    entry = cached_entry("models", "demo", build)
    manifest = json.loads((entry / MANIFEST).read_text())
    assert manifest["sizes"] == {"weights.bin": 1024} and verify_entry(entry) is None
    assert cached_entry("models", "demo", build) == entry and len(builds) == 1

    with open(entry / "weights.bin", "r+b") as f:  # same size, other bytes: only the full check sees it
        f.write(b"\xff")
    assert verify_entry(entry, full=False) is None
    assert verify_entry(entry, full=True) == "weights.bin does not match its sha256"

    os.truncate(entry / "weights.bin", 100)
    assert verify_entry(entry, full=False) == "weights.bin has 100 bytes, expected 1024"
    assert cached_entry("models", "demo", build) == entry and len(builds) == 2
    said = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert f"cache entry {entry} is damaged (weights.bin has 100 bytes, expected 1024); rebuilding it" in said
    assert verify_entry(entry, full=True) is None

    (entry / "weights.bin").unlink()
    assert cached_entry("models", "demo", build) == entry and len(builds) == 3


@pytest.fixture
def copy_of(tiny_llama_dir, tmp_path):
    def copy(name="base"):
        return Path(shutil.copytree(tiny_llama_dir, tmp_path / name))

    return copy


@pytest.mark.parametrize("keep", [0, 7, 100, -1])
def test_truncated_safetensors_are_refused_naming_the_file(copy_of, keep):
    base = copy_of()
    weights = base / "model.safetensors"
    os.truncate(weights, keep if keep >= 0 else weights.stat().st_size - 1)
    with pytest.raises(EdgecompError, match=f"{weights}: damaged or truncated safetensors file"):
        resolve_base(str(base))


def test_missing_shard_is_refused(copy_of):
    base = copy_of()
    (base / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(EdgecompError, match="missing: model-00002-of-00002.safetensors"):
        resolve_base(str(base))


def test_pickle_weights_load_only_when_allowed(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    pickled = tmp_path / "pickled"
    AutoModelForCausalLM.from_pretrained(tiny_llama_dir).save_pretrained(pickled, safe_serialization=False)
    shutil.copy(tiny_llama_dir / "tokenizer.json", pickled)
    assert not list(pickled.glob("*.safetensors")) and list(pickled.glob("*.bin"))
    with pytest.raises(EdgecompError, match="only pickle .bin weights found.*--allow-pickle"):
        resolve_base(str(pickled))
    assert resolve_base(str(pickled), allow_pickle=True).path == pickled
    ids = torch.tensor([[2, 30, 31, 32]])
    with torch.no_grad():
        expected = load_causal_lm(tiny_llama_dir)(ids).logits
        assert torch.equal(load_causal_lm(pickled, allow_pickle=True)(ids).logits, expected)


def test_remote_code_runs_only_when_trusted(copy_of):
    base = copy_of()
    config = json.loads((base / "config.json").read_text())
    custom = {**config, "model_type": "edgecomp-custom", "auto_map": {"AutoModelForCausalLM": "modeling.Custom"}}
    (base / "config.json").write_text(json.dumps(custom))
    with pytest.raises(EdgecompError, match="Python code shipped with it .*--trust-remote-code"):
        load_causal_lm(base)
    # a known architecture with a stale auto_map loads the library's code, not the folder's
    (base / "config.json").write_text(json.dumps({**config, "auto_map": custom["auto_map"]}))
    assert load_causal_lm(base).config.model_type == "llama"
