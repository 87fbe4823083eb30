"""Token-id training examples: packed blocks for language adapters, masked pairs for task adapters.

Pure Python lists, so the rules are easy to test. ``labels`` use -100 where no loss is taken.
"""

from __future__ import annotations

from typing import Sequence

from .prompts import Encode, prompt_ids, summary_ids

IGNORE = -100


def language_blocks(
    lines: Sequence[str], encode: Encode, bos_id: int | None, eos_id: int | None, seq_len: int
) -> list[list[int]]:
    """Lines joined by EOS and cut into ``seq_len`` blocks, each starting with BOS.

    Packing wastes no compute on padding; a BOS at the start of every block keeps each block in the
    distribution the base model saw (Gemma behaves badly without one). A short tail is dropped
    unless it is the only block.
    """
    head = [bos_id] if bos_id is not None else []
    body = seq_len - len(head)
    stream: list[int] = []
    for line in lines:
        stream.extend(encode(line))
        if eos_id is not None:
            stream.append(eos_id)
    blocks = [head + stream[i : i + body] for i in range(0, len(stream), body)]
    if len(blocks) > 1 and len(blocks[-1]) < seq_len:
        blocks.pop()
    return blocks


def task_example(
    pair: dict, encode: Encode, bos_id: int | None, eos_id: int | None, seq_len: int, max_summary_tokens: int
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one article/summary pair; loss on the summary tokens only.

    The summary is cut to ``max_summary_tokens`` and the article to whatever is left of ``seq_len``.
    """
    target = summary_ids(encode, pair["summary"], eos_id)[:max_summary_tokens]
    prompt = prompt_ids(encode, pair["text"], bos_id, seq_len - len(target))
    return prompt + target, [IGNORE] * len(prompt) + target
