"""The deflate codec of convcli's PNG and TIFF files: ISA-L's (python-isal) where it is
installed (a dependency), else zlib; the same zlib streams either way.

Level 1, OpenCV's default for PNG: Pillow's level 6 took 75 of ~90 ms per 512x512 RGB image
in batch runs; level 1 with PNG's Up filter ~8 ms for ~15% larger files. ISA-L's level 1
against zlib's and zlib-ng's level 1 with run-length matching: the chelsea sample's filtered
rows in 1.2 ms (zlib 3.7, zlib-ng 2.2) for the same size; a blurred 10000^2 RGB image's in
0.49 s (zlib-ng 1.05) for 44 MB instead of 37; float32 TIFF tiles at 545 MB/s (zlib 37,
libdeflate 130) for the same size. Inflating 181 MB of PNG image data: 0.86 s (zlib-ng
0.97, zlib 1.41).
"""

from __future__ import annotations

import zlib

try:
    from isal import isal_zlib as _codec
    _LEVEL: tuple = (1,)                                # ISA-L's level 1 (of 0-3)
except ImportError:                                    # pragma: no cover - a dependency
    _codec = zlib
    _LEVEL = (1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)

__all__ = ["compressor", "decompressor", "deflate", "error"]

error = _codec.error


def compressor():
    """A new zlib-stream compressor (``compress`` then ``flush``), level 1."""
    return _codec.compressobj(*_LEVEL)


def decompressor():
    """A new zlib-stream decompressor (``decompress(data, max_length)``, ``unconsumed_tail``)."""
    return _codec.decompressobj()


def deflate(data) -> bytes:
    """``data`` (any buffer) as one zlib stream, level 1."""
    packer = compressor()
    return packer.compress(data) + packer.flush()
