"""The training loss, with the LM head computed only at the positions the loss reads.

A task example is a whole article and a short summary, and only the summary tokens carry a loss;
the head of the default base is a 262,144 × 640 matrix, larger than all its decoder blocks together,
so computing logits for every article position would spend most of a training step on numbers
nobody reads. The model is asked for the logits of the positions whose *next* token is a label
(transformers' ``logits_to_keep`` with an index tensor, so the model's own head, soft-capping
included, makes them), and the loss is the token mean of the cross-entropy there — the same value,
and the same gradients, as ``model(..., labels=labels).loss``.
"""

from __future__ import annotations

from ..data.examples import IGNORE


def label_positions(labels):
    """The positions whose next token has a label (over the batch: the union of every row's)."""
    import torch

    needed = (labels[:, 1:] != IGNORE).any(dim=0)
    return torch.nonzero(needed, as_tuple=False).flatten()


def causal_lm_loss(model, batch: dict):
    """Mean next-token cross-entropy over labelled tokens, with logits only where they are needed."""
    import torch

    labels = batch["labels"]
    positions = label_positions(labels)
    if positions.numel() == 0:
        raise ValueError("a batch with no labelled token has no loss")
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions
    ).logits
    targets = labels[:, positions + 1]
    return torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )
