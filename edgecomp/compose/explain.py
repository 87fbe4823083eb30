"""``--explain``: the terms a spec resolved to, the method with its parameters and, for related
languages, the URIEL distances."""

from __future__ import annotations

from .methods import get_method
from .spec import Resolved


def method_line(resolved: Resolved) -> str:
    """The method and its version, each declared parameter's value (marked where the default was
    used) and the reference it follows."""
    method = get_method(resolved.method)
    values = method.values(resolved.parameters)
    shown = ", ".join(
        f"{name}={value}" + ("" if name in resolved.parameters else " (default)") for name, value in values.items()
    )
    return f"{method.name} v{method.version} ({shown or 'no parameters'}): {method.reference}"


def explanation(resolved: Resolved):
    """What ``--explain`` prints: the table of terms, then the method line."""
    from rich.console import Group
    from rich.text import Text

    return Group(_terms_table(resolved), Text(method_line(resolved)))


def _terms_table(resolved: Resolved):
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
            t.adapter.name,
            meta.get("kind", "?"),
            meta.get("lang") or "?",
            *(f"{d[k]:.3f}" if k in d else "" for k in kinds),
            f"{t.weight:+.4f}",
            *(shape if shaped else ()),
        )
    return table
