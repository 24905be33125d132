"""The compiled pooling pass: max or average along one axis, self-contained on purpose.

Numba's on-disk cache checks only the source file of the function it compiled, so this
file inlines nothing from another one. Max and average pooling are separable: the max
over a box is the max over one axis of the maxima over the others, and PyTorch's average
divisor is the product of per-axis extents, so one pass per axis serves 1-D, 2-D and 3-D
pooling. The array is viewed as (outer, length, inner) and pooled along ``length``: with
``inner > 1`` each window adds whole contiguous rows (vectorised); the last axis
(``inner == 1``) walks each row with a scalar window instead.
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit, jit_inline, prange


@jit
def pool_axis(x, out, kernel, stride, padding, dilation, take_max, scale):
    """Pool ``x`` (A, L, B) along L into ``out`` (A, L_out, B): the max of each window
    (padding never wins; NaN wins, as in PyTorch), or its sum times ``scale[o]``.

    Window ``o`` reads ``x[:, o*stride - padding + k*dilation]`` for the taps k < ``kernel``
    that fall inside the input.
    """
    outer, length, inner = x.shape
    out_length = out.shape[1]
    if inner == 1:
        for a in prange(outer):
            source, destination = x[a, :, 0], out[a, :, 0]
            for o in range(out_length):
                start = o * stride - padding
                first, last = taps_inside(start, kernel, dilation, length)
                if take_max:
                    best = -np.inf
                    for k in range(first, last):
                        value = source[start + k * dilation]
                        if value > best or value != value:
                            best = value
                    destination[o] = best
                else:
                    total = np.float32(0.0)
                    for k in range(first, last):
                        total += source[start + k * dilation]
                    destination[o] = total * scale[o]
        return
    for task in prange(outer * out_length):
        a = task // out_length
        o = task - a * out_length
        start = o * stride - padding
        first, last = taps_inside(start, kernel, dilation, length)
        destination = out[a, o]
        if take_max:
            destination[:] = -np.inf
            for k in range(first, last):
                source = x[a, start + k * dilation]
                for b in range(inner):
                    value = source[b]
                    if value > destination[b] or value != value:
                        destination[b] = value
        else:
            destination[:] = 0.0
            for k in range(first, last):
                source = x[a, start + k * dilation]
                for b in range(inner):
                    destination[b] += source[b]
            factor = scale[o]
            for b in range(inner):
                destination[b] *= factor


@jit_inline
def taps_inside(start, kernel, dilation, length):
    """The taps [first, last) of a window starting at ``start`` that fall inside the input."""
    first = 0 if start >= 0 else (dilation - 1 - start) // dilation
    last = min(kernel, (length - 1 - start) // dilation + 1)
    return first, max(last, first)
