"""Separable convolution for rank-1 depthwise kernels: a column pass, then a row pass.

A kH x kW kernel that is ``outer(column, row)`` costs kH + kW multiply-adds per pixel
instead of kH * kW. Each parallel iteration makes one output row: the column pass sums
kH input rows straight into the middle of a padded row buffer, the borders are filled
through ``col_map``, and the row pass runs over that buffer as the direct path does.
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit, prange
from ._rows import accumulate_row, fill_borders


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
        padded = np.zeros(col_map.shape[0], dtype=np.float32)
        summed = padded[pad_left:pad_left + width]
        ky = 0
        while ky < kernel_h:                     # three kernel rows per pass over the buffer
            r0 = row_map[oy * stride_h + ky * dilation_h]
            r1 = row_map[oy * stride_h + (ky + 1) * dilation_h] if ky + 1 < kernel_h else -1
            r2 = row_map[oy * stride_h + (ky + 2) * dilation_h] if ky + 2 < kernel_h else -1
            if r0 >= 0 and r1 >= 0 and r2 >= 0:
                t0, t1, t2 = column[co, ky], column[co, ky + 1], column[co, ky + 2]
                s0, s1, s2 = x[n, ci, r0], x[n, ci, r1], x[n, ci, r2]
                for i in range(width):
                    summed[i] += t0 * s0[i] + t1 * s1[i] + t2 * s2[i]
                ky += 3
                continue
            if r0 >= 0:                           # near the top or bottom, or the last rows
                tap, source = column[co, ky], x[n, ci, r0]
                for i in range(width):
                    summed[i] += tap * source[i]
            ky += 1
        fill_borders(padded, col_map, pad_left, width)
        destination = out[n, co, oy]
        destination[:] = bias[co]
        accumulate_row(destination, padded, row[co], stride_w, dilation_w)
