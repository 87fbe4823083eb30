"""``--format hf``: the merged model as a transformers checkpoint (safetensors, config, generation
config, tokenizer) that ``AutoModelForCausalLM.from_pretrained`` (and vLLM) load.

Verified like an ONNX export: the written folder is read back as a user would read it and its
logits on the verification text must equal those of the merged model in memory (a lost tied
weight, a wrong dtype or a missing shard shows there); the manifest records the files' sha256.
"""

from __future__ import annotations

from pathlib import Path

from ..compose.merge import save_checkpoint
from ..model_folder import GENERATION_CONFIG, write_manifest
from .pipeline import decoder_inputs_only
from .verify import match_logits, model_logits, torch_logits

FORMAT = "hf"


def export_hf(model, base_path: Path, out_dir: Path, *, manifest: dict, ids: list[int]) -> dict:
    """Write the merged ``model`` (with ``base_path``'s tokenizer) into ``out_dir``, which must not
    exist; verify it on ``ids`` and return the manifest."""
    reference = model_logits(model, ids)
    out_dir.mkdir(parents=True)
    save_checkpoint(model, base_path, out_dir)
    if not (out_dir / GENERATION_CONFIG).is_file():
        model.generation_config.save_pretrained(out_dir)
    decoder_inputs_only(out_dir / "tokenizer_config.json")
    check = match_logits(
        torch_logits(out_dir, ids), reference, "the written checkpoint's logits differ from the merged model's"
    )
    return write_manifest(out_dir, {**manifest, "format": FORMAT, "verify": {"reload": check}})
