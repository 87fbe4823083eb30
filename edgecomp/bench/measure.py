"""Run engines in their own processes, interleave their timed runs, and summarise.

Every engine lives in a child process (multiprocessing, spawn), so its peak resident memory
(``ru_maxrss`` of that child, read when it finishes) is its own: interpreter, libraries, weights,
cache and buffers. The parent starts all children, lets each load its model and do a warm-up run,
then asks for one timed run from each in turn, ``repeats`` rounds: a burst of load from other
processes then slows every engine, not just the one that happened to run then. Results are the
medians over the rounds.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import statistics
import sys
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import EdgecompError


@dataclass
class EngineSpec:
    """Which engine to start (``kind`` for :func:`~edgecomp.bench.engines.make_engine`) and how."""

    label: str
    kind: str
    kwargs: dict[str, Any]


@dataclass
class Result:
    engine: str
    detail: str = ""
    prompt_tokens: int = 0
    new_tokens: int = 0
    repeats: int = 0
    threads: int = 0
    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    peak_rss_mb: float = 0.0
    model_bytes: int = 0
    load_s: float = 0.0
    prefill_tok_s_runs: list[float] = field(default_factory=list)
    decode_tok_s_runs: list[float] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _peak_rss_mb() -> float:
    # Linux reports kilobytes, macOS bytes.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _worker(conn, spec: EngineSpec, prompt_tokens: int, new_tokens: int, warmup: int) -> None:
    """Child process: load, warm up, then answer ``run`` requests until ``stop``."""
    try:
        from .engines import make_engine

        engine = make_engine(spec.kind, **spec.kwargs)
        for _ in range(warmup):
            engine.run(prompt_tokens, new_tokens)
        conn.send(
            (
                "ready",
                {
                    "detail": engine.detail,
                    "threads": engine.threads,
                    "load_s": engine.load_s,
                    "model_bytes": engine.model_bytes,
                },
            )
        )
        while conn.recv() == "run":
            conn.send(("ran", engine.run(prompt_tokens, new_tokens)))
        conn.send(("done", _peak_rss_mb()))
    except BaseException as e:  # anything: the parent reports it as this engine's error
        message = str(e) if isinstance(e, EdgecompError) else f"{type(e).__name__}: {e}"
        try:
            conn.send(("error", message, traceback.format_exc()))
        except Exception:
            pass
    finally:
        conn.close()


class _Child:
    def __init__(self, ctx, spec: EngineSpec, prompt_tokens: int, new_tokens: int, warmup: int):
        self.spec = spec
        self.result = Result(spec.label, prompt_tokens=prompt_tokens, new_tokens=new_tokens)
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker, args=(child_conn, spec, prompt_tokens, new_tokens, warmup), daemon=True
        )
        self.process.start()
        child_conn.close()

    def receive(self, expected: str):
        if self.result.error is not None:
            return None
        try:
            message = self.conn.recv()
        except EOFError:
            self.result.error = f"the {self.spec.label} process died (exit code {self.process.exitcode})"
            return None
        if message[0] == "error":
            self.result.error = message[1]
            return None
        assert message[0] == expected, message
        return message[1]

    def send(self, command: str) -> None:
        if self.result.error is None:
            self.conn.send(command)

    def close(self) -> None:
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()


def measure(
    specs: list[EngineSpec],
    *,
    prompt_tokens: int,
    new_tokens: int,
    repeats: int = 3,
    warmup: int = 1,
    status=None,
) -> list[Result]:
    """Time every engine (see the module doc); an engine that fails gets ``error`` set, the others go on.

    ``status(text)``, if given, is told what is happening.
    """
    if prompt_tokens < 1 or new_tokens < 2:
        raise EdgecompError("need --prompt-tokens >= 1 and --new-tokens >= 2 (decode speed needs a second token)")
    if repeats < 1 or warmup < 0:
        raise EdgecompError("need --repeats >= 1 and --warmup >= 0")
    ctx = mp.get_context("spawn")
    say = status or (lambda text: None)
    children: list[_Child] = []
    try:
        # One at a time while loading: loads and warm-ups do not slow each other's first runs.
        for spec in specs:
            say(f"loading {spec.label} and warming up")
            child = _Child(ctx, spec, prompt_tokens, new_tokens, warmup)
            info = child.receive("ready")
            if info is not None:
                for key, value in info.items():
                    setattr(child.result, key, value)
            children.append(child)
        for round_ in range(repeats):
            for child in children:
                say(f"round {round_ + 1}/{repeats}: {child.spec.label}")
                child.send("run")
                timing = child.receive("ran")
                if timing is None:
                    continue
                prefill_s, decode_s, steps = timing
                child.result.prefill_tok_s_runs.append(prompt_tokens / prefill_s)
                child.result.decode_tok_s_runs.append(steps / decode_s if steps else 0.0)
        for child in children:
            child.send("stop")
            peak = child.receive("done")
            r = child.result
            r.repeats = len(r.decode_tok_s_runs)
            if peak is not None:
                r.peak_rss_mb = peak
            if r.decode_tok_s_runs:
                r.prefill_tok_s = statistics.median(r.prefill_tok_s_runs)
                r.decode_tok_s = statistics.median(r.decode_tok_s_runs)
    finally:
        for child in children:
            child.close()
    return [c.result for c in children]


def ratios(results: list[Result], reference: str) -> dict[str, dict[str, float]]:
    """Each engine's prefill and decode speed divided by ``reference``'s (missing if it failed)."""
    ref = next((r for r in results if r.engine == reference and r.error is None), None)
    if ref is None or not ref.decode_tok_s:
        return {}
    return {
        r.engine: {"prefill": r.prefill_tok_s / ref.prefill_tok_s, "decode": r.decode_tok_s / ref.decode_tok_s}
        for r in results
        if r.error is None and r.decode_tok_s
    }
