"""The plots of docs/results.md: scores against λ per method, and every system per language (PNG).

matplotlib with the Agg backend, so no display is needed.
"""

from __future__ import annotations

from pathlib import Path

PREFIX = {"params": "arith", "delta": "delta"}


def grid_of(results: dict, lang: str, entries: dict[str, dict], method: str) -> dict[float, dict]:
    """``{λ: evaluation}`` of the arithmetic systems of ``method`` among ``entries``."""
    grid = {}
    for key, e in entries.items():
        s = results["systems"].get(f"{lang}/{key}", {})
        if s.get("lambda") is not None and s.get("method", "params") == method and "." not in key:
            grid[s["lambda"]] = e
    return grid


def plots(results: dict, groups, folder: Path) -> list[str]:
    """Write ``lambda.png`` and ``systems.png`` into ``folder``; return their names."""
    import matplotlib
    import numpy as np

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    # score and target-language rate against λ, one line per (set, language), a row per method
    methods = [m for m in PREFIX if any(grid_of(results, lang, entries, m) for (_, lang), entries in groups.items())]
    fig, axes = plt.subplots(len(methods), 2, figsize=(11, 4.2 * len(methods)), squeeze=False)
    for (ax1, ax2), method in zip(axes, methods):
        for (set_name, lang), entries in sorted(groups.items()):
            pts = sorted((lam, e["metrics"]) for lam, e in grid_of(results, lang, entries, method).items())
            if "task" in entries:
                pts = [(0.0, entries["task"]["metrics"])] + pts
            if len(pts) < 2:
                continue
            style = "-" if set_name != "ntrex_headline" else "--"
            ax1.plot(
                [p[0] for p in pts],
                [p[1]["rougeL"]["mean"] for p in pts],
                style,
                marker="o",
                label=f"{lang} {set_name}",
            )
            ax2.plot(
                [p[0] for p in pts],
                [p[1]["target_lang"]["mean"] for p in pts],
                style,
                marker="o",
                label=f"{lang} {set_name}",
            )
        ax1.set(
            xlabel=f"λ (task + λ·(lang_tgt − lang_en), {method}; 0 = task only)",
            ylabel="ROUGE-L",
            title=f"ROUGE-L against λ ({method})",
        )
        ax2.set(
            xlabel="λ",
            ylabel="% of summaries in the target language",
            ylim=(-3, 103),
            title=f"Target-language rate against λ ({method})",
        )
        ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(folder / "lambda.png", dpi=80)
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
            ax.bar(xs, ys, width, label=key, yerr=np.hstack(errs), capsize=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cols))], [f"{lang}\n{s}" for s, lang in cols], fontsize=7)
    ax.set(ylabel="ROUGE-L (95% CI)", title="Systems per language and evaluation set")
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(folder / "systems.png", dpi=110)
    plt.close(fig)
    names.append("systems.png")
    return names
