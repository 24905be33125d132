"""Shared fixtures: a seeded random generator and a fixed terminal width for Rich."""

from __future__ import annotations

import os
import zlib

from pathlib import Path

import numpy as np
import pytest

from convcli.engine import _runtime

# In-process tests run as a warm process: "auto" takes the compiled paths, never NumPy for a
# small call (subprocess tests see the real choice).
_runtime.prefer_compiled()

# Rich wraps tables to the terminal; tests read the text, so fix the width.
os.environ.setdefault("COLUMNS", "120")
os.environ.setdefault("TERM", "dumb")


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: random, but the same on every run."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for running ``python -m convcli`` in a subprocess: the same convcli package
    the tests import (even from another working directory) and this process's cache of
    compiled loops (one per machine; pass NUMBA_CACHE_DIR for another, e.g. an empty one)."""
    import convcli

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(convcli.__file__)))
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "200", **extra}


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Run ``convcli ARGS`` in-process; return (exit code, stdout, stderr)."""
    from convcli.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def photo(tmp_path, rng):
    """A small random RGB PNG, 40 wide and 30 high, alone in ``tmp_path / "in"``."""
    from PIL import Image

    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    return path


def images_past_the_numpy_budget(folder: Path, count: int, taps_per_pixel: int) -> list[Path]:
    """``count`` gray PNGs in ``folder``, each sized so NumPy's estimated time with a kernel of
    ``taps_per_pixel`` taps is 0.6 of Numba's start-up: in one process the first image takes
    NumPy and the second the compiled loops (or NumPy while they compile in the background)."""
    import math

    from PIL import Image

    from convcli.engine import _runtime

    side = int(math.sqrt(0.6 * _runtime.NUMBA_START_NS
                         / (_runtime.NUMPY_NS_PER_TAP * taps_per_pixel)))
    rng = np.random.default_rng(side)
    paths = []
    for index in range(count):
        paths.append(folder / f"{index}.png")
        Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8)).save(paths[-1])
    return paths
