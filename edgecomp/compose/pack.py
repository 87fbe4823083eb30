"""``edgecomp adapters pack``: a trained adapter made small enough to ship, still a PEFT adapter.

Three knobs, each a size/quality trade measured in ``benchmarks/LIBRARY.md``: the rank (each
module's update ΔW = s·B·A becomes its best rank-r approximation, a truncated SVD), the module
types kept (attention, MLP or both) and the storage dtype (float16 or bfloat16 halve float32).
The result composes like any adapter; because the SVD changes the basis of A and B, compositions
of packed adapters should use ``delta`` (which sums ΔW exactly) rather than ``params`` (which sums
A's and B's and so depends on that basis). The source's ``edgecomp.json`` is kept, with a
``packed`` record of the choices and the relative error of each truncation.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgecompError
from ..fsutil import atomic_dir, check_output_dir
from .adapters import load_adapter
from .lowrank import to_low_rank
from .methods import Composed
from .terms import module_type
from .write import write_peft_adapter

MODULE_SETS = {"all": ("attention", "mlp"), "attention": ("attention",), "mlp": ("mlp",)}
DTYPES = ("float32", "float16", "bfloat16")


def pack_adapter(
    src: Path, out: Path, *, rank: int, modules: str = "all", dtype: str = "float16", force: bool = False
) -> dict:
    """Write ``src`` at ``rank``, keeping the ``modules`` types, stored as ``dtype``; return its manifest."""
    if modules not in MODULE_SETS:
        raise EdgecompError(f"--modules must be one of {', '.join(MODULE_SETS)} (got '{modules}')")
    if dtype not in DTYPES:
        raise EdgecompError(f"--dtype must be one of {', '.join(DTYPES)} (got '{dtype}')")
    if rank < 1:
        raise EdgecompError(f"--rank must be at least 1 (got {rank})")
    check_output_dir(out, force)
    adapter = load_adapter(src)
    unknown = sorted(m for m in adapter.weights if module_type(m) is None)
    if unknown and modules != "all":
        raise EdgecompError(
            f"{src}: module '{unknown[0]}' is neither attention nor MLP in any known model family; "
            "--modules attention/mlp cannot sort it (use --modules all)"
        )
    kept = {m: ab for m, ab in adapter.weights.items() if modules == "all" or module_type(m) in MODULE_SETS[modules]}
    if not kept:
        raise EdgecompError(f"{src}: no {modules} modules to keep")
    low_rank, scale, report = to_low_rank(Composed(low_rank=kept, scale=adapter.scale), rank)
    meta = {
        **(adapter.meta or {}),
        "packed": {
            "from_rank": adapter.rank,
            "rank": report["rank"],
            "modules": modules,
            "dtype": dtype,
            "relative_error": report["relative_error"],
        },
    }
    config = {**adapter.config, "target_modules": sorted({m.rsplit(".", 1)[-1] for m in kept})}
    named = ((adapter.meta or {}).get("base") or {}).get("spec")
    if named:  # the base as its trainer named it, not the local cache path PEFT recorded
        config["base_model_name_or_path"] = named
    with atomic_dir(out, force=force) as tmp:
        write_peft_adapter(tmp, low_rank, scale, config, meta, dtype=dtype)
    return meta


def pack_summary(out: Path, meta: dict) -> str:
    """One line on what packing did: ranks, modules, dtype, size and truncation error."""
    p = meta["packed"]
    size = (out / "adapter_model.safetensors").stat().st_size
    return (
        f"rank {p['from_rank']} → {p['rank']}, {p['modules']}, {p['dtype']}, {size / 2**20:.2f} MB; "
        f"truncation error {p['relative_error']['mean']:.2f} mean, {p['relative_error']['max']:.2f} max"
    )
