"""Head trimming: the LM head keeps a corpus's rows, and every article adds its own tokens back.

A trimmed vocabulary (:mod:`.trim`) makes decoding fast because the LM head, the largest MatMul
of a decode step, shrinks; but a summary copies names and rare words from its article, and a
trimmed export cannot write a token its corpus lacked (benchmarks/RUNTIME.md). Here only the head
is cut, after quantization, on the graph of a weight-only scheme (a tied 8-bit table read by
``GatherBlockQuantized`` for the embedding lookup and by ``MatMulNBits`` for the head):

- ``MatMulNBits`` keeps the packed rows of the kept ids (exactly the full head's rows);
- a new input ``extra_ids`` [E] takes the ids the current prompts hold outside the kept set; their
  rows are gathered from the full table (mapped, never repacked: only those rows are read) and
  multiplied in fp32;
- the logits are ``[kept…, extra…]``, and ``input_ids`` index that same list (a Gather in front of
  the embedding lookup maps them to the table's ids), so tokens keep their own embeddings.

The kept ids go to ``head_ids.json``; :class:`~edgecomp.runtime.session.DecoderSession` builds
``extra_ids`` from each prompt and hands back logits over the whole vocabulary (-inf elsewhere),
so the rest of the runtime sees the full model's ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..data.vocab_map import EXTRA_IDS, HEAD_IDS, write_head_ids
from ..errors import EdgecompError

VERSION = 2  # in the export cache's key: bumped when the trimmed head's graph changes


def _one(nodes: list[onnx.NodeProto], what: str) -> onnx.NodeProto:
    if len(nodes) != 1:
        raise EdgecompError(f"--trim-head needs one {what} in the graph, found {len(nodes)}")
    return nodes[0]


def trim_head(model: onnx.ModelProto, kept: np.ndarray) -> dict:
    """Cut the head of a weight-only quantized graph to ``kept`` (sorted original ids), in place."""
    graph = model.graph
    head = _one([n for n in graph.node if n.op_type == "MatMulNBits" and "logits" in n.output], "LM-head MatMulNBits")
    table = head.input[1]
    lookup = _one(
        [n for n in graph.node if n.op_type == "GatherBlockQuantized" and n.input[0] == table],
        "embedding lookup reading the LM head's table (a tied 8-bit head: --quantize int8 or int4)",
    )
    inits = {t.name: t for t in graph.initializer}
    attrs = {a.name: helper.get_attribute_value(a) for a in head.attribute}
    vocab = int(attrs["N"])
    kept = np.asarray(kept, dtype=np.int64)
    if kept.size == 0 or kept[-1] >= vocab or np.any(np.diff(kept) <= 0):
        raise EdgecompError("kept ids must be sorted, distinct and inside the vocabulary")

    def cut(name: str) -> str:
        """The kept rows of a per-row tensor of the head (packed weights, scales, zero points)."""
        values = numpy_helper.to_array(inits[name])
        shape = (kept.size, *values.shape[1:]) if values.shape[0] == vocab else (-1,)
        rows = values.reshape(vocab, -1)[kept].reshape(shape)
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(rows), f"{name}.kept"))
        return f"{name}.kept"

    head_inputs = [head.input[0], *(cut(x) if x else "" for x in head.input[1:])]
    graph.initializer.append(numpy_helper.from_array(kept, "head_kept_ids"))
    graph.input.append(helper.make_tensor_value_info(EXTRA_IDS, TensorProto.INT64, ["extra"]))
    hidden = int(attrs["K"])
    mapping = [
        helper.make_node("Concat", ["head_kept_ids", EXTRA_IDS], ["head_ids"], name="/head_ids/Concat", axis=0),
        helper.make_node("Gather", ["head_ids", "input_ids"], ["table_ids"], name="/head_ids/Gather", axis=0),
    ]
    new = [
        helper.make_node(
            "MatMulNBits",
            head_inputs,
            ["logits_kept"],
            name="/lm_head/MatMulNBits_kept",
            domain="com.microsoft",
            **{**attrs, "N": int(kept.size)},
        ),
        helper.make_node(
            "GatherBlockQuantized",
            [table, EXTRA_IDS, *lookup.input[2:]],
            ["extra_blocks"],
            name="/lm_head/extra_rows",
            domain="com.microsoft",
            **{a.name: helper.get_attribute_value(a) for a in lookup.attribute},
        ),
        helper.make_node("Reshape", ["extra_blocks", "extra_rows_shape"], ["extra_rows"], name="/lm_head/extra_rows2d"),
        helper.make_node("Transpose", ["extra_rows"], ["extra_rows_t"], name="/lm_head/extra_t", perm=[1, 0]),
        helper.make_node("MatMul", [head.input[0], "extra_rows_t"], ["logits_extra"], name="/lm_head/MatMul_extra"),
        helper.make_node("Concat", ["logits_kept", "logits_extra"], ["logits"], name="/lm_head/Concat", axis=-1),
    ]
    graph.initializer.append(numpy_helper.from_array(np.array([-1, hidden], dtype=np.int64), "extra_rows_shape"))
    for i, name in enumerate(lookup.input):
        if name == "input_ids":
            lookup.input[i] = "table_ids"
    index = list(graph.node).index(head)  # the head's replacement where the head was
    graph.node.remove(head)
    for offset, node in enumerate(new):
        graph.node.insert(index + offset, node)
    index = list(graph.node).index(lookup)  # the id mapping right before the lookup (topological order)
    for offset, node in enumerate(mapping):
        graph.node.insert(index + offset, node)
    for value in list(graph.output) + list(graph.value_info):
        if value.name == "logits":
            dims = value.type.tensor_type.shape.dim
            if dims:
                dims[-1].Clear()
                dims[-1].dim_param = "head_vocab"
    return {"original_vocab_size": vocab, "head_size": int(kept.size), "map": HEAD_IDS}


def trim_head_folder(folder: Path, kept: np.ndarray, config: dict, ids: list[int]) -> dict:
    """Trim the head of the export graph in ``folder`` (written there, with ``head_ids.json``) and
    check it: on ``ids``, its logits of the kept ids are the untrimmed graph's, and those of the
    ids outside them (fed as ``extra_ids``) the full table's rows in fp32."""
    from .onnx_io import external_data_files, save_model
    from .verify import onnx_logits

    folder = Path(folder)
    before = onnx_logits(folder, config, ids)
    model = onnx.load(str(folder / "model.onnx"))
    report = trim_head(model, kept)
    external = bool(external_data_files(folder / "model.onnx"))
    staged = folder / ".head"
    staged.mkdir()
    save_model(model, staged / "model.onnx", external)
    del model
    for file in staged.iterdir():
        file.replace(folder / file.name)
    staged.rmdir()
    write_head_ids(folder, kept, report["original_vocab_size"])
    after = onnx_logits(folder, config, ids)
    scale = float(np.abs(before).max())
    outside = np.setdiff1d(np.asarray(ids), kept)
    kept_diff = float(np.abs(after[:, kept] - before[:, kept]).max())
    extra_diff = float(np.abs(after[:, outside] - before[:, outside]).max()) if outside.size else 0.0
    check = {"kept_max_abs_diff": kept_diff, "extra_max_abs_diff": extra_diff, "logit_scale": scale}
    # The kept rows are the same kernel on the same blocks; the extra rows are multiplied in fp32,
    # where MatMulNBits rounds its input to 8 bits: a small, bounded difference.
    if not (kept_diff <= 1e-4 * scale and extra_diff <= 0.02 * scale):
        raise EdgecompError(f"the head-trimmed graph's logits differ from the full graph's ({check})")
    return {**report, "verify": check}


def check_head_options(scheme, *, trim_corpus, lora_inputs) -> None:
    """``--trim-head`` cuts a weight-only quantized head, alone (before any work is done)."""
    if scheme.config is None or trim_corpus or lora_inputs:
        raise EdgecompError(
            "--trim-head trims a weight-only quantized head (--quantize int8 or int4), "
            "without --trim-vocab or run-time LoRA inputs"
        )


def trim_head_with(
    folder: Path,
    ids: list[int],
    tokenizer_dir: Path,
    *,
    corpus: list[Path] | None = None,
    vocabularies: dict[str, Path] | None = None,
    keep_unused: bool = False,
) -> dict:
    """Trim the head of the export graph in ``folder`` to the tokens of ``corpus`` (text files) and
    of ``vocabularies`` (adapter folders with a ``vocabulary.json``), plus special, byte and prompt
    tokens (``tokenizer_dir``'s tokenizer); checked on ``ids``. Returns the manifest's entry."""
    from ..data.tokenizer import load_tokenizer
    from ..data.vocabulary import read_vocabulary
    from ..model_folder import read_config
    from .trim import corpus_lines, kept_ids

    lines = corpus_lines(corpus) if corpus else []
    recorded = [read_vocabulary(f) for f in (vocabularies or {}).values()]
    wanted = np.concatenate([np.zeros(0, np.int64), *recorded])
    kept = kept_ids(load_tokenizer(tokenizer_dir), lines, extra_ids=wanted, keep_unused=keep_unused)
    head = trim_head_folder(folder, kept, read_config(tokenizer_dir), ids)
    return head | {
        "corpus": [Path(p).name for p in corpus or []],
        "corpus_lines": len(lines),
        "vocabularies": sorted(vocabularies or {}),
    }


def trim_head_export(
    src: Path, dst: Path, ids: list[int], *, corpus: list[Path] | None = None, vocabularies=None, **fields
) -> dict:
    """A copy of the export ``src`` in ``dst`` with its head trimmed as :func:`trim_head_with`
    does; ``fields`` replace those of ``src``'s manifest. Returns the manifest written."""
    import shutil

    from ..model_folder import MANIFEST, read_manifest, write_manifest

    dst.mkdir(parents=True)
    for file in Path(src).iterdir():
        if file.name not in (MANIFEST, "genai_config.json"):  # other runtimes cannot feed extra_ids
            shutil.copy2(file, dst / file.name)
    head = trim_head_with(dst, ids, dst, corpus=corpus, vocabularies=vocabularies)
    kept_fields = {k: v for k, v in read_manifest(src).items() if k != "files"}
    return write_manifest(dst, {**kept_fields, **fields, "trim_head": head})
