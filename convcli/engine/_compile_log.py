"""What compiling costs this process: the seconds Numba spent compiling, and who to tell
when it first starts. Free of Numba, so the pipeline can subscribe without importing it;
``_numba_config`` feeds it from Numba's ``numba:compile`` events (cache misses only).
"""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["on_first_compile", "compile_seconds"]

_listeners: list[Callable[[], None]] = []
_state = {"seconds": 0.0, "announced": False, "depth": 0, "started": 0.0}


def on_first_compile(callback: Callable[[], None]) -> None:
    """Call ``callback()`` when this process first compiles (not when it loads the cache);
    the same callback is registered once however often this is called."""
    if callback not in _listeners:
        _listeners.append(callback)


def compile_seconds() -> float:
    """Seconds this process has spent compiling so far."""
    return _state["seconds"]


def started() -> None:
    """A compile starts (nested ones, of inlined helpers, count once)."""
    if _state["depth"] == 0:
        _state["started"] = time.perf_counter()
        if not _state["announced"]:
            _state["announced"] = True
            for callback in _listeners:
                callback()
    _state["depth"] += 1


def ended() -> None:
    _state["depth"] -= 1
    if _state["depth"] == 0:
        _state["seconds"] += time.perf_counter() - _state["started"]
