"""The on-device summarizer: ONNX Runtime, numpy and tokenizers, never PyTorch.

``model`` opens an export folder, ``session`` runs its decoder graph with a KV cache, ``generate``
is the decoding loop (greedy, beam search, sampling) and ``summarize`` ties them to the prompt
template shared with training.
"""

from .generate import Generation, generate
from .model import OnnxCausalLM
from .summarize import summarize

__all__ = ["Generation", "OnnxCausalLM", "generate", "summarize"]
