"""Checkpoint → ONNX folder for the runtime.

``onnx_export`` (which graph: ``decoder_graph``, edgecomp's compact decoder for the registered
model families, or optimum's exporter for everything else), ``verify`` (ONNX logits against
PyTorch), ``logits_to_keep`` (the prompt pays for one LM-head row), ``quantization`` (the scheme
registry: fp16, and 8-/4-bit weight blocks with the tied embedding/LM head stored once, calibrated
by smoothing, GPTQ and scale tuning), ``trim`` (vocabulary trimming with exact id maps),
``onnx_io`` (the one way graphs are saved), ``pipeline`` (``export_checkpoint``: all of it,
written atomically with a manifest) and ``merge_export`` (compose, merge, export, cached by the
composition's hash). Nothing is imported here: PyTorch loads only when an export runs.
"""
