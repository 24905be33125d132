"""Direct convolution: every output pixel is a sum over C_in/groups x kH x kW taps.

The loop nest runs one output row per parallel iteration and accumulates the whole
row at once, so the innermost loop walks contiguous memory when the stride is 1.
Dilation is applied inside the index arithmetic; no zero-stuffed kernel is built.
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit, prange


@jit
def direct_conv(padded, weight, bias, stride_h, stride_w, dilation_h, dilation_w, groups, out):
    """Cross-correlate ``padded`` (N, C_in, Hp, Wp) with ``weight`` into ``out`` (N, C_out, Ho, Wo)."""
    batch, out_channels, out_h, out_w = out.shape
    group_in = weight.shape[1]
    kernel_h, kernel_w = weight.shape[2], weight.shape[3]
    group_out = out_channels // groups
    for task in prange(batch * out_channels * out_h):
        n = task // (out_channels * out_h)
        co = (task // out_h) % out_channels
        oy = task % out_h
        first_in = (co // group_out) * group_in
        row = np.full(out_w, bias[co], dtype=np.float32)
        for ci in range(group_in):
            for ky in range(kernel_h):
                source = padded[n, first_in + ci, oy * stride_h + ky * dilation_h]
                for kx in range(kernel_w):
                    tap = weight[co, ci, ky, kx]
                    offset = kx * dilation_w
                    for ox in range(out_w):
                        row[ox] += tap * source[ox * stride_w + offset]
        out[n, co, oy, :] = row
