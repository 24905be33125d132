"""How this process runs the compiled loops: on how many threads, and whether a call waits
for them or takes NumPy. Free of Numba.

Threads: each compiled loop is a serial, GIL-free function over a range of tasks (output
rows); ``run_tasks`` splits the range into chunks that this thread and a pool of others
take in turn. (Numba's ``parallel=True`` ran no faster here and tripled compile time: 10.9 s
against 4.1 s for every loop, measured with an empty cache on 2 cores.)

NumPy or compiled: ``use_numpy`` decides for one call, from NumPy's estimated time. NumPy
takes calls while their total stays below what starting Numba costs (as renting skis until
the rent would have bought them: never more than twice the better choice), so a run of a
few small photos never starts Numba. And when this process compiles in the background
(``compile_in_background``: the CLI) and the loops are not cached yet, NumPy takes every
call it finishes sooner than a compile would; the first call after the background compile
ends loads the compiled loops.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from concurrent.futures import ThreadPoolExecutor

from . import _cache

__all__ = ["set_threads", "thread_count", "run_tasks", "compile_in_background", "use_numpy",
           "prefer_compiled", "settings_restored"]

CHUNKS_PER_THREAD = 8  # chunks of rows per thread: uneven rows (borders) even out
# NumPy (``_numpy``, 2 threads) takes ~0.35 ns per tap and pixel: 0.37 / 0.31 on 512^2 /
# 4096^2 RGB with a 3x3 depthwise kernel, 0.33 / 0.22 with a 13 x 13 separable one (and 0.07
# with dense 3 -> 16 channels, one matrix product per tap chunk). Importing Numba and loading
# the cached loops costs ~0.3 s per process; compiling them all, 8.9 s on 2 cores (idle;
# 4.1 s before the blocked direct loops, which take 4.2 s of it, and strided_conv 1.9).
NUMPY_NS_PER_TAP = 0.35
NUMBA_START_NS = 3e8
COMPILE_NS = 9e9

_state = {"threads": 0, "background": False, "compiled_in_use": False, "numpy_ns_spent": 0.0,
          "on_background_start": None}
_pool: dict[int, ThreadPoolExecutor] = {}


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_threads(count: int) -> None:
    """Run the engine on ``count`` threads in this process (at least 1)."""
    _state["threads"] = max(1, int(count))


def thread_count() -> int:
    """Threads this process gives the engine: ``set_threads``, else every core it may use.
    The FFT path sizes its pool with it too, so batch workers never oversubscribe."""
    return _state["threads"] or available_cores()


def run_tasks(function, task_count: int, *args) -> None:
    """``function(first, last, *args)`` over the tasks [0, ``task_count``), in chunks shared
    by this thread and ``thread_count() - 1`` pool threads; re-raises the first error."""
    threads = min(thread_count(), task_count)
    if threads <= 1:
        function(0, task_count, *args)
        return
    chunks = min(task_count, threads * CHUNKS_PER_THREAD)
    bounds = [task_count * index // chunks for index in range(chunks + 1)]
    taken = itertools.count()           # next() on it is atomic under the GIL

    def take_chunks() -> None:
        for index in taken:
            if index >= chunks:
                return
            function(bounds[index], bounds[index + 1], *args)

    pool = _pool.get(threads - 1)
    if pool is None:
        pool = _pool.setdefault(threads - 1, ThreadPoolExecutor(threads - 1, "convcli-engine"))
    helpers = [pool.submit(take_chunks) for _ in range(threads - 1)]
    take_chunks()
    for helper in helpers:
        helper.result()


def compile_in_background(enabled: bool = True, on_start=None) -> None:
    """Let calls take NumPy while a background process compiles the loops (the CLI does;
    ``CONVCLI_BACKGROUND_COMPILE=0`` turns it off, so the first call compiles and waits).
    ``on_start()`` is called if this process starts that compile."""
    _state["background"] = enabled and os.environ.get("CONVCLI_BACKGROUND_COMPILE", "1") != "0"
    _state["on_background_start"] = on_start


@contextlib.contextmanager
def settings_restored():
    """Put this process's engine settings back afterwards (a CLI run inside another
    program, such as the tests); what the process has run stays a fact."""
    saved = {key: value for key, value in _state.items()
             if key not in ("compiled_in_use", "numpy_ns_spent")}
    try:
        yield
    finally:
        _state.update(saved)


def prefer_compiled() -> None:
    """Every call from now on uses the compiled loops (``convcli warmup`` compiles them all)."""
    _state["compiled_in_use"] = True


def expect_a_long_run() -> None:
    """The calls to come will pass ``NUMBA_START_NS`` (a streamed image, in strips each too
    small to say so): take the compiled loops from the first call when they are cached;
    while they are not, ``use_numpy`` decides as before (NumPy while they compile)."""
    if _cache.loops_ready():
        prefer_compiled()


def use_numpy(taps_times_pixels: float, ns_per_tap: float | None = None) -> bool:
    """Should NumPy do a call of ``taps_times_pixels`` multiply-adds that a compiled loop
    could do, at ``ns_per_tap`` (default ``NUMPY_NS_PER_TAP``)? (See the module's docstring.)
    Once it says no, the compiled loops are loaded, and every later call uses them."""
    if _state["compiled_in_use"]:
        return False
    numpy_ns = (NUMPY_NS_PER_TAP if ns_per_tap is None else ns_per_tap) * taps_times_pixels
    if (_state["numpy_ns_spent"] + numpy_ns < NUMBA_START_NS
            or (_state["background"] and not _cache.loops_ready() and numpy_ns < COMPILE_NS
                and _cache.start_background_warmup(_state["on_background_start"]))):
        _state["numpy_ns_spent"] += numpy_ns
        return True
    _state["compiled_in_use"] = True
    return False
