"""Direct convolution: every output pixel is a sum over C_in/groups x kH x kW taps.

One output row per parallel iteration, accumulated in place: for each tap the innermost
loop runs over the row's contiguous pixels (vectorised when the stride is 1). Borders
are index maps (``row_map``, ``col_map``: padded position -> input position, -1 for a
zero), so no padded copy of the image is made; dilation is plain index arithmetic.
"""

from __future__ import annotations

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
        for ky in range(kernel_h):
            source_row = row_map[oy * stride_h + ky * dilation_h]
            if source_row < 0:
                continue
            for ci in range(group_in):
                accumulate_taps(destination, x[n, first_in + ci, source_row], weight[co, ci, ky],
                                col_map, pad_left, stride_w, dilation_w)


@jit_inline
def accumulate_taps(destination, source, taps, col_map, pad_left, stride, dilation):
    """``destination[o] += sum_k taps[k] * padded(source)[o*stride + k*dilation]`` for all o.

    Outputs whose window lies inside ``source`` read it directly; the few at the borders
    go through ``col_map``. Also the row pass of the separable path.
    """
    out_w, width = destination.shape[0], source.shape[0]
    for k in range(taps.shape[0]):
        tap = taps[k]
        shift = k * dilation - pad_left                      # input column of output 0
        first = min(max(-(shift // stride), 0), out_w)       # ceil(-shift / stride), clipped
        last = min(max((width - 1 - shift) // stride + 1, first), out_w)
        for o in range(first):
            column = col_map[o * stride + k * dilation]
            if column >= 0:
                destination[o] += tap * source[column]
        for o in range(last, out_w):
            column = col_map[o * stride + k * dilation]
            if column >= 0:
                destination[o] += tap * source[column]
        if last > first:
            # Slices first: indices counting up from 0 let LLVM vectorise (no negative-index
            # wrap-around checks); this loop is where the time goes.
            inner = destination[first:last]
            window = source[first * stride + shift:(last - 1) * stride + shift + 1:stride]
            for o in range(inner.shape[0]):
                inner[o] += tap * window[o]
