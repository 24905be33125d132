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

from ._numba_config import jit, jit_inline


@jit
def pool_axis(first_task, last_task, x, out, kernel, stride, padding, dilation, take_max, scale):
    """Pool ``x`` (A, L, B) along L into ``out`` (A, L_out, B), for the tasks
    [first_task, last_task): rows of A when B == 1, else (row of A, output) pairs. The max of each window
    (padding never wins; NaN wins, as in PyTorch), or its sum times ``scale[o]``. The max
    is a select, not a branch (a conditional store ran 2x slower: it blocks vectorising).

    Window ``o`` reads ``x[:, o*stride - padding + k*dilation]`` for the taps k < ``kernel``
    that fall inside the input.
    """
    outer, length, inner = x.shape
    out_length = out.shape[1]
    # The taps of each window that fall inside the input: the same for every row.
    firsts, lasts = np.empty(out_length, np.int64), np.empty(out_length, np.int64)
    for o in range(out_length):
        firsts[o], lasts[o] = taps_inside(o * stride - padding, kernel, dilation, length)
    if inner == 1:
        for a in range(first_task, last_task):
            source, destination = x[a, :, 0], out[a, :, 0]
            for o in range(out_length):
                start, first, last = o * stride - padding, firsts[o], lasts[o]
                if take_max:
                    best = np.float32(-np.inf)
                    for k in range(first, last):
                        value = source[start + k * dilation]
                        best = value if value > best or value != value else best
                    destination[o] = best
                else:
                    total = np.float32(0.0)
                    for k in range(first, last):
                        total += source[start + k * dilation]
                    destination[o] = total * scale[o]
        return
    for task in range(first_task, last_task):
        a = task // out_length
        o = task - a * out_length
        start, first, last = o * stride - padding, firsts[o], lasts[o]
        destination = out[a, o]
        if take_max:
            destination[:] = -np.inf
            for k in range(first, last):
                source = x[a, start + k * dilation]
                for b in range(inner):
                    value, best = source[b], destination[b]
                    destination[b] = value if value > best or value != value else best
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
