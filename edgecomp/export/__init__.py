"""Checkpoint → ONNX folder for the runtime.

``onnx`` (optimum's exporter), ``verify`` (ONNX logits against PyTorch), ``quantize`` (ONNX
Runtime's int8 / int4 quantizers) and ``pipeline`` (``export_checkpoint``: all of it, written
atomically with a manifest). Nothing is imported here: PyTorch loads only when an export runs.
"""
