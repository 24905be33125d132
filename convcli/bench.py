"""``convcli bench``: timings of convcli against other tools, measured in the same run.

Each case is a function that returns ``Measurement`` rows: one for convcli and one per
reference it could run (missing references are skipped, never faked). Times are medians
of ``repeat`` runs after a warm-up; ratios are convcli / reference, so below 1 is faster.
Reference libraries (OpenCV, scipy, torch) are optional: ``pip install 'convcli[bench]'``.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

__all__ = ["Measurement", "CASES", "run_cases", "median_ms", "machine_summary"]


@dataclass
class Measurement:
    """One timed thing within a case; ``ratio`` is convcli's time over this one's."""

    case: str
    tool: str
    ms: float
    unit: str = "ms"
    ratio: float | None = None
    note: str = ""


def median_ms(function: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``function()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def _convcli_command() -> list[str]:
    return [sys.executable, "-m", "convcli"]


def _run_quietly(arguments: list[str]) -> None:
    result = subprocess.run(arguments, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed: {result.stderr.strip()}")


def batch_case(repeat: int) -> list[Measurement]:
    """200 RGB 512x512 PNGs, 3x3 box, PNG out: one batch call vs one process per image."""
    from PIL import Image

    images, loop_images = 200, 20
    with tempfile.TemporaryDirectory(prefix="convcli-bench-") as folder:
        inputs = Path(folder) / "in"
        inputs.mkdir()
        base = _test_photo((512, 512))
        for index in range(images):
            Image.fromarray(base.take(range(index, index + 512), axis=1, mode="wrap")).save(
                inputs / f"{index:03d}.png", compress_level=1)
        outputs = Path(folder) / "out"

        def batch() -> None:
            shutil.rmtree(outputs, ignore_errors=True)
            _run_quietly(_convcli_command() + ["apply", str(inputs), "-k", "box", "-o", str(outputs),
                                               "--report", "none", "-q"])

        def one_process_per_image() -> None:
            shutil.rmtree(outputs, ignore_errors=True)
            for path in sorted(inputs.iterdir())[:loop_images]:
                _run_quietly(_convcli_command() + ["apply", str(path), "-k", "box", "-o",
                                                   str(outputs), "--report", "none", "-q"])

        batch_ms = median_ms(batch, repeat) / images
        loop_ms = median_ms(one_process_per_image, max(1, repeat // 2)) / loop_images
    name = "batch 200 x RGB 512x512 PNG, 3x3"
    return [Measurement(name, "convcli batch (one call)", batch_ms, "ms/image", None,
                        "whole process, default --jobs"),
            Measurement(name, "convcli once per image (shell loop)", loop_ms, "ms/image",
                        batch_ms / loop_ms, f"first {loop_images} images")]


def _test_photo(size: tuple[int, int]):
    """A real photo (the chelsea sample) resized, or smooth synthetic content without it."""
    import numpy as np
    from PIL import Image

    sample = Path(__file__).resolve().parent.parent / "samples" / "chelsea.png"
    if sample.exists():
        return np.asarray(Image.open(sample).convert("RGB").resize(size))
    y, x = np.mgrid[0:size[1], 0:size[0]]
    return (np.stack([np.sin(x / 17.0), np.cos(y / 23.0), np.sin((x + y) / 31.0)], -1) * 127
            + 128).astype(np.uint8)


CASES: dict[str, Callable[[int], list[Measurement]]] = {
    "batch": batch_case,
}


def run_cases(names: list[str], repeat: int) -> list[Measurement]:
    """Run the named cases (all when empty) in order."""
    unknown = [name for name in names if name not in CASES]
    if unknown:
        from .errors import UsageError

        raise UsageError(f"unknown bench case {unknown[0]!r}; cases are {', '.join(CASES)}")
    results = []
    for name in names or list(CASES):
        results.extend(CASES[name](repeat))
    return results


def machine_summary() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"


def as_json(results: list[Measurement]) -> dict:
    return {"machine": machine_summary(), "results": [asdict(r) for r in results]}
