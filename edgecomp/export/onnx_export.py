"""PyTorch checkpoint → fp32 ONNX decoder with KV cache: edgecomp's own graph or optimum's.

``graph="auto"`` writes edgecomp's compact graph (:mod:`edgecomp.export.decoder_graph`) for the
model families it knows (:mod:`edgecomp.models.families`) and lets optimum trace every other one; both are the
same ``text-generation-with-past`` interface and both are verified against PyTorch afterwards.
For optimum we check up front that the checkpoint is one it can take, so a user sees one clear
line instead of a traceback from deep inside the tracer.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import EdgecompError
from ..model_folder import read_config
from ..models.families import FAMILIES

TASK = "text-generation-with-past"
GRAPHS = ("auto", "edgecomp", "optimum")


def _check_checkpoint(checkpoint_dir: Path) -> None:
    from optimum.exporters.onnx import model_configs  # noqa: F401  (registers the ONNX configs)
    from optimum.exporters.tasks import TasksManager

    config = read_config(checkpoint_dir)
    if not any(checkpoint_dir.glob("*.safetensors")):
        raise EdgecompError(f"{checkpoint_dir} has no *.safetensors weights")
    model_type = config.get("model_type")
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(model_type, "onnx", library_name="transformers")
    except KeyError:
        tasks = {}
    if TASK not in tasks:
        raise EdgecompError(f"optimum cannot export model type {model_type!r} for {TASK}")


def chosen_graph(checkpoint_dir: Path, graph: str = "auto") -> str:
    """Which graph ``graph`` means for this checkpoint: ``edgecomp`` or ``optimum``."""
    from .decoder_graph import unsupported

    if graph not in GRAPHS:
        raise EdgecompError(f"unknown graph {graph!r}; choose one of {', '.join(GRAPHS)}")
    if graph != "auto":
        return graph
    return "optimum" if unsupported(read_config(checkpoint_dir)) else "edgecomp"


def export_onnx(checkpoint_dir: Path, work_dir: Path, graph: str = "auto", lora_inputs: bool = False) -> Path:
    """Export ``checkpoint_dir`` into ``work_dir`` (fp32, local files only); return ``model.onnx``.

    Weights over the 2 GB protobuf limit go to an external data file next to ``model.onnx``.
    ``lora_inputs`` (edgecomp's graph only): LoRA updates as run-time inputs.
    """
    checkpoint_dir, work_dir = Path(checkpoint_dir), Path(work_dir)
    if chosen_graph(checkpoint_dir, graph) == "edgecomp":
        from .decoder_graph import build_decoder_graph

        return build_decoder_graph(checkpoint_dir, work_dir, lora_inputs)
    if lora_inputs:
        raise EdgecompError(f"run-time LoRA inputs need edgecomp's decoder graph ({', '.join(sorted(FAMILIES))})")
    from optimum.exporters.onnx import main_export
    from torch.jit import TracerWarning

    _check_checkpoint(checkpoint_dir)
    with warnings.catch_warnings():
        # Tracing a decoder always warns that Python conditionals became constants; they are the
        # shape checks optimum's patches make safe, so the warnings only bury real messages.
        warnings.simplefilter("ignore", TracerWarning)
        main_export(
            str(checkpoint_dir),
            output=work_dir,
            task=TASK,
            dtype="fp32",
            device="cpu",
            local_files_only=True,
            trust_remote_code=False,
            do_validation=False,  # our own check (verify.py) compares real logits, token for token
            library_name="transformers",
        )
    model = work_dir / "model.onnx"
    if not model.is_file():
        raise RuntimeError(f"optimum wrote no model.onnx into {work_dir}")
    return model
