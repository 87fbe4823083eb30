"""Token-id training examples: packed blocks for language adapters, masked pairs for task adapters.

Pure Python lists, so the rules are easy to test. ``labels`` use -100 where no loss is taken.
"""

from __future__ import annotations

import random
from typing import Sequence

from .prompts import INSTRUCTION, Encode, prompt_ids, summary_ids

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


def sampled_labels(block: list[int], fraction: float, seed: int) -> list[int]:
    """``block`` as labels with only a random ``fraction`` of its positions kept (the rest IGNORE).

    The loss of a language adapter is the mean over every position; on a random subset it has the
    same expectation, and the LM head (most of a small model's compute, with a 262k vocabulary) runs
    only there. Reproducible by ``seed``; at least one position is always kept.
    """
    if fraction >= 1.0:
        return list(block)
    rng = random.Random(seed)
    keep = [i for i in range(1, len(block)) if rng.random() < fraction] or [len(block) - 1]
    labels = [IGNORE] * len(block)
    for i in keep:
        labels[i] = block[i]
    return labels


def task_example(
    pair: dict,
    encode: Encode,
    bos_id: int | None,
    eos_id: int | None,
    seq_len: int,
    max_summary_tokens: int,
    tail: str = INSTRUCTION,
) -> tuple[list[int], list[int]]:
    """``(input_ids, labels)`` for one article/summary pair; loss on the summary tokens only.

    The summary is cut to ``max_summary_tokens`` and the article to whatever is left of ``seq_len``.
    """
    target = summary_ids(encode, pair["summary"], eos_id)[:max_summary_tokens]
    prompt = prompt_ids(encode, pair["text"], bos_id, seq_len - len(target), tail)
    return prompt + target, [IGNORE] * len(prompt) + target
