"""The ``edgecomp`` command: a thin Typer layer. Each command parses, calls one function, prints.

Bad input raises :class:`EdgecompError`, printed as one line on stderr with exit status 2
(``--debug`` shows the traceback instead). Heavy imports (torch, transformers) happen inside the
called functions, so ``summarize`` never loads PyTorch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from .bench.cli import bench_app
from .compose.methods import methods_help, parameter_help
from .compose.spec import DEFAULT_METHOD
from .data.prompts import DEFAULT_PROMPT
from .errors import EdgecompError
from .export.quantization.schemes import CALIBRATION, choices_help, option_help
from .models.families import FAMILIES
from .options import check_values, checked, parse_grid

app = typer.Typer(
    help="Summarization for low-resource languages: train QLoRA adapters, compose them, "
    "export to ONNX, summarize with ONNX Runtime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_debug = {"on": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors.")):
    _debug["on"] = debug


def _fail(message: str, code: int) -> None:
    typer.echo(f"edgecomp: error: {message}", err=True)
    raise typer.Exit(code)


def _call(fn, *args, **kwargs):
    """Run ``fn``, turning user errors into one line on stderr (exit 2, or the error's own
    ``exit_code``: 130 for an interrupted training that saved a checkpoint) and Ctrl-C into exit 130."""
    try:
        return fn(*args, **kwargs)
    except EdgecompError as e:
        if _debug["on"]:
            raise
        _fail(str(e), getattr(e, "exit_code", 2))
    except KeyboardInterrupt:
        _fail("interrupted; no result was written", 130)


ALLOW_PICKLE = typer.Option(
    False,
    "--allow-pickle",
    help="Accept a base with only pickle .bin weights (loading pickle can run code: only for sources you trust).",
)
TRUST_REMOTE_CODE = typer.Option(
    False,
    "--trust-remote-code",
    help="Run Python code shipped with the base model (auto_map in config.json): only for sources you trust.",
)
BASE_HELP = "Base model: 'gemma-3-270m' (embedded default), a checkpoint folder, a .gguf file or a hub id."


@app.command()
@checked("train")
def train(
    kind: str = typer.Option(..., help="'language' (causal LM on unlabeled text) or 'task' (summaries)."),
    lang: str = typer.Option(..., help="ISO 639 code of the data's language, e.g. en, sw, hi."),
    data: Path = typer.Option(..., help="language: UTF-8 text, one line a sentence; task: JSONL with text/summary."),
    out: Path = typer.Option(..., help="Output adapter folder (PEFT format + edgecomp.json)."),
    base: Optional[str] = typer.Option(None, help=BASE_HELP),
    qlora: bool = typer.Option(
        False, "--qlora", help="Load the base in 4-bit NF4 (bitsandbytes, double quantization)."
    ),
    gradient_checkpointing: bool = typer.Option(
        False,
        "--gradient-checkpointing",
        help="Recompute each decoder block's activations during backward: less memory, more time; same adapter.",
    ),
    steps: Optional[int] = typer.Option(None, help="Optimizer steps (overrides --epochs)."),
    epochs: float = typer.Option(1.0, help="Passes over the data when --steps is not given."),
    rank: int = typer.Option(8, help="LoRA rank."),
    alpha: float = typer.Option(16.0, help="LoRA alpha (scale = alpha / rank)."),
    dropout: float = typer.Option(0.05, help="LoRA dropout, in [0, 1)."),
    lr: float = typer.Option(2e-4, help="Peak learning rate (linear warm-up and decay)."),
    batch_size: int = typer.Option(
        4, help="Sequences per micro-batch, over all processes when data-parallel (torchrun, accelerate launch)."
    ),
    grad_accum: int = typer.Option(1, help="Micro-batches per optimizer step."),
    seq_len: int = typer.Option(512, help="Tokens per sequence (language: packed block; task: article is cut to fit)."),
    label_fraction: float = typer.Option(
        1.0,
        "--label-fraction",
        help="language: share of positions that "
        "carry the loss, drawn at random (the LM head runs only there, so "
        "steps are faster; same expected loss).",
    ),
    prompt: str = typer.Option(
        DEFAULT_PROMPT,
        help="task: the prompt after the article, 'english' (an English "
        "instruction) or 'neutral' (a separator, no words); exports and summarize use it.",
    ),
    seed: int = typer.Option(0, help="Seed for LoRA init and data order."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    save_every: int = typer.Option(
        50,
        "--save-every",
        help="Write a resumable checkpoint to OUT.checkpoint/ every N optimizer steps (0: only on Ctrl-C).",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run from OUT.checkpoint/ (same options and data)."
    ),
    report_to: str = typer.Option(
        "none",
        "--report-to",
        help="Also log the per-step metrics of OUT/metrics.jsonl to 'tensorboard' (OUT/runs; "
        "pip install 'edgecomp[tensorboard]'), or 'none'.",
    ),
    allow_pickle: bool = ALLOW_PICKLE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder (and start over)."),
):
    """Train a language or task LoRA adapter (QLoRA with --qlora). Ctrl-C saves a checkpoint.

    Under torchrun or accelerate launch it trains data-parallel: --batch-size is split across the
    processes, rank 0 writes the adapter, and the result is the single-process one of the same batch."""
    from .train.adapter import TrainOptions, train_adapter

    options = TrainOptions(
        kind=kind,
        lang=lang,
        data=data,
        out=out,
        base=base,
        qlora=qlora,
        gradient_checkpointing=gradient_checkpointing,
        steps=steps,
        epochs=epochs,
        rank=rank,
        alpha=alpha,
        dropout=dropout,
        lr=lr,
        batch_size=batch_size,
        grad_accum=grad_accum,
        seq_len=seq_len,
        label_fraction=label_fraction,
        prompt=prompt,
        seed=seed,
        device=device,
        save_every=save_every,
        resume=resume,
        report_to=report_to,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        force=force,
    )
    meta = _call(train_adapter, options)
    if os.environ.get("RANK", "0") == "0":  # one line from a data-parallel run, not one per process
        typer.echo(f"wrote {out} (final loss {meta['final_loss']:.4f}, {meta['tokens_per_s']:.0f} tokens/s)")


# Composition flags shared by `compose` and `merge-export` (and the keys of a YAML spec).
ADAPTER = typer.Option(
    [],
    "--adapter",
    help="PATH[:WEIGHT[:attention=W,mlp=W,layers=A-B]], repeatable, "
    "e.g. --adapter task-en:1 --adapter lang-sw:1 --adapter lang-en:-1.",
)
SPEC = typer.Option(None, "--spec", help="A YAML composition spec (adapters or a scenario); flags override its keys.")
METHOD = typer.Option(None, help=f"Composition method (default {DEFAULT_METHOD}). {methods_help()}.")
DENSITY = typer.Option(None, help=f"{parameter_help('density')}.")
SEED = typer.Option(None, help=f"{parameter_help('seed')}.")
LIBRARY = typer.Option(None, help="Adapter library folder for a scenario (--target).")
TARGET = typer.Option(None, help="Target language: task_src + λt·lang_target − λs·lang_src from --library.")
SOURCE = typer.Option(None, help="Source language of the task adapter (default en).")
RELATED = typer.Option(False, "--related", help="Scenario 2: task adapters of languages related to --target (URIEL).")
TOP_K = typer.Option(None, help="--related: use the k closest languages.")
LANG_ADAPTERS = typer.Option(False, "--language-adapters", help="--related: add +λt·lang_target − λs·Σwⱼ·lang_j.")
LAMBDA_T = typer.Option(None, "--lambda-t", help="Weight of the target-language adapter (default 1).")
LAMBDA_S = typer.Option(None, "--lambda-s", help="Weight subtracted for the source-language adapter(s) (default 1).")
EXPLAIN = typer.Option(
    False,
    "--explain",
    help="Print the chosen adapters, distances and weights, and the method with its parameters, version and reference.",
)
# The adapter library `summarize` and `eval` choose from when no --model is given.
LIBRARY_DIR = typer.Option(
    None,
    help="Without --model: an adapter library folder with a library.json (default: the one shipped with edgecomp).",
)
MERGE = typer.Option(
    False,
    "--merge",
    help="Without --model: one export per composition with the adapters merged "
    "into the weights, instead of one base export for every language with the composition "
    "applied at run time.",
)


def _resolve(
    adapter,
    spec,
    method,
    density,
    seed,
    library,
    target,
    source,
    related,
    top_k,
    lang_adapters,
    lambda_t,
    lambda_s,
    explain,
):
    """A composition spec from a YAML file and/or flags, resolved to explicit terms."""
    from .compose.spec import load_spec_file, resolve_spec

    raw, root = load_spec_file(spec) if spec else ({}, Path.cwd())
    check_values("compose", raw, str(spec), known_only=True, paths=False)
    flags = {
        "method": method,
        "density": density,
        "seed": seed,
        "library": library,
        "target": target,
        "source": source,
        "top_k": top_k,
        "lambda_t": lambda_t,
        "lambda_s": lambda_s,
    }
    raw |= {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items() if v is not None}
    if adapter:
        raw["adapters"] = [str(Path.cwd() / a) if not Path(a).is_absolute() else a for a in adapter]
    if related or lang_adapters:
        raw["scenario"], raw["language_adapters"] = "related", lang_adapters or raw.get("language_adapters", False)
    elif raw.get("target") and not raw.get("scenario") and not raw.get("adapters"):
        raw["scenario"] = "arithmetic"
    resolved = resolve_spec(raw, root)
    if explain:
        from .compose.explain import explanation
        from .console import console

        console.print(explanation(resolved))
    return resolved, raw.get("target")


@app.command()
@checked("compose")
def compose(
    out: Path = typer.Option(..., help="Output adapter folder (standard PEFT LoRA + edgecomp.json)."),
    adapter: List[str] = ADAPTER,
    spec: Optional[Path] = SPEC,
    method: Optional[str] = METHOD,
    density: Optional[float] = DENSITY,
    seed: Optional[int] = SEED,
    library: Optional[Path] = LIBRARY,
    target: Optional[str] = TARGET,
    source: Optional[str] = SOURCE,
    related: bool = RELATED,
    top_k: Optional[int] = TOP_K,
    language_adapters: bool = LANG_ADAPTERS,
    lambda_t: Optional[float] = LAMBDA_T,
    lambda_s: Optional[float] = LAMBDA_S,
    explain: bool = EXPLAIN,
    rank: Optional[int] = typer.Option(None, help="Write by truncated SVD to this rank (needed for ties/dare)."),
    auto_lambda: Optional[Path] = typer.Option(
        None,
        "--auto-lambda",
        help="Choose λt = λs from this unlabeled "
        "target-language text (one article a line): each λ of --lambda-grid "
        "is exported and summarizes the articles; the best-scored λ is written.",
    ),
    lambda_grid: str = typer.Option("1,2,3", "--lambda-grid", help="--auto-lambda: the λ values to try."),
    quantize: str = typer.Option("int8", help="--auto-lambda: quantization of the candidate exports (cached)."),
    base: Optional[str] = typer.Option(
        None, help=f"--auto-lambda and --format gguf-lora: {BASE_HELP} Default: the adapters' base."
    ),
    adapter_format: str = typer.Option(
        "peft",
        "--format",
        help="peft (PEFT's adapter_model.safetensors + adapter_config.json) or gguf-lora (the same, plus "
        "adapter.gguf that llama.cpp applies to the base GGUF with --lora, and an Ollama Modelfile; needs a base "
        "converted from a GGUF).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
):
    """Compose adapters into one PEFT adapter (served unmerged, or merged by merge-export)."""
    from .compose.to_adapter import compose_adapter

    def run():
        args = [adapter, spec, method, density, seed, library, target, source, related, top_k, language_adapters]
        if auto_lambda is not None:
            from .eval.auto_lambda import pick_lambda

            lang = _resolve(*args, 1.0, 1.0, False)[1]
            if not lang:
                raise EdgecompError("--auto-lambda needs a target-language composition (--library and --target)")
            lam = pick_lambda(
                lambda x: _resolve(*args, x, x, False)[0],
                parse_grid(lambda_grid),
                auto_lambda,
                lang,
                quantize=quantize,
                base=base,
            )
            typer.echo(f"λ from {auto_lambda}: {lam:g}")
            resolved, lang = _resolve(*args, lam, lam, explain)
        else:
            resolved, lang = _resolve(*args, lambda_t, lambda_s, explain)
        return compose_adapter(resolved, out, rank=rank, target=lang, force=force, format=adapter_format, base=base)

    meta = _call(run)
    report = meta["low_rank"]
    detail = (
        "exact"
        if report["exact"]
        else f"SVD rank {report['rank']}, max relative error {report['relative_error']['max']:.2e}"
    )
    typer.echo(
        f"wrote {out} ({len(meta['composition']['adapters'])} adapters, {meta['composition']['method']}, {detail})"
    )


@app.command("merge-export")
@checked("merge-export")
def merge_export(
    out: Path = typer.Option(..., help="Output export folder."),
    adapter: List[str] = ADAPTER,
    spec: Optional[Path] = SPEC,
    method: Optional[str] = METHOD,
    density: Optional[float] = DENSITY,
    seed: Optional[int] = SEED,
    library: Optional[Path] = LIBRARY,
    target: Optional[str] = TARGET,
    source: Optional[str] = SOURCE,
    related: bool = RELATED,
    top_k: Optional[int] = TOP_K,
    language_adapters: bool = LANG_ADAPTERS,
    lambda_t: Optional[float] = LAMBDA_T,
    lambda_s: Optional[float] = LAMBDA_S,
    explain: bool = EXPLAIN,
    merge_base: str = typer.Option("original", help="'original' full-precision base or 'dequantized' NF4 weights."),
    base: Optional[str] = typer.Option(None, help=BASE_HELP + " Default: the adapters' base."),
    export_format: str = typer.Option(
        "onnx",
        "--format",
        help="onnx (edgecomp summarize, optimum's ORTModelForCausalLM, onnxruntime-genai), hf (the merged "
        "model as a transformers checkpoint: AutoModelForCausalLM, vLLM) or gguf (llama.cpp, Ollama: model.gguf "
        "and a Modelfile; --quantize f32, f16, q8_0, or llama.cpp's q4_k_m, q5_k_m, q6_k with the llamacpp "
        "extra; needs a base converted from a GGUF). No ONNX option applies to hf or gguf.",
    ),
    quantize: str = typer.Option("none", help=choices_help()),
    graph: str = typer.Option(
        "auto",
        help=f"ONNX graph: 'edgecomp' (compact, fast decode; model families {', '.join(sorted(FAMILIES))}), "
        "'optimum' (any architecture optimum exports) or 'auto' (edgecomp where it can).",
    ),
    calibration: List[Path] = typer.Option(
        [],
        "--calibration",
        help=option_help(
            CALIBRATION,
            "text files (.txt lines) to calibrate on (default: multilingual FLORES lines shipped with edgecomp).",
        ),
    ),
    block_size: Optional[int] = typer.Option(
        None,
        "--block-size",
        help=option_help(
            "block_size",
            "weights per 4-bit block (default 32; 16 is closer to fp32 but larger and slower to decode).",
        ),
    ),
    tune_steps: Optional[int] = typer.Option(
        None,
        "--tune-steps",
        help=option_help(
            "tune_steps",
            "Adam steps that tune the 4-bit scales toward the fp32 model's predictions on the calibration "
            "text (default 96; 0: GPTQ alone).",
        ),
    ),
    eight_bit_layers: Optional[str] = typer.Option(
        None,
        "--eight-bit-layers",
        help=option_help(
            "eight_bit_layers",
            "decoder layers kept in 8 bits, e.g. 0,1,-1 (default 0,1,3,-1: the most sensitive ones) "
            "or 'none' (all 4-bit); ignored if more than a quarter of the layers (the manifest says which).",
        ),
    ),
    trim_vocab: List[Path] = typer.Option(
        [],
        "--trim-vocab",
        help="Keep only the vocabulary these files use "
        "(.txt lines, .jsonl text/summary) plus special, byte-fallback and prompt "
        "tokens: smaller embedding/LM head, faster decoding; summaries lose the words the files lack.",
    ),
    trim_head: List[Path] = typer.Option(
        [],
        "--trim-head",
        help="int8/int4: the LM head keeps only these files' tokens (as --trim-vocab) and each "
        "prompt adds its own tokens back at run time: decoding nearly as fast as --trim-vocab, "
        "summaries as with the whole vocabulary (benchmarks/RUNTIME.md). The default for a "
        "composition for one target language: the tokens its language adapters were trained on.",
    ),
    full_vocab: bool = typer.Option(
        False,
        "--full-vocab",
        help="Keep the whole LM head, also for a composition for one target language (an export "
        "onnxruntime-genai and optimum can run as they are).",
    ),
    allow_pickle: bool = ALLOW_PICKLE,
    trust_remote_code: bool = TRUST_REMOTE_CODE,
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
):
    """Compose adapters (or a composed adapter), merge into the base, export to ONNX (verified), quantize."""
    from .export.merge_export import merge_export as run_export

    def run():
        resolved, _ = _resolve(
            adapter,
            spec,
            method,
            density,
            seed,
            library,
            target,
            source,
            related,
            top_k,
            language_adapters,
            lambda_t,
            lambda_s,
            explain,
        )
        return run_export(
            resolved,
            out,
            base=base,
            merge_base=merge_base,
            quantize=quantize,
            force=force,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
            trim_corpus=list(trim_vocab) or None,
            trim_head=list(trim_head) or None,
            full_vocab=full_vocab,
            graph=graph,
            calibration=list(calibration) or None,
            block_size=block_size,
            tune_steps=tune_steps,
            eight_bit_layers=eight_bit_layers,
            format=export_format,
        )

    head = _call(run).get("trim_head")
    typer.echo(f"wrote {out}")
    if head:
        source = ", ".join(head["vocabularies"]) or ", ".join(head["corpus"])
        typer.echo(
            f"LM head: {head['head_size']:,} of {head['original_vocab_size']:,} tokens ({source}), "
            "each prompt adding its own; --full-vocab keeps the whole head"
        )


app.add_typer(bench_app, name="bench", help="Measure decoding and training speed and memory against other engines.")

adapters_app = typer.Typer(help="Adapter libraries.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")


@adapters_app.command("list")
@checked("adapters list")
def adapters_list(
    folder: Path = typer.Argument(..., help="A folder of adapters (searched recursively)."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON."),
):
    """Show kind, language, base, rank, data and metrics of every adapter in FOLDER."""
    from .compose.library import library_rows, library_table

    rows = _call(library_rows, folder)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        from rich.console import Console

        Console().print(library_table(rows))


@adapters_app.command("pack")
@checked("adapters pack")
def adapters_pack(
    adapter: Path = typer.Argument(..., help="A trained adapter folder."),
    out: Path = typer.Argument(..., help="Output adapter folder (PEFT format + edgecomp.json)."),
    rank: int = typer.Option(..., help="Rank of the packed update (its truncated SVD)."),
    modules: str = typer.Option("all", help="Module types kept: all, attention or mlp."),
    dtype: str = typer.Option("float16", help="Storage dtype: float16, bfloat16 or float32."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output folder."),
):
    """Shrink an adapter to ship it: lower rank (SVD), fewer module types, 16-bit storage.

    Compose packed adapters with --method delta (the SVD changes the A/B basis that 'params' sums)."""
    from .compose.pack import pack_adapter, pack_summary

    meta = _call(pack_adapter, adapter, out, rank=rank, modules=modules, dtype=dtype, force=force)
    typer.echo(f"wrote {out} ({pack_summary(out, meta)})")


def _read_input(file: str) -> str:
    from .data.readers import read_text

    if file == "-":
        text = sys.stdin.read()
        if not text.strip():
            raise EdgecompError("stdin: no text to summarize")
        return text
    return read_text(file)


@app.command()
@checked("summarize")
def summarize(
    files: Optional[List[str]] = typer.Argument(
        None, help="UTF-8 text files or folders (their .txt/.md files) to summarize, or - for stdin."
    ),
    model: Optional[Path] = typer.Option(
        None,
        help="An export folder written by merge-export. Default: detect "
        "each document's language and use the shipped adapter library's "
        "composition for it (its export is built once into the cache).",
    ),
    lang: Optional[str] = typer.Option(
        None, "--lang", help="The documents' language (ISO 639-1), instead of detecting it."
    ),
    fallback: bool = typer.Option(
        False,
        "--fallback",
        help="A language without a shipped adapter: use the closest "
        "shipped language's composition (URIEL) instead of stopping.",
    ),
    library: Optional[Path] = LIBRARY_DIR,
    quantize: str = typer.Option(
        "int8",
        help="Without --model: weights of the library's export, int8 or none "
        "(fp32), built once into the cache; int4 (smaller and faster to run, slower to "
        "build) needs --merge.",
    ),
    merge: bool = MERGE,
    input_jsonl: Optional[Path] = typer.Option(
        None, "--input", help="JSON Lines documents (one object a line) instead of files."
    ),
    output: Optional[Path] = typer.Option(
        None,
        "--output",
        help="Write one JSON line per document (id, language, "
        "composition, summary, tokens); run again to resume: ids already there "
        "are skipped.",
    ),
    text_field: str = typer.Option("text", "--text-field", help="--input: the field holding the text."),
    id_field: str = typer.Option("id", "--id-field", help="--input: the field holding the id (else the line number)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Several documents: how many are summarized at once."),
    provider: str = typer.Option("cpu", help="cpu or cuda (needs onnxruntime-gpu)."),
    max_new_tokens: int = typer.Option(64, help="Longest summary, in tokens."),
    num_beams: int = typer.Option(1, help="Beam search width (1 = greedy)."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy/beam decoding."),
    temperature: float = typer.Option(1.0, help="Sampling temperature."),
    top_k: int = typer.Option(0, help="Sample among the k most likely tokens (0 = all)."),
    top_p: float = typer.Option(1.0, help="Nucleus sampling mass."),
    seed: int = typer.Option(0, help="Sampling seed."),
    max_chunks: int = typer.Option(
        8, "--max-chunks", help="Longer documents: summarize at most this many chunks, then a final pass."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="CPU threads (default: the physical cores available)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="One document: print summary and timings as JSON (no streaming)."
    ),
):
    """Summarize documents with ONNX Runtime (no PyTorch once the export exists).

    One document streams its summary to stdout; several (files, a folder or --input JSONL) are
    summarized in batches, as JSON lines to --output (or stdout), with a progress bar. Without
    --model, one line on stderr says which language and composition each document got.
    """
    decoding = dict(
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        do_sample=sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
    )
    files = files or []
    if input_jsonl is not None and files:
        _fail("give files or --input, not both", 2)
    if input_jsonl is None and not files:
        _fail("nothing to summarize: give a file, a folder, - for stdin, or --input docs.jsonl", 2)
    single = input_jsonl is None and output is None and len(files) == 1 and not Path(files[0]).is_dir()
    if single:
        _call(
            _summarize_one,
            files[0],
            model,
            (lang, fallback, library, quantize, merge),
            provider,
            threads,
            as_json,
            decoding,
            max_chunks,
        )
    else:
        _call(
            _summarize_batch,
            files,
            input_jsonl,
            output,
            text_field,
            id_field,
            model,
            (lang, fallback, library, quantize, merge),
            provider,
            threads,
            batch_size,
            decoding,
            max_chunks,
        )


def _router(choosing, provider, threads):
    """The library router for ``--lang``, ``--fallback``, ``--library``, ``--quantize``, ``--merge``."""
    from .library.catalog import Library
    from .library.summarize import LibraryRouter

    lang, fallback, library, quantize, merge = choosing
    if lang is not None:
        from .compose.languages import iso639_3

        iso639_3(lang)  # an unknown code fails here
    if quantize not in ("none", "int8") and not merge:
        raise EdgecompError(f"--quantize {quantize} needs --merge (the shared base export is none or int8)")
    return LibraryRouter(
        Library.load(library),
        lang=lang,
        fallback=fallback,
        quantize=quantize,
        merge=merge,
        provider=provider,
        threads=threads,
    )


def _no_choice(choosing) -> None:
    lang, fallback, library, _, merge = choosing
    if lang is not None or fallback or library is not None or merge:
        raise EdgecompError(
            "--lang, --fallback, --library and --merge choose a composition; with --model there is nothing to choose"
        )


def _summarize_one(file, model, choosing, provider, threads, as_json, decoding, max_chunks):
    from .console import console
    from .runtime.decoding import Decoding
    from .runtime.summarize import summarize as run

    decoding = Decoding(**decoding)
    text = _read_input(file)
    info, load_s = {}, None
    if model is None:
        from .library.summarize import describe

        router = _router(choosing, provider, threads)
        choice, found, detected = router.choose(text)
        console.print(describe(choice, found, detected), highlight=False, markup=False, soft_wrap=True)
        model, load_s = router.open(choice), router.load_s
        info = {"lang": found, "composition": choice.label}
    else:
        _no_choice(choosing)

    def stream(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    result = run(
        model,
        text,
        decoding,
        provider=provider,
        on_token=None if as_json else stream,
        threads=threads,
        max_chunks=max_chunks,
    )
    if load_s is not None:
        result["timings"]["load_s"] = load_s
    typer.echo(json.dumps({**info, **result}, ensure_ascii=False, indent=2) if as_json else "")


def _summarize_batch(
    files,
    input_jsonl,
    output,
    text_field,
    id_field,
    model,
    choosing,
    provider,
    threads,
    batch_size,
    decoding,
    max_chunks,
):
    from .console import console
    from .data.documents import from_jsonl, from_paths
    from .runtime.batch import Route, done_ids, jsonl_writer, summarize_documents
    from .runtime.decoding import Decoding

    decoding = Decoding(**decoding)
    if "-" in files:
        raise EdgecompError("stdin (-) is for one document; give files, a folder or --input")
    docs = from_jsonl(input_jsonl, text_field, id_field) if input_jsonl is not None else from_paths(files)
    if model is None:
        router = _router(choosing, provider, threads)
        route, load = router.route, router.load
    else:
        from .runtime.model import OnnxCausalLM

        _no_choice(choosing)

        route = lambda doc: Route("model")  # noqa: E731
        load = lambda r: OnnxCausalLM.load(model, provider, threads=threads)  # noqa: E731
    if output is not None:
        write, skip = jsonl_writer(output), done_ids(output)
    else:

        def write(rows):
            for row in rows:
                typer.echo(json.dumps(row, ensure_ascii=False))

        skip = set()
    stats = summarize_documents(
        docs, route, load, write, decoding, skip=skip, batch_size=batch_size, max_chunks=max_chunks
    )
    console.print(stats.line(), highlight=False, soft_wrap=True)
    if stats.skipped and not stats.summarized and not stats.already_done:
        raise EdgecompError(f"none of the {len(docs)} documents could be summarized")


def _scores_table(scores: dict):
    from rich.table import Table

    table = Table(title=f"{scores['model']} on {scores['data']} ({scores['lang']}, {scores['documents']} documents)")
    for column in ("metric", "mean", "95% interval"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, m in scores["metrics"].items():
        table.add_row(name, f"{m['mean']:.2f}", f"{m['low']:.2f} – {m['high']:.2f}")
    t = scores["timing"]
    table.caption = (
        f"{t['seconds']:.0f} s, {t['seconds_per_document']:.2f} s/document, {t['new_tokens_per_s']:.0f} new tokens/s"
    )
    return table


def _comparison_table(result: dict):
    from rich.table import Table

    table = Table(
        title=f"B − A on {result['data']} ({result['lang']}, {result['documents']} documents), paired bootstrap"
    )
    for column in ("metric", "A", "B", "B − A", "95% interval", "P(B ≤ A)"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for name, m in result["metrics"].items():
        d = m["difference"]
        table.add_row(
            name,
            f"{m['a']:.2f}",
            f"{m['b']:.2f}",
            f"{d['mean']:+.2f}",
            f"{d['low']:+.2f} – {d['high']:+.2f}",
            f"{d['p_not_better']:.3f}",
        )
    table.caption = f"A = {result['a']}, B = {result['b']}"
    return table


@app.command("eval")
@checked("eval")
def evaluate(
    model: Optional[Path] = typer.Option(
        None,
        help="An export folder written by merge-export (default: the adapter "
        "library's composition for --lang, as `summarize` without --model uses).",
    ),
    data: Optional[Path] = typer.Option(None, help="JSON Lines pairs with text and summary (and id)."),
    lang: Optional[str] = typer.Option(
        None, help="Language of the references (ISO 639-1): ROUGE tokens and the target-language rate use it."
    ),
    limit: Optional[int] = typer.Option(None, help="Only the first N documents."),
    out: Optional[Path] = typer.Option(
        None,
        help="Folder for run.json, predictions.jsonl and scores.json (default eval/MODEL-DATA). Run again to resume.",
    ),
    batch_size: int = typer.Option(8, help="Documents summarized at once."),
    max_new_tokens: int = typer.Option(64, help="Longest summary, in tokens."),
    article_tokens: int = typer.Option(448, help="Read the first N tokens of each article (as task training does)."),
    provider: str = typer.Option("cpu", help="cpu or cuda (needs onnxruntime-gpu)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: the physical cores)."),
    compare: Optional[Tuple[Path, Path]] = typer.Option(
        None, "--compare", help="A.json B.json: B against A on the same documents (paired bootstrap); no model is run."
    ),
    library: Optional[Path] = LIBRARY_DIR,
    merge: bool = MERGE,
    as_json: bool = typer.Option(False, "--json", help="Print the scores as JSON."),
    force: bool = typer.Option(False, "--force", help="Start over in an --out that holds another evaluation."),
):
    """Summarize labelled documents and score them: ROUGE-1/2/L (XL-Sum's multilingual scorer), the share
    written in the target language and in English, lengths and time, with 95% bootstrap intervals."""
    from rich.console import Console

    if compare:
        from .eval.compare import compare as run_compare
        from .eval.compare import load_scores

        result = _call(lambda: run_compare(load_scores(compare[0]), load_scores(compare[1])))
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
        else:
            Console().print(_comparison_table(result))
        return
    missing = [name for name, v in (("--data", data), ("--lang", lang)) if v is None]
    if missing:
        _fail(f"eval needs {', '.join(missing)} (or --compare A.json B.json)", 2)
    if model is not None and (library is not None or merge):
        _fail("--library and --merge choose a library composition; with --model there is nothing to choose", 2)
    from .eval.run import EvalOptions
    from .eval.run import evaluate as run_eval

    options = EvalOptions(
        model=model,
        data=data,
        lang=lang,
        limit=limit,
        out=out,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        article_tokens=article_tokens,
        provider=provider,
        threads=threads,
        force=force,
        library=library,
        merge=merge,
    )
    scores = _call(run_eval, options)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in scores.items() if k != "per_document"}, ensure_ascii=False, indent=2))
    else:
        Console().print(_scores_table(scores))
        typer.echo(f"wrote {scores['out']}")


@app.command()
@checked("run")
def run(
    recipe: Path = typer.Argument(..., help="A YAML recipe, e.g. recipes/demo.yaml."),
    root: Optional[Path] = typer.Option(
        None, help="Folder the recipe may read and write in (default: its own folder)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue interrupted training steps from their checkpoints."),
):
    """Run a recipe: a chain of train / compose / merge-export / summarize steps."""
    from .recipes import run_recipe

    _call(run_recipe, recipe, root, resume)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
