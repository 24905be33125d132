"""``convcli warmup``: compile (or load from the cache) every compiled loop ahead of time.

Each compiled entry point is called once on a small array with the argument types the
engine gives it (float32 C-contiguous arrays, int64 index maps, Python scalars), so the
machine code a later run needs is in the cache; then the cache folder is marked ready
(``_cache.mark_ready``), which tells later runs to load the loops instead of taking NumPy.
Returns the seconds each one spent compiling: 0 when it came from the cache.
"""

from __future__ import annotations

import numpy as np

from . import _cache, _compile_log, _runtime
from ._pixel_loops import quantize_plane, unfilter_rows
from .api import convolve
from .pooling import avg_pool2d, max_pool2d

__all__ = ["warm_up", "cache_folder", "COMPILED_FUNCTIONS"]

COMPILED_FUNCTIONS = ("direct_conv", "strided_conv", "separable_conv", "pool_axis",
                      "unfilter_rows", "quantize_plane")


def warm_up(*, locked: bool = False) -> dict[str, float]:
    """Make every compiled loop ready; {function: seconds spent compiling it now}.
    ``locked``: this process already holds the folder's warmup lock (a background compile
    inherits it); otherwise it waits for any other compile of the folder first."""
    lock = None if locked else _cache.hold_warmup_lock()
    try:
        _runtime.prefer_compiled()                      # every call below is compiled
        before = _compile_log.seconds_by_function()
        image = np.random.default_rng(0).random((1, 2, 24, 20), dtype=np.float32)
        square = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3) - 4      # rank 2: direct
        rank_one = np.outer([1.0, 2.0, 1.0], [-1.0, 0.0, 1.0]).astype(np.float32)[None, None]
        convolve(image[:, :1], square, np.ones(1, np.float32), engine="direct")
        convolve(image[:, :1], square, stride=(1, 2), engine="direct")     # strided_conv
        depthwise = np.broadcast_to(rank_one, (2, 1, 3, 3))
        convolve(image, np.ascontiguousarray(depthwise), groups=2, engine="separable")
        max_pool2d(image, 2)
        avg_pool2d(image, 3, 2, 1)
        filtered = np.frombuffer(bytearray(range(4, 40)), np.uint8).reshape(3, 12)  # types 4
        unfilter_rows(filtered, np.zeros(11, np.uint8), 1, np.empty((3, 11), np.uint8))
        for levels in (np.uint8, np.uint16):            # a channel of interleaved pixels
            quantize_plane(image[0, 0], 1, np.float32(0), np.float32(1), True, np.float32(255),
                           np.empty((24, 20, 2), levels)[:, :, 0])
        after = _compile_log.seconds_by_function()
        seconds = {name: round(after.get(name, 0.0) - before.get(name, 0.0), 3)
                   for name in COMPILED_FUNCTIONS}
        _cache.mark_ready(seconds)
        return seconds
    finally:
        if lock is not None:
            lock.close()


def cache_folder() -> str:
    """Where the compiled loops are cached (see ``_cache``)."""
    folder = _cache.cache_folder()
    return str(folder) if folder is not None else "nowhere (no writable folder: compiled per run)"
