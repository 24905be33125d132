"""The compiled loops between pixels and floats, self-contained on purpose (Numba's cache
checks only this file's source).

``unfilter_rows`` undoes PNG's row filters: Sub, Average and Paeth predict each byte from
the byte ``bpp`` to its left, which was just restored, a serial walk along the row that
NumPy cannot vectorise and a compiled loop runs at about a nanosecond a byte. Format: the
PNG specification, section 7.3 and 9 (https://www.w3.org/TR/png/#9Filters).

``quantize_plane`` maps float responses to integer levels in one pass: what
``images._unit_and_clipped`` and ``images._quantize`` do in seven NumPy passes and as many
temporaries, with the same float32 operations in the same order (the same levels, bit for
bit; tests/test_images.py compares them).
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit


@jit
def unfilter_rows(filtered, above, bpp, out):
    """Undo the filters of ``filtered`` (n, 1 + S) uint8 rows, each led by its filter type,
    into ``out`` (n, S) uint8; ``above`` (S,) is the restored row above the first (zeros
    above an image's first row). Returns the index of the first row with an unknown filter
    type (its restoring stops there), or -1 when all are restored.

    One loop serves None, Sub, Average and Paeth (a loop per type compiled 4x slower: 2.9
    s against 0.7), Up has its own, which vectorises (the most common type: 10x faster).
    """
    rows, size = out.shape
    for r in range(rows):
        kind = filtered[r, 0]
        line = filtered[r, 1:]
        restored = out[r]
        if kind > 4:
            return r
        if kind == 2:                                    # Up: + the byte above
            for i in range(size):
                restored[i] = line[i] + above[i]         # (stored modulo 256)
        else:
            for i in range(size):
                up = np.int32(above[i])
                if i >= bpp:
                    left, corner = np.int32(restored[i - bpp]), np.int32(above[i - bpp])
                else:
                    left, corner = np.int32(0), np.int32(0)
                if kind == 0:
                    guess = np.int32(0)
                elif kind == 1:                          # Sub: the byte to the left
                    guess = left
                elif kind == 3:                          # Average of left and above
                    guess = (left + up) >> 1
                else:                                    # Paeth: the nearest of three
                    to_left, to_up = abs(up - corner), abs(left - corner)
                    to_corner = abs(left + up - 2 * corner)
                    if to_left <= to_up and to_left <= to_corner:
                        guess = left
                    elif to_up <= to_corner:
                        guess = up
                    else:
                        guess = corner
                restored[i] = (np.int32(line[i]) + guess) & 0xFF
        above = restored
    return -1


# --normalize modes as quantize_plane takes them
AS_IS, MAGNITUDE, OFFSET = 0, 1, 2


@jit
def quantize_plane(plane, mode, low, factor, stretch, top, out):
    """``out[...] = rint(clip(f(plane), 0, 1) * top)`` for a (H, W) float32 ``plane`` into
    ``out`` (H, W) of uint8 or uint16 (a channel of the interleaved pixels), where f maps
    NaN to 0, +inf to 1 and -inf to 0, then takes the magnitude (``mode`` MAGNITUDE) or
    adds 0.5 (OFFSET), then with ``stretch`` subtracts ``low`` and multiplies by ``factor``
    (float32). Returns how many values fell outside [0, 1] before the clip."""
    zero, one, half = np.float32(0.0), np.float32(1.0), np.float32(0.5)
    clipped = 0
    rows, columns = plane.shape
    for r in range(rows):
        source, target = plane[r], out[r]
        for c in range(columns):
            value = source[c]
            if value != value:
                value = zero
            elif value == np.inf:
                value = one
            elif value == -np.inf:
                value = zero
            if mode == MAGNITUDE:
                value = abs(value)
            elif mode == OFFSET:
                value = value + half
            if stretch:
                value = (value - low) * factor
            if value < zero:
                clipped += 1
                value = zero
            elif value > one:
                clipped += 1
                value = one
            target[c] = np.rint(value * top)
    return clipped
