"""``edgecomp eval``: summarize labelled documents with an export and score the summaries.

Summaries come from the ONNX runtime (``summarize_many``, batched, greedy), each article cut to
the first ``article_tokens`` tokens as task training cuts it. The output folder holds:

- ``run.json``: what is being evaluated (export manifest hash, data sha256, language, settings);
- ``predictions.jsonl``: one line per document, appended batch by batch and synced (id,
  reference, prediction, language guess, tokens, seconds), so an interrupted run resumes where it
  stopped: the same command finds the lines already written and summarizes only the rest;
- ``scores.json``: every metric's mean with a 95% bootstrap interval, and the per-document values
  that ``edgecomp eval --compare`` pairs between two systems.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..console import console, progress
from ..errors import EdgecompError
from ..fsutil import append_jsonl, read_jsonl_prefix, sha256_file, write_json
from .bootstrap import mean_interval

PREDICTIONS = "predictions.jsonl"
RUN = "run.json"
SCORES = "scores.json"
FORMAT = "edgecomp-eval/1"


@dataclass
class EvalOptions:
    model: Path | None  # None: the adapter library's composition for ``lang``
    data: Path
    lang: str
    limit: int | None = None
    out: Path | None = None
    batch_size: int = 8
    max_new_tokens: int = 64
    article_tokens: int = 448
    provider: str = "cpu"
    threads: int | None = None
    force: bool = False
    library: Path | None = None  # without ``model``: this library (default: the shipped one)
    merge: bool = False  # without ``model``: the composition merged into its own export, not applied at run time
    quantize: str = "int8"  # without ``model``: the library export's weights


def _documents(o: EvalOptions) -> list[dict]:
    from ..data.readers import read_pairs

    pairs = read_pairs(o.data)
    if o.limit is not None:
        if o.limit < 1:
            raise EdgecompError("--limit must be at least 1")
        pairs = pairs[: o.limit]
    docs = [{"id": str(p.get("id", n)), "text": p["text"], "summary": p["summary"]} for n, p in enumerate(pairs, 1)]
    ids = [d["id"] for d in docs]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise EdgecompError(f"{o.data}: document id '{dup}' appears more than once")
    return docs


def _header(o: EvalOptions, export: Path, composition: dict | None) -> dict:
    from ..model_folder import MANIFEST

    manifest = export / MANIFEST
    if not manifest.is_file():
        raise EdgecompError(
            f"{export} is not an edgecomp export (no {MANIFEST}); create one with `edgecomp merge-export`"
        )
    return {
        "format": FORMAT,
        "model": str(o.model) if o.model is not None else f"library {composition['lang']}: {composition['label']}",
        "model_manifest_sha256": sha256_file(manifest),
        **({"composition": composition} if composition else {}),
        "data": o.data.name,
        "data_sha256": sha256_file(o.data),
        "lang": o.lang,
        "settings": {
            "limit": o.limit,
            "max_new_tokens": o.max_new_tokens,
            "article_tokens": o.article_tokens,
            "decoding": "greedy",
        },
    }


def _read_predictions(path: Path, wanted: set[str]) -> dict[str, dict]:
    """Lines already written; a torn last line (the run was killed mid-write) is cut off."""
    return {row["id"]: row for row in read_jsonl_prefix(path, lambda row: row.get("id") in wanted)}


def _prepare(o: EvalOptions, header: dict) -> Path:
    """The output folder, new or resumable; refuse one made for another model, data or settings."""
    name = o.model.name if o.model is not None else f"library-{o.lang}"
    out = o.out or Path("eval") / f"{name}-{o.data.stem}"
    run = out / RUN
    if out.exists() and not out.is_dir():
        raise EdgecompError(f"{out} exists and is not a folder")
    if run.is_file():
        try:
            before = json.loads(run.read_text(encoding="utf-8"))
        except ValueError:
            before = None
        if before != header:
            if not o.force:
                raise EdgecompError(
                    f"{out} holds an evaluation of another model, data or settings; "
                    "pass --force to start it over, or another --out"
                )
            for name in (PREDICTIONS, SCORES):
                (out / name).unlink(missing_ok=True)
    elif out.is_dir() and any(out.iterdir()) and not o.force:
        raise EdgecompError(f"{out} exists and is not an evaluation folder; pass --force or another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(run, header)
    return out


def _model(o: EvalOptions):
    """(loaded model, its export folder, the library composition or None)."""
    from ..runtime.model import OnnxCausalLM

    if o.model is not None:
        return OnnxCausalLM.load(o.model, o.provider, threads=o.threads), o.model, None
    from ..library.catalog import Library
    from ..library.summarize import LibraryRouter

    router = LibraryRouter(
        Library.load(o.library), lang=o.lang, merge=o.merge, quantize=o.quantize, provider=o.provider, threads=o.threads
    )
    choice = router.library.choice(o.lang)
    model = router.open(choice)
    return (
        model,
        router.export,
        {
            "lang": choice.lang,
            "label": choice.label,
            "files": router.library.file_hashes(choice),
            "applied": "merged" if o.merge else "run time",
        },
    )


def _summarize(o: EvalOptions, model, docs: list[dict], path: Path) -> None:
    from ..runtime.decoding import Decoding
    from ..runtime.summarize import summarize_many
    from .language_id import identify

    with progress(f"summarizing {len(docs)} documents", len(docs)) as advance:
        for start in range(0, len(docs), o.batch_size):
            batch = docs[start : start + o.batch_size]
            began = time.perf_counter()
            results = summarize_many(
                model,
                [d["text"] for d in batch],
                Decoding(max_new_tokens=o.max_new_tokens),
                batch_size=o.batch_size,
                article_tokens=o.article_tokens,
                progress=False,
            )
            seconds = (time.perf_counter() - began) / len(batch)
            guesses = identify([r["summary"] for r in results], o.lang)
            append_jsonl(
                path,
                [
                    {
                        "id": d["id"],
                        "reference": d["summary"],
                        "prediction": r["summary"],
                        "lang_guess": g,
                        "prompt_tokens": r["prompt_tokens"],
                        "new_tokens": r["new_tokens"],
                        "seconds": round(seconds, 4),
                    }
                    for d, r, g in zip(batch, results, guesses)
                ],
            )
            advance(len(batch))


def score_predictions(rows: list[dict], lang: str) -> dict:
    """Means with intervals and per-document values of every metric, over ``rows`` in order."""
    from .metrics import score_documents

    values = score_documents([r["reference"] for r in rows], [r["prediction"] for r in rows], lang)
    values["tokens"] = [float(r["new_tokens"]) for r in rows]
    seconds = sum(r["seconds"] for r in rows)
    return {
        "documents": len(rows),
        "metrics": {name: mean_interval(v).as_dict() for name, v in values.items()},
        "timing": {
            "seconds": round(seconds, 2),
            "seconds_per_document": round(seconds / len(rows), 3),
            "new_tokens_per_s": round(sum(values["tokens"]) / seconds, 1) if seconds else 0.0,
        },
        "per_document": {r["id"]: {name: v[i] for name, v in values.items()} for i, r in enumerate(rows)},
    }


def evaluate(o: EvalOptions) -> dict:
    """Summarize what is not yet summarized, score everything, write ``scores.json``; return it."""
    from ..compose.languages import check_language

    check_language(o.lang)
    if o.batch_size < 1 or o.max_new_tokens < 1 or o.article_tokens < 1:
        raise EdgecompError("--batch-size, --max-new-tokens and --article-tokens must be at least 1")
    from .rouge import scorer

    scorer(o.lang)  # an unknown language fails here, before any summary is made
    o.model, o.data = (Path(o.model) if o.model is not None else None), Path(o.data)
    docs = _documents(o)
    model, export, composition = _model(o)
    header = _header(o, export, composition)
    out = _prepare(o, header)
    path = out / PREDICTIONS
    done = _read_predictions(path, {d["id"] for d in docs})
    todo = [d for d in docs if d["id"] not in done]
    if done:
        console.print(f"[bold]resuming[/] {out}: {len(done)} of {len(docs)} documents already summarized")
    if todo:
        _summarize(o, model, todo, path)
        done = _read_predictions(path, {d["id"] for d in docs})
    rows = [done[d["id"]] for d in docs]
    scores = {**header, "out": str(out), **score_predictions(rows, o.lang)}
    write_json(out / SCORES, scores)
    return scores
