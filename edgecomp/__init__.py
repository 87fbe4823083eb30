"""edgecomp: summarization for languages with little labeled data, on hardware people own.

The package follows the data's path: ``models`` (resolve and load a base), ``data`` (readers and
the prompt template), ``train`` (QLoRA adapters), ``compose`` (adapter arithmetic and merging),
``export`` (ONNX through optimum, quantization, verification), ``runtime`` (ONNX Runtime
generation, no PyTorch) and ``eval``.
"""

__version__ = "0.1.0"
