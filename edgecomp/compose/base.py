"""Which base a composition belongs to: the one given, else the one its adapters name, and the
check that every adapter was trained on that base's weights."""

from __future__ import annotations

from ..errors import EdgecompError
from .spec import Resolved


def base_spec(resolved: Resolved, given: str | None) -> str | None:
    """``--base``, else the base the adapters name — only if that is the embedded default: adapter
    metadata comes from whoever published the adapter and must not make us load a path or a hub id."""
    from ..models.resolve import DEFAULT_BASE

    if given:
        return given
    specs = {((t.adapter.meta or {}).get("base") or {}).get("spec") for t in resolved.terms} - {None}
    if len(specs) > 1:
        raise EdgecompError(f"adapters name different bases ({', '.join(sorted(specs))}); pass --base")
    named = specs.pop() if specs else None
    if named not in (None, DEFAULT_BASE):
        raise EdgecompError(f"the adapters were trained on '{named}'; pass it as --base to load it")
    return named


def check_fingerprints(resolved: Resolved, base_name: str, fingerprint: str) -> None:
    for adapter in (t.adapter for t in resolved.terms):
        if adapter.fingerprint and adapter.fingerprint != fingerprint:
            raise EdgecompError(f"{adapter.name}: trained on another base than '{base_name}' (weights differ)")
