"""Direct convolution: every output pixel is a sum over C_in/groups x kH x kW taps.

One output row per parallel iteration, accumulated in place. For each kernel column kx,
three kernel rows are added per pass over the output row (three multiply-adds per load
and store of the output), reading the input rows where they are: the padded image is
never built. ``row_map``/``col_map`` give, for each padded row/column, the input index it
reads (-1: a zero); they are only consulted at the borders. Dilation is index arithmetic.
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit, jit_inline, prange


@jit
def direct_conv(x, weight, bias, row_map, col_map, pad_left, stride_h, stride_w, dilation_h,
                dilation_w, groups, out):
    """Cross-correlate ``x`` (N, C_in, H, W) with ``weight`` into ``out`` (N, C_out, Ho, Wo)."""
    batch, out_channels, out_h, out_w = out.shape
    group_in, kernel_h, kernel_w = weight.shape[1], weight.shape[2], weight.shape[3]
    group_out = out_channels // groups
    for task in prange(batch * out_channels * out_h):
        n = task // (out_channels * out_h)
        co = (task // out_h) % out_channels
        oy = task % out_h
        first_in = (co // group_out) * group_in
        destination = out[n, co, oy]
        destination[:] = bias[co]
        for ci in range(group_in):
            image = x[n, first_in + ci]
            taps = weight[co, ci]
            ky = 0
            while ky < kernel_h:
                # The next (up to) three kernel rows that fall on the image; rows in the zero
                # padding are left out, and an unused slot repeats row 0 with weight 0.
                r0 = r1 = r2 = -1
                k0 = k1 = k2 = 0
                used = 0
                while ky < kernel_h and used < 3:
                    source_row = row_map[oy * stride_h + ky * dilation_h]
                    if source_row >= 0:
                        if used == 0:
                            r0, k0 = source_row, ky
                        elif used == 1:
                            r1, k1 = source_row, ky
                        else:
                            r2, k2 = source_row, ky
                        used += 1
                    ky += 1
                if used == 0:
                    continue
                for kx in range(kernel_w):
                    add_three_rows(destination, image[r0], image[r1 if used > 1 else r0],
                                   image[r2 if used > 2 else r0], taps[k0, kx],
                                   taps[k1, kx] if used > 1 else np.float32(0.0),
                                   taps[k2, kx] if used > 2 else np.float32(0.0),
                                   kx * dilation_w - pad_left, stride_w, col_map, kx * dilation_w)


@jit_inline
def add_three_rows(destination, row0, row1, row2, t0, t1, t2, shift, stride, col_map, offset):
    """``destination[o] += t0*row0[c] + t1*row1[c] + t2*row2[c]`` with ``c`` the input column
    under output o (``o*stride + shift`` inside the image, ``col_map[o*stride + offset]`` at
    the borders, where -1 adds nothing)."""
    out_w, width = destination.shape[0], row0.shape[0]
    first = min(max(-(shift // stride), 0), out_w)          # ceil(-shift / stride), clipped
    last = min(max((width - 1 - shift) // stride + 1, first), out_w)
    for o in range(first):
        column = col_map[o * stride + offset]
        if column >= 0:
            destination[o] += t0 * row0[column] + t1 * row1[column] + t2 * row2[column]
    for o in range(last, out_w):
        column = col_map[o * stride + offset]
        if column >= 0:
            destination[o] += t0 * row0[column] + t1 * row1[column] + t2 * row2[column]
    if last > first:
        # Slices indexed from 0: no negative-index wrap-around checks, so LLVM vectorises.
        start, stop = first * stride + shift, (last - 1) * stride + shift + 1
        inner = destination[first:last]
        a0, a1, a2 = row0[start:stop:stride], row1[start:stop:stride], row2[start:stop:stride]
        for o in range(inner.shape[0]):
            inner[o] += t0 * a0[o] + t1 * a1[o] + t2 * a2[o]
