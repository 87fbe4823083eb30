"""Quality measurements.

- ``perplexity``: held-out perplexity and greedy agreement of exports (ONNX) and checkpoints.
- ``run`` (``edgecomp eval``): summaries of labelled documents through the ONNX runtime, scored by
  the summary metrics of :mod:`edgecomp.metrics`' registry (``rouge``, ``language_id``, ``length``
  register there), with bootstrap
  intervals (``bootstrap``); ``compare`` pairs two evaluations.
- ``auto_lambda``: choosing the arithmetic's λ from unlabeled text; ``experiment``, ``report`` and
  ``plots``: the zero-shot experiment and docs/results.md.

Torch-free for ONNX exports (numpy, onnxruntime, tokenizers); PyTorch loads only to score a
checkpoint and to build exports.
"""
