"""The one summarization prompt, shared by task training and the ONNX runtime.

Pure Python on purpose: the runtime imports it without PyTorch. Both sides build token ids the
same way (article tokens, truncated to a budget, then the instruction; the summary follows), so
what the adapter learned is exactly what ``summarize`` asks.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..errors import EdgecompError

Encode = Callable[[str], Sequence[int]]

INSTRUCTION = "\n\nSummarize the text above in one sentence.\nSummary:"


def prompt_ids(encode: Encode, article: str, bos_id: int | None, max_tokens: int) -> list[int]:
    """``[bos] + article + instruction``, the article cut so the whole fits in ``max_tokens``."""
    head = [bos_id] if bos_id is not None else []
    tail = list(encode(INSTRUCTION))
    budget = max_tokens - len(head) - len(tail)
    if budget < 1:
        raise EdgecompError(f"the prompt does not fit in {max_tokens} tokens; raise the sequence length")
    return head + list(encode(article.strip()))[:budget] + tail


def summary_ids(encode: Encode, summary: str, eos_id: int | None) -> list[int]:
    """The target continuation: a space, the summary, then end-of-sequence."""
    return list(encode(" " + summary.strip())) + ([eos_id] if eos_id is not None else [])
