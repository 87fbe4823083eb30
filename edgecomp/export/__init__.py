"""Checkpoint → ONNX folder for the runtime.

``onnx`` (optimum's exporter), ``verify`` (ONNX logits against PyTorch), ``quantize`` (fp16, and
8-/4-bit weight blocks with the tied embedding/LM head stored once), ``trim`` (vocabulary
trimming with exact id maps), ``pipeline`` (``export_checkpoint``: all of it, written atomically
with a manifest) and ``merge_export`` (compose, merge, export, cached by the composition's hash).
Nothing is imported here: PyTorch loads only when an export runs.
"""
