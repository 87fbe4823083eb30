"""Checkpoint → ONNX folder for the runtime.

``onnx`` (which graph: ``decoder_graph``, edgecomp's compact Llama/Gemma3 decoder, or optimum's
exporter for everything else), ``verify`` (ONNX logits against PyTorch), ``logits_to_keep`` (the
prompt pays for one LM-head row), ``quantize`` (fp16, and 8-/4-bit weight blocks with the tied
embedding/LM head stored once), ``smooth`` and ``gptq`` (calibrated scales and 4-bit codes),
``trim`` (vocabulary trimming with exact id maps), ``pipeline`` (``export_checkpoint``: all of it,
written atomically with a manifest) and ``merge_export`` (compose, merge, export, cached by the
composition's hash). Nothing is imported here: PyTorch loads only when an export runs.
"""
