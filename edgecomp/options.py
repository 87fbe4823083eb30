"""Every option of every command and the values it takes, declared once and checked before any work.

A layer above what it names (the registries of prompts, methods, schemes and providers) and below
the commands that use it: the CLI, ``bench``, recipes.

``RULES[command][name]`` holds the :class:`Rule` of each option (``COMMON`` those several commands
share). :func:`checked` wraps each CLI command and refuses an option it has no rule for, so a new
option cannot skip the check; recipe steps and spec files go through :func:`check_values` with
the same table. A refusal is one line naming the option, the value and what is allowed.

Output paths are checked here too: the parent must be an existing, writable folder, and the output
must not be an input, lie inside an input folder, or hold an input (``--force`` would delete it).
"""

from __future__ import annotations

import functools
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .errors import EdgecompError

INPUT, OUTPUT = "input", "output"


@dataclass(frozen=True)
class Rule:
    """What one option takes: ``allowed`` says it in words (a callable for registries, which fill up
    on import), ``accepts(value)`` decides it or raises an :class:`EdgecompError` saying why not.
    ``path`` marks input and output paths."""

    allowed: str | Callable[[], str]
    accepts: Callable[[Any], bool]
    path: str | None = None  # INPUT or OUTPUT
    path_of: Callable[[Any], str | None] = str  # the path a value names (None: none)
    bounds: tuple = (None, None)  # numbers: the lowest and highest allowed (the fuzz test draws around them)
    choices: Callable[[], tuple] | None = None  # choices: the allowed values

    def check(self, label: str, value: Any) -> None:
        if value is None:
            return  # not given: the command's default applies
        for item in value if isinstance(value, (list, tuple)) else [value]:
            try:
                ok = self.accepts(item)
            except EdgecompError as e:
                raise EdgecompError(f"{label} {_shown(item)}: {e}") from None
            except (TypeError, ValueError, OverflowError, UnicodeError):
                ok = False
            if not ok:
                allowed = self.allowed() if callable(self.allowed) else self.allowed
                raise EdgecompError(f"{label} {_shown(item)} is not allowed: {allowed}")


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 240 else text[:237] + "..."


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(low: int | None = None, high: int | None = None) -> Rule:
    if low is not None and high is not None:
        allowed = f"an integer from {low} to {high}"
    else:
        allowed = f"an integer >= {low}" if low is not None else "an integer"
    accepts = lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high)  # noqa: E731
    return Rule(allowed, accepts, bounds=(low, high))


def number(low: float | None = None, high: float | None = None, *, open_low=False, open_high=False) -> Rule:
    """A finite number within the bounds (``open_*``: the bound itself refused)."""
    lo = f"{'(' if open_low else '['}{low:g}" if low is not None else "(-inf"
    hi = f"{high:g}{')' if open_high else ']'}" if high is not None else "inf)"

    def accepts(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        above = low is None or (v > low if open_low else v >= low)
        return above and (high is None or (v < high if open_high else v <= high))

    return Rule(f"a finite number in {lo}, {hi}", accepts, bounds=(low, high))


def one_of(choices: Iterable[str] | Callable[[], Iterable[str]]) -> Rule:
    """One of ``choices`` (a callable is asked at check time: a registry's names)."""

    def names() -> tuple[str, ...]:
        return tuple(choices() if callable(choices) else choices)

    return Rule(lambda: f"one of {', '.join(names())}", lambda v: isinstance(v, str) and v in names(), choices=names)


def flag() -> Rule:
    return Rule("true or false", lambda v: isinstance(v, bool))


def _clean_text(v) -> bool:
    if not isinstance(v, str) or not v.strip() or "\x00" in v:
        return False
    v.encode("utf-8")  # a lone surrogate (an undecodable argv byte) raises: refused
    return True


TEXT = Rule("a non-empty text without NUL characters", _clean_text)


def parsed(parse: Callable[[str], Any], allowed: str) -> Rule:
    """A text ``parse`` accepts (its EdgecompError says why not)."""

    def accepts(v) -> bool:
        if not _clean_text(v):
            return False
        parse(v)
        return True

    return Rule(allowed, accepts)


def _input(kind: str) -> Rule:
    def accepts(v) -> bool:
        path = Path(v)
        if not _clean_text(str(v)):
            return False
        if not path.exists():
            raise EdgecompError("no such file or folder")
        if kind == "file" and not path.is_file():
            raise EdgecompError("not a file")
        if kind == "dir" and not path.is_dir():
            raise EdgecompError("not a folder")
        if not os.access(path, os.R_OK):
            raise EdgecompError("not readable")
        return True

    noun = {"file": "file", "dir": "folder", "any": "file or folder"}[kind]
    return Rule(f"an existing, readable {noun}", accepts, INPUT)


def _output(v) -> bool:
    path = Path(v)
    if not _clean_text(str(v)):
        return False
    if path.name in ("", ".", ".."):
        raise EdgecompError("names no new file or folder (give one inside a folder)")
    parent = path.absolute().parent
    if not parent.exists():
        raise EdgecompError(f"its folder {parent} does not exist")
    if not parent.is_dir():
        raise EdgecompError(f"{parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise EdgecompError(f"its folder {parent} is not writable")
    return True


IN_FILE, IN_DIR, IN_ANY = _input("file"), _input("dir"), _input("any")
OUT = Rule("a path whose folder exists and is writable", _output, OUTPUT)
SEED = integer(0, 2**32 - 1)
COUNT = integer(1, 10**9)
THREADS = integer(1, 1024)


def _providers():
    from .runtime.session import PROVIDERS

    return PROVIDERS


PROVIDER = one_of(_providers)


def _language(code) -> bool:
    from .compose.languages import check_language

    return bool(check_language(code))


def _device(v) -> bool:
    if v in ("auto", "cpu", "cuda"):
        return True
    head, _, index = str(v).partition(":")
    return head == "cuda" and index.isdigit()


def _adapter_path(v) -> str:
    from .compose.spec import parse_term_arg

    return parse_term_arg(str(v))["path"]


def _base_path(v) -> str | None:
    """A local base (folder or .gguf) names an input; a registry name or hub id does not."""
    return v if Path(v).exists() else None


def _prompts():
    from .data.prompts import PROMPTS

    return PROMPTS


def _methods():
    from .compose.methods import METHODS

    return METHODS


def _merge_export_quantize():
    from .export.gguf_export import TYPES
    from .export.quantization.schemes import SCHEMES

    return (*SCHEMES, *TYPES)


def _kinds():
    from .train.adapter import KINDS

    return KINDS


def _report_to():
    from .train.metrics_log import REPORT_TO

    return REPORT_TO


def parse_grid(text: str) -> list[float]:
    """``--lambda-grid``: at least two distinct finite numbers separated by commas, sorted."""
    try:
        values = sorted({float(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise EdgecompError("must be numbers separated by commas") from None
    if not all(math.isfinite(v) for v in values):
        raise EdgecompError("must be finite numbers")
    if len(values) < 2:
        raise EdgecompError("needs at least two values")
    return values


def _layers(v) -> bool:
    return v.strip().lower() == "none" or all(re.fullmatch(r"\s*-?\d+\s*", part) for part in v.split(","))


def _adapter(v) -> bool:
    return _clean_text(_adapter_path(v))


COMMON: dict[str, Rule] = {
    "out": OUT,
    "base": Rule(TEXT.allowed, TEXT.accepts, INPUT, _base_path),
    "force": flag(),
    "as_json": flag(),
    "seed": SEED,
    "lang": Rule("a language code (ISO 639-1, or ISO 639-3 that URIEL knows)", _language),
    "provider": PROVIDER,
    "threads": THREADS,
    "batch_size": integer(1, 4096),
    "max_new_tokens": integer(1, 8192),
    "library": IN_DIR,
    "model": IN_DIR,
    "allow_pickle": flag(),
    "trust_remote_code": flag(),
    "merge": flag(),
    "rank": integer(1, 4096),
    "resume": flag(),
    "prompt_tokens": integer(1, 1 << 16),
    "new_tokens": integer(1, 1 << 16),
    "repeats": integer(1, 1000),
    "warmup": integer(0, 1000),
}

COMPOSITION: dict[str, Rule] = {
    "adapter": Rule("PATH[:WEIGHT[:attention=W,mlp=W,layers=A-B]]", _adapter, INPUT, _adapter_path),
    "spec": IN_FILE,
    "method": one_of(_methods),
    "density": number(0, 1, open_low=True),
    "seed": SEED,
    "target": COMMON["lang"],
    "source": COMMON["lang"],
    "related": flag(),
    "top_k": integer(1, 1000),
    "language_adapters": flag(),
    "lambda_t": number(-100, 100),
    "lambda_s": number(-100, 100),
    "explain": flag(),
}

RULES: dict[str, dict[str, Rule]] = {
    "train": {
        "kind": one_of(_kinds),
        "data": IN_FILE,
        "qlora": flag(),
        "gradient_checkpointing": flag(),
        "steps": COUNT,
        "epochs": number(0, 10**6, open_low=True),
        "alpha": number(0, 1e6, open_low=True),
        "dropout": number(0, 1, open_high=True),
        "lr": number(0, 1, open_low=True),
        "grad_accum": integer(1, 4096),
        "seq_len": integer(16, 1 << 20),
        "max_summary_tokens": integer(1, 1 << 16),
        "label_fraction": number(0, 1, open_low=True),
        "prompt": one_of(_prompts),
        "device": Rule("auto, cpu, cuda or cuda:N", _device),
        "save_every": integer(0, 10**9),
        "report_to": one_of(_report_to),
    },
    "compose": {
        **COMPOSITION,
        "auto_lambda": IN_FILE,
        "lambda_grid": parsed(parse_grid, "numbers separated by commas, at least two"),
        "quantize": one_of(("none", "int8")),
        "adapter_format": one_of(("peft", "gguf-lora")),
    },
    "merge-export": {
        **COMPOSITION,
        "merge_base": one_of(("original", "dequantized")),
        "export_format": one_of(("onnx", "hf", "gguf")),
        "quantize": one_of(_merge_export_quantize),
        "graph": one_of(("auto", "edgecomp", "optimum")),
        "calibration": IN_FILE,
        "block_size": integer(16, 4096),
        "tune_steps": integer(0, 10**6),
        "eight_bit_layers": Rule(
            "'none' or layer indices separated by commas, e.g. 0,1,-1", lambda v: _clean_text(v) and _layers(v)
        ),
        "trim_vocab": IN_FILE,
        "trim_head": IN_FILE,
        "full_vocab": flag(),
    },
    "summarize": {
        "files": Rule("files or folders that exist, or - for stdin", lambda v: v == "-" or IN_ANY.accepts(v), INPUT),
        "fallback": flag(),
        "quantize": one_of(("none", "int8", "int4")),
        "input_jsonl": IN_FILE,
        "output": OUT,
        "text_field": TEXT,
        "id_field": TEXT,
        "num_beams": integer(1, 64),
        "sample": flag(),
        "temperature": number(0, 100, open_low=True),
        "top_k": integer(0, 1 << 20),
        "top_p": number(0, 1, open_low=True),
        "max_chunks": integer(1, 1000),
    },
    "eval": {
        "data": IN_FILE,
        "limit": COUNT,
        "article_tokens": integer(16, 1 << 16),
        "compare": IN_FILE,
    },
    "run": {"recipe": IN_FILE, "root": IN_DIR},
    "bench decode": {"spinning": flag()},
    "bench compare": {"gguf": IN_FILE, "trimmed": IN_DIR},
    "bench train": {
        "kind": one_of(_kinds),
        "random_config": IN_FILE,
        "seq_len": integer(16, 1 << 20),
        "steps": COUNT,
        "lr": number(0, 1, open_low=True),
        "qlora": flag(),
        "device": Rule("auto, cpu, cuda or cuda:N", _device),
        "memory_cap_gb": number(0, 1e4, open_low=True),
    },
    "adapters list": {"folder": IN_DIR},
    "adapters pack": {
        "adapter": IN_DIR,
        "modules": one_of(("all", "attention", "mlp")),
        "dtype": one_of(("float16", "bfloat16", "float32")),
    },
}


def rule(command: str, name: str) -> Rule:
    """The rule of ``command``'s option ``name`` (a LookupError for an undeclared one: a bug)."""
    table = RULES.get(command, {})
    if name in table:
        return table[name]
    if name in COMMON:
        return COMMON[name]
    raise LookupError(f"option {name!r} of `edgecomp {command}` has no declared rule in edgecomp.options")


def _label(name: str, where: str | None, flags: dict[str, str] | None = None) -> str:
    if where:
        return f"{where}: {name}"
    return (flags or {}).get(name) or f"--{name.replace('_', '-')}"


def check_values(
    command: str,
    values: dict[str, Any],
    where: str | None = None,
    *,
    known_only: bool = False,
    paths: bool = True,
    flags: dict[str, str] | None = None,
) -> None:
    """Check ``values`` (option name → value) against ``command``'s rules, then the outputs against
    the inputs. ``where`` names a recipe step or spec file in the message instead of ``--option``;
    ``known_only`` skips names without a rule (a recipe's or spec's keys that are not options);
    ``paths=False`` leaves paths alone (a recipe's are relative to its folder, checked when resolved);
    ``flags`` maps names to the command line's spelling (``adapter_format`` → ``--format``)."""
    inputs: list[Path] = []
    outputs: list[tuple[str, Path]] = []
    for name, value in values.items():
        if known_only and name not in RULES.get(command, {}) and name not in COMMON:
            continue
        option = rule(command, name)
        if option.path is not None and not paths:
            continue
        option.check(_label(name, where, flags), value)
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in (i for i in items if i is not None and option.path is not None):
            path = option.path_of(item)
            if path is None or path == "-":
                continue
            (outputs.append((name, Path(path))) if option.path == OUTPUT else inputs.append(Path(path)))
    for name, out in outputs:
        _check_against_inputs(_label(name, where, flags), out, inputs)


def _check_against_inputs(label: str, out: Path, inputs: list[Path]) -> None:
    target = out.resolve()
    for source in inputs:
        src = source.resolve()
        if target == src:
            raise EdgecompError(f"{label} {out} is also an input; choose another path")
        if src.is_dir() and target.is_relative_to(src):
            raise EdgecompError(f"{label} {out} is inside the input folder {source}; choose a path outside it")
        if src.is_relative_to(target):
            raise EdgecompError(f"{label} {out} holds the input {source}; choose another path")


def _flags(function) -> dict[str, str]:
    """Each parameter's spelling on the command line: its first ``--`` declaration, else the
    parameter name with dashes; arguments in capitals, as ``--help`` shows them."""
    import inspect

    import typer.models

    flags = {}
    for name, param in inspect.signature(function).parameters.items():
        if isinstance(param.default, typer.models.ArgumentInfo):
            flags[name] = name.upper()
            continue
        declared = [d for d in getattr(param.default, "param_decls", None) or () if d.startswith("--")]
        flags[name] = declared[0].split("/")[0] if declared else f"--{name.replace('_', '-')}"
    return flags


def checked(command: str):
    """Decorator for a CLI command: check every option it is called with before its body runs."""

    def wrap(function):
        flags = _flags(function)

        @functools.wraps(function)
        def run(**values):
            try:
                check_values(command, values, flags=flags)
            except EdgecompError as e:
                import typer

                typer.echo(f"edgecomp: error: {e}", err=True)
                raise typer.Exit(2) from None
            return function(**values)

        run.checked_command = command
        return run

    return wrap
