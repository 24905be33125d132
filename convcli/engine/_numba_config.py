"""The one place that imports Numba and fixes how convcli's kernels are compiled.

Every compiled function uses ``jit`` from here, so the options (parallel, on-disk
cache, fastmath off for reproducible rounding) are set once. Numba caches next to
the source in ``__pycache__``; when the package folder is read-only (a system-wide
install) it falls back to a per-user cache folder, and ``NUMBA_CACHE_DIR`` overrides
both. ``cache_locations()`` reports where the cache will go, for tests and --debug.
"""

from __future__ import annotations

import numba

JIT_OPTIONS = {"nopython": True, "parallel": True, "cache": True, "fastmath": False, "nogil": True}


def jit(function):
    """Compile ``function`` with convcli's standard options."""
    return numba.jit(**JIT_OPTIONS)(function)


prange = numba.prange


def set_threads(count: int) -> None:
    """Use ``count`` Numba threads in this process (at least 1, at most Numba's pool size)."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
