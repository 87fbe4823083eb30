"""The training loss: the LM head only at the positions the loss reads, a chunk at a time.

A task example is a whole article and a short summary, and only the summary tokens carry a loss;
the head of the default base is a 262,144 × 640 matrix, larger than all its decoder blocks together,
so logits for every article position would spend most of a step on numbers nobody reads. So the
decoder's hidden states are taken only at the positions whose *next* token is a label.

Even there, a language adapter labels every position: 4 × 512 positions × 262,144 logits are 2 GiB
in fp32, and the softmax and its gradient as much again. With the head frozen (LoRA never trains
it) the loss is computed chunk by chunk instead (:class:`_ChunkedHeadLoss`, the fused
linear-cross-entropy of Liger Kernel and Unsloth, written in PyTorch so it runs on CPUs too):
each chunk's logits, loss and gradient with respect to the hidden states are made and dropped
before the next, so at most ``chunk`` rows of logits exist at once. Final-logit soft-capping
(Gemma 2) is applied as the model's head applies it. Value and gradients equal
``model(..., labels=labels).loss`` (``tests/test_loss.py``).
"""

from __future__ import annotations

import functools

from ..data.examples import IGNORE

# Rows of logits made at once: 256 × 262,144 fp32 logits are 256 MiB (the size is chosen in
# benchmarks/TRAINING.md).
CHUNK = 256


def label_positions(labels):
    """The positions whose next token has a label (over the batch: the union of every row's)."""
    import torch

    needed = (labels[:, 1:] != IGNORE).any(dim=0)
    return torch.nonzero(needed, as_tuple=False).flatten()


@functools.cache
def _function():
    """The autograd Function, made once (torch is imported on first use, not with this module)."""
    import torch

    class _ChunkedHeadLoss(torch.autograd.Function):
        """Mean cross-entropy of ``hidden @ weight.T`` (soft-capped) against ``targets``, the
        gradient for ``hidden`` computed in the forward pass chunk by chunk; ``weight`` is frozen."""

        @staticmethod
        def forward(ctx, hidden, weight, targets, chunk: int, softcap, count):
            valid = targets != IGNORE
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad = torch.empty_like(hidden)
            for start in range(0, hidden.shape[0], chunk):
                rows = slice(start, start + chunk)
                logits = (hidden[rows] @ weight.T).float()
                if softcap is not None:
                    capped = torch.tanh(logits / softcap)
                    logits = capped * softcap
                lse = torch.logsumexp(logits, dim=-1)
                target, keep = targets[rows].clamp(min=0), valid[rows]
                picked = logits.gather(1, target[:, None])[:, 0]
                total += ((lse - picked) * keep).sum()
                dlogits = torch.softmax(logits, dim=-1)
                del logits
                dlogits[torch.arange(len(target), device=target.device), target] -= 1.0
                dlogits *= (keep.float() / count)[:, None]
                if softcap is not None:
                    dlogits *= 1.0 - capped * capped
                    del capped
                grad[rows] = (dlogits.to(weight.dtype) @ weight).to(hidden.dtype)
            ctx.save_for_backward(grad)
            return total / count

        @staticmethod
        def backward(ctx, grad_output):
            (grad,) = ctx.saved_tensors
            return grad * grad_output.to(grad.dtype), None, None, None, None, None

    return _ChunkedHeadLoss


def labelled_tokens(labels) -> int:
    """How many tokens of a batch carry a loss (a label after the first position)."""
    return int((labels[:, 1:] != IGNORE).sum())


def causal_lm_loss(model, batch: dict, chunk: int = CHUNK, normalizer: int | None = None):
    """Next-token cross-entropy summed over labelled tokens and divided by ``normalizer`` (default:
    their count, the mean; data-parallel ranks pass the global batch's): hidden states at the
    positions before a label, then the frozen head's logits and loss ``chunk`` rows at a time (the
    model's own forward with ``logits_to_keep`` where the head is trained)."""
    import torch

    labels = batch["labels"]
    positions = label_positions(labels)
    if positions.numel() == 0:
        raise ValueError("a batch with no labelled token has no loss")
    targets = labels[:, positions + 1].reshape(-1)
    count = normalizer if normalizer is not None else labelled_tokens(labels)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = inner.get_output_embeddings()
    if head.weight.requires_grad or getattr(head, "bias", None) is not None:
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=positions
        ).logits
        total = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), targets, ignore_index=IGNORE, reduction="sum"
        )
        return total / max(1, count)
    hidden = inner.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    states = hidden.last_hidden_state[:, positions].reshape(-1, head.weight.shape[1])
    softcap = getattr(inner.config, "final_logit_softcapping", None)
    return _function().apply(states, head.weight, targets, chunk, softcap, max(1, count))
