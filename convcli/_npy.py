"""NumPy ``.npy`` arrays as convcli inputs: the header checked before any data is read.

An array of real numbers with 1 to 4 dimensions is accepted (``ARRAY_SHAPES``); everything
else (object or complex values, structured records, 0-d or 5-d arrays, empty arrays, a
truncated file, a pickle or any other bytes) raises ValueError with one line that says what
is wrong and what is valid. Object arrays are refused from their header, so no pickled
data is ever unpickled. Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
"""

from __future__ import annotations

import tokenize

from typing import BinaryIO

import numpy as np

__all__ = ["NPY_SIGNATURE", "ARRAY_SHAPES", "npy_header", "read_npy"]

NPY_SIGNATURE = b"\x93NUMPY"
ARRAY_SHAPES = ("valid: an array of real numbers shaped (L,) or (C, L) (signals), (C, H, W) (an "
                "image of C maps) or (C, D, H, W) (a volume), saved with numpy.save")
REAL_KINDS = "biuf"       # bool, signed and unsigned integers, floats
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}
# Version 3.0 exists only for structured dtypes with non-ASCII field names: never real numbers.


def npy_header(file: BinaryIO, size: int) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of the ``.npy`` file open at its start, checked.

    ``size`` is the file's length in bytes, to catch a truncated file without reading its
    data. The file is left positioned at the first data byte.
    """
    try:
        version = np.lib.format.read_magic(file)
    except ValueError:
        raise ValueError("not a NumPy .npy file (no \\x93NUMPY signature at its start; pickles "
                         f"are never loaded); {ARRAY_SHAPES}") from None
    reader = HEADER_READERS.get(version)
    if reader is None:
        raise ValueError(f".npy format version {version[0]}.{version[1]} holds structured "
                         f"records, not numbers; {ARRAY_SHAPES}")
    try:
        shape, fortran, dtype = reader(file)
    except (ValueError, SyntaxError, EOFError, tokenize.TokenError) as error:
        raise ValueError(f"damaged .npy header ({error}); {ARRAY_SHAPES}") from None
    if dtype.kind not in REAL_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        kind = {"c": "complex values", "O": "Python objects"}.get(dtype.kind, "non-numeric values")
        raise ValueError(f"holds {kind} (dtype {dtype}); {ARRAY_SHAPES}")
    if not 1 <= len(shape) <= 4:
        raise ValueError(f"array of shape {shape} has {len(shape)} dimensions; {ARRAY_SHAPES}")
    if 0 in shape:
        raise ValueError(f"array of shape {shape} is empty; {ARRAY_SHAPES}")
    expected = int(np.prod(shape)) * dtype.itemsize
    if size - file.tell() < expected:
        raise ValueError(f"truncated: the header promises {shape} {dtype} ({expected} bytes of "
                         f"data) but only {max(size - file.tell(), 0)} follow it; the file is "
                         "incomplete: save it again with numpy.save")
    return shape, fortran, dtype


def read_npy(file: BinaryIO, size: int) -> np.ndarray:
    """The raw array of the ``.npy`` file open at its start (checked by ``npy_header``)."""
    shape, fortran, dtype = npy_header(file, size)
    values = np.empty(int(np.prod(shape)), dtype)          # writable, and the only copy
    got = file.readinto(values.view(np.uint8))
    if got < values.nbytes:                                 # the file shrank while we read it
        raise ValueError(f"truncated: the data ends after {got} of {values.nbytes} bytes")
    return values.reshape(shape, order="F" if fortran else "C")
