"""``merge-export``: compose adapters, merge into the base, export to ONNX, verify, quantize.

The export is built once per (resolved spec, base weights, merge base, quantization scheme and
its configuration) in the cache, under the sha256 of those — so exporting the same composition
again is a copy, not a new merge, export and quantization — and copied to ``out``. Its manifest
records the composition: base (name and weight fingerprint), method and options, merge base, and
each adapter with its weights and content hash.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .. import __version__
from ..compose.base import base_spec, check_fingerprints
from ..compose.merge import merged_checkpoint
from ..compose.methods import compose
from ..compose.spec import Resolved
from ..console import console
from ..data.vocabulary import VOCABULARY
from ..errors import EdgecompError
from ..fsutil import atomic_dir, check_output_dir, sha256_file
from ..model_folder import read_manifest
from .quantization.schemes import get_scheme
from .trim_head import VERSION as TRIM_HEAD_VERSION
from .trim_head import check_head_options, trim_head_export

EXPORT_DIR = "export"


def merge_export(resolved: Resolved, out: Path, *, force: bool = False, **options) -> dict:
    """Build (or find) the export of ``resolved`` in the cache and copy it to ``out``; return its manifest.

    ``options`` are :func:`cached_export`'s."""

    check_output_dir(out, force)
    cached = cached_export(resolved, **options)
    with atomic_dir(out, force=force) as tmp:
        for file in cached.iterdir():
            shutil.copy2(file, tmp / file.name)
    return read_manifest(out)


FORMATS = ("onnx", "hf", "gguf")


def _check_format(format: str, **options) -> None:
    """``hf`` writes the merged checkpoint as it is and ``gguf`` the merged weights in llama.cpp's
    types: no ONNX option applies to them (``gguf`` takes its own ``--quantize`` types)."""
    if format not in FORMATS:
        raise EdgecompError(f"unknown --format {format!r}; choose one of {', '.join(FORMATS)}")
    if format == "onnx":
        return
    if format == "gguf":
        from .gguf_export import TYPES

        if options.pop("quantize") not in ("none", *TYPES):
            raise EdgecompError(f"--format gguf takes --quantize {', '.join(TYPES)} (none: f32)")
    defaults = {"quantize": "none", "graph": "auto", "lora_inputs": False, "full_vocab": False}
    for name, value in options.items():
        if value not in (None, [], defaults.get(name)):
            raise EdgecompError(f"--{name.replace('_', '-')} applies to ONNX exports, not --format {format}")


def cached_export(
    resolved: Resolved,
    *,
    base: str | None = None,
    merge_base: str = "original",
    quantize: str = "none",
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    trim_corpus: list[Path] | None = None,
    trim_head: list[Path] | None = None,
    full_vocab: bool = False,
    graph: str = "auto",
    calibration: list[Path] | None = None,
    block_size: int | None = None,
    tune_steps: int | None = None,
    eight_bit_layers: str | None = None,
    lora_inputs: bool = False,
    format: str = "onnx",
) -> Path:
    """The export folder of ``resolved`` in the cache, built on first use (merge, ONNX, verify, quantize).

    The cache key holds the quantization scheme's name, version and full configuration
    (:meth:`~edgecomp.export.quantization.schemes.Scheme.key`): ``block_size``, ``tune_steps`` and
    ``eight_bit_layers`` are options of the schemes that declare them, ``calibration`` of those that
    calibrate. ``lora_inputs``: the graph also takes LoRA updates at run time
    (:mod:`edgecomp.runtime.adapter`). ``format``: ``onnx`` (the runtime's, optimum's and
    onnxruntime-genai's) or ``hf`` (a transformers checkpoint of the merged model, no ONNX).

    The LM head: ``trim_corpus`` trims the vocabulary to those files' tokens, ``trim_head`` only
    the head (:mod:`.trim_head`). Without either, a weight-only quantized ONNX export of a
    composition for one target language keeps in its head the tokens its language adapters were
    trained on (:meth:`~edgecomp.compose.spec.Resolved.vocabularies`), unless ``full_vocab``."""
    from ..models.cache import cached_entry
    from ..models.fingerprint import weights_fingerprint
    from ..models.resolve import resolve_base
    from .pipeline import export_checkpoint

    _check_format(
        format,
        quantize=quantize,
        graph=graph,
        trim_corpus=trim_corpus,
        trim_head=trim_head,
        full_vocab=full_vocab,
        calibration=calibration,
        block_size=block_size,
        tune_steps=tune_steps,
        eight_bit_layers=eight_bit_layers,
        lora_inputs=lora_inputs,
    )
    for path in [*(trim_corpus or []), *(trim_head or []), *(calibration or [])]:
        if not Path(path).is_file():
            raise EdgecompError(f"{path} does not exist or is not a file")
    scheme = get_scheme(quantize) if format == "onnx" else None
    if trim_head:
        check_head_options(scheme, trim_corpus=trim_corpus, lora_inputs=lora_inputs)
    if full_vocab and (trim_head or trim_corpus):
        raise EdgecompError("--full-vocab keeps the whole vocabulary: leave out --trim-vocab and --trim-head")
    vocabularies = None
    if scheme is not None and scheme.config is not None and not (trim_corpus or trim_head or full_vocab or lora_inputs):
        vocabularies = resolved.vocabularies()
    weights = (
        scheme.configured(
            block_size=block_size, tune_steps=tune_steps, eight_bit_layers=eight_bit_layers, calibration=calibration
        )
        if scheme
        else None
    )
    composed = compose(resolved.terms, resolved.method, resolved.parameters) if resolved.terms else None
    base_model = resolve_base(base_spec(resolved, base), allow_pickle=allow_pickle)
    if format == "gguf" and base_model.gguf is None:
        raise EdgecompError(
            "--format gguf needs a base converted from a GGUF file (the embedded default or --base FILE.gguf): "
            "its tokenizer and metadata are reused"
        )
    fingerprint = weights_fingerprint(base_model.path)
    check_fingerprints(resolved, base_model.name, fingerprint)
    from .onnx_export import chosen_graph

    graph = chosen_graph(base_model.path, graph)
    extra = {"trim": [sha256_file(p) for p in trim_corpus]} if trim_corpus else {}
    if trim_head:
        extra["trim_head"] = [sha256_file(p) for p in trim_head]
    if vocabularies:
        extra["trim_head_vocabularies"] = {name: sha256_file(f / VOCABULARY) for name, f in vocabularies.items()}
    if trim_head or vocabularies:
        extra["trim_head_version"] = TRIM_HEAD_VERSION
    if lora_inputs:
        extra["lora_inputs"] = True
    if format != "onnx":
        extra["format"] = format
    if format == "gguf":
        from . import llamacpp
        from .gguf_export import VERSION

        extra["gguf"] = VERSION
        if quantize in llamacpp.TYPES:  # llama.cpp's quantizer writes the file
            extra["llama_cpp"] = llamacpp.module(f"--quantize {quantize}").__version__
    from .decoder_graph import VERSION as GRAPH_VERSION

    graph_key = f"edgecomp-{GRAPH_VERSION}" if graph == "edgecomp" else graph
    prompt = resolved.prompt()
    key = resolved.digest(
        base=fingerprint,
        merge_base=merge_base,
        edgecomp=__version__,
        graph=graph_key,
        prompt=prompt,
        **(scheme.key(weights, calibration) if scheme else {"quantize": quantize}),
        **extra,
    )
    if trim_head or vocabularies:  # a step after quantization: the full export (cached too), then its head cut
        full = cached_export(
            resolved,
            base=base,
            merge_base=merge_base,
            quantize=quantize,
            allow_pickle=allow_pickle,
            trust_remote_code=trust_remote_code,
            graph=graph,
            calibration=calibration,
            block_size=block_size,
            tune_steps=tune_steps,
            eight_bit_layers=eight_bit_layers,
            full_vocab=True,
        )
        from .pipeline import verification_ids

        ids = verification_ids(base_model.path)

        def build_head(entry: Path) -> dict:
            with console.status("trimming the LM head"):
                trim_head_export(
                    full, entry / EXPORT_DIR, ids, corpus=trim_head, vocabularies=vocabularies, spec_sha256=key
                )
            return {"spec_sha256": key}

        cached = cached_entry("exports", key[:32], build_head) / EXPORT_DIR
        console.print(f"export cache entry {cached}")
        return cached
    manifest = {
        "base": {"name": base_model.name, "fingerprint": fingerprint},
        "spec_sha256": key,
        "prompt": prompt,
        "composition": {
            **resolved.canonical(),
            "method": resolved.method if resolved.terms else None,
            "merge_base": merge_base,
            "adapters": resolved.describe(),
            "related": resolved.related(),
        },
    }

    export = dict(
        quantize=quantize,
        manifest=manifest,
        trim_corpus=trim_corpus,
        graph=graph,
        calibration=calibration,
        weight_config=weights,
        lora_inputs=lora_inputs,
    )
    as_is = composed is None and merge_base == "original" and any(base_model.path.glob("*.safetensors"))

    def build(entry: Path) -> dict:
        if format in ("hf", "gguf"):
            from ..compose.merge import merged_model
            from .gguf_export import export_gguf
            from .hf_export import export_hf
            from .pipeline import verification_ids

            with console.status("merging adapters into the base weights"):
                model = merged_model(
                    base_model.path,
                    composed,
                    merge_base,
                    allow_pickle=allow_pickle,
                    trust_remote_code=trust_remote_code,
                )
            out, ids = entry / EXPORT_DIR, verification_ids(base_model.path)
            with console.status(f"writing and verifying the {format} export"):
                if format == "hf":
                    export_hf(model, base_model.path, out, manifest=manifest, ids=ids)
                else:
                    quantized = "f32" if quantize == "none" else quantize
                    export_gguf(model, base_model.gguf, out, quantize=quantized, manifest=manifest, ids=ids)
            return {"spec_sha256": key}
        if as_is:  # nothing to merge: export the base's own checkpoint (no 1 GB copy to write)
            export_checkpoint(base_model.path, entry / EXPORT_DIR, **export)
            return {"spec_sha256": key}
        with tempfile.TemporaryDirectory(prefix=".merge-", dir=entry) as tmp:
            with console.status("merging adapters into the base weights"):
                merged = merged_checkpoint(
                    base_model.path,
                    composed,
                    merge_base,
                    Path(tmp) / "merged",
                    allow_pickle=allow_pickle,
                    trust_remote_code=trust_remote_code,
                )
            export_checkpoint(merged, entry / EXPORT_DIR, **export)
        return {"spec_sha256": key}

    cached = cached_entry("exports", key[:32], build) / EXPORT_DIR
    console.print(f"export cache entry {cached}")
    return cached
