"""Tiny random GGUF files, written the way llama.cpp's ``convert_hf_to_gguf.py`` writes Gemma 3 and
Llama: a GGUF-born base for the tests of ``--format gguf`` and ``gguf-lora`` that takes seconds,
where the embedded default takes minutes.

Written independently of :mod:`edgecomp.export.gguf_export` (``gguf``'s tensor-name map, the
architecture keys llama.cpp reads, the vocabulary as SentencePiece tokens with minus-rank scores),
so a layout mistake in the exporter is not mirrored here; ``test_tiny_gguf_converts_back`` checks
this writer against the PyTorch model through transformers' GGUF loader.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tiny import tiny_model, tiny_tokenizer

# llama.cpp's token types (llama_token_type)
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6

# Sliding attention on every layer: llama.cpp's Gemma 3 pattern (every sixth layer global) and
# transformers' GGUF loader (which does not read a pattern) then agree on two layers.
_OVERRIDES = {"gemma3": {"layer_types": ["sliding_attention", "sliding_attention"]}, "llama": {}}


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _vocabulary(writer, tok) -> None:
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    types = [
        _UNKNOWN
        if t == "<unk>"
        else _CONTROL
        if t in ("<pad>", "<eos>", "<bos>")
        else _BYTE
        if t.startswith("<0x")
        else _NORMAL
        for t in tokens
    ]
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0 if k != _NORMAL else -float(i) for i, k in enumerate(types)])
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)


def write_tiny_gguf(kind: str, out: Path, seed: int = 0) -> Path:
    """A random ``kind`` (``gemma3`` or ``llama``) model as an f32 GGUF at ``out``."""
    import gguf

    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    model = tiny_model(kind, len(tok), **_OVERRIDES[kind])
    cfg = model.config
    arch = {"gemma3": gguf.MODEL_ARCH.GEMMA3, "llama": gguf.MODEL_ARCH.LLAMA}[kind]
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(f"tiny {kind}")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    if kind == "gemma3":
        writer.add_sliding_window(cfg.sliding_window)
    else:
        writer.add_rope_dimension_count(head_dim)
        writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _vocabulary(writer, tok)
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding
            continue
        module, _, suffix = name.rpartition(".")
        data = tensor.float().numpy()
        if kind == "gemma3" and name.endswith("norm.weight"):
            data = data + 1.0
        if kind == "llama" and ".q_proj." in name:
            data = _permute(data, cfg.num_attention_heads)
        if kind == "llama" and ".k_proj." in name:
            data = _permute(data, cfg.num_key_value_heads)
        writer.add_tensor(f"{names.get_name(module)}.{suffix}", np.ascontiguousarray(data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
