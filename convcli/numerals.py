"""Numbers read from text (options, kernel specs, layer specs): ASCII digits only.

``str.isdigit`` accepts ``³`` and ``٣``, and ``int``/``float`` accept ``٣``, ``1_000`` and
surrounding spaces; a command line means none of those, so every number convcli reads from
text goes through these patterns.
"""

from __future__ import annotations

import re

__all__ = ["WHOLE", "REAL", "whole_number", "real_number"]

WHOLE = re.compile(r"[0-9]+")
REAL = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")   # what strtod reads


def whole_number(text) -> int | None:
    """``"12"`` -> 12; anything but ASCII digits (``"³"``, ``"٣"``, ``"-1"``, ``"1_0"``) -> None."""
    text = str(text).strip()
    return int(text) if WHOLE.fullmatch(text) else None


def real_number(text) -> float | None:
    """``"2.5"``, ``"-1e3"`` -> float; ``"٣"``, ``"1_0"``, ``"nan"``, ``"inf"`` -> None."""
    text = str(text).strip()
    return float(text) if REAL.fullmatch(text) else None
