"""The chunked, label-positions-only loss equals transformers' full loss, value and gradients."""

import pytest
import torch
from peft import get_peft_model
from tiny import tiny_gemma3, tiny_llama

from edgecomp.data.examples import IGNORE
from edgecomp.train.lora import lora_config
from edgecomp.train.loss import causal_lm_loss, label_positions


def _batch():
    torch.manual_seed(0)
    ids = torch.randint(4, 300, (3, 24))
    labels = torch.full_like(ids, IGNORE)
    labels[0, 15:20] = ids[0, 15:20]  # rows end their summaries at different places
    labels[1, 8:24] = ids[1, 8:24]
    labels[2, 20:22] = ids[2, 20:22]
    mask = torch.ones_like(ids)
    mask[2, 22:] = 0  # right padding
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@pytest.mark.parametrize("chunk", [1024, 7])  # one chunk; several, the last one short
@pytest.mark.parametrize("family,softcap", [(tiny_llama, None), (tiny_gemma3, None), (tiny_gemma3, 2.0)])
def test_summary_positions_loss_equals_full_loss_and_gradients(family, softcap, chunk):
    torch.manual_seed(1)
    base = family(400)
    if softcap is not None:  # Gemma 2's final-logit soft-capping: the model's own head must apply it
        base.config.final_logit_softcapping = softcap
    model = get_peft_model(base, lora_config(base, 4, 8.0, 0.0))
    for name, p in model.named_parameters():  # B starts at zero: move it so every gradient is non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    batch = _batch()
    full = model(**batch).loss
    full.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    ours = causal_lm_loss(model, batch, chunk=chunk)
    ours.backward()
    assert abs(ours.item() - full.item()) < 1e-5
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, want[n], atol=1e-5, rtol=1e-4), n


def test_only_positions_before_labels_are_kept():
    batch = _batch()
    kept = label_positions(batch["labels"]).tolist()
    assert kept == sorted(set(range(14, 19)) | set(range(7, 23)) | {19, 20})
    assert len(kept) < batch["labels"].shape[1] - 1
