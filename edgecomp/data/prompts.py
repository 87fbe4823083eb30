"""The summarization prompts, shared by task training and the ONNX runtime.

Pure Python on purpose: the runtime imports it without PyTorch. Both sides build token ids the
same way (article tokens, truncated to a budget, then the instruction; the summary follows), so
what the adapter learned is exactly what ``summarize`` asks.

A prompt has a name: a task adapter records the one it was trained with (``edgecomp.json``), an
export the one of its task adapters (``edgecomp-export.json``), and ``summarize`` uses that one.
``english`` is an English instruction; ``neutral`` has no words, so nothing in the prompt but the
article says which language the summary is in.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..errors import EdgecompError

Encode = Callable[[str], Sequence[int]]

PROMPTS = {
    "english": "\n\nSummarize the text above in one sentence.\nSummary:",
    "neutral": "\n\n—\n",
}
# What new task adapters are trained with: without English words before the summary, task-only
# summaries come out in the article's language far more often (docs/results.md).
DEFAULT_PROMPT = "neutral"
# What a task adapter or export that names no prompt used: adapters from before prompts had names,
# and exports with no task adapter (the base alone needs words to know the task).
UNNAMED_PROMPT = "english"
INSTRUCTION = PROMPTS[UNNAMED_PROMPT]


def instruction(name: str | None) -> str:
    """The text that follows the article for prompt ``name`` (None: :data:`UNNAMED_PROMPT`)."""
    name = name or UNNAMED_PROMPT
    if name not in PROMPTS:
        raise EdgecompError(f"unknown prompt '{name}' (choose from {', '.join(PROMPTS)})")
    return PROMPTS[name]


def prompt_ids(encode: Encode, article: str, bos_id: int | None, max_tokens: int, tail: str = INSTRUCTION) -> list[int]:
    """``[bos] + article + tail``, the article cut so the whole fits in ``max_tokens``."""
    head = [bos_id] if bos_id is not None else []
    tail_ids = list(encode(tail))
    budget = max_tokens - len(head) - len(tail_ids)
    if budget < 1:
        raise EdgecompError(f"the prompt does not fit in {max_tokens} tokens; raise the sequence length")
    return head + list(encode(article.strip()))[:budget] + tail_ids


def summary_ids(encode: Encode, summary: str, eos_id: int | None) -> list[int]:
    """The target continuation: a space, the summary, then end-of-sequence."""
    return list(encode(" " + summary.strip())) + ([eos_id] if eos_id is not None else [])
