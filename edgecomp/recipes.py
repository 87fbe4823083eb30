"""Recipes: YAML files that chain ``train``, ``pack``, ``compose``, ``merge-export``, ``summarize``,
``eval``, ``experiment`` and ``report`` steps.

Paths to inputs (``data``, ``file``) are relative to the recipe's folder; outputs, adapters and
libraries (``out``, ``adapters``, ``library``, ``model``) to its ``workdir`` (itself relative to the
recipe). A recipe is data someone may hand you: every path it names must stay inside its folder,
or inside a ``root`` given on the command line (``edgecomp run recipe.yaml --root .``).

Options are the CLI's, with ``_`` or ``-`` in their names; ``compose`` and ``merge-export`` take
the keys of a composition spec (``edgecomp.compose.spec``). A key a recipe or a step does not take
is refused, naming the allowed ones.
"""

from __future__ import annotations

import time
from pathlib import Path

from .console import console
from .data.yamlfile import check_keys, read_yaml_mapping
from .errors import EdgecompError
from .options import check_values

STEPS = ("train", "pack", "compose", "merge-export", "summarize", "eval", "experiment", "report")
_COMMANDS = {"pack": "adapters pack"}  # a step's values are checked by the rules of this command
RECIPE_KEYS = {"base", "workdir", "force", "steps"}


def _load(recipe: Path) -> dict:
    spec = read_yaml_mapping(recipe, "recipe")
    check_keys(spec, RECIPE_KEYS, str(recipe))
    if not isinstance(spec.get("steps"), list) or not spec["steps"]:
        raise EdgecompError(f"{recipe}: a recipe is a mapping with a non-empty 'steps' list")
    for n, step in enumerate(spec["steps"], 1):
        if not isinstance(step, dict) or len(step) != 1 or next(iter(step)) not in STEPS:
            raise EdgecompError(f"{recipe}: step {n} must be one of {', '.join(STEPS)} with its options")
    return spec


def _inside(path: Path, root: Path, what: str) -> Path:
    """``path`` resolved, refused if it leaves ``root`` (``..``, absolute paths, symlinks)."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise EdgecompError(f"recipe {what} '{path}' is outside {root}; pass --root to allow it")
    return resolved


def _options(raw) -> dict:
    if not isinstance(raw, dict):
        raise EdgecompError(f"step options must be a mapping, not {raw!r}")
    return {k.replace("-", "_"): v for k, v in raw.items()}


def _check(o: dict, step: str, callee, *, own=(), passed=()) -> None:
    """Refuse a key of ``o`` that the ``step`` does not take: the keyword names of ``callee`` (the
    function or options dataclass the step calls), less ``passed`` (those the step sets itself),
    plus ``own`` (those the step reads itself)."""
    import inspect

    takes = {
        name
        for name, p in inspect.signature(callee).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    check_keys(o, (takes - set(passed)) | set(own), f"{step} step")
    check_values(_COMMANDS.get(step, step), o, f"{step} step", known_only=True, paths=False)


def _train(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    from .train.adapter import TrainOptions, train_adapter

    _check(o, "train", TrainOptions)
    o.setdefault("base", spec.get("base"))
    o.setdefault("force", spec.get("force", False))
    o["data"], o["out"] = _inside(here / o["data"], root, "data"), _inside(work / o["out"], root, "output")
    if spec.get("resume") and (o["out"] / "edgecomp.json").is_file():
        return f"{o['out']}: already trained, kept (--resume)"
    if spec.get("resume"):
        from .train.checkpoint import checkpoint_folder, latest_checkpoint

        o["resume"] = latest_checkpoint(checkpoint_folder(o["out"])) is not None
    try:
        options = TrainOptions(**o)
    except TypeError as e:
        raise EdgecompError(f"train step: {e}") from None
    meta = train_adapter(options)
    return f"{o['out']}: loss {meta['first_loss']:.3f} → {meta['final_loss']:.3f}, {meta['tokens_per_s']:.0f} tokens/s"


def _pack(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    from .compose.pack import pack_adapter, pack_summary

    _check(o, "pack", pack_adapter, own={"adapter"}, passed={"src"})
    src = _inside(work / o.pop("adapter"), root, "adapter")
    out = _inside(work / o.pop("out"), root, "output")
    o.setdefault("force", True)  # packing is cheap and deterministic: a rerun rewrites
    try:
        meta = pack_adapter(src, out, **o)
    except TypeError as e:
        raise EdgecompError(f"pack step: {e}") from None
    return f"{out}: {pack_summary(out, meta)}"


def _split(o: dict, spec: dict, work: Path, root: Path):
    """A step's options → (resolved composition, remaining options); adapters live in the workdir."""
    from .compose.spec import parse_term_arg, resolve_spec, spec_keys

    keys = spec_keys()
    raw = {k: o.pop(k) for k in list(o) if k in keys}
    if "library" in raw:
        _inside(work / str(raw["library"]), root, "library")
    for item in raw.get("adapters") or []:
        _inside(
            work / str(item.get("path") if isinstance(item, dict) else parse_term_arg(str(item))["path"]),
            root,
            "adapter",
        )
    resolved = resolve_spec(raw, work)
    out = _inside(work / o.pop("out"), root, "output")
    o.setdefault("force", spec.get("force", False))
    return resolved, out, raw.get("target")


def _compose(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    from .compose.explain import explanation
    from .compose.spec import spec_keys
    from .compose.to_adapter import compose_adapter

    _check(o, "compose", compose_adapter, own=spec_keys(), passed={"resolved", "target"})
    resolved, out, target = _split(o, spec, work, root)
    console.print(explanation(resolved))
    try:
        meta = compose_adapter(resolved, out, target=target, **o)
    except TypeError as e:
        raise EdgecompError(f"compose step: {e}") from None
    return f"{out} ({meta['composition']['method']}, {len(meta['composition']['adapters'])} adapters)"


def _merge_export(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    from .compose.explain import explanation
    from .compose.spec import spec_keys
    from .export.merge_export import cached_export, merge_export

    _check(o, "merge-export", cached_export, own=spec_keys() | {"out", "force"}, passed={"resolved"})
    resolved, out, _ = _split(o, spec, work, root)
    if resolved.terms:
        console.print(explanation(resolved))
    o.setdefault("base", spec.get("base"))
    try:
        merge_export(resolved, out, **o)
    except TypeError as e:
        raise EdgecompError(f"merge-export step: {e}") from None
    return str(out)


def _summarize(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    """One file, or several (``files``); with no ``model``, each with the library's composition for
    its detected language (or ``lang``), as ``edgecomp summarize`` without ``--model`` does."""
    from .data.readers import read_text
    from .runtime.decoding import Decoding
    from .runtime.summarize import summarize

    _check(
        o,
        "summarize",
        summarize,
        passed=("model_dir", "text", "decoding", "on_token"),
        own=("file", "files", "model", "library", "lang", "quantize", *Decoding.names()),
    )
    decoding = Decoding(**{name: o.pop(name) for name in Decoding.names() if name in o})
    files = [o.pop("file")] if "file" in o else list(o.pop("files", []))
    if not files:
        raise EdgecompError("summarize step: give 'file' or 'files'")
    router = None
    if "model" in o:
        model = _inside(work / o.pop("model"), root, "model")
    else:
        from .library.catalog import Library
        from .library.summarize import LibraryRouter, describe

        library = o.pop("library", None)
        router = LibraryRouter(
            Library.load(_inside(work / library, root, "library") if library else None),
            lang=o.pop("lang", None),
            quantize=o.pop("quantize", "int8"),
        )
    for name in files:
        file = _inside(here / name, root, "input")
        text = read_text(file)
        if router is not None:
            choice, lang, detected = router.choose(text)
            console.print(describe(choice, lang, detected), highlight=False, markup=False, soft_wrap=True)
            model = router.open(choice)
        result = summarize(model, text, decoding, **o)
        t = result["timings"]
        console.print(
            f"[dim]{result['prompt_tokens']} prompt tokens, {result['new_tokens']} new, "
            f"{t['tokens_per_s']:.1f} tokens/s[/]"
        )
        print(f"{file.name}: {result['summary']}", flush=True)
    return f"{len(files)} {'summary' if len(files) == 1 else 'summaries'} printed"


def _eval(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    from .eval.run import EvalOptions, evaluate

    _check(o, "eval", EvalOptions)
    o["data"] = _inside(here / o["data"], root, "data")
    o["model"] = _inside(work / o["model"], root, "model")
    if "out" in o:
        o["out"] = _inside(work / o["out"], root, "output")
    try:
        options = EvalOptions(**o)
    except TypeError as e:
        raise EdgecompError(f"eval step: {e}") from None
    scores = evaluate(options)
    m = scores["metrics"]
    return (
        f"{scores['out']}: ROUGE-L {m['rougeL']['mean']:.2f} [{m['rougeL']['low']:.2f}, {m['rougeL']['high']:.2f}], "
        f"{m['target_lang']['mean']:.0f}% in {options.lang}"
    )


def _experiment(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    from .eval.experiment import run_experiment

    out = _inside(work / o.pop("out", "experiment"), root, "output")
    o.setdefault("base", spec.get("base"))
    # data paths are relative to the recipe's folder; the experiment resolves them against ``work``
    for conf in (o.get("targets") or {}).values():
        for key, value in list((conf.get("eval") or {}).items()):
            conf["eval"][key] = str(_inside(here / value, root, "data"))
        if conf.get("unlabeled"):
            conf["unlabeled"] = str(_inside(here / conf["unlabeled"], root, "data"))
    results = run_experiment(o, work, out, lambda path, what: _inside(path, root, what))
    return f"{out}: {len(results['evaluations'])} evaluations"


def _report(o: dict, spec: dict, here: Path, work: Path, root: Path) -> str:
    from .eval.report import write_report

    _check(o, "report", write_report, passed={"work"})
    results = _inside(work / o.pop("experiment", "experiment"), root, "experiment")
    out = _inside(here / o.pop("out"), root, "output")
    notes = o.pop("notes", None)
    try:
        write_report(results, out, work=work, notes=str(_inside(here / notes, root, "notes")) if notes else None, **o)
    except TypeError as e:
        raise EdgecompError(f"report step: {e}") from None
    return str(out)


_RUN = {
    "train": _train,
    "pack": _pack,
    "compose": _compose,
    "merge-export": _merge_export,
    "summarize": _summarize,
    "eval": _eval,
    "experiment": _experiment,
    "report": _report,
}


def run_recipe(recipe: Path, root: Path | None = None, resume: bool = False) -> None:
    """Run every step; with ``resume``, a train step whose run was interrupted continues it and one
    whose adapter is already there is kept (evaluations and experiments always resume)."""
    spec = _load(recipe) | {"resume": resume}
    here = recipe.resolve().parent
    root = (root or here).resolve()
    work = _inside(here / spec.get("workdir", "runs"), root, "workdir")
    total = time.perf_counter()
    for n, step in enumerate(spec["steps"], 1):
        ((name, raw),) = step.items()
        console.rule(
            f"[bold]step {n}/{len(spec['steps'])}: {name}[/] {raw.get('note', '') if isinstance(raw, dict) else ''}"
        )
        start = time.perf_counter()
        options = _options(raw)
        options.pop("note", None)
        done = _RUN[name](options, spec, here, work, root)
        console.print(f"[green]✓[/] {done} ({time.perf_counter() - start:.0f} s)")
    console.rule(f"recipe done in {time.perf_counter() - total:.0f} s")
