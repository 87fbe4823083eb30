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
    rows = ["| adapter | kind | lang | data | examples | steps | tokens | seconds | tokens/s | loss first → last |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    total = 0.0
    for path in dict.fromkeys(paths):
        meta_file = work / path / "edgecomp.json"
        if not meta_file.is_file():
            continue
        m = json.loads(meta_file.read_text(encoding="utf-8"))
        o = m.get("options", {})
        total += m["seconds"]
        rows.append(f"| {path} | {m['kind']} | {m['lang']} | {m['data']['file']} | {m['data']['examples']} | "
                    f"{m['steps']} (batch {o.get('batch_size')}×{o.get('seq_len')}, lr {o.get('lr')}) | {m['tokens']} | "
                    f"{m['seconds']:.0f} | {m['tokens_per_s']:.0f} | {m['first_loss']:.2f} → {m['final_loss']:.2f} |")
    return rows + ["", f"Training time, all adapters: {total / 60:.0f} min."]


def _by_set(results: dict) -> dict[tuple[str, str], dict[str, dict]]:
    groups: dict[tuple[str, str], dict[str, dict]] = {}
    for e in results["evaluations"].values():
        groups.setdefault((e["set"], e["lang"]), {})[e["system"]] = e
    return groups


def _system_table(results: dict, entries: dict[str, dict]) -> list[str]:
    rows = ["| system | ROUGE-1 | ROUGE-2 | ROUGE-L [95% CI] | in target lang % | in English % | words | "
            "ROUGE-L − task_en only [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for key, e in entries.items():
        m = e["metrics"]
        label = results["systems"].get(f"{e['lang']}/{key}", {}).get("label", key)
        rows.append(f"| {label} | {m['rouge1']['mean']:.1f} | {m['rouge2']['mean']:.1f} | {_ci(m['rougeL'])} | "
                    f"{m['target_lang']['mean']:.0f} | {m['english']['mean']:.0f} | {m['words']['mean']:.0f} | "
                    f"{_diff((e.get('vs_task') or {}).get('rougeL'))} |")
    return rows


def _lambda_rows(results: dict, groups) -> list[str]:
    rows = ["| set | lang | best λ on labels (ROUGE-L) | λ from unlabeled text | its ROUGE-L | loss vs best |",
            "|---|---|---|---|---|---|"]
    losses = []
    for (set_name, lang), entries in groups.items():
        grid = {results["systems"][f"{lang}/{k}"]["lambda"]: e for k, e in entries.items()
                if results["systems"].get(f"{lang}/{k}", {}).get("lambda") is not None}
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
        rows.append(f"| {set_name} | {lang} | {best:g} ({grid[best]['metrics']['rougeL']['mean']:.1f}) | {chosen:g} | "
                    f"{got['metrics']['rougeL']['mean']:.1f} | {loss:.2f} |")
    if losses:
        rows.append(f"| **mean** | | | | | **{sum(losses) / len(losses):.2f}** |")
    return rows


def _plots(results: dict, groups, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    # score and target-language rate against λ, one line per (set, language)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (set_name, lang), entries in sorted(groups.items()):
        pts = sorted((results["systems"][f"{lang}/{k}"]["lambda"], e["metrics"]) for k, e in entries.items()
                     if results["systems"].get(f"{lang}/{k}", {}).get("lambda") is not None)
        if "task" in entries:
            pts = [(0.0, entries["task"]["metrics"])] + pts
        if len(pts) < 2:
            continue
        label = f"{lang} {set_name}"
        style = "-" if set_name != "ntrex_headline" else "--"
        ax1.plot([p[0] for p in pts], [p[1]["rougeL"]["mean"] for p in pts], style, marker="o", label=label)
        ax2.plot([p[0] for p in pts], [p[1]["target_lang"]["mean"] for p in pts], style, marker="o", label=label)
    ax1.set(xlabel="λ (task + λ·(lang_tgt − lang_en); 0 = task only)", ylabel="ROUGE-L", title="ROUGE-L against λ")
    ax2.set(xlabel="λ", ylabel="% of summaries in the target language", title="Target-language rate against λ",
            ylim=(-3, 103))
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "lambda.png", dpi=110)
    plt.close(fig)
    names.append("lambda.png")
    # bar chart: every system per (set, language)
    keys = list(dict.fromkeys(k for entries in groups.values() for k in entries))
    cols = sorted(groups)
    fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(cols) + 2), 4.5))
    width = 0.8 / max(1, len(keys))
    for i, key in enumerate(keys):
        xs, ys, errs = [], [], []
        for j, col in enumerate(cols):
            e = groups[col].get(key)
            if e:
                m = e["metrics"]["rougeL"]
                xs.append(j + i * width)
                ys.append(m["mean"])
                errs.append([[m["mean"] - m["low"]], [m["high"] - m["mean"]]])
        if xs:
            import numpy as np

            ax.bar(xs, ys, width, label=key, yerr=np.hstack(errs), capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))], [f"{lang}\n{s}" for s, lang in cols], fontsize=7)
    ax.set(ylabel="ROUGE-L (95% CI)", title="Systems per language and evaluation set")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(folder / "systems.png", dpi=110)
    plt.close(fig)
    names.append("systems.png")
    return names


def _bad_examples(entries: dict[str, dict], system: str, count: int = 2) -> list[str]:
    e = entries.get(system)
    if not e:
        return []
    rows = [json.loads(x) for x in (Path(e["out"]) / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    scores = json.loads((Path(e["out"]) / "scores.json").read_text(encoding="utf-8"))["per_document"]
    rows.sort(key=lambda r: scores[r["id"]]["rougeL"])
    out = []
    for r in rows[:count]:
        out.append(f"- `{r['id']}` (ROUGE-L {scores[r['id']]['rougeL']:.1f}, identified as {r['lang_guess']}): "
                   f"reference “{r['reference'][:200]}” — ours “{r['prediction'][:200]}”")
    return out


def _default_system(results: dict, lang: str, default: str) -> str:
    """``default``, or with ``auto`` the arithmetic system at the λ chosen from unlabeled text."""
    if default != "auto":
        return default
    chosen = (results.get("auto_lambda") or {}).get(lang, {}).get("chosen")
    return f"arith-{chosen:g}" if chosen is not None else "arith-1"


def write_report(experiment: Path, out: Path, work: Path | None = None, default: str = "auto",
                 notes: str | None = None) -> None:
    """Write ``out`` (markdown) and its plots from ``experiment/results.json``. ``default`` is the
    composed system held against task-only: a system key, or ``auto`` for the λ chosen without labels."""
    path = experiment / "results.json"
    if not path.is_file():
        raise EdgecompError(f"{path}: no experiment results (run the experiment step first)")
    results = json.loads(path.read_text(encoding="utf-8"))
    work = work or experiment.parent
    groups = _by_set(results)
    cfg = results["config"]
    lines = ["# Zero-shot summarization: results", "",
             "Written by `edgecomp run recipes/zero-shot.yaml` (its `report` step) from "
             f"`{path.name}`; every number below is from that run.", "",
             f"- machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, no GPU",
             f"- wall time of the experiment step (exports + evaluations): {results.get('wall_s', 0) / 60:.0f} min",
             f"- exports: `--quantize {cfg.get('quantize', 'int8')}`; greedy decoding, at most "
             f"{cfg.get('max_new_tokens', 64)} new tokens, articles cut to {cfg.get('article_tokens', 448)} tokens; "
             f"first {cfg.get('limit')} documents of each set",
             "- ROUGE: XL-Sum's multilingual scorer (F1 × 100); language: Lingua over the project's languages; "
             "intervals: 95% bootstrap over documents; Δ: paired bootstrap against `task_en only` on the same "
             "documents (✓: interval above 0, ✗: below 0)", "",
             "## Adapters", "", *_adapter_rows(results, work), ""]
    wins, total, rates = 0, 0, []
    summary = ["| set | lang | docs | system | ROUGE-L task_en only | ROUGE-L composed | Δ [95% CI] | "
               "in target lang: task only → composed |", "|---|---|---|---|---|---|---|---|"]
    for (set_name, lang), entries in sorted(groups.items()):
        system = _default_system(results, lang, default)
        task, comp = entries.get("task"), entries.get(system)
        if not task or not comp:
            continue
        d = (comp.get("vs_task") or {}).get("rougeL")
        total += 1
        wins += bool(d and d["low"] > 0)
        rates.append(comp["metrics"]["target_lang"]["mean"])
        summary.append(f"| {set_name} | {lang} | {comp['documents']} | `{system}` | {task['metrics']['rougeL']['mean']:.1f} | "
                       f"{comp['metrics']['rougeL']['mean']:.1f} | {_diff(d)} | "
                       f"{task['metrics']['target_lang']['mean']:.0f}% → {comp['metrics']['target_lang']['mean']:.0f}% |")
    label = ("task_en + λ·(lang_tgt − lang_en), λ chosen per language from unlabeled text" if default == "auto"
             else results["systems"].get(f"{next(iter(cfg['targets']))}/{default}", {}).get("label", default))
    lines += [f"## Composed ({label}) against task_en only", "",
              f"Significantly better ROUGE-L on {wins} of {total} (set, language) pairs; target-language rate "
              f"≥ 90% on {sum(r >= 90 for r in rates)} of {len(rates)}.", "", *summary, ""]
    for name in _plots(results, groups, out.parent / out.stem):
        lines += [f"![{name}]({out.stem}/{name})", ""]
    lambda_rows = _lambda_rows(results, groups)
    if len(lambda_rows) > 2:
        lines += ["## λ chosen without labels", "",
                  "`edgecomp compose --auto-lambda` scores each λ's summaries of unlabeled target-language articles "
                  "(target language × share of summary words found in the article × distinct bigrams) and takes "
                  "the best; the labelled best λ is the one with the highest ROUGE-L on the set.", "",
                  *lambda_rows, ""]
        for lang, auto in (results.get("auto_lambda") or {}).items():
            cells = ", ".join(f"λ={k}: {v['score']:.3f} (lang {v['target_lang']:.2f}, support {v['support']:.2f}, "
                              f"distinct {v['distinct_2']:.2f})" for k, v in auto["table"].items())
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
    atomic_write_text(out, "\n".join(lines))
