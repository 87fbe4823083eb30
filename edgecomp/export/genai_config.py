"""``genai_config.json``: what onnxruntime-genai needs to run an export (``onnxruntime_genai.Model``).

The decoder's input and output names are optimum's ``text-generation-with-past`` ones, which both
of edgecomp's graphs use; the sizes come from ``config.json``, the special ids from the export's
folder and the model type from its family (onnxruntime-genai keys some behaviour on it). The KV cache
grows by concatenation in the graph, so the present and past buffers are not shared. Exports that
take run-time LoRA inputs or a trimmed vocabulary are not written one: onnxruntime-genai would
feed neither the updates nor the id map.
"""

from __future__ import annotations

from pathlib import Path

from ..fsutil import write_json
from ..model_folder import read_config, special_ids
from ..models.families import family_for

FILE = "genai_config.json"


def genai_config(folder: Path) -> dict:
    """The configuration for the export in ``folder`` (its ``config.json`` and generation config)."""
    config = read_config(folder)
    ids = special_ids(folder, config)
    family = family_for(config)
    heads = config["num_attention_heads"]
    eos = list(ids.eos)
    return {
        "model": {
            "bos_token_id": ids.bos,
            "context_length": config["max_position_embeddings"],
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "model.onnx",
                "head_size": config.get("head_dim") or config["hidden_size"] // heads,
                "hidden_size": config["hidden_size"],
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": heads,
                "num_hidden_layers": config["num_hidden_layers"],
                "num_key_value_heads": config.get("num_key_value_heads") or heads,
            },
            "eos_token_id": eos,
            "pad_token_id": next(i for i in (config.get("pad_token_id"), *eos, 0) if i is not None),
            "type": family.genai_type if family is not None else config.get("model_type"),
            "vocab_size": config["vocab_size"],
        },
        "search": {
            "do_sample": False,
            "max_length": config["max_position_embeddings"],
            "min_length": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": False,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
            "repetition_penalty": 1.0,
            "length_penalty": 1.0,
            "early_stopping": True,
            "diversity_penalty": 0.0,
            "no_repeat_ngram_size": 0,
        },
    }


def write_genai_config(folder: Path) -> Path:
    path = Path(folder) / FILE
    write_json(path, genai_config(folder))
    return path
