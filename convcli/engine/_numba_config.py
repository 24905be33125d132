"""The one place that imports Numba and fixes how convcli's loops are compiled and cached.

Every compiled function uses ``jit`` from here, so the options are set once: serial and
GIL-free (``_runtime.run_tasks`` runs it on several threads), and of fast-math only
``contract`` (fused multiply-add; no reassociation, so sums keep their order and NaNs
propagate).

The machine code is cached in ``_cache.cache_folder()`` (one folder per machine, shared by
every environment with the same engine), keyed by the source file's contents rather than
its path and modification time as Numba's own locators are. Reading the cache never
breaks a run: a corrupt or unreadable entry is compiled again, an unwritable folder is
skipped, and with no folder at all the loops are compiled without a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings

import numba
from numba.core import caching, event

from . import _cache, _compile_log

JIT_OPTIONS = {"nopython": True, "nogil": True, "fastmath": {"contract"}}
HELPER_OPTIONS = {**JIT_OPTIONS, "inline": "always"}


class _MachineCacheLocator(caching._CacheLocator):
    """Caches convcli's loops in ``_cache.cache_folder()``, stamped by file contents."""

    def __init__(self, py_file: str, folder):
        self._py_file, self._folder = py_file, folder
        with open(py_file, "rb") as source:
            self._stamp = hashlib.sha256(source.read()).hexdigest()

    @classmethod
    def from_function(cls, py_func, py_file):
        folder = _cache.cache_folder()
        return None if folder is None else cls(py_file, folder)

    def get_cache_path(self):
        return str(self._folder)

    def get_source_stamp(self):
        return self._stamp

    def get_disambiguator(self):
        return ""


class _MachineCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_MachineCacheLocator]


class _SafeCache(caching.FunctionCache):
    """Numba's function cache in the machine's folder; a cache that cannot be read or
    written means compiling (once more), never a failed call."""

    _impl_class = _MachineCacheImpl

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except Exception as error:  # a corrupt, truncated or foreign file: compile instead
            warnings.warn(f"ignoring an unreadable entry of the compiled-code cache in "
                          f"{self.cache_path} ({type(error).__name__}); compiling again")
            with contextlib.suppress(OSError):      # the new machine code gets a fresh index
                os.remove(self._cache_file._index_path)
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except Exception:  # a full disk or a folder gone read-only: the code still runs
            pass


def jit(function):
    """Compile ``function`` with convcli's options and cache (a serial, GIL-free entry point)."""
    dispatcher = numba.jit(**JIT_OPTIONS)(function)
    try:
        dispatcher._cache = _SafeCache(function)      # Numba's enable_caching, our locator
    except RuntimeError:                               # no writable folder: compile per run
        pass
    return dispatcher


def jit_inline(function):
    """A helper compiled into its callers."""
    return numba.jit(**HELPER_OPTIONS)(function)


class _CompileListener(event.Listener):
    """Tells ``_compile_log`` when Numba compiles (a cache miss), and for how long."""

    def on_start(self, event_):
        dispatcher = (event_.data or {}).get("dispatcher")
        _compile_log.started(getattr(getattr(dispatcher, "py_func", None), "__name__", ""))

    def on_end(self, event_):
        _compile_log.ended()


event.register("numba:compile", _CompileListener())
