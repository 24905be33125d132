"""The compiled loop that undoes PNG's row filters, self-contained on purpose (Numba's cache
checks only this file's source).

Sub, Average and Paeth predict each byte from the byte ``bpp`` to its left, which was just
restored: a serial walk along the row that NumPy cannot vectorise and a compiled loop runs
at about a nanosecond a byte. Format: the PNG specification, section 7.3 and 9
(https://www.w3.org/TR/png/#9Filters).
"""

from __future__ import annotations

import numpy as np

from ._numba_config import jit


@jit
def unfilter_rows(filtered, above, bpp, out):
    """Undo the filters of ``filtered`` (n, 1 + S) uint8 rows, each led by its filter type,
    into ``out`` (n, S) uint8; ``above`` (S,) is the restored row above the first (zeros
    above an image's first row). Returns the index of the first row with an unknown filter
    type (its restoring stops there), or -1 when all are restored."""
    rows, size = out.shape
    for r in range(rows):
        kind = filtered[r, 0]
        line = filtered[r, 1:]
        restored = out[r]
        if kind == 0:
            restored[:] = line
        elif kind == 1:                                  # Sub: + the byte to the left
            for i in range(min(bpp, size)):
                restored[i] = line[i]
            for i in range(bpp, size):
                restored[i] = (line[i] + restored[i - bpp]) & 0xFF
        elif kind == 2:                                  # Up: + the byte above
            for i in range(size):
                restored[i] = (line[i] + above[i]) & 0xFF
        elif kind == 3:                                  # Average of left and above
            for i in range(min(bpp, size)):
                restored[i] = (line[i] + (above[i] >> 1)) & 0xFF
            for i in range(bpp, size):
                restored[i] = (line[i] + ((restored[i - bpp] + above[i]) >> 1)) & 0xFF
        elif kind == 4:                                  # Paeth: left, above or above-left
            for i in range(min(bpp, size)):
                restored[i] = (line[i] + above[i]) & 0xFF    # left and above-left are 0
            for i in range(bpp, size):
                left = np.int32(restored[i - bpp])          # signed: differences below
                up, corner = np.int32(above[i]), np.int32(above[i - bpp])
                to_left, to_up = abs(up - corner), abs(left - corner)
                to_corner = abs(left + up - 2 * corner)
                if to_left <= to_up and to_left <= to_corner:
                    guess = left
                elif to_up <= to_corner:
                    guess = up
                else:
                    guess = corner
                restored[i] = (line[i] + guess) & 0xFF
        else:
            return r
        above = restored
    return -1
