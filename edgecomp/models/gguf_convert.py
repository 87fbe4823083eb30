"""GGUF → HF checkpoint (safetensors + a tokenizer that matches llama.cpp).

transformers dequantizes the GGUF tensors into a regular model; its tokenizer conversion for
SentencePiece-BPE vocabularies is wrong (see :mod:`gguf_tokenizer`), so the tokenizer is rebuilt
from the GGUF's own tokens, scores and types. Config keys its loader leaves at their defaults but
llama.cpp derives from the file (Gemma 3's attention scale and layer pattern) come from the
family's ``from_gguf``, so the checkpoint computes what llama.cpp computes.
"""

from __future__ import annotations

from pathlib import Path

from ..fsutil import sha256_file
from .cache import cached_entry
from .families import family_for
from .gguf_check import check_gguf
from .gguf_tokenizer import read_metadata, save_hf_tokenizer, tokenizer_from_gguf


def _eos_ids(tok, eos: int) -> list[int]:
    """EOS plus the chat end-of-turn token where the vocabulary has one (as Gemma's configs do)."""
    end_of_turn = tok.token_to_id("<end_of_turn>")
    return [eos] + ([end_of_turn] if end_of_turn is not None else [])


def load_gguf_model(gguf_path: Path):
    """The GGUF as an fp32 transformers model (dequantized), with the config keys llama.cpp derives
    from the file that transformers' loader leaves at their defaults (the family's ``from_gguf``)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    family = family_for(config.to_dict())
    if family is not None and family.from_gguf is not None:
        for key, value in family.from_gguf(config.to_dict(), read_metadata(gguf_path)).items():
            setattr(config, key, value)
    return AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, config=config, dtype=torch.float32
    )


def convert_gguf(gguf_path: Path, out_dir: Path) -> dict:
    """Write the dequantized fp32 checkpoint and tokenizer of ``gguf_path`` into ``out_dir``."""
    from rich.console import Console

    check_gguf(gguf_path)
    with Console(stderr=True).status(f"converting {gguf_path.name} (once; about a minute)"):
        model = load_gguf_model(gguf_path)
        tok = tokenizer_from_gguf(gguf_path)
        cfg = model.config
        gen = model.generation_config
        gen.bos_token_id = cfg.bos_token_id
        gen.pad_token_id = cfg.pad_token_id
        gen.eos_token_id = _eos_ids(tok, cfg.eos_token_id)
        model.save_pretrained(out_dir, safe_serialization=True)
        save_hf_tokenizer(
            tok,
            out_dir,
            bos=tok.id_to_token(cfg.bos_token_id),
            eos=tok.id_to_token(cfg.eos_token_id),
            unk=tok.id_to_token(cfg.unk_token_id) if cfg.unk_token_id is not None else None,
            pad=tok.id_to_token(cfg.pad_token_id) if cfg.pad_token_id is not None else None,
        )
    return {"source": gguf_path.name, "architecture": cfg.model_type}


def cached_conversion(gguf_path: Path, sha256: str | None = None) -> Path:
    """The cached HF checkpoint of a GGUF file, converting it on first use."""
    sha256 = sha256 or sha256_file(gguf_path)
    key = f"{gguf_path.stem}-{sha256[:12]}"
    return cached_entry("models", key, lambda tmp: {**convert_gguf(gguf_path, tmp), "gguf_sha256": sha256})
