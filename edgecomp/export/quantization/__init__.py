"""Weight quantization of exported decoders, by scheme (``--quantize``).

``schemes`` (the registry: one module a scheme), ``weight_only`` (what a block quantization is
configured by), ``codec`` (MatMulNBits' blocks and 4-bit nibbles), ``gptq``, ``smoothing`` and
``scale_tuning`` (calibrated codes and scales; ``quantized_torch``, the PyTorch student tuning
trains), ``rewrite`` (the ONNX graph surgery), ``float16`` (the fp16 graph) and ``apply``
(``quantize_model``: a scheme applied to a file). Imports run that way down: ``apply`` uses all of
them, nothing imports ``apply``.
"""
