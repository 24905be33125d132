"""Row helpers of the separable path, inlined into it.

The column pass leaves one row of sums in the middle of a padded row buffer;
``fill_borders`` completes the buffer through ``col_map`` and ``accumulate_row`` runs the
row taps over it, three at a time, so each pass over the output row does three
multiply-adds per load and store of it; the loops run over slices indexed from 0, which
LLVM vectorises.
"""

from __future__ import annotations

from ._numba_config import jit_inline


@jit_inline
def fill_borders(buffer, col_map, pad_left, width):
    """Fill the padding of ``buffer`` (a padded row whose middle ``width`` pixels are set)
    through ``col_map``: each border position copies the pixel it maps to, or 0 for -1."""
    for j in range(pad_left):
        column = col_map[j]
        buffer[j] = buffer[pad_left + column] if column >= 0 else 0.0
    for j in range(pad_left + width, buffer.shape[0]):
        column = col_map[j]
        buffer[j] = buffer[pad_left + column] if column >= 0 else 0.0


@jit_inline
def accumulate_row(destination, padded, taps, stride, dilation):
    """``destination[o] += sum_k taps[k] * padded[o*stride + k*dilation]`` for every o."""
    count, kernel = destination.shape[0], taps.shape[0]
    span = (count - 1) * stride + 1
    k = 0
    while k + 3 <= kernel:
        t0, t1, t2 = taps[k], taps[k + 1], taps[k + 2]
        a0 = padded[k * dilation:k * dilation + span:stride]
        a1 = padded[(k + 1) * dilation:(k + 1) * dilation + span:stride]
        a2 = padded[(k + 2) * dilation:(k + 2) * dilation + span:stride]
        for o in range(count):
            destination[o] += t0 * a0[o] + t1 * a1[o] + t2 * a2[o]
        k += 3
    while k < kernel:
        t0 = taps[k]
        a0 = padded[k * dilation:k * dilation + span:stride]
        for o in range(count):
            destination[o] += t0 * a0[o]
        k += 1
