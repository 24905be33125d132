"""The one place that imports Numba and fixes how convcli's kernels are compiled.

Every compiled function uses ``jit`` from here, so the options are set once: parallel,
on-disk cache, no GIL, and of fast-math only ``contract`` (fused multiply-add; no
reassociation, so sums keep their order and NaNs propagate). Numba caches next to the
source in ``__pycache__``; when the package folder is read-only (a system-wide install)
it falls back to a per-user cache folder, and ``NUMBA_CACHE_DIR`` overrides both.
"""

from __future__ import annotations

import numba
from numba.core import event

from . import _compile_log

JIT_OPTIONS = {"nopython": True, "parallel": True, "cache": True, "nogil": True,
               "fastmath": {"contract"}}
HELPER_OPTIONS = {"nopython": True, "cache": True, "nogil": True, "fastmath": {"contract"},
                  "inline": "always"}


def jit(function):
    """Compile ``function`` with convcli's standard options (a parallel entry point)."""
    return numba.jit(**JIT_OPTIONS)(function)


def jit_inline(function):
    """A helper compiled into its callers (no parallel loop of its own)."""
    return numba.jit(**HELPER_OPTIONS)(function)


prange = numba.prange


class _CompileListener(event.Listener):
    """Tells ``_compile_log`` when Numba compiles (a cache miss), and for how long."""

    def on_start(self, event_):
        dispatcher = (event_.data or {}).get("dispatcher")
        _compile_log.started(getattr(getattr(dispatcher, "py_func", None), "__name__", ""))

    def on_end(self, event_):
        _compile_log.ended()


event.register("numba:compile", _CompileListener())


def set_threads(count: int) -> None:
    """Use ``count`` Numba threads in this process (at least 1, at most Numba's pool size)."""
    numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))


def thread_count() -> int:
    """Threads this process gives the engine (``set_threads``, else all cores): the FFT path
    sizes its thread pool with it too, so batch workers never oversubscribe."""
    return numba.get_num_threads()
