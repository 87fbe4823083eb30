"""``--explain``: the terms a spec resolved to and, for related languages, the URIEL distances."""

from __future__ import annotations

from .spec import Resolved


def explain_table(resolved: Resolved):
    from rich.table import Table

    distances = {id(adapter): d for _, adapter, d, _ in resolved.explain}
    # the distances the weights come from; the other URIEL kinds are in the manifest, not the table
    kinds = [k for k in ("genetic", "syntactic", "combined") if any(k in d for d in distances.values())]
    shaped = any(t.attention != 1 or t.mlp != 1 or t.layers for t in resolved.terms)
    extra = ("attention", "mlp", "layers") if shaped else ()
    table = Table(title=f"composition: {resolved.method}")
    for column in ("adapter", "kind", "lang", *kinds, "weight", *extra):
        table.add_column(column)
    for t in resolved.terms:
        meta = t.adapter.meta or {}
        d = distances.get(id(t.adapter), {})
        shape = (f"{t.attention:g}", f"{t.mlp:g}", "-".join(map(str, t.layers)) if t.layers else "all")
        table.add_row(
            t.adapter.name, meta.get("kind", "?"), meta.get("lang") or "?",
            *(f"{d[k]:.3f}" if k in d else "" for k in kinds), f"{t.weight:+.4f}", *(shape if shaped else ()),
        )
    return table
