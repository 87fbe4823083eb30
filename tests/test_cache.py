"""Cache entries are whole or absent, built once even when two processes ask at the same time."""

import json
import multiprocessing as mp
import os
import time

import pytest

from edgecomp.fsutil import sha256_file
from edgecomp.models.cache import MANIFEST, cached_entry


def _slow_build(tmp):
    (tmp / "weights.bin").write_bytes(os.urandom(1000))
    with open(os.environ["BUILD_LOG"], "a") as log:
        log.write(f"{os.getpid()}\n")
    time.sleep(1.0)
    return {"pid": os.getpid()}


def _worker(queue):
    queue.put(str(cached_entry("models", "demo", _slow_build)))


def test_two_processes_build_once(tmp_path, monkeypatch):
    monkeypatch.setenv("BUILD_LOG", str(tmp_path / "log"))
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(queue,)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    paths = {queue.get(timeout=5) for _ in procs}
    assert len(paths) == 1
    assert len((tmp_path / "log").read_text().split()) == 1
    entry = next(iter(paths))
    manifest = json.loads(open(os.path.join(entry, MANIFEST)).read())
    assert manifest["files"]["weights.bin"] == sha256_file(os.path.join(entry, "weights.bin"))


def test_failed_build_leaves_nothing(edgecomp_home):
    def broken(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cached_entry("models", "broken", broken)
    assert not (edgecomp_home / "models" / "broken").exists()
    assert not any(p.name.startswith(".broken.tmp") for p in (edgecomp_home / "models").iterdir())
