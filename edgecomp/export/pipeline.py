"""``export_checkpoint``: checkpoint → verified (optionally quantized) ONNX folder the runtime loads.

Order matters: the fp32 graph is checked against PyTorch before anything is quantized, so a broken
export fails loudly instead of hiding inside quantization noise. The folder appears only when every
step passed (``atomic_dir``), with a manifest that records what was checked and every file's hash.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Iterator

from ..console import console
from ..data.prompts import prompt_ids
from ..data.tokenizer import encoder, load_tokenizer
from ..errors import EdgecompError
from ..fsutil import atomic_dir, sha256_file, write_json
from .onnx import export_onnx
from .quantize import MODES, quantize_onnx
from .verify import compare_quantized, verify_logits

MANIFEST = "edgecomp-export.json"
REQUIRED = ("config.json", "tokenizer.json")
OPTIONAL = ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json")

# Verification runs the real prompt template on a fixed article, so the positions checked are the
# ones summaries are made from (instruction tokens, several scripts, byte fallback).
VERIFY_TEXT = (
    "The council approved a new budget for schools and roads on Monday. "
    "Mvua kubwa imesababisha mafuriko katika mji mkuu wa nchi. "
    "La ville a approuvé un nouveau budget pour les écoles, 2024–2025."
)
VERIFY_MAX_TOKENS = 64


@contextlib.contextmanager
def _step(label: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        with console.status(f"{label}…"):
            yield
    except BaseException:
        console.print(f"[red]✗[/] {label}")
        raise
    console.print(f"[green]✓[/] {label} ({time.perf_counter() - start:.1f} s)")


def verification_ids(checkpoint_dir: Path) -> list[int]:
    """The fixed token sequence both exports are checked on, built with the checkpoint's tokenizer."""
    tokenizer = load_tokenizer(checkpoint_dir)
    config = json.loads((checkpoint_dir / "config.json").read_text(encoding="utf-8"))
    generation = checkpoint_dir / "generation_config.json"
    if generation.is_file():
        config |= json.loads(generation.read_text(encoding="utf-8"))
    return prompt_ids(
        encoder(tokenizer),
        VERIFY_TEXT,
        config.get("bos_token_id"),
        VERIFY_MAX_TOKENS,
    )


def export_checkpoint(
    checkpoint_dir: str | Path,
    out_dir: str | Path,
    *,
    quantize: str = "none",
    manifest: dict,
    force: bool = False,
) -> dict:
    """Export, verify, quantize and write ``out_dir``; return the manifest written there.

    ``out_dir`` holds ``model.onnx`` (+ external data), the checkpoint's config, generation config
    and tokenizer files, and ``edgecomp-export.json``: ``manifest`` plus ``quantize``, ``verify``
    (``fp32``: ONNX vs PyTorch; and for int8/int4 the quantized model vs fp32 ONNX) and ``files``
    (name → sha256). An existing ``out_dir`` is refused unless ``force``.
    """
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    if quantize not in MODES:
        raise EdgecompError(f"unknown quantization {quantize!r}; choose one of {', '.join(MODES)}")
    missing = [name for name in REQUIRED if not (checkpoint_dir / name).is_file()]
    if missing:
        raise EdgecompError(f"checkpoint {checkpoint_dir} lacks {', '.join(missing)}")

    with atomic_dir(out_dir, force) as tmp:
        work = tmp / ".fp32"
        with _step("Exporting fp32 ONNX (optimum)"):
            export_onnx(checkpoint_dir, work)
        ids = verification_ids(checkpoint_dir)
        with _step(f"Verifying ONNX logits against PyTorch on {len(ids)} tokens"):
            verify = {"fp32": verify_logits(work, checkpoint_dir, ids)}
        with _step("Writing fp32 model" if quantize == "none" else f"Quantizing to {quantize}"):
            quantize_onnx(work, tmp, quantize)
        if quantize != "none":
            with _step(f"Measuring {quantize} against fp32"):
                verify[quantize] = compare_quantized(tmp, work, checkpoint_dir, ids)

        for name in REQUIRED + OPTIONAL:
            if (checkpoint_dir / name).is_file():
                shutil.copy2(checkpoint_dir / name, tmp / name)
        if not (tmp / "generation_config.json").is_file():  # optimum writes the model's defaults
            shutil.copy2(work / "generation_config.json", tmp / "generation_config.json")
        shutil.rmtree(work)

        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        result = {**manifest, "quantize": quantize, "verify": verify, "files": files}
        write_json(tmp / MANIFEST, result)
    return result
