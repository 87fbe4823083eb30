"""The zero-shot experiment: every system, for every target language, on the same documents.

A recipe's ``experiment`` step names a task adapter, the source-language adapter, a language
adapter and evaluation sets per target, a λ grid, and optionally related-language task adapters
for some targets. For each target it builds these systems (the first two are the same for all):

- ``base``: the base model with the prompt only;
- ``task``: the English task adapter alone;
- ``task+lang``: ``task + lang_tgt``;
- ``arith-λ`` for each λ in ``lambdas``: ``task + λ·lang_tgt − λ·lang_src`` with ``params`` (the
  paper's: A's and B's summed separately, so the product has cross terms);
- ``delta-λ`` for each λ in ``delta_lambdas``: the same with ``delta`` (the exact sum of the updates);
- with ``related``: ``related-<lang>`` (that language's task adapter alone) and ``related``
  (the related task adapters weighted by URIEL distance, scenario 2);
- with ``variants`` (another task adapter, e.g. trained with another prompt, for some targets):
  ``<variant>.task`` and ``<variant>.arith-λ`` for each λ;
- with ``shipped: true``: ``shipped``, the adapter library inside the package, as ``edgecomp
  summarize`` without ``--model`` uses it (packed adapters, the composition applied at run time);
  ``shipped: FOLDER`` (in the workdir) evaluates another library the same way.

Each system is exported once (the export cache, keyed by the composition) and evaluated with
:func:`.run.evaluate` on each of the target's sets (resumable). ``results.json`` collects everything
:mod:`.report` turns into docs/results.md (which pairs the systems by bootstrap); it is rewritten
after every evaluation, so an interrupted run shows what it had and resumes.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from ..console import console
from ..errors import EdgecompError
from ..fsutil import write_json

RESULTS = "results.json"


@dataclass(frozen=True)
class System:
    key: str
    label: str
    spec: dict | None  # a composition spec (None: the base alone)
    lam: float | None = None  # λ of an arithmetic system in the grid
    method: str | None = None  # its composition method
    shipped: bool = False  # the shipped library's composition for the target (no export of its own)


def _systems(cfg: dict, target: str, conf: dict, library: Path | None = None) -> list[System]:
    task, source, lang = cfg["task"], cfg["source"], conf["adapter"]
    out = [
        System("base", "base, prompt only", None),
        System("task", "task_en only", {"adapters": [f"{task}:1"]}),
        System("task+lang", f"task_en + lang_{target}", {"adapters": [f"{task}:1", f"{lang}:1"]}),
    ]
    for method, prefix, grid in (
        ("params", "arith", conf.get("lambdas", cfg.get("lambdas", [1.0]))),
        ("delta", "delta", conf.get("delta_lambdas", cfg.get("delta_lambdas", [1.0]))),
    ):
        for lam in map(float, grid):
            out.append(
                System(
                    f"{prefix}-{lam:g}",
                    f"task_en + {lam:g}·(lang_{target} − lang_en), {method}",
                    {"adapters": [f"{task}:1", f"{lang}:{lam:g}", f"{source}:{-lam:g}"], "method": method},
                    lam,
                    method,
                )
            )
    for variant, v in (cfg.get("variants") or {}).items():
        if target not in v.get("targets", []):
            continue
        out.append(System(f"{variant}.task", f"task_en only [{variant}]", {"adapters": [f"{v['task']}:1"]}))
        for lam in v.get("lambdas", cfg.get("lambdas", [1.0])):
            lam = float(lam)
            out.append(
                System(
                    f"{variant}.arith-{lam:g}",
                    f"task_en + {lam:g}·(lang_{target} − lang_en), params [{variant}]",
                    {"adapters": [f"{v['task']}:1", f"{lang}:{lam:g}", f"{source}:{-lam:g}"]},
                )
            )
    related = (cfg.get("related") or {}).get(target)
    if related:
        for path in related["adapters"]:
            name = Path(path).name
            out.append(System(f"related-{name}", f"{name} only", {"adapters": [f"{path}:1"]}))
        out.append(
            System(
                "related",
                f"related task adapters, URIEL-weighted ({related['library']})",
                {"scenario": "related", "library": related["library"], "target": target},
            )
        )
    if cfg.get("shipped"):
        from ..library.catalog import Library

        out.append(
            System("shipped", f"shipped library: {Library.load(library).choice(target).label}", None, shipped=True)
        )
    return out


def _summary(scores: dict) -> dict:
    return {k: scores[k] for k in ("documents", "metrics", "timing", "out")}


# What an experiment step's configuration may hold, at each level (a key not named is refused).
KEYS = (
    "task",
    "source",
    "targets",
    "base",
    "quantize",
    "limit",
    "max_new_tokens",
    "article_tokens",
    "batch_size",
    "lambdas",
    "delta_lambdas",
    "auto_method",
    "shipped",
    "unlabeled_limit",
    "related",
    "variants",
)
TARGET_KEYS = ("adapter", "eval", "unlabeled", "lambdas", "delta_lambdas")
RELATED_KEYS = ("library", "adapters")
VARIANT_KEYS = ("task", "targets", "lambdas")


def _check_config(cfg: dict) -> None:
    """Required keys present, and no key the experiment does not read, at every level."""
    from ..data.yamlfile import check_keys

    check_keys(cfg, KEYS, "experiment step")
    for key in ("task", "source", "targets"):
        if key not in cfg:
            raise EdgecompError(f"experiment step: '{key}' is required")
    for level, allowed, what in (
        ("targets", TARGET_KEYS, "target"),
        ("related", RELATED_KEYS, "related"),
        ("variants", VARIANT_KEYS, "variant"),
    ):
        for name, conf in (cfg.get(level) or {}).items():
            if not isinstance(conf, dict):
                raise EdgecompError(f"experiment step: {what} '{name}' must be a mapping")
            check_keys(conf, allowed, f"experiment step, {what} '{name}'")


def run_experiment(cfg: dict, work: Path, out: Path, inside) -> dict:
    """Run (or resume) the experiment ``cfg`` whose paths are relative to ``work``; ``inside(path,
    what)`` checks that a path stays in the recipe's root. Returns the results (also in ``out``)."""
    import os

    from ..compose.spec import resolve_spec
    from ..export.merge_export import cached_export
    from .auto_lambda import choose_lambda, unlabeled_scores
    from .run import EvalOptions, evaluate

    _check_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
    results |= {
        "config": cfg,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
    }
    for key in ("systems", "evaluations", "auto_lambda"):
        results.setdefault(key, {})
    last = time.perf_counter()

    def save() -> None:
        nonlocal last
        now = time.perf_counter()
        results["wall_s"] = round(results.get("wall_s", 0.0) + now - last, 1)
        last = now
        write_json(results_path, results)

    export_options = {"quantize": cfg.get("quantize", "int8"), "base": cfg.get("base")}
    decoding = {
        "batch_size": cfg.get("batch_size", 8),
        "max_new_tokens": cfg.get("max_new_tokens", 64),
        "article_tokens": cfg.get("article_tokens", 448),
    }
    shipped = cfg.get("shipped")
    library = inside(work / shipped, "library") if isinstance(shipped, str) else None
    wanted = {
        f"{s}/{t}/{system.key}"
        for t, c in cfg["targets"].items()
        for system in _systems(cfg, t, c, library)
        for s in (c.get("eval") or {})
    }
    for key in set(results["evaluations"]) - wanted:  # systems the configuration no longer has
        del results["evaluations"][key]
    for target, conf in cfg["targets"].items():
        grid: dict[float, Path] = {}
        for system in _systems(cfg, target, conf, library):
            t0 = time.perf_counter()
            export = None if system.shipped else cached_export(resolve_spec(system.spec or {}, work), **export_options)
            results["systems"][f"{target}/{system.key}"] = {
                "label": system.label,
                "lambda": system.lam,
                "method": system.method,
                "export": str(export) if export else None,
                "spec": system.spec,
                "export_s": round(time.perf_counter() - t0, 1),
            }
            if system.lam is not None and system.method == cfg.get("auto_method", "params"):
                grid[system.lam] = export
            for set_name, data in (conf.get("eval") or {}).items():
                key = f"{set_name}/{target}/{system.key}"
                console.rule(f"[bold]{key}")
                scores = evaluate(
                    EvalOptions(
                        model=export,
                        data=inside(work / data, "data"),
                        lang=target,
                        limit=cfg.get("limit"),
                        out=out / "evals" / set_name / target / system.key,
                        force=True,
                        library=library,
                        quantize=export_options["quantize"],
                        **decoding,
                    )
                )
                results["evaluations"][key] = {
                    "set": set_name,
                    "lang": target,
                    "system": system.key,
                    **{k: scores[k] for k in ("documents", "metrics", "timing", "out")},
                }
                save()
        if conf.get("unlabeled") and len(grid) > 1:
            console.rule(f"[bold]λ from unlabeled {target} text")
            table = unlabeled_scores(
                grid, inside(work / conf["unlabeled"], "data"), target, limit=cfg.get("unlabeled_limit", 16), **decoding
            )
            results["auto_lambda"][target] = {"chosen": choose_lambda(table), "table": table}
            save()
    save()
    return results
