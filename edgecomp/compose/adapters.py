"""A PEFT LoRA adapter folder as plain tensors: ``{module: (A, B)}`` plus its scale and metadata.

Composition works in adapter space, so it reads ``adapter_model.safetensors`` directly (never a
pickle) and needs no base model. Features whose arithmetic edgecomp does not define (DoRA, per-module
rank/alpha patterns, extra trained modules) are refused rather than silently mis-merged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgecompError
from ..finite import check_finite

WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"
META = "edgecomp.json"
_PREFIX = "base_model.model."


@dataclass
class LoraAdapter:
    path: Path
    config: dict
    weights: dict  # module name in the base model -> (A [r, in], B [out, r]), fp32 tensors
    meta: dict | None
    stored_dtype: str = "float32"  # as saved; composition computes in fp32 but refuses to mix these

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def rank(self) -> int:
        return int(self.config["r"])

    @property
    def scale(self) -> float:
        alpha = float(self.config.get("lora_alpha", self.rank))
        return alpha / (math.sqrt(self.rank) if self.config.get("use_rslora") else self.rank)

    @property
    def fingerprint(self) -> str | None:
        return ((self.meta or {}).get("base") or {}).get("fingerprint")


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgecompError(f"{path}: unreadable JSON ({e})") from None
    if not isinstance(obj, dict):
        raise EdgecompError(f"{path}: expected a JSON object")
    return obj


def _check_config(path: Path, cfg: dict) -> None:
    if cfg.get("peft_type") != "LORA":
        raise EdgecompError(f"{path}: not a LoRA adapter (peft_type={cfg.get('peft_type')})")
    for key in ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "lora_bias"):
        if cfg.get(key):
            raise EdgecompError(f"{path}: adapters with '{key}' cannot be composed")
    if not isinstance(cfg.get("r"), int) or cfg["r"] < 1:
        raise EdgecompError(f"{path}: adapter_config.json has no valid rank 'r'")


def _pair_tensors(path: Path, tensors: dict, rank: int) -> dict:
    pairs: dict = {}
    for key, value in tensors.items():
        if not key.startswith(_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise EdgecompError(f"{path}: unexpected tensor '{key}' (only LoRA A/B weights compose)")
        module, which = key[len(_PREFIX) :].rsplit(".", 2)[0], key.rsplit(".", 2)[1]
        pairs.setdefault(module, {})[which] = value.float()
    weights = {}
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"lora_A", "lora_B"}:
            raise EdgecompError(f"{path}: module '{module}' lacks its lora_A or lora_B")
        a, b = ab["lora_A"], ab["lora_B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise EdgecompError(f"{path}: module '{module}' has mismatched A {tuple(a.shape)} / B {tuple(b.shape)}")
        if a.shape[0] != rank:
            raise EdgecompError(
                f"{path}: module '{module}' has rank {a.shape[0]} but {CONFIG} says r={rank} (a damaged file)"
            )
        weights[module] = (a, b)
    if not weights:
        raise EdgecompError(f"{path}: no LoRA weights found")
    return weights


def load_adapter(path: str | Path) -> LoraAdapter:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_dir() or not (path / CONFIG).is_file():
        raise EdgecompError(f"{path}: not an adapter folder (no {CONFIG})")
    if not (path / WEIGHTS).is_file():
        hint = " (pickle adapter_model.bin is not loaded)" if (path / "adapter_model.bin").exists() else ""
        raise EdgecompError(f"{path}: no {WEIGHTS}{hint}")
    config = _read_json(path / CONFIG)
    _check_config(path, config)
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as e:
        raise EdgecompError(f"{path / WEIGHTS}: corrupted safetensors ({e})") from None
    check_finite(tensors.items(), path / WEIGHTS)
    meta = _read_json(path / META) if (path / META).is_file() else None
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in tensors.values()})
    return LoraAdapter(path, config, _pair_tensors(path, tensors, config["r"]), meta, "/".join(dtypes))
