"""One ONNX decoder graph behind a two-call interface: run tokens, get logits and a longer cache.

The graph is what optimum exports for ``text-generation-with-past``: inputs ``input_ids``,
``attention_mask``, sometimes ``position_ids`` (Llama has them, Gemma3 derives positions from the
cache length) and ``past_key_values.{i}.key/value``; outputs ``logits`` and ``present.{i}.key/value``.
Everything that knows those names, and how the cache is stored, lives here, so that IO binding or a
preallocated cache later changes this file and not the generation loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from ..errors import EdgecompError

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}

# Prompts longer than this run in slices: the graph returns logits for every position it is given,
# and with a 262k vocabulary one pass over 2,048 tokens would hold 2 GiB of logits at once.
PREFILL_CHUNK = 256


@dataclass(frozen=True)
class KVShape:
    """What an empty cache looks like: per layer one key and one value [batch, heads, 0, head_dim]."""

    num_layers: int
    num_kv_heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config: dict) -> "KVShape":
        try:
            head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
            return cls(
                num_layers=config["num_hidden_layers"],
                num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                head_dim=head_dim,
            )
        except KeyError as e:
            raise EdgecompError(f"config.json lacks {e.args[0]!r}; is this a causal-LM config?") from None


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer, in input order (key 0, value 0, key 1, ...), rows = sequences."""

    tensors: tuple[np.ndarray, ...]

    @property
    def length(self) -> int:
        return self.tensors[0].shape[2]

    def select(self, rows: Sequence[int] | np.ndarray) -> "KVCache":
        """The cache of the given rows, in that order (beam search reorders and widens with this)."""
        rows = np.asarray(rows, dtype=np.int64)
        return KVCache(tuple(t[rows] for t in self.tensors))


def create_session(model_path: Path, provider: str) -> ort.InferenceSession:
    """An InferenceSession on the named provider, or a message saying why it cannot be had."""
    if provider not in PROVIDERS:
        raise EdgecompError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[provider]
    if wanted not in ort.get_available_providers():
        raise EdgecompError(
            f"ONNX Runtime here has no {wanted} (available: {', '.join(ort.get_available_providers())}); "
            "for cuda install onnxruntime-gpu (pip install 'edgecomp[gpu]')"
        )
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers are noise to a user
    fallback = ["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else []
    session = ort.InferenceSession(str(model_path), options, providers=[wanted, *fallback])
    # ONNX Runtime falls back to CPU with only a log line when the CUDA libraries fail to load.
    if session.get_providers()[0] != wanted:
        raise EdgecompError(f"{wanted} could not be initialised (missing CUDA/cuDNN libraries?)")
    return session


class DecoderSession:
    """Runs a decoder-with-past graph; batch rows are independent sequences of equal length."""

    def __init__(self, model_path: Path, shape: KVShape, provider: str = "cpu"):
        self.session = create_session(model_path, provider)
        self.shape = shape
        inputs = {i.name for i in self.session.get_inputs()}
        self.past_names = [
            f"past_key_values.{i}.{kind}" for i in range(shape.num_layers) for kind in ("key", "value")
        ]
        missing = {"input_ids", "attention_mask", *self.past_names} - inputs
        if missing:
            raise EdgecompError(
                f"{model_path} is not a decoder-with-past graph matching config.json "
                f"(missing inputs: {', '.join(sorted(missing))})"
            )
        self.has_position_ids = "position_ids" in inputs
        self.output_names = ["logits"] + [n.replace("past_key_values", "present") for n in self.past_names]

    def empty_cache(self, batch: int = 1) -> KVCache:
        s = self.shape
        empty = np.zeros((batch, s.num_kv_heads, 0, s.head_dim), dtype=np.float32)
        return KVCache((empty,) * len(self.past_names))

    def run(self, input_ids: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
        """Logits [batch, tokens, vocab] for ``input_ids`` [batch, tokens] after ``cache``."""
        batch, new = input_ids.shape
        past = cache.length
        feeds = {
            "input_ids": input_ids.astype(np.int64, copy=False),
            "attention_mask": np.ones((batch, past + new), dtype=np.int64),
            **dict(zip(self.past_names, cache.tensors)),
        }
        if self.has_position_ids:
            feeds["position_ids"] = np.broadcast_to(np.arange(past, past + new, dtype=np.int64), (batch, new))
        logits, *present = self.session.run(self.output_names, feeds)
        return logits, KVCache(tuple(present))

    def prefill(self, ids: Sequence[int]) -> tuple[np.ndarray, KVCache]:
        """Run a prompt (one sequence); return the last position's logits [1, vocab] and the cache."""
        cache = self.empty_cache(1)
        ids = np.asarray(ids, dtype=np.int64)[None, :]
        for start in range(0, ids.shape[1], PREFILL_CHUNK):
            logits, cache = self.run(ids[:, start : start + PREFILL_CHUNK], cache)
        return logits[:, -1], cache

    def step(self, tokens: np.ndarray, cache: KVCache) -> tuple[np.ndarray, KVCache]:
        """One new token per row: ``tokens`` [batch] → logits [batch, vocab]."""
        logits, cache = self.run(np.asarray(tokens, dtype=np.int64)[:, None], cache)
        return logits[:, -1], cache
