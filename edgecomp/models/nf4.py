"""NF4 (bitsandbytes) quantization of the base, for QLoRA training and for merging into what was trained.

QLoRA trains the adapter against NF4-dequantized weights; ``nf4_roundtrip`` reproduces exactly those
weights (same 64-value blocks, NF4 codebook and double-quantized scales that ``Linear4bit`` uses) so
``--merge-base dequantized`` adds ΔW to what the adapter actually saw.
"""

from __future__ import annotations

import logging

# On CPUs with AVX512-BF16, bitsandbytes tries to fetch a kernel from the model hub at import and
# warns when it cannot; edgecomp never reaches the hub and the built-in CPU kernel is used instead.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def nf4_config(compute_dtype):
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def nf4_roundtrip(weight):
    """``weight`` quantized to NF4 (double quantization, block 64) and dequantized back, same dtype."""
    import bitsandbytes.functional as F

    packed, state = F.quantize_4bit(weight.contiguous(), blocksize=64, compress_statistics=True, quant_type="nf4")
    return F.dequantize_4bit(packed, state).to(weight.dtype).reshape(weight.shape)
