"""``merge-export``: compose adapters, merge into the base, export to ONNX, verify, quantize.

The composition is recorded in the export's manifest: base (name and weight fingerprint), method,
merge base, and each adapter with its weight and the sha256 of its weights.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..compose.adapters import WEIGHTS, LoraAdapter, load_adapter
from ..compose.merge import merged_checkpoint
from ..compose.methods import compose
from ..compose.terms import Term
from ..console import console
from ..errors import EdgecompError
from ..fsutil import check_output_dir, sha256_file


def parse_adapter_spec(spec: str) -> tuple[Path, float]:
    """``PATH:WEIGHT`` (weight defaults to 1), e.g. ``runs/lang-en:-1``."""
    path, sep, weight = spec.rpartition(":")
    if not sep or not path:
        return Path(spec), 1.0
    try:
        return Path(path), float(weight)
    except ValueError:
        raise EdgecompError(f"--adapter '{spec}': weight '{weight}' is not a number") from None


def _base_spec(adapters: list[LoraAdapter], given: str | None) -> str | None:
    if given:
        return given
    specs = {((a.meta or {}).get("base") or {}).get("spec") for a in adapters} - {None}
    if len(specs) > 1:
        raise EdgecompError(f"adapters name different bases ({', '.join(sorted(specs))}); pass --base")
    return specs.pop() if specs else None


def _check_fingerprints(adapters: list[LoraAdapter], base_name: str, fingerprint: str) -> None:
    for adapter in adapters:
        if adapter.fingerprint and adapter.fingerprint != fingerprint:
            raise EdgecompError(f"{adapter.name}: trained on another base than '{base_name}' (weights differ)")


def merge_export(
    adapter_specs: list[str],
    out: Path,
    *,
    base: str | None = None,
    method: str = "params",
    merge_base: str = "original",
    quantize: str = "none",
    force: bool = False,
) -> dict:
    from ..models.fingerprint import weights_fingerprint
    from ..models.resolve import resolve_base
    from .pipeline import export_checkpoint

    check_output_dir(out, force)
    terms = [Term(load_adapter(path), weight) for path, weight in map(parse_adapter_spec, adapter_specs)]
    composed = compose(terms, method) if terms else None
    resolved = resolve_base(_base_spec([t.adapter for t in terms], base))
    fingerprint = weights_fingerprint(resolved.path)
    _check_fingerprints([t.adapter for t in terms], resolved.name, fingerprint)
    manifest = {
        "base": {"name": resolved.name, "fingerprint": fingerprint},
        "composition": {
            "method": method if terms else None,
            "merge_base": merge_base,
            "adapters": [
                {
                    "path": str(a.path),
                    "weight": w,
                    "kind": (a.meta or {}).get("kind"),
                    "lang": (a.meta or {}).get("lang"),
                    "rank": a.rank,
                    "sha256": sha256_file(a.path / WEIGHTS),
                }
                for a, w in ((t.adapter, t.weight) for t in terms)
            ],
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".merge-", dir=out.parent) as tmp:
        with console.status("merging adapters into the base weights"):
            merged = merged_checkpoint(resolved.path, composed, merge_base, Path(tmp) / "merged")
        return export_checkpoint(merged, out, quantize=quantize, manifest=manifest, force=force)
