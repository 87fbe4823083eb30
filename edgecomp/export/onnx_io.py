"""Writing ONNX files, and finding the weight files a written one reads: one rule for every graph.

Every graph edgecomp writes (its decoder graph, a trimmed one, a quantized one, the calibration
probe) goes through :func:`save_model`, so they all keep their weights the same way.
"""

from __future__ import annotations

from pathlib import Path

import onnx


def save_model(model: onnx.ModelProto, path: Path, external: bool) -> None:
    """Write ``model`` to ``path``.

    With ``external``, every tensor of 1 KiB or more goes to ONE file next to it, named after it
    (``model.onnx`` → ``model.onnx.data``), and the small ones (shape constants) stay inline:
    ONNX Runtime maps that file instead of parsing one large protobuf, and a graph past protobuf's
    2 GB limit can be written at all. Without it, the graph and its weights are one file.
    """
    path = Path(path)
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))


def external_data_files(model_path: Path) -> list[str]:
    """Names of the files holding this model's external tensors (empty if it is self-contained)."""
    model = onnx.load(str(model_path), load_external_data=False)
    names = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return sorted(names)
