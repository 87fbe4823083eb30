"""GPTQ: the plain rounding when the inputs are uncorrelated, less output error when they are not,
and MatMulNBits' exact block format either way."""

from __future__ import annotations

import numpy as np
import pytest

from edgecomp.export.quantization.codec import block_quantize, dequantize_blocks, pack_codes, pack_zero_points
from edgecomp.export.quantization.gptq import calibration_sequences, gptq_blocks
from edgecomp.export.quantization.weight_only import GPTQConfig


def _dequantized(codes, scales, zeros, block):
    n, k = codes.shape
    packed = pack_codes(codes.reshape(n, k // block, block), 4)
    return dequantize_blocks(packed, scales, pack_zero_points(zeros), 4)


@pytest.mark.parametrize("act_order", [False, True])
def test_uncorrelated_inputs_and_no_clip_search_is_round_to_nearest(act_order):
    """A diagonal Hessian (distinct values: act order really permutes) propagates no error, so
    GPTQ must give round-to-nearest's codes, in the original column order."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(24, 128)).astype(np.float32)
    config = GPTQConfig(clip_search=(1.0,), act_order=act_order)
    hessian = np.diag(rng.uniform(0.5, 2.0, size=128))
    codes, scales, zeros = gptq_blocks(rows, hessian, bits=4, block_size=32, config=config)
    packed, rtn_scales, rtn_zeros = block_quantize(rows, 4, 32, symmetric=False)
    np.testing.assert_array_equal(pack_codes(codes.reshape(24, 4, 32), 4), packed)
    np.testing.assert_allclose(scales, rtn_scales, rtol=1e-6)
    np.testing.assert_array_equal(pack_zero_points(zeros), rtn_zeros)


@pytest.mark.parametrize("act_order", [False, True])
def test_correlated_inputs_get_less_output_error_than_rounding(act_order):
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(64, 64)) * 0.3 + np.eye(64)
    inputs = rng.normal(size=(4096, 64)) @ mixing * np.linspace(0.2, 3.0, 64)  # correlated, uneven scales
    hessian = inputs.T @ inputs / len(inputs)
    rows = rng.normal(size=(48, 64)).astype(np.float32)
    codes, scales, zeros = gptq_blocks(rows, hessian, bits=4, block_size=32, config=GPTQConfig(act_order=act_order))
    gptq = _dequantized(codes, scales, zeros, 32)
    rtn = dequantize_blocks(*block_quantize(rows, 4, 32, symmetric=False), 4)

    def output_error(weights):
        return float(np.square(inputs @ (weights - rows).T).mean())

    assert codes.dtype == np.uint8 and codes.max() <= 15 and zeros.max() <= 15
    assert output_error(gptq) < 0.8 * output_error(rtn)


def test_calibration_lines_are_packed_into_sequences_that_start_with_bos():
    config = GPTQConfig(sequence_length=8, tokens=24)
    lines = ["a b c", "", "d e f g h", "i j k l m n o p q"] * 3
    sequences = calibration_sequences(lambda line: [ord(c) for c in line.split()], lines, 2, config)
    assert sequences and all(s[0] == 2 for s in sequences)
    assert [len(s) for s in sequences] == [8, 8, 8]  # stops at `tokens`
    flat = [t for s in sequences for t in s[1:]]
    assert flat[:8] == [ord(c) for c in "abcdefgh"][:8]
