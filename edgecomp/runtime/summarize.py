"""``summarize``: one article in, one summary out, with the timings a user of the device cares about."""

from __future__ import annotations

import time
from pathlib import Path

from ..data.prompts import prompt_ids
from ..errors import EdgecompError
from .generate import generate
from .model import OnnxCausalLM

# Longest prompt plus summary we run: attention cost and KV memory grow with it, and training
# never shows the model longer articles than this.
MAX_CONTEXT = 2048


def summarize(
    model_dir: str | Path,
    text: str,
    *,
    provider: str = "cpu",
    max_new_tokens: int = 64,
    num_beams: int = 1,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
) -> dict:
    """Summarize ``text`` with the export in ``model_dir``.

    Returns ``summary`` (decoded, stripped), ``prompt_tokens``, ``new_tokens`` and ``timings``:
    ``load_s``, ``prefill_s`` (the prompt pass, which yields the first token), ``decode_s`` (every
    later token) and ``tokens_per_s`` (decode passes per second; 0 when there were none).
    """
    if not text.strip():
        raise EdgecompError("nothing to summarize: the input text is empty")
    start = time.perf_counter()
    model = OnnxCausalLM.load(model_dir, provider)
    load_s = time.perf_counter() - start

    context = min(model.max_positions, MAX_CONTEXT)
    try:
        prompt = prompt_ids(model.encode, text, model.bos_id, context - max_new_tokens)
    except EdgecompError:
        raise EdgecompError(
            f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the "
            f"{context}-token context; lower max_new_tokens"
        ) from None
    out = generate(
        model.decoder,
        prompt,
        max_new_tokens=max_new_tokens,
        eos_ids=model.eos_ids,
        num_beams=num_beams,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
    )
    text_ids = [t for t in out.tokens if t not in model.eos_ids]
    return {
        "summary": model.decode(text_ids).strip(),
        "prompt_tokens": len(prompt),
        "new_tokens": len(out.tokens),
        "timings": {
            "load_s": load_s,
            "prefill_s": out.prefill_s,
            "decode_s": out.decode_s,
            "tokens_per_s": out.steps / out.decode_s if out.steps else 0.0,
        },
    }
