"""Scenario 2: weight task adapters trained in languages related to the target, by URIEL distance.

Distances are URIEL+'s (``urielplus``): the angular distance ``2·arccos(cos θ)/π`` in [0, 1] between
two languages' URIEL vectors over the features both have values for, sources merged by union, rounded
to 4 places, as ``URIELPlus.new_distance`` computes it; here it is vectorised (all candidates at once
rather than one slow call a pair: benchmarks/URIEL.md) and tested against ``new_distance``. One
deliberate difference: when a language's family vector is empty, its genetic distance is unknown
(left out), where ``new_distance`` compares a near-zero vector and reports e.g. 0.96. Empty means an
isolate (Basque) but also gaps in URIEL's data (Norwegian Bokmål ``nob`` and Nynorsk ``nno``, Quechua
``que``, Twi ``twi``), so "unknown" is safer than "unrelated".

The default ``combined`` distance is the mean of ``genetic`` and ``syntactic``: genetic relatedness
tracks shared vocabulary and morphology (what a summarizer's output is made of) and syntactic features
track word order; 159 of the 184 ISO 639-1 languages have both. Geographic distance is a proxy of
either, and phonological and inventory features describe sounds, not text, so they are shown by
``--explain`` but not weighted. A kind that cannot be computed for a pair (no shared features) is left
out of the mean; with none left the pair counts as unrelated (combined 1.0).

Weights are ``softmax(-combined / temperature)``: the target itself (distance 0) or a very close
language dominates, while languages all about equally far share the weight evenly; ``temperature`` is
the distance difference that changes a weight ratio by ``e`` (default 0.2). Weights below
``min_weight`` are dropped (the closest language is always kept) and the rest renormalised to sum to 1.
Everything is deterministic: ties break by ISO 639-3 code.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ..errors import EdgecompError
from .adapters import LoraAdapter
from .languages import check_language, uriel

KINDS = ("genetic", "syntactic", "geographic", "phonological", "inventory", "featural")
COMBINE = ("genetic", "syntactic")
TEMPERATURE = 0.2
MIN_WEIGHT = 0.01

_MATRIX = {"genetic": "phylogeny", "geographic": "geography"}  # the rest are typological
_PREFIX = {"syntactic": "S_", "phonological": "P_", "inventory": "INV_", "featural": ""}


@functools.lru_cache(maxsize=None)
def _matrix(name: str):
    feats, data, langs, _ = uriel().get_arrays(name)
    return [str(f) for f in feats], data, {str(c): i for i, c in enumerate(langs)}


@functools.lru_cache(maxsize=4096)
def _vector(kind: str, iso3: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, known) over ``kind``'s features; several sources merge by union (max of known values)."""
    feats, data, index = _matrix(_MATRIX.get(kind, "typological"))
    cube = np.asarray(data[index[iso3]], dtype=np.float64)  # [features, sources]
    if kind in _PREFIX:
        cube = cube[np.array([f.startswith(_PREFIX[kind]) for f in feats])]
    known = (cube != -1.0) & np.isfinite(cube)
    masked = np.where(known, cube, np.nan)
    has = known.any(axis=1)
    reduce = np.nanmean if kind == "geographic" else np.nanmax
    values = np.zeros(len(cube))
    values[has] = reduce(masked[has], axis=1)
    return values, has


def _angular(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0:  # as urielplus does: a zero vector is replaced by a tiny constant one
        u, nu = np.full(len(u), 1e-10), np.linalg.norm(np.full(len(u), 1e-10))
    if nv == 0:
        v, nv = np.full(len(v), 1e-10), np.linalg.norm(np.full(len(v), 1e-10))
    cos = float(np.clip(np.dot(u / nu, v / nv), -1.0, 1.0))
    return round(2.0 * math.acos(cos) / math.pi, 4)


def _distance(kind: str, a: str, b: str) -> float | None:
    if a == b:
        return 0.0
    (ua, ka), (ub, kb) = _vector(kind, a), _vector(kind, b)
    if kind == "genetic" and (not ua.any() or not ub.any()):
        return None  # an empty family vector: an isolate, or a gap in URIEL (nob, nno, que, twi)
    shared = ka & kb
    if not shared.any():
        return None
    return _angular(ua[shared], ub[shared])


def _check_kinds(kinds, combine) -> tuple[tuple[str, ...], tuple[str, ...]]:
    kinds, combine = tuple(kinds), tuple(combine)
    for k in (*kinds, *combine):
        if k not in KINDS:
            raise EdgecompError(f"unknown distance kind '{k}' (choose from {', '.join(KINDS)})")
    if not combine:
        raise EdgecompError("the combined distance needs at least one distance kind")
    return tuple(dict.fromkeys((*kinds, *combine))), combine


def language_distances(target: str, candidates: list[str], kinds=KINDS, combine=COMBINE) -> dict[str, dict[str, float]]:
    """URIEL distances (0 = same, 1 = unrelated) from ``target`` to each candidate, keyed as given.

    Each value maps every kind in ``kinds`` (and ``combine``) to its distance, plus ``combined``, the
    mean of the ``combine`` kinds; a kind that cannot be computed for the pair is absent.
    """
    kinds, combine = _check_kinds(kinds, combine)
    t = check_language(target)
    out: dict[str, dict[str, float]] = {}
    for cand in candidates:
        c = check_language(cand)
        row = {k: d for k in kinds if (d := _distance(k, t, c)) is not None}
        parts = [row[k] for k in combine if k in row]
        row["combined"] = round(sum(parts) / len(parts), 4) if parts else 1.0
        out[cand] = row
    return out


def related_weights(
    target: str,
    candidates: list[str],
    *,
    top_k: int | None = None,
    temperature: float = TEMPERATURE,
    min_weight: float = MIN_WEIGHT,
    kinds=KINDS,
    combine=COMBINE,
) -> list[tuple[str, float, dict]]:
    """``(candidate, weight, distances)`` for the kept candidates, weights summing to 1, highest first.

    ``top_k`` keeps the k closest candidates (by combined distance) before weighting; weights are
    ``softmax(-combined / temperature)``; weights under ``min_weight`` are dropped and the rest
    renormalised.
    """
    if not candidates:
        raise EdgecompError("no candidate languages to weight")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise EdgecompError(f"temperature must be a positive number, got {temperature!r}")
    if not (isinstance(min_weight, (int, float)) and 0 <= min_weight < 1):
        raise EdgecompError(f"min_weight must be in [0, 1), got {min_weight!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise EdgecompError(f"top_k must be a positive integer, got {top_k!r}")
    iso = {c: check_language(c) for c in candidates}
    seen: dict[str, str] = {}
    for c, code in iso.items():
        if code in seen:
            raise EdgecompError(f"'{seen[code]}' and '{c}' are the same language ({code}): list it once")
        seen[code] = c
    dist = language_distances(target, list(iso), kinds, combine)
    order = sorted(iso, key=lambda c: (dist[c]["combined"], iso[c]))[:top_k]
    nearest = dist[order[0]]["combined"]
    raw = {c: math.exp(-(dist[c]["combined"] - nearest) / temperature) for c in order}
    total = sum(raw.values())
    kept = [c for i, c in enumerate(order) if i == 0 or raw[c] / total >= min_weight]
    total = sum(raw[c] for c in kept)
    return [(c, raw[c] / total, dist[c]) for c in kept]


def _final_loss(adapter: LoraAdapter) -> float:
    loss = (adapter.meta or {}).get("final_loss")
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return math.inf
    return float(loss)


def select_related(
    library: list[LoraAdapter],
    target: str,
    kind: str = "task",
    top_k: int | None = None,
    *,
    temperature: float = TEMPERATURE,
    min_weight: float = MIN_WEIGHT,
    kinds=KINDS,
    combine=COMBINE,
) -> list[tuple[LoraAdapter, float, dict]]:
    """``(adapter, weight, distances)`` for ``kind`` adapters in languages related to ``target``.

    One adapter per language (the lowest ``final_loss`` in its ``edgecomp.json``, then path name);
    languages are compared by ISO 639-3 code, so ``hi`` and ``hin`` adapters are the same language.
    """
    check_language(target)
    by_lang: dict[str, list[LoraAdapter]] = {}
    for adapter in library:
        meta = adapter.meta or {}
        if meta.get("kind") != kind or not meta.get("lang"):
            continue
        try:
            code = check_language(str(meta["lang"]))
        except EdgecompError as e:
            raise EdgecompError(f"{adapter.path}: edgecomp.json 'lang': {e}") from None
        by_lang.setdefault(code, []).append(adapter)
    if not by_lang:
        kinds_found = sorted({str((a.meta or {}).get("kind")) for a in library if a.meta})
        raise EdgecompError(
            f"no {kind} adapters with a language to compose for '{target}' among {len(library)} adapters"
            + (f" (kinds found: {', '.join(kinds_found)})" if kinds_found else "")
            + f": train {kind} adapters in languages related to '{target}' first"
        )
    best = {code: min(group, key=lambda a: (_final_loss(a), a.path.name)) for code, group in by_lang.items()}
    rows = related_weights(
        target, sorted(best), top_k=top_k, temperature=temperature, min_weight=min_weight, kinds=kinds, combine=combine
    )
    return [(best[code], weight, dist) for code, weight, dist in rows]


def explain_table(rows: list[tuple]):
    """A rich table for ``--explain``: rows from :func:`select_related` or :func:`related_weights`."""
    from rich.table import Table

    kinds = [k for k in KINDS if any(k in row[2] for row in rows)]
    table = Table(
        title="related languages: URIEL distances (0 = same, 1 = unrelated) and weights",
        caption="combined = mean of " + " and ".join(COMBINE) + " by default; weights = softmax(-combined / T)",
    )
    table.add_column("language")
    table.add_column("adapter")
    for column in (*kinds, "combined", "weight"):
        table.add_column(column, justify="right")
    for item, weight, dist in rows:
        if isinstance(item, LoraAdapter):
            lang, adapter = str((item.meta or {}).get("lang", "?")), str(item.path)
        else:
            lang, adapter = str(item), "-"
        table.add_row(
            lang, adapter, *(f"{dist[k]:.4f}" if k in dist else "-" for k in (*kinds, "combined")), f"{weight:.4f}"
        )
    return table
