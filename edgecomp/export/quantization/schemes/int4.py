"""``int4``: 4-bit blocks for the transformer's MatMuls, chosen by GPTQ, their scales tuned end to end.

The blocks are asymmetric, 32 values each (``--block-size``), except decoder layers 0, 1, 3 and the
last, which stay 8-bit (``--eight-bit-layers``): made exact one at a time, those layers' MatMuls cut
the most KL to fp32 on the default base, mostly at the edges of the network, where llama.cpp's
Q4_K_M spends its extra bits too. The 4-bit codes are chosen by GPTQ
(:mod:`~edgecomp.export.quantization.gptq`) after AWQ-style input scales
(:mod:`~edgecomp.export.quantization.smoothing`), then their scales tuned against the fp32 graph
(:mod:`~edgecomp.export.quantization.scale_tuning`, ``--tune-steps``), all on calibration text.
The tied embedding / LM head is 8-bit in blocks of 128: a 4-bit one loses too much on some
languages. benchmarks/QUANTIZATION.md has the measurements behind each choice.

A graph with run-time LoRA inputs is refused: the scale tuning's PyTorch student does not model them.
"""

from __future__ import annotations

from dataclasses import replace

from ....errors import EdgecompError
from ..weight_only import GPTQConfig, TuneConfig, WeightOnlyConfig
from .registry import Scheme, register

INT4 = WeightOnlyConfig(
    bits=4, head_bits=8, head_block_size=128, eight_bit_layers=(0, 1, 3, -1), gptq=GPTQConfig(), tune=TuneConfig()
)


def int4_options(
    config: WeightOnlyConfig | None,
    *,
    block_size: int | None = None,
    tune_steps: int | None = None,
    eight_bit_layers: str | None = None,
) -> WeightOnlyConfig | None:
    """``config`` (int4's) with merge-export's ``--block-size`` / ``--tune-steps`` /
    ``--eight-bit-layers`` (None: as is; ``tune_steps=0``: GPTQ alone; layers as ``"0,1,-1"`` or
    ``"none"`` for every layer in 4 bits)."""
    if block_size is None and tune_steps is None and eight_bit_layers is None:
        return config
    if config is None or config.bits != 4 or config.gptq is None:
        raise EdgecompError("--block-size, --tune-steps and --eight-bit-layers apply to --quantize int4 only")
    if tune_steps is not None and tune_steps < 0:
        raise EdgecompError("--tune-steps must be 0 (off) or more")
    if block_size is not None:
        config = replace(config, block_size=block_size)  # checked: a power of two, at least 16
    if tune_steps is not None:
        config = replace(config, tune=replace(config.tune or TuneConfig(), steps=tune_steps) if tune_steps else None)
    if eight_bit_layers is not None:
        config = replace(config, eight_bit_layers=_layer_list(eight_bit_layers))
    return config


def _layer_list(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise EdgecompError(f"--eight-bit-layers takes layer indices like 0,1,-1 or 'none', not {text!r}") from None


register(
    Scheme(
        name="int4",
        version=8,
        help="4-bit blocks chosen by GPTQ on calibration text, 8-bit embedding; GGUF-sized",
        config=INT4,
        options=("block_size", "tune_steps", "eight_bit_layers"),
        configure=int4_options,
        needs_calibration=True,
        supports_lora_inputs=False,
    )
)
