"""What compiling costs this process: the seconds Numba spent compiling, and who to tell
when it first starts. Free of Numba, so the pipeline can subscribe without importing it;
``_numba_config`` feeds it from Numba's ``numba:compile`` events (cache misses only).
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["on_first_compile", "compile_seconds", "seconds_by_function"]

_listeners: list[Callable[[], None]] = []
_state = {"seconds": 0.0, "announced": False, "depth": 0, "started": 0.0, "function": ""}
_by_function: dict[str, float] = {}
# Loops that compile in under half a second each (PNG's unfilter and pixel levels): the
# note about compiling "up to 9 s" once is for the engine's convolution and pooling loops.
UNANNOUNCED = ("unfilter_rows", "quantize_plane")


def on_first_compile(callback: Callable[[], None]) -> None:
    """Call ``callback()`` when this process first compiles (not when it loads the cache);
    the same callback is registered once however often this is called."""
    if callback not in _listeners:
        _listeners.append(callback)


def compile_seconds() -> float:
    """Seconds this process has spent compiling so far."""
    return _state["seconds"]


def seconds_by_function() -> dict[str, float]:
    """Seconds this process has spent compiling each entry point (nested helpers included)."""
    return dict(_by_function)


def started(function: str = "") -> None:
    """A compile of ``function`` starts (nested ones, of inlined helpers, count once)."""
    if _state["depth"] == 0:
        _state["started"] = time.perf_counter()
        _state["function"] = function
        if not _state["announced"] and function not in UNANNOUNCED:
            _state["announced"] = True
            for callback in _listeners:
                callback()
    _state["depth"] += 1


def ended() -> None:
    _state["depth"] -= 1
    if _state["depth"] == 0:
        seconds = time.perf_counter() - _state["started"]
        _state["seconds"] += seconds
        name = _state["function"]
        _by_function[name] = _by_function.get(name, 0.0) + seconds
