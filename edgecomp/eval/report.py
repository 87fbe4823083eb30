"""docs/results.md from an experiment's ``results.json``: tables with intervals, plots, bad examples.

Written from the numbers alone (nothing typed by hand but an optional notes file appended at the
end), so the page always shows what the last run measured. Plots are PNG files (matplotlib, no
display needed) in a folder named after the page.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import EdgecompError
from ..fsutil import atomic_write_text
from .plots import PREFIX, grid_of, plots

SET_TITLES = {
    "xlsum": "XL-Sum (real summarization)",
    "masakhanews": "MasakhaNEWS (article → headline)",
    "ntrex_headline": "NTREX headlines (constructed task: headline from body)",
}


def _ci(m: dict, digits: int = 1) -> str:
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def _diff(d: dict | None) -> str:
    if not d:
        return "–"
    mark = " ✓" if d["low"] > 0 else (" ✗" if d["high"] < 0 else "")
    return f"{d['mean']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]{mark}"


def _adapter_rows(results: dict, work: Path) -> list[str]:
    cfg = results["config"]
    paths = [cfg["task"], cfg["source"], *(c["adapter"] for c in cfg["targets"].values())]
    for related in (cfg.get("related") or {}).values():
        paths += related["adapters"]
    paths += [v["task"] for v in (cfg.get("variants") or {}).values()]
    rows = [
        "| adapter | kind | lang | data | examples | steps | tokens | seconds | tokens/s | loss first → last |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for path in dict.fromkeys(paths):
        meta_file = work / path / "edgecomp.json"
        if not meta_file.is_file():
            continue
        m = json.loads(meta_file.read_text(encoding="utf-8"))
        o = m.get("options", {})
        total += m["seconds"]
        rows.append(
            f"| {path} | {m['kind']} | {m['lang']} | {m['data']['file']} | {m['data']['examples']} | "
            f"{m['steps']} (batch {o.get('batch_size')}×{o.get('seq_len')}, lr {o.get('lr')}) | {m['tokens']} | "
            f"{m['seconds']:.0f} | {m['tokens_per_s']:.0f} | {m['first_loss']:.2f} → {m['final_loss']:.2f} |"
        )
    return rows + ["", f"Training time, all adapters: {total / 60:.0f} min."]


ORDER = ("base", "task", "task+lang", "arith-", "delta-", "related-", "related")


def _rank(key: str) -> tuple:
    variant, _, system = key.rpartition(".")
    return (variant, next(i for i, p in enumerate(ORDER + ("",)) if system.startswith(p)), key)


def _by_set(results: dict) -> dict[tuple[str, str], dict[str, dict]]:
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for e in results["evaluations"].values():
        groups.setdefault((e["set"], e["lang"]), {})[e["system"]] = e
    return {k: dict(sorted(v.items(), key=lambda kv: _rank(kv[0]))) for k, v in groups.items()}


def _paired(entries: dict[str, dict], a: str, b: str) -> dict | None:
    """ROUGE-L and target-language rate of system ``b`` minus ``a`` on the same documents."""
    from .compare import compare

    if a not in entries or b not in entries:
        return None

    def load(key: str) -> dict:
        return json.loads((Path(entries[key]["out"]) / "scores.json").read_text(encoding="utf-8"))

    vs = compare(load(a), load(b))["metrics"]
    return {m: vs[m]["difference"] for m in ("rougeL", "target_lang")}


def _system_table(results: dict, entries: dict[str, dict]) -> list[str]:
    rows = [
        "| system | ROUGE-1 | ROUGE-2 | ROUGE-L [95% CI] | in target lang % | in English % | words | "
        "ROUGE-L − task_en only [95% CI] |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, e in entries.items():
        m = e["metrics"]
        label = results["systems"].get(f"{e['lang']}/{key}", {}).get("label", key)
        rows.append(
            f"| {label} | {m['rouge1']['mean']:.1f} | {m['rouge2']['mean']:.1f} | {_ci(m['rougeL'])} | "
            f"{m['target_lang']['mean']:.0f} | {m['english']['mean']:.0f} | {m['words']['mean']:.0f} | "
            f"{_diff((_paired(entries, 'task', key) or {}).get('rougeL')) if key != 'task' else '–'} |"
        )
    return rows


def _auto_method(results: dict) -> str:
    return results["config"].get("auto_method", "params")


def _lambda_rows(results: dict, groups) -> list[str]:
    rows = [
        "| set | lang | best λ on labels (ROUGE-L) | λ from unlabeled text | its ROUGE-L | loss vs best |",
        "|---|---|---|---|---|---|",
    ]
    losses = []
    for (set_name, lang), entries in groups.items():
        grid = grid_of(results, lang, entries, _auto_method(results))
        auto = (results.get("auto_lambda") or {}).get(lang)
        if not grid or not auto:
            continue
        best = max(grid, key=lambda lam: (grid[lam]["metrics"]["rougeL"]["mean"], -lam))
        chosen = auto["chosen"]
        got = grid.get(chosen)
        if got is None:
            continue
        loss = grid[best]["metrics"]["rougeL"]["mean"] - got["metrics"]["rougeL"]["mean"]
        losses.append(loss)
        rows.append(
            f"| {set_name} | {lang} | {best:g} ({grid[best]['metrics']['rougeL']['mean']:.1f}) | {chosen:g} | "
            f"{got['metrics']['rougeL']['mean']:.1f} | {loss:.2f} |"
        )
    if losses:
        rows.append(f"| **mean** | | | | | **{sum(losses) / len(losses):.2f}** |")
    return rows


def _bad_examples(entries: dict[str, dict], system: str, count: int = 2) -> list[str]:
    e = entries.get(system)
    if not e:
        return []
    rows = [json.loads(x) for x in (Path(e["out"]) / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    scores = json.loads((Path(e["out"]) / "scores.json").read_text(encoding="utf-8"))["per_document"]
    rows.sort(key=lambda r: scores[r["id"]]["rougeL"])
    out = []
    for r in rows[:count]:
        out.append(
            f"- `{r['id']}` (ROUGE-L {scores[r['id']]['rougeL']:.1f}, identified as {r['lang_guess']}): "
            f"reference “{r['reference'][:200]}” — ours “{r['prediction'][:200]}”"
        )
    return out


def _shipped_section(results: dict, groups) -> list[str]:
    """The adapter library inside the package (packed, composed at run time) on every set, against
    task-only and the unpacked adapters' composition."""
    rows = [
        "| set | lang | composition | ROUGE-L [95% CI] | in target lang % | Δ vs task_en only | "
        "Δ vs unpacked neutral + 1·(lang_tgt − lang_en), params |",
        "|---|---|---|---|---|---|---|",
    ]
    bad = []
    for (set_name, lang), entries in sorted(groups.items()):
        e = entries.get("shipped")
        if not e:
            continue
        label = results["systems"].get(f"{lang}/shipped", {}).get("label", "shipped").removeprefix("shipped library: ")
        rows.append(
            f"| {set_name} | {lang} | {label} | {_ci(e['metrics']['rougeL'])} | "
            f"{e['metrics']['target_lang']['mean']:.0f} | "
            f"{_diff((_paired(entries, 'task', 'shipped') or {}).get('rougeL'))} | "
            f"{_diff((_paired(entries, 'neutral.arith-1', 'shipped') or {}).get('rougeL'))} |"
        )
        bad += [line.replace("- `", f"- {set_name}/{lang} `", 1) for line in _bad_examples(entries, "shipped", 1)]
    if len(rows) == 2:
        return []
    return [
        "## The shipped library",
        "",
        "What `edgecomp summarize FILE` uses without `--model`: the adapters in edgecomp/library/adapters "
        "(packed: task adapters rank 4, language adapters rank 1, float16; recipes/shipped-library.yaml), "
        "the composition library.json names for the "
        "language, applied at run time to the int8 base export. Δ: paired bootstrap of ROUGE-L on the same "
        "documents.",
        "",
        *rows,
        "",
        "Lowest ROUGE-L per set:",
        "",
        *bad,
        "",
    ]


def _default_system(results: dict, lang: str, default: str) -> str:
    """``default``, or with ``auto`` the arithmetic system at the λ chosen from unlabeled text."""
    if default != "auto":
        return default
    chosen = (results.get("auto_lambda") or {}).get(lang, {}).get("chosen")
    return f"{PREFIX[_auto_method(results)]}-{chosen:g}" if chosen is not None else f"{PREFIX[_auto_method(results)]}-1"


def write_report(
    experiment: Path, out: Path, work: Path | None = None, default: str = "auto", notes: str | None = None
) -> None:
    """Write ``out`` (markdown) and its plots from ``experiment/results.json``. ``default`` is the
    composed system held against task-only: a system key, or ``auto`` for the λ chosen without labels."""
    path = experiment / "results.json"
    if not path.is_file():
        raise EdgecompError(f"{path}: no experiment results (run the experiment step first)")
    results = json.loads(path.read_text(encoding="utf-8"))
    work = work or experiment.parent
    groups = _by_set(results)
    cfg = results["config"]
    lines = [
        "# Zero-shot summarization: results",
        "",
        "Written by `edgecomp run recipes/zero-shot.yaml` (its `report` step) from the experiment's "
        f"results (a copy: [{out.stem}/results.json]({out.stem}/results.json)); every number below is "
        "from that run.",
        "",
        f"- machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, no GPU",
        f"- wall time of the experiment step (exports + evaluations): {results.get('wall_s', 0) / 60:.0f} min",
        f"- exports: `--quantize {cfg.get('quantize', 'int8')}`; greedy decoding, at most "
        f"{cfg.get('max_new_tokens', 64)} new tokens, articles cut to {cfg.get('article_tokens', 448)} tokens; "
        f"first {cfg.get('limit')} documents of each set",
        "- ROUGE: XL-Sum's multilingual scorer (F1 × 100); language: Lingua over the project's languages; "
        "intervals: 95% bootstrap over documents; Δ: paired bootstrap against `task_en only` on the same "
        "documents (✓: interval above 0, ✗: below 0)",
        "",
        "## Adapters",
        "",
        *_adapter_rows(results, work),
        "",
    ]
    wins, total, rates = 0, 0, []
    summary = [
        "| set | lang | docs | system | ROUGE-L task_en only | ROUGE-L composed | Δ [95% CI] | "
        "in target lang: task only → composed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (set_name, lang), entries in sorted(groups.items()):
        system = _default_system(results, lang, default)
        task, comp = entries.get("task"), entries.get(system)
        if not task or not comp:
            continue
        d = (_paired(entries, "task", system) or {}).get("rougeL")
        total += 1
        wins += bool(d and d["low"] > 0)
        rates.append(comp["metrics"]["target_lang"]["mean"])
        summary.append(
            f"| {set_name} | {lang} | {comp['documents']} | `{system}` | {task['metrics']['rougeL']['mean']:.1f} | "
            f"{comp['metrics']['rougeL']['mean']:.1f} | {_diff(d)} | "
            f"{task['metrics']['target_lang']['mean']:.0f}% → {comp['metrics']['target_lang']['mean']:.0f}% |"
        )
    label = (
        f"task_en + λ·(lang_tgt − lang_en), {_auto_method(results)}, λ chosen per language from unlabeled text"
        if default == "auto"
        else results["systems"].get(f"{next(iter(cfg['targets']))}/{default}", {}).get("label", default)
    )
    lines += [
        f"## Composed ({label}) against task_en only",
        "",
        f"Significantly better ROUGE-L on {wins} of {total} (set, language) pairs; target-language rate "
        f"≥ 90% on {sum(r >= 90 for r in rates)} of {len(rates)}.",
        "",
        *summary,
        "",
    ]
    for variant, v in (cfg.get("variants") or {}).items():
        lam = f"{float((v.get('lambdas') or cfg.get('lambdas') or [1])[0]):g}"
        rows = [
            f"| set | lang | task_en only | task_en only [{variant}] | Δ vs task_en only | "
            f"+ {lam}·(lang_tgt − lang_en) [{variant}] | Δ vs task_en only [{variant}] |",
            "|---|---|---|---|---|---|---|",
        ]

        def cell(e: dict | None) -> str:
            return f"{e['metrics']['rougeL']['mean']:.1f} ({e['metrics']['target_lang']['mean']:.0f}%)" if e else "–"

        for (set_name, lang), entries in sorted(groups.items()):
            vt, va = f"{variant}.task", f"{variant}.arith-{lam}"
            if vt not in entries:
                continue
            rows.append(
                f"| {set_name} | {lang} | {cell(entries.get('task'))} | {cell(entries.get(vt))} | "
                f"{_diff((_paired(entries, 'task', vt) or {}).get('rougeL'))} | {cell(entries.get(va))} | "
                f"{_diff((_paired(entries, vt, va) or {}).get('rougeL'))} |"
            )
        lines += [
            f"## Variant `{variant}`: task adapter {v['task']}",
            "",
            "ROUGE-L (share in the target language); Δ: paired bootstrap of ROUGE-L.",
            "",
            *rows,
            "",
        ]
    lines += _shipped_section(results, groups)
    for name in plots(results, groups, out.parent / out.stem):
        lines += [f"![{name}]({out.stem}/{name})", ""]
    lambda_rows = _lambda_rows(results, groups)
    if len(lambda_rows) > 2:
        lines += [
            "## λ chosen without labels",
            "",
            "`edgecomp compose --auto-lambda` scores each λ's summaries of unlabeled target-language articles "
            "(target language × share of summary words found in the article × distinct bigrams) and takes "
            "the best; the labelled best λ is the one with the highest ROUGE-L on the set.",
            "",
            *lambda_rows,
            "",
        ]
        for lang, auto in (results.get("auto_lambda") or {}).items():
            cells = ", ".join(
                f"λ={k}: {v['score']:.3f} (lang {v['target_lang']:.2f}, support {v['support']:.2f}, "
                f"distinct {v['distinct_2']:.2f})"
                for k, v in auto["table"].items()
            )
            lines.append(f"- {lang}: {cells}")
        lines.append("")
    for (set_name, lang), entries in sorted(groups.items()):
        lines += [f"## {SET_TITLES.get(set_name, set_name)}: {lang}", "", *_system_table(results, entries), ""]
        system = _default_system(results, lang, default)
        bad = _bad_examples(entries, system)
        if bad:
            lines += [f"Lowest ROUGE-L of `{system}`:", "", *bad, ""]
    if notes:
        lines += [Path(notes).read_text(encoding="utf-8").rstrip(), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.parent / out.stem / "results.json", path.read_text(encoding="utf-8"))
    atomic_write_text(out, "\n".join(lines))
