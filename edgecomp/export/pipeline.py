"""``export_checkpoint``: checkpoint → verified (optionally quantized) ONNX folder the runtime loads.

Order matters: the fp32 graph is checked against PyTorch before anything is trimmed or quantized,
so a broken export fails loudly instead of hiding inside quantization noise; a trimmed graph is
then checked against the full one (the same logits on the kept ids). The folder appears only when every
step passed (``atomic_dir``), with a manifest that records what was checked and every file's hash.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..console import console
from ..data.prompts import prompt_ids
from ..data.tokenizer import encoder, load_tokenizer
from ..data.vocab_map import IdMap, write_id_map
from ..errors import EdgecompError
from ..fsutil import atomic_dir, write_json
from ..metrics import LOGITS, metric
from ..model_folder import CONFIG, GENERATION_CONFIG, read_config, read_json, special_ids, write_manifest
from .decoder_graph import LORA_LAYOUT
from .genai_config import write_genai_config
from .onnx_export import chosen_graph, export_onnx
from .quantization.apply import quantize_model
from .quantization.schemes import SCHEMES, get_scheme
from .quantization.weight_only import WeightOnlyConfig
from .trim import corpus_lines, kept_ids, trim_onnx
from .trim_head import check_head_options, trim_head_with
from .verify import compare_quantized, onnx_logits, verify_logits

REQUIRED = (CONFIG, "tokenizer.json")
OPTIONAL = (GENERATION_CONFIG, "tokenizer_config.json", "special_tokens_map.json")
TOKENIZER_OUTPUTS = ("input_ids", "attention_mask")

# Verification runs the real prompt template on a fixed article, so the positions checked are the
# ones summaries are made from (instruction tokens, several scripts, byte fallback).
VERIFY_TEXT = (
    "The council approved a new budget for schools and roads on Monday. "
    "Mvua kubwa imesababisha mafuriko katika mji mkuu wa nchi. "
    "La ville a approuvé un nouveau budget pour les écoles, 2024–2025."
)
VERIFY_MAX_TOKENS = 64


@contextlib.contextmanager
def _step(label: str) -> Iterator[Callable[[str, int, int], None]]:
    """A spinner for ``label``; the yielded ``report(stage, done, total)`` turns it into a bar
    (int4's calibration and scale tuning are long on a CPU)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    start = time.perf_counter()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as bar:
            task = bar.add_task(f"{label}…", total=None)
            yield lambda stage, done, total: bar.update(
                task, description=f"{label}: {stage}", completed=done, total=total
            )
    except BaseException:
        console.print(f"[red]✗[/] {label}")
        raise
    console.print(f"[green]✓[/] {label} ({time.perf_counter() - start:.1f} s)")


def verification_ids(checkpoint_dir: Path) -> list[int]:
    """The fixed token sequence both exports are checked on, built with the checkpoint's tokenizer."""
    return prompt_ids(
        encoder(load_tokenizer(checkpoint_dir)), VERIFY_TEXT, special_ids(checkpoint_dir).bos, VERIFY_MAX_TOKENS
    )


def _check_trim(trimmed_dir: Path, full_dir: Path, config: dict, ids: list[int], kept: np.ndarray) -> dict:
    """The trimmed graph must give the full graph's logits on the kept ids (same rows, same sums)."""
    to_trimmed = np.full(int(kept.max()) + 1, -1, dtype=np.int64)
    to_trimmed[kept] = np.arange(kept.size)
    inside = [i for i in ids if i < to_trimmed.size and to_trimmed[i] >= 0]
    full = onnx_logits(full_dir, config, inside)[:, kept]
    trimmed = onnx_logits(trimmed_dir, config, to_trimmed[inside].tolist())
    diff = metric("max_abs_diff", LOGITS).overall(trimmed, full)["max_abs_diff"]
    tolerance = 1e-5 * max(1.0, float(np.abs(full).max()))
    if not diff <= tolerance:
        raise EdgecompError(f"the trimmed graph's logits differ from the full graph's by {diff:.3g}")
    return {"max_abs_diff": diff, "tolerance": tolerance, "tokens": len(inside)}


def decoder_inputs_only(tokenizer_config: Path) -> None:
    """Make the export's tokenizer return only what the graph takes (``input_ids``,
    ``attention_mask``): a generic tokenizer also returns ``token_type_ids``, which ``generate``
    of optimum or transformers would pass to a graph that has no such input."""
    config = read_json(tokenizer_config) if tokenizer_config.is_file() else {}
    config["model_input_names"] = list(TOKENIZER_OUTPUTS)
    write_json(tokenizer_config, config)


def export_checkpoint(
    checkpoint_dir: str | Path,
    out_dir: str | Path,
    *,
    quantize: str = "none",
    manifest: dict,
    force: bool = False,
    trim_corpus: Sequence[str | Path] | None = None,
    head_corpus: Sequence[str | Path] | None = None,
    keep_unused: bool = False,
    weight_config: WeightOnlyConfig | None = None,
    graph: str = "auto",
    calibration: Sequence[str | Path] | None = None,
    lora_inputs: bool = False,
) -> dict:
    """Export, verify, (trim,) quantize and write ``out_dir``; return the manifest written there.

    ``out_dir`` holds ``model.onnx`` (+ external data), the checkpoint's config, generation config
    and tokenizer files, and ``edgecomp-export.json``: ``manifest`` plus ``quantize`` (the scheme,
    :mod:`~edgecomp.export.quantization.schemes`), ``quantization`` (how: for a weight-only scheme
    the configuration and how the embedding / LM head are stored; ``weight_config`` overrides the
    scheme's),
    ``verify`` (``fp32``: ONNX vs PyTorch; ``trim``: trimmed vs full graph on the kept ids; and for
    the other modes the quantized model vs fp32 ONNX) and ``files`` (name → sha256). An existing
    ``out_dir`` is refused unless ``force``.

    ``trim_corpus``: text files (``.txt`` lines, ``.jsonl`` text/summary fields) whose vocabulary
    the export keeps (see :mod:`edgecomp.export.trim`); the export then carries ``vocab_map.json``
    and the manifest a ``trim`` entry. ``head_corpus``: text files whose tokens the LM head keeps,
    every prompt adding its own back at run time (:mod:`edgecomp.export.trim_head`; int8/int4
    only); the export then carries ``head_ids.json`` and the manifest a ``trim_head`` entry.

    ``graph``: edgecomp's compact decoder graph, optimum's, or ``auto`` (see
    :mod:`edgecomp.export.onnx_export`); ``calibration``: text files the scheme calibrates on (default: shipped).
    ``lora_inputs``: the graph takes LoRA updates at run time (:mod:`edgecomp.runtime.adapter`);
    the manifest's ``lora_inputs`` gives their layout. Verification runs with zero updates.
    """
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    scheme = get_scheme(quantize)
    missing = [name for name in REQUIRED if not (checkpoint_dir / name).is_file()]
    if missing:
        raise EdgecompError(f"checkpoint {checkpoint_dir} lacks {', '.join(missing)}")
    corpus = corpus_lines(trim_corpus) if trim_corpus else None
    head_lines = corpus_lines(head_corpus) if head_corpus else None
    if head_lines is not None:
        check_head_options(scheme, trim_corpus=corpus, lora_inputs=lora_inputs)
    if lora_inputs and not scheme.supports_lora_inputs:
        able = [name for name, other in SCHEMES.items() if other.supports_lora_inputs]
        raise EdgecompError(f"--quantize {quantize} cannot take run-time LoRA inputs (these can: {', '.join(able)})")

    with atomic_dir(out_dir, force) as tmp:
        work = tmp / ".fp32"
        graph = chosen_graph(checkpoint_dir, graph)
        with _step(f"Exporting fp32 ONNX ({graph} graph)"):
            export_onnx(checkpoint_dir, work, graph, lora_inputs)
        layout = json.loads((work / LORA_LAYOUT).read_text(encoding="utf-8")) if lora_inputs else None
        ids = verification_ids(checkpoint_dir)
        with _step(f"Verifying ONNX logits against PyTorch on {len(ids)} tokens"):
            verify = {"fp32": verify_logits(work, checkpoint_dir, ids)}
        trim = map_ids = None
        if corpus is not None:
            tokenizer = load_tokenizer(checkpoint_dir)
            kept = kept_ids(tokenizer, corpus, extra_ids=ids, keep_unused=keep_unused)
            trimmed = tmp / ".trimmed"
            with _step(f"Trimming the vocabulary to {kept.size} tokens"):
                trim = trim_onnx(work, trimmed, kept)
                config = read_config(checkpoint_dir)
                verify["trim"] = _check_trim(trimmed, work, config, ids, kept)
            for extra in work.iterdir():  # optimum's generation_config.json and the like
                if not extra.name.startswith("model.onnx") and not (trimmed / extra.name).exists():
                    shutil.copy2(extra, trimmed / extra.name)
            shutil.rmtree(work)
            trimmed.rename(work)
            write_id_map(tmp, kept, trim["original_vocab_size"], {"corpus_lines": len(corpus)})
            trim |= {
                "corpus": [Path(p).name for p in trim_corpus],
                "corpus_lines": len(corpus),
                "keep_unused": keep_unused,
                "map": "vocab_map.json",
            }
            ids = [int(np.searchsorted(kept, i)) for i in ids]  # all kept: extra_ids above
            map_ids = IdMap.from_kept(kept, trim["original_vocab_size"], tokenizer).to_trimmed_ids
        with _step("Writing fp32 model" if quantize == "none" else f"Quantizing to {quantize}") as report:
            quantization = quantize_model(
                work,
                tmp,
                quantize,
                weight_config,
                tokenizer_dir=checkpoint_dir,
                calibration=calibration,
                map_ids=map_ids,
                progress=report,
            )
        if quantize != "none":
            with _step(f"Measuring {quantize} against fp32"):
                verify[quantize] = compare_quantized(tmp, work, checkpoint_dir, ids)
        head = None
        if head_lines is not None:
            # The verification ids are not kept: those outside the corpus check the rows added at run time.
            with _step("Trimming the LM head (each prompt adds its own tokens)"):
                head = trim_head_with(tmp, ids, checkpoint_dir, corpus=head_corpus, keep_unused=keep_unused)

        for name in REQUIRED + OPTIONAL:
            if (checkpoint_dir / name).is_file():
                shutil.copy2(checkpoint_dir / name, tmp / name)
        decoder_inputs_only(tmp / "tokenizer_config.json")
        if not (tmp / "generation_config.json").is_file():  # optimum writes the model's defaults
            shutil.copy2(work / "generation_config.json", tmp / "generation_config.json")
        if trim is None and head is None and not lora_inputs:
            write_genai_config(tmp)
        shutil.rmtree(work)

        result = {
            **manifest,
            "format": "onnx",
            "graph": graph,
            "quantize": quantize,
            "quantization": quantization,
            "verify": verify,
        }
        if trim is not None:
            result["trim"] = trim
        if head is not None:
            result["trim_head"] = head
        if layout is not None:
            result["lora_inputs"] = layout
        result = write_manifest(tmp, result)
    return result
