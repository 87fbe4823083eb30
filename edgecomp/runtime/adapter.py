"""LoRA updates fed to an export at run time: one exported base serves every composition.

An export written with ``lora_inputs`` (``edgecomp.export.decoder_graph``) computes each linear
layer as ``x @ W + (x @ a) @ b``, with ``a`` [in, R] and ``b`` [R, out] run-time inputs; its
manifest's ``lora_inputs`` maps each input pair to the modules it stands for (a fused q/k/v layer
has three). This module turns PEFT adapters into those inputs, with numpy only:

- :func:`delta_factors` composes adapters exactly, as ``edgecomp compose --method delta`` does:
  ``Σ wᵢ sᵢ Bᵢ Aᵢ`` kept as factors, the A's stacked and the weighted, scaled B's side by side
  (rank Σrᵢ). It is written here rather than imported from :mod:`edgecomp.compose` because that
  package computes with PyTorch, which a summary must not need to load;
- :func:`lora_feeds` lays the factors out per input pair: the parts' Aᵀ side by side, their Bᵀ
  block-diagonal, zeros for a module no adapter touches;
- :func:`zero_feeds` is the update that changes nothing (rank 1, zeros), for the base alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import EdgecompError

PREFIX = "base_model.model."
LORA_INPUT = "lora."  # graph inputs ``lora.<module>.a`` / ``.b``


def _read_adapter(folder: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """``{module: (A [r, in], B [out, r])}`` in float32 and the scale of a PEFT LoRA folder."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        tensors = load_file(str(folder / "adapter_model.safetensors"))
    except (OSError, ValueError, SafetensorError) as e:
        raise EdgecompError(f"{folder}: not a readable LoRA adapter ({e})") from None
    if (
        config.get("peft_type") != "LORA"
        or config.get("use_dora")
        or config.get("rank_pattern")
        or config.get("alpha_pattern")
    ):
        raise EdgecompError(f"{folder}: only plain LoRA adapters can be applied at run time")
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha", rank))
    scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        if not key.startswith(PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise EdgecompError(f"{folder}: unexpected tensor '{key}'")
        module, which = key[len(PREFIX) :].rsplit(".", 2)[:2]
        pairs.setdefault(module, {})[which] = value.astype(np.float32)
    weights = {}
    for module, ab in pairs.items():
        if set(ab) != {"lora_A", "lora_B"}:
            raise EdgecompError(f"{folder}: module '{module}' lacks its lora_A or lora_B")
        weights[module] = (ab["lora_A"], ab["lora_B"])
    return weights, scale


def delta_factors(terms: Iterable[tuple[Path, float]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``Σ wᵢ ΔWᵢ`` of ``(adapter folder, weight)`` terms, exactly, as factors (A [R, in], B [out, R])."""
    stacked: dict[str, tuple[list, list]] = {}
    first = None
    for folder, weight in terms:
        adapter, scale = _read_adapter(Path(folder))
        if first is None:
            first = (folder, set(adapter))
        elif set(adapter) != first[1]:  # as edgecomp compose refuses it
            raise EdgecompError(f"{folder}: target modules differ from {first[0]}")
        for module, (a, b) in adapter.items():
            a_list, b_list = stacked.setdefault(module, ([], []))
            a_list.append(a)
            b_list.append(np.float32(weight * scale) * b)
    return {
        m: (np.concatenate(a_list, axis=0), np.concatenate(b_list, axis=1)) for m, (a_list, b_list) in stacked.items()
    }


def _check_finite(factors: dict) -> None:
    for module, (a, b) in factors.items():
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise EdgecompError(f"the adapter update of '{module}' is not finite (NaN or inf)")


def lora_feeds(layout: dict, factors: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Graph inputs for ``factors`` on an export whose manifest's ``lora_inputs`` is ``layout``."""
    _check_finite(factors)
    known = {part for entry in layout.values() for part in entry["parts"]}
    unknown = sorted(set(factors) - known)
    if unknown:
        raise EdgecompError(
            f"the export takes no run-time update for {unknown[0]} (and {len(unknown) - 1} more); "
            "was the adapter trained on another base?"
        )
    feeds = {}
    for name, entry in layout.items():
        parts, width, outs = entry["parts"], entry["in"], entry["out"]
        ranks = [factors[p][0].shape[0] if p in factors else 0 for p in parts]
        total = sum(ranks)
        if total == 0:
            feeds[f"{name}.a"] = np.zeros((width, 1), np.float32)
            feeds[f"{name}.b"] = np.zeros((1, sum(outs)), np.float32)
            continue
        a = np.zeros((width, total), np.float32)
        b = np.zeros((total, sum(outs)), np.float32)
        row = col = 0
        for part, rank, out in zip(parts, ranks, outs):
            if rank:
                fa, fb = factors[part]
                if fa.shape[1] != width or fb.shape[0] != out:
                    raise EdgecompError(
                        f"'{part}': adapter update is {fb.shape[0]}x{fa.shape[1]}, the export's layer is {out}x{width}"
                    )
                a[:, row : row + rank] = fa.T
                b[row : row + rank, col : col + out] = fb.T
            row, col = row + rank, col + out
        feeds[f"{name}.a"], feeds[f"{name}.b"] = a, b
    return feeds


def zero_feeds(inputs: Sequence) -> dict[str, np.ndarray]:
    """Zero updates for the ``lora.*`` inputs among a session's ``get_inputs()`` (rank 1)."""
    feeds = {}
    for i in inputs:
        if i.name.startswith(LORA_INPUT):
            rows, cols = i.shape
            feeds[i.name] = np.zeros(
                (rows if isinstance(rows, int) else 1, cols if isinstance(cols, int) else 1), np.float32
            )
    return feeds
