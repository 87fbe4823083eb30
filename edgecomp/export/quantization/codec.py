"""The block codec of ONNX Runtime's ``MatMulNBits``: weights in blocks, a scale each, 4-bit nibbles.

A weight matrix is stored as its rows ``[N, K]`` (N = output features), each row cut into blocks
of ``block_size`` values along K: ``packed`` ``[N, k_blocks, block_size * bits / 8]`` uint8 codes,
``scales`` ``[N, k_blocks]`` float32 and, for asymmetric 4-bit blocks, zero points
``[N, ceil(k_blocks / 2)]``; a value is ``(code - zero) * scale``, the zero being the midpoint
(8 or 128) where a block has none. 4-bit codes and zero points go two to a byte, low nibble first
(:func:`pack_nibbles`, :func:`unpack_nibbles`: the only place that order is written).
"""

from __future__ import annotations

import numpy as np


def pack_nibbles(values: np.ndarray) -> np.ndarray:
    """4-bit values (0..15) → bytes, pairs along the last axis, the first of a pair in the low nibble."""
    return values[..., 0::2] | (values[..., 1::2] << 4)


def unpack_nibbles(packed: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pack_nibbles`: each byte → its low nibble, then its high one."""
    return np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(*packed.shape[:-1], -1)


def block_quantize(rows: np.ndarray, bits: int, block_size: int, symmetric: bool):
    """Quantize each row of ``rows`` [N, K] in blocks of ``block_size`` along K, MatMulNBits' layout,
    rounding to nearest.

    Returns ``packed`` [N, k_blocks, block_size * bits / 8] uint8 (4-bit: two values a byte, low
    nibble first), ``scales`` [N, k_blocks] float32 and ``zero_points`` ([N, ceil(k_blocks * bits / 8)]
    uint8, 4-bit ones packed in pairs) or None for symmetric blocks (MatMulNBits and
    GatherBlockQuantized then use the midpoint, 8 or 128). 8-bit blocks are always symmetric.
    """
    rows = np.asarray(rows, dtype=np.float32)
    n, k = rows.shape
    k_blocks = -(-k // block_size)
    levels = (1 << bits) - 1
    packed = np.empty((n, k_blocks, block_size * bits // 8), dtype=np.uint8)
    scales = np.empty((n, k_blocks), dtype=np.float32)
    asymmetric = bits == 4 and not symmetric
    zeros = np.empty((n, k_blocks), dtype=np.uint8) if asymmetric else None
    step = max(1, (1 << 24) // (k_blocks * block_size))  # rows per slice: ~64 MiB of float32
    for start in range(0, n, step):
        x = rows[start : start + step]
        if k_blocks * block_size != k:
            x = np.pad(x, ((0, 0), (0, k_blocks * block_size - k)))
        x = x.reshape(len(x), k_blocks, block_size)
        if bits == 8:
            scale = np.abs(x).max(axis=-1) / 127.0
            safe = np.where(scale == 0, 1.0, scale)[..., None]
            q = np.clip(np.rint(x / safe), -127, 127) + 128
        elif symmetric:  # ONNX Runtime's rule: the value of largest magnitude becomes -8
            hi, lo = x.max(axis=-1), x.min(axis=-1)
            scale = np.where(np.abs(hi) > np.abs(lo), hi, lo) / -8.0
            safe = np.where(scale == 0, 1.0, scale)[..., None]
            q = np.clip(np.rint(x / safe), -8, 7) + 8
        else:
            lo = np.minimum(x.min(axis=-1), 0.0)
            hi = np.maximum(x.max(axis=-1), 0.0)
            scale = (hi - lo) / levels
            safe = np.where(scale == 0, 1.0, scale)
            zero = np.where(scale == 0, 8, np.clip(np.rint(-lo / safe), 0, levels))
            q = np.clip(np.rint(x / safe[..., None] + zero[..., None]), 0, levels)
            zeros[start : start + len(x)] = zero
        packed[start : start + len(x)] = pack_codes(q.astype(np.uint8), bits)
        scales[start : start + len(x)] = scale
    return packed, scales, None if zeros is None else pack_zero_points(zeros)


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes [N, k_blocks, block] (0..2^bits-1) → MatMulNBits bytes (4-bit: low nibble first)."""
    codes = codes.astype(np.uint8, copy=False)
    return pack_nibbles(codes) if bits == 4 else codes


def pack_zero_points(zeros: np.ndarray) -> np.ndarray:
    """4-bit zero points [N, k_blocks] → MatMulNBits' [N, ceil(k_blocks / 2)] (pairs a byte)."""
    if zeros.shape[1] % 2:
        zeros = np.pad(zeros, ((0, 0), (0, 1)))
    return pack_nibbles(zeros)


def centered_codes(packed: np.ndarray, zero_points: np.ndarray | None, bits: int) -> np.ndarray:
    """MatMulNBits' packed blocks [N, k_blocks, blob] → ``code - zero`` [N, k_blocks, block] float32
    (what the scales multiply; :mod:`edgecomp.export.quantization.quantized_torch` trains those scales)."""
    n, k_blocks, _ = packed.shape
    q = unpack_nibbles(packed) if bits == 4 else packed
    if zero_points is None:
        zero = np.full((n, k_blocks), 1 << (bits - 1), dtype=np.float32)
    elif bits == 4:
        zero = unpack_nibbles(zero_points)[:, :k_blocks]
    else:
        zero = zero_points[:, :k_blocks]
    return q.astype(np.float32) - zero[..., None].astype(np.float32)


def dequantize_blocks(packed: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, bits: int) -> np.ndarray:
    """The inverse of :func:`block_quantize`: rows [N, k_blocks * block_size] float32."""
    return (centered_codes(packed, zero_points, bits) * scales[..., None]).reshape(len(packed), -1)
