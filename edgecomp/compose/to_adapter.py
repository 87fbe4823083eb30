"""``edgecomp compose``: a resolved spec → one standard PEFT adapter folder, without loading the base.

Methods that give exact factors (``output`` ``low_rank``: ``params``, ``delta``) are written
exactly unless ``rank`` asks for a truncated SVD; dense ones (``ties``, ``dare``) need ``rank``.
The SVD's approximation error is reported and stored in ``edgecomp.json``.
"""

from __future__ import annotations

from pathlib import Path

from .. import __version__
from ..errors import EdgecompError
from ..fsutil import atomic_dir, check_output_dir
from .lowrank import to_low_rank
from .methods import compose
from .spec import Resolved
from .write import write_peft_adapter


def _common_base(resolved: Resolved) -> dict | None:
    bases = [(t.adapter.meta or {}).get("base") for t in resolved.terms]
    return bases[0] if bases and all(b == bases[0] for b in bases) else None


def compose_adapter(
    resolved: Resolved, out: Path, *, rank: int | None = None, target: str | None = None, force: bool = False
) -> dict:
    check_output_dir(out, force)
    if not resolved.terms:
        raise EdgecompError("nothing to compose: give adapters, a spec or a scenario")
    if rank is not None and rank < 1:
        raise EdgecompError("--rank must be at least 1")
    composed = compose(resolved.terms, resolved.method, resolved.parameters)
    low_rank, scale, report = to_low_rank(composed, rank)
    meta = {
        "format": "edgecomp-adapter/1",
        "edgecomp_version": __version__,
        "kind": "composition",
        "lang": target,
        "base": _common_base(resolved),
        "composition": {**resolved.canonical(), "adapters": resolved.describe(), "related": resolved.related()},
        "spec_sha256": resolved.digest(),
        "prompt": resolved.prompt(),
        "low_rank": report,
    }
    with atomic_dir(out, force=force) as tmp:
        write_peft_adapter(tmp, low_rank, scale, resolved.terms[0].adapter.config, meta)
    return meta
