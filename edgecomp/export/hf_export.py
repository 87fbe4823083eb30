"""``--format hf``: the merged model as a transformers checkpoint (safetensors, config, generation
config, tokenizer) that ``AutoModelForCausalLM.from_pretrained`` (and vLLM) load.

Verified like an ONNX export: the written folder is read back as a user would read it and its
logits on the verification text must equal those of the merged model in memory (a lost tied
weight, a wrong dtype or a missing shard shows there); the manifest records the files' sha256.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compose.merge import merged_model, save_checkpoint
from ..compose.methods import Composed
from ..errors import EdgecompError
from ..fsutil import sha256_file, write_json
from ..metrics import LOGITS, metric
from ..model_folder import GENERATION_CONFIG, MANIFEST
from .pipeline import decoder_inputs_only, verification_ids
from .verify import default_tolerance, torch_logits

FORMAT = "hf"


def export_hf(
    base_path: Path,
    composed: Composed | None,
    merge_base: str,
    out_dir: Path,
    *,
    manifest: dict,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> dict:
    """Write ``base (+ ΔW)`` into ``out_dir`` (which must not exist), verified; return the manifest."""
    import torch

    model = merged_model(
        base_path, composed, merge_base, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code
    )
    ids = verification_ids(base_path)
    with torch.inference_mode():
        reference = model.eval()(torch.tensor([ids])).logits[0].float().numpy()
    out_dir.mkdir(parents=True)
    save_checkpoint(model, base_path, out_dir)
    if not (out_dir / GENERATION_CONFIG).is_file():
        model.generation_config.save_pretrained(out_dir)
    decoder_inputs_only(out_dir / "tokenizer_config.json")
    del model
    written = torch_logits(out_dir, ids)
    diff = metric("max_abs_diff", LOGITS).overall(written, reference)["max_abs_diff"]
    tolerance = default_tolerance(reference)
    if not (np.isfinite(written).all() and diff <= tolerance):
        raise EdgecompError(f"the written checkpoint's logits differ from the merged model's by {diff:.3g}")
    files = {p.name: sha256_file(p) for p in sorted(out_dir.iterdir())}
    result = {
        **manifest,
        "format": FORMAT,
        "verify": {"reload": {"max_abs_diff": diff, "tolerance": tolerance, "tokens": len(ids)}},
        "files": files,
    }
    write_json(out_dir / MANIFEST, result)
    return result
