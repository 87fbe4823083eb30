"""Training examples: packing for language adapters, prompt masking for task adapters."""

from edgecomp.data.examples import IGNORE, language_blocks, task_example
from edgecomp.data.prompts import INSTRUCTION, prompt_ids, summary_ids


def encode(text: str) -> list[int]:
    """A toy encoder: one id per character, offset past the specials."""
    return [10 + ord(c) % 100 for c in text]


def test_language_blocks_pack_with_bos_and_eos():
    blocks = language_blocks(["abc", "defgh", "ij"], encode, bos_id=2, eos_id=1, seq_len=5)
    stream = encode("abc") + [1] + encode("defgh") + [1] + encode("ij") + [1]
    assert all(b[0] == 2 and len(b) == 5 for b in blocks)
    assert sum((b[1:] for b in blocks), []) == stream[: 4 * len(blocks)]
    assert len(blocks) == len(stream) // 4  # the short tail is dropped


def test_language_blocks_keep_a_single_short_block():
    assert language_blocks(["ab"], encode, 2, 1, 64) == [[2] + encode("ab") + [1]]


def test_task_example_masks_the_prompt_and_truncates_the_article():
    pair = {"text": "x" * 500, "summary": "short one"}
    ids, labels = task_example(pair, encode, bos_id=2, eos_id=1, seq_len=128, max_summary_tokens=16)
    target = summary_ids(encode, "short one", 1)
    assert len(ids) == len(labels) == 128
    assert ids[0] == 2 and ids[-1] == 1
    assert ids[-len(target) :] == target and labels[-len(target) :] == target
    assert labels[: 128 - len(target)] == [IGNORE] * (128 - len(target))
    assert ids[128 - len(target) - len(encode(INSTRUCTION)) : 128 - len(target)] == encode(INSTRUCTION)


def test_prompt_is_the_same_for_training_and_runtime():
    pair = {"text": "An article.", "summary": "A summary."}
    ids, _ = task_example(pair, encode, 2, 1, 256, 32)
    assert ids[: len(ids) - len(summary_ids(encode, "A summary.", 1))] == prompt_ids(encode, "An article.", 2, 10_000)


def test_sampled_labels_keep_a_seeded_fraction_of_positions():
    from edgecomp.data.examples import IGNORE, sampled_labels

    block = list(range(10, 410))
    labels = sampled_labels(block, 0.25, seed=3)
    kept = [i for i, y in enumerate(labels) if y != IGNORE]
    assert all(labels[i] == block[i] for i in kept) and 0 not in kept
    assert 60 < len(kept) < 140  # about a quarter of 399 positions
    assert sampled_labels(block, 0.25, seed=3) == labels and sampled_labels(block, 0.25, seed=4) != labels
    assert sampled_labels(block, 1.0, seed=3) == block
    assert sum(y != IGNORE for y in sampled_labels([5, 6], 1e-9, seed=0)) == 1  # never an empty loss
