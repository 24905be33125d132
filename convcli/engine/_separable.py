"""Separable convolution for rank-1 depthwise kernels: a column pass, then a row pass.

A kH x kW kernel that is ``outer(column, row)`` costs kH + kW multiply-adds per pixel
instead of kH * kW. Each parallel iteration makes one output row: the column pass sums
kH input rows into a row buffer of the input's width, the row pass runs over that buffer
exactly as the direct path runs over an input row (borders through the same index maps).
"""

from __future__ import annotations

import numpy as np

from ._direct import accumulate_taps
from ._numba_config import jit, prange


@jit
def separable_conv(x, column, row, bias, row_map, col_map, pad_left, stride_h, stride_w,
                   dilation_h, dilation_w, out):
    """``out[n, c] = bias[c] + (column[c] x row[c]) * x[n, c // (C_out / C_in)]``.

    ``x`` is (N, C_in, H, W); ``column`` (C_out, kH), ``row`` (C_out, kW): one input
    channel per group, as in a depthwise convolution.
    """
    batch, out_channels, out_h, out_w = out.shape
    in_channels, width = x.shape[1], x.shape[3]
    kernel_h = column.shape[1]
    per_input = out_channels // in_channels
    for task in prange(batch * out_channels * out_h):
        n = task // (out_channels * out_h)
        co = (task // out_h) % out_channels
        oy = task % out_h
        ci = co // per_input
        summed = np.zeros(width, dtype=np.float32)
        for ky in range(kernel_h):
            source_row = row_map[oy * stride_h + ky * dilation_h]
            if source_row < 0:
                continue
            tap = column[co, ky]
            source = x[n, ci, source_row]
            for i in range(width):
                summed[i] += tap * source[i]
        destination = out[n, co, oy]
        destination[:] = bias[co]
        accumulate_taps(destination, summed, row[co], col_map, pad_left, stride_w, dilation_w)
