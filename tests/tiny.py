"""Tiny random models and a tiny tokenizer, built on the spot: nothing in the tests downloads.

The tokenizer has Gemma's shape (SentencePiece-style BPE with byte fallback, ``▁`` for spaces,
``<pad>=0 <eos>=1 <bos>=2 <unk>=3``); the models are one per registered family
(:mod:`edgecomp.models.families`: Llama, Gemma3, Qwen2, Qwen3), a few layers each, shaped by the
family's ``tiny_config`` on top of the sizes here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from edgecomp.export.quantization.schemes import SCHEMES
from edgecomp.models.families import FAMILIES

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>"]
CORPUS = [
    "The council approved the new budget for schools and roads on Monday.",
    "Heavy rain flooded the market and traders lost their goods.",
    "Scientists found a new species of frog in the mountain forest.",
    "Serikali imetangaza mpango mpya wa elimu kwa shule za msingi.",
    "Mvua kubwa imesababisha mafuriko katika mji mkuu wa nchi.",
    "Wanasayansi wamegundua aina mpya ya chura msituni.",
    "La ville a approuvé un nouveau budget pour les écoles.",
    "सरकार ने स्कूलों के लिए नई योजना की घोषणा की।",
]


# Every quantization scheme, which the export tests run through.
MODES = tuple(SCHEMES)


def tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(byte_tokens),
        special_tokens=SPECIALS + byte_tokens,
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def _common(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
        initializer_range=0.2,
    )


def tiny_model(kind: str, vocab_size: int, **overrides):
    """A random model of the family named ``kind``: the common sizes plus the family's tiny config
    (then ``overrides``). Biases (Qwen2's q/k/v) are random too: transformers starts them at zero,
    which would hide a graph that drops them."""
    family = FAMILIES[kind]
    config = AutoConfig.for_model(family.model_types[0], **{**_common(vocab_size), **family.tiny_config, **overrides})
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0.0, config.initializer_range)
    return model


def tiny_llama(vocab_size: int):
    return tiny_model("llama", vocab_size)


def tiny_gemma3(vocab_size: int):
    return tiny_model("gemma3", vocab_size)


def save_tiny(kind: str, out: Path, seed: int = 0) -> Path:
    """Write a tiny random checkpoint (safetensors, config, tokenizer) to ``out``."""
    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    model = tiny_model(kind, len(tok))
    model.generation_config.bos_token_id = 2
    model.generation_config.eos_token_id = 1
    model.generation_config.pad_token_id = 0
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
