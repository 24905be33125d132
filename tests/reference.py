"""A slow, obviously correct float64 convolution to check every engine path against.

Border modes are written as index maps (where does padded pixel ``i`` come from?)
rather than with ``np.pad``, so the reference does not share the engine's padding code.
"""

from __future__ import annotations

import numpy as np


def source_index(i: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Input index for padded positions ``i`` (may be < 0 or >= size); -1 means "zero"."""
    i = np.asarray(i)
    if mode == "zeros":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return np.mod(i, size)
    if mode == "reflect":                      # d c b | a b c d | c b a  (edge not repeated)
        if size == 1:
            return np.zeros_like(i)
        m = np.mod(i, 2 * size - 2)
        return np.where(m < size, m, 2 * size - 2 - m)
    if mode == "symmetric":                    # c b a | a b c d | d c b  (edge repeated)
        m = np.mod(i, 2 * size)
        return np.where(m < size, m, 2 * size - 1 - m)
    raise ValueError(mode)


def reference_conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                     groups=1, mode="zeros") -> np.ndarray:
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (C_out, C_in/groups, kH, kW).

    ``padding`` is (top, bottom, left, right); the result is float64.
    """
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    n, channels, height, width = x.shape
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    top, bottom, left, right = padding
    out_h = (height + top + bottom - dilation[0] * (kernel_h - 1) - 1) // stride[0] + 1
    out_w = (width + left + right - dilation[1] * (kernel_w - 1) - 1) // stride[1] + 1
    # Pad with one zero column/row at the end so that index -1 reads a zero.
    padded_source = np.zeros((n, channels, height + 1, width + 1))
    padded_source[:, :, :height, :width] = x
    group_out = out_channels // groups
    out = np.zeros((n, out_channels, out_h, out_w))
    for co in range(out_channels):
        for ci in range(group_in):
            channel = (co // group_out) * group_in + ci
            for ky in range(kernel_h):
                rows = source_index(np.arange(out_h) * stride[0] + ky * dilation[0] - top, height, mode)
                for kx in range(kernel_w):
                    cols = source_index(np.arange(out_w) * stride[1] + kx * dilation[1] - left,
                                        width, mode)
                    window = padded_source[:, channel][:, rows][:, :, cols]
                    out[:, co] += weight[co, ci, ky, kx] * window
        if bias is not None:
            out[:, co] += bias[co]
    return out
