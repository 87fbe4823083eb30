"""The on-device summarizer: ONNX Runtime, numpy and tokenizers, never PyTorch.

``model`` opens an export folder, ``session`` runs its decoder graph with a KV cache (IO binding,
cache kept in ONNX Runtime tensors), ``decoding`` holds the decoding settings, ``generate`` is the
decoding loop (greedy, beam search, sampling; batches of prompts), ``stream`` turns tokens into text
as they arrive and ``summarize`` ties them to the prompt template shared with training (long
articles by chunks).
"""

from .decoding import Decoding
from .generate import Generation, generate, generate_batch
from .model import OnnxCausalLM
from .stream import TextStream
from .summarize import summarize, summarize_many

__all__ = [
    "Decoding",
    "Generation",
    "OnnxCausalLM",
    "TextStream",
    "generate",
    "generate_batch",
    "summarize",
    "summarize_many",
]
