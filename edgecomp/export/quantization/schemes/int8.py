"""``int8``: weight-only 8-bit blocks (``MatMulNBits``, symmetric, 32 values a block) for every MatMul.

The LM head is 8-bit too and the embedding lookup a ``GatherBlockQuantized`` on the same blocks
(a tied table stored once, :mod:`~edgecomp.export.quantization.rewrite`). The head's input
channels are smoothed into the table first (:mod:`~edgecomp.export.quantization.smoothing`):
ONNX Runtime's CPU kernels quantize the head's input to int8 in blocks of channels, and the
final norm's few large channels would starve the rest. That smoothing calibrates on text.
"""

from ..weight_only import WeightOnlyConfig
from .registry import Scheme, register

INT8 = WeightOnlyConfig(bits=8, head_bits=8)

register(Scheme(name="int8", version=8, help="8-bit weight blocks", config=INT8, needs_calibration=True))
