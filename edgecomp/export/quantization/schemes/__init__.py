"""Quantization schemes by name: what ``--quantize`` takes, one module a scheme.

``none`` (the fp32 graph), ``fp16`` (float16, for GPUs), ``int8`` (8-bit weight blocks) and
``int4`` (4-bit GPTQ blocks, their scales tuned): each module declares its :class:`Scheme` and
registers it (:mod:`.registry`); importing this package registers them all, in the order
``--quantize``'s help lists them. Nothing here imports onnx or numpy: the command line reads the
schemes for its help.
"""

# Each module registers its scheme on import; this order is the order --quantize lists them in.
# isort: off
from . import none, fp16, int8, int4  # noqa: F401

# isort: on
from .registry import CALIBRATION, SCHEMES, Scheme, choices_help, get_scheme, option_help, register, taking

__all__ = ["CALIBRATION", "SCHEMES", "Scheme", "choices_help", "get_scheme", "option_help", "register", "taking"]
