"""Separable convolution for rank-1 depthwise kernels: a column pass, then a row pass.

A kH x kW kernel that is ``outer(column, row)`` costs kH + kW multiply-adds per pixel
instead of kH * kW. Each parallel iteration makes one output row: the column pass
fills a row buffer of the padded width, the row pass reads it with stride and dilation.
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit, prange


@jit
def separable_conv(padded, column, row, bias, stride_h, stride_w, dilation_h, dilation_w, out):
    """``out[n, c] = bias[c] + (column[c] x row[c]) * padded[n, c // (C_out / C_in)]``.

    ``padded`` is (N, C_in, Hp, Wp); ``column`` (C_out, kH), ``row`` (C_out, kW): one
    input channel per group, as in a depthwise convolution.
    """
    batch, out_channels, out_h, out_w = out.shape
    in_channels, padded_w = padded.shape[1], padded.shape[3]
    kernel_h, kernel_w = column.shape[1], row.shape[1]
    per_input = out_channels // in_channels
    for task in prange(batch * out_channels * out_h):
        n = task // (out_channels * out_h)
        co = (task // out_h) % out_channels
        oy = task % out_h
        ci = co // per_input
        summed = np.zeros(padded_w, dtype=np.float32)
        for ky in range(kernel_h):
            tap = column[co, ky]
            source = padded[n, ci, oy * stride_h + ky * dilation_h]
            for x in range(padded_w):
                summed[x] += tap * source[x]
        result = np.full(out_w, bias[co], dtype=np.float32)
        for kx in range(kernel_w):
            tap = row[co, kx]
            offset = kx * dilation_w
            for ox in range(out_w):
                result[ox] += tap * summed[ox * stride_w + offset]
        out[n, co, oy, :] = result
