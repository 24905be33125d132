"""``convcli bench``: timings of convcli against other tools, measured in the same run.

Each case is a function that returns ``Measurement`` rows: one for convcli and one per
reference it could run (missing references are skipped, never faked). Times are medians
of ``repeat`` rounds after a warm-up, every tool timed in turn within a round; ratios are
convcli / reference, so below 1 is faster.
Reference libraries are optional (``REFERENCES`` says how to install each; OpenCV and scipy
come with ``pip install 'convcli[bench]'``); ``missing_references`` names those not installed.
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
from typing import TYPE_CHECKING, Callable

from .batch import available_cores

if TYPE_CHECKING:                 # NumPy is imported by each case, not with the module
    import numpy as np

__all__ = ["Measurement", "CASES", "DEFAULT_CASES", "run_cases", "median_ms", "machine_summary",
           "missing_references", "conv_flops", "fma_peak_gflops", "measured_peak"]

BENCH_EXTRA = "pip install 'convcli[bench]'"
# The reference libraries: module, package to install, whose rows it gives, how to install
# it. torch is not in the extra: the default wheel brings CUDA (GBs); the bench ran on 2.13.0.
REFERENCES = (("cv2", "opencv-python-headless", "OpenCV", BENCH_EXTRA),
              ("scipy.ndimage", "scipy", "scipy", BENCH_EXTRA),
              ("torch", "torch", "torch", "pip install torch==2.13.0, its CPU build"),
              ("pyvips", "pyvips", "libvips", BENCH_EXTRA))
# libvips runs in a child process (the scale cases time whole processes): by default this
# Python, else the interpreter this variable names (one with pyvips installed).
VIPS_PYTHON_VARIABLE = "CONVCLI_BENCH_VIPS_PYTHON"


@dataclass
class Measurement:
    """One timed thing within a case; ``ratio`` is convcli's time over this one's."""

    case: str
    tool: str
    ms: float
    unit: str = "ms"
    ratio: float | None = None
    note: str = ""
    # Engine cases' convcli rows only (None elsewhere): the FLOPs the case needs (``conv_flops``)
    # over the median, and that as a share of ``measured_peak`` (None if not measured).
    gflops: float | None = None
    peak_share: float | None = None


def median_ms(function: Callable[[], object], repeat: int, warmup: int = 2) -> float:
    """Median wall time of ``function()`` in milliseconds, after ``warmup`` untimed calls."""
    return interleaved_medians({"only": function}, repeat, warmup)["only"]


def interleaved_medians(functions: dict[str, Callable[[], object]], repeat: int,
                        warmup: int = 2) -> dict[str, float]:
    """Median wall time in ms of each function, timed in turn within each of ``repeat``
    rounds, so a slow phase of a shared machine falls on every tool alike. Each round starts
    one tool further on, so no tool always follows the same one: a call right after another
    library's long call ran up to 1.3x slower here (3x3 on 4096^2 after scipy.ndimage's
    200 ms call: convcli 15.5 against 13.4 ms, cv2 20.9 against 16.2), which in a fixed order
    fell on whichever tool came first."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    names = list(functions)
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            functions[name]()
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def _convcli_command() -> list[str]:
    return [sys.executable, "-m", "convcli"]


def _run_quietly(arguments: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing its output; a failure stops the bench with its stderr."""
    result = subprocess.run(arguments, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed: {result.stderr.strip()}")
    return result


def batch_case(repeat: int) -> list[Measurement]:
    """200 RGB 512x512 PNGs, 3x3 box, PNG out: one batch call vs one process per image."""
    images, loop_images = 200, 20
    with tempfile.TemporaryDirectory(prefix="convcli-bench-") as folder:
        inputs = _batch_inputs(Path(folder), images)
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


def _batch_inputs(folder: Path, images: int = 200, size: int = 512) -> Path:
    """``images`` RGB size x size PNGs in ``folder / "in"`` (the test photo, rolled one column
    further each); returns that folder."""
    from PIL import Image

    inputs = folder / "in"
    inputs.mkdir()
    base = _test_photo((size, size))
    for index in range(images):
        Image.fromarray(base.take(range(index, index + size), axis=1, mode="wrap")).save(
            inputs / f"{index:03d}.png", compress_level=1)
    return inputs


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


# --- engine cases: the same float32 arrays through convcli and each reference -------------

def _optional(module: str):
    try:
        return __import__(module)
    except ImportError:
        return None


def missing_references() -> list[str]:
    """One line per reference library that does not import: whose rows the table leaves out
    and how to install it."""
    lines = []
    for module, package, rows, install in REFERENCES:
        if module == "pyvips":
            if _vips_python() is None:
                where = os.environ.get(VIPS_PYTHON_VARIABLE)
                lines.append(f"pyvips does not import in {VIPS_PYTHON_VARIABLE}={where}: the "
                             f"{rows} rows are left out" if where else
                             f"{package} is not installed: the {rows} rows are left out "
                             f"({install}, or set {VIPS_PYTHON_VARIABLE} to a Python that has it)")
        elif _optional(module) is None:
            lines.append(f"{package} is not installed: the {rows} rows are left out ({install})")
    return lines


def _compare(case: str, repeat: int, convcli_call: Callable, references: dict[str, Callable],
             floor_bytes: int | None = None, flops: float | None = None,
             targets: dict[str, float] | None = None, note: str = "") -> list[Measurement]:
    """Time convcli and every available reference on the same inputs; ratios convcli / other.
    ``flops``: the work the case needs (``conv_flops``), for convcli's GFLOP/s; ``targets``:
    tool -> the largest ratio issue #16 accepts against it; ``note``: on convcli's row."""
    import numpy as np

    calls = {"convcli": convcli_call}
    calls.update((tool, call) for tool, call in references.items()
                 if call)     # falsy: the library is not installed, or the case is too slow for it
    if floor_bytes:
        block = np.ones(floor_bytes // 4, np.float32)
        calls["memory copy (floor)"] = block.copy
    medians = interleaved_medians(calls, repeat)
    ours = medians.pop("convcli")
    gflops = achieved_gflops(flops, ours) if flops else None
    peak = measured_peak()
    rows = [Measurement(case, "convcli", ours, note=note, gflops=gflops,
                        peak_share=gflops / peak if gflops and peak else None)]
    for tool, theirs in medians.items():
        notes = ["a copy of the input's bytes"] if tool == "memory copy (floor)" else []
        if targets and tool in targets:
            notes.insert(0, _target(ours / theirs, targets[tool]))
        rows.append(Measurement(case, tool, theirs, ratio=ours / theirs, note="; ".join(notes)))
    return rows


# --- GFLOP/s: the work a case needs, and this machine's FMA peak ------------------------------

def conv_flops(output_pixels: int, out_channels: int = 1, taps: int = 1,
               in_channels_per_group: int = 1) -> int:
    """FLOPs of a convolution computed directly, 2 per multiply-add: every output pixel of
    every output channel sums ``taps`` (kernel elements, kH * kW [* kD]; dilation adds
    none) times its group's input channels. A separable case passes taps = kH + kW, the
    work of its two 1-D passes. Pooling and borders are not counted."""
    return 2 * output_pixels * out_channels * taps * in_channels_per_group


def achieved_gflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e6)


# The probe: CHAINS independent FMA chains of LANES float32 each; with fastmath Numba keeps
# them in vector registers (16-lane zmm on AVX-512, 8-lane ymm on AVX2: 12 or 24 registers,
# enough to cover the FMA latency), and the loop is nothing but register FMAs.
PROBE_CHAINS, PROBE_LANES = 12, 16
_peak_gflops: float | None = None
_probe = None                 # the compiled probe, made on first use (Numba loads lazily)


def probe_flops(iterations: int) -> int:
    """FLOPs one ``_fma_probe(iterations, ...)`` call does: 2 per lane per chain per pass."""
    return 2 * PROBE_CHAINS * PROBE_LANES * iterations


def _fma_probe_function():
    import numpy as np
    from numba import njit

    width = PROBE_CHAINS * PROBE_LANES

    @njit(nogil=True, fastmath=True, cache=True)
    def fma_probe(iterations, scale, shift):
        accumulators = np.empty(width, np.float32)
        for lane in range(width):
            accumulators[lane] = np.float32(lane) * np.float32(1e-3)
        for _ in range(iterations):
            for lane in range(width):
                accumulators[lane] = accumulators[lane] * scale + shift
        return accumulators.sum()

    return fma_probe


def _fma_probe(iterations: int) -> float:
    """Runs the probe (a contraction towards 0.1: stays finite whatever ``iterations``)."""
    import numpy as np

    global _probe
    if _probe is None:
        _probe = _fma_probe_function()
    return float(_probe(iterations, np.float32(0.999), np.float32(1e-4)))


def fma_peak_gflops(seconds: float = 0.2, threads: int | None = None, rounds: int = 3) -> float:
    """This machine's float32 FMA peak, measured: the probe on ``threads`` (default every
    core) at once for about ``seconds``, best of ``rounds``; total FLOPs / wall time. Also
    what ``measured_peak`` returns from then on."""
    import threading

    global _peak_gflops
    threads = threads or available_cores()
    _fma_probe(1000)                                         # compile (or load) it
    iterations, taken = 1000, 0.0
    while taken < seconds / 4:                               # one thread's pace
        iterations *= 4
        started = time.perf_counter()
        _fma_probe(iterations)
        taken = time.perf_counter() - started
    iterations = max(1, int(iterations * seconds / taken))
    best = 0.0
    for _ in range(rounds):
        workers = [threading.Thread(target=_fma_probe, args=(iterations,)) for _ in range(threads)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - started
        best = max(best, probe_flops(iterations) * threads / wall / 1e9)
    _peak_gflops = best
    return best


def measured_peak() -> float | None:
    """The last ``fma_peak_gflops`` result in this process (None before one ran)."""
    return _peak_gflops


def _torch():
    torch = _optional("torch")
    if torch is not None:
        torch.set_num_threads(available_cores())
    return torch


# Issue #16's targets, convcli / reference: dense kernels against cv2.filter2D, up to 7x7 and
# from 15x15 on; the channel-mixing layers against torch conv2d.
DENSE_TARGETS = {3: 0.8, 5: 0.8, 7: 0.8, 15: 0.6, 31: 0.6, 63: 0.6}


def dense_case(size: int, repeat: int, side: int = 4096) -> list[Measurement]:
    """One channel side x side (4096), a dense size x size kernel, reflect borders (same
    output size). GFLOP/s counts the direct work, size^2 taps per pixel, whichever path
    convcli takes (its note names it: an FFT path can go past the FMA peak)."""
    import numpy as np

    from .engine import choose_path, conv2d
    from .geometry import Padding

    rng = np.random.default_rng(size)
    image = rng.random((side, side), dtype=np.float32)
    kernel = rng.random((size, size), dtype=np.float32)
    cv2, ndimage, torch = _optional("cv2"), _scipy_ndimage(), _torch()
    weight = kernel[None, None]
    references = {
        "cv2.filter2D": cv2 and (lambda: cv2.filter2D(image, -1, kernel,
                                                      borderType=cv2.BORDER_REFLECT_101)),
        # scipy would take ~17 s per 31x31 call (4 s at 15x15, times 961/225 taps; 63x63 would
        # be ~70 s): skipped above 15x15.
        "scipy.ndimage.correlate": ndimage and size <= 15 and (
            lambda: ndimage.correlate(image, kernel, mode="mirror")),
        # torch's CPU conv2d took 15 s (15x15) and 58 s (31x31) per call here: skipped above 7x7.
        "torch conv2d (zero border)": torch and size <= 7 and (lambda: torch.nn.functional.conv2d(
            torch.from_numpy(image[None, None]), torch.from_numpy(weight), padding=size // 2)),
    }
    rows = _compare(f"{size}x{size} dense, 1x{side}x{side}", repeat,
                    lambda: conv2d(image[None], weight, padding="same", padding_mode="reflect"),
                    references, floor_bytes=image.nbytes if size == 3 else None,
                    flops=conv_flops(side * side, taps=size * size),
                    targets={"cv2.filter2D": DENSE_TARGETS[size]})
    # Asked after the timed calls: before them a fresh process may still be on NumPy while
    # the compiled loops load (and asking counts towards that switch).
    half = size // 2
    path = choose_path((1, 1, side, side), weight, padding=Padding(half, half, half, half))
    rows[0].note = f"path {path}" + (": GFLOP/s as if direct" if path != "direct" else "")
    return rows


def _scipy_ndimage():
    scipy = _optional("scipy.ndimage")
    return None if scipy is None else __import__("scipy.ndimage", fromlist=["ndimage"])


def separable_case(repeat: int) -> list[Measurement]:
    """Gaussian sigma=5 (31 taps) on 1x4096x4096: two 1-D passes."""
    import numpy as np

    from .builtin_kernels import gaussian_taps
    from .engine import convolve
    from .geometry import Padding

    image = np.random.default_rng(5).random((1, 1, 4096, 4096), dtype=np.float32)
    taps = gaussian_taps(5.0).astype(np.float32)
    weight = np.outer(taps, taps)[None, None].astype(np.float32)
    pad = taps.size // 2
    cv2, ndimage = _optional("cv2"), _scipy_ndimage()
    references = {
        "cv2.sepFilter2D": cv2 and (lambda: cv2.sepFilter2D(image[0, 0], -1, taps, taps,
                                                            borderType=cv2.BORDER_REFLECT_101)),
        "scipy.ndimage.correlate1d x2": ndimage and (lambda: ndimage.correlate1d(
            ndimage.correlate1d(image[0, 0], taps, axis=0, mode="mirror"), taps, axis=1,
            mode="mirror")),
    }
    return _compare("Gaussian sigma=5 (31 taps, separable), 1x4096x4096", repeat,
                    lambda: convolve(image, weight, padding=Padding(pad, pad, pad, pad),
                                     padding_mode="reflect", factors=(taps[None], taps[None])),
                    references, flops=conv_flops(4096 * 4096, taps=2 * taps.size),
                    note=f"GFLOP/s of the two passes ({taps.size} + {taps.size} taps)")


def dilated_case(repeat: int) -> list[Measurement]:
    """3x3 with dilation 4 on 1x4096x4096 (references get the zero-stuffed 9x9 kernel)."""
    import numpy as np

    from .engine import conv2d

    rng = np.random.default_rng(4)
    image = rng.random((4096, 4096), dtype=np.float32)
    kernel = rng.random((3, 3), dtype=np.float32)
    stuffed = np.zeros((9, 9), np.float32)
    stuffed[::4, ::4] = kernel
    cv2, ndimage = _optional("cv2"), _scipy_ndimage()
    references = {
        "cv2.filter2D (9x9 zero-stuffed)": cv2 and (lambda: cv2.filter2D(
            image, -1, stuffed, borderType=cv2.BORDER_REFLECT_101)),
        "scipy.ndimage.correlate (9x9 zero-stuffed)": ndimage and (
            lambda: ndimage.correlate(image, stuffed, mode="mirror")),
    }
    # No torch here: its dilated CPU conv2d took 1.7 s per call (0.01-0.04x), and with it in
    # the rotation convcli's 23 ms call measured 57-65 ms while cv2's did not change.
    return _compare("3x3 dilation 4, 1x4096x4096", repeat,
                    lambda: conv2d(image[None], kernel[None, None], padding="same", dilation=4,
                                   padding_mode="reflect"), references,
                    flops=conv_flops(4096 * 4096, taps=9))


def depthwise_case(repeat: int) -> list[Measurement]:
    """RGB 2048x2048, one 3x3 kernel on each channel (groups = 3)."""
    import numpy as np

    from .engine import conv2d

    rng = np.random.default_rng(3)
    image = rng.random((3, 2048, 2048), dtype=np.float32)
    kernel = rng.random((3, 3), dtype=np.float32)
    interleaved = np.ascontiguousarray(image.transpose(1, 2, 0))
    weight = np.repeat(kernel[None, None], 3, axis=0)
    cv2, ndimage, torch = _optional("cv2"), _scipy_ndimage(), _torch()
    references = {
        "cv2.filter2D (HxWx3)": cv2 and (lambda: cv2.filter2D(
            interleaved, -1, kernel, borderType=cv2.BORDER_REFLECT_101)),
        "scipy.ndimage.correlate (1x3x3)": ndimage and (
            lambda: ndimage.correlate(image, kernel[None], mode="mirror")),
        "torch conv2d groups=3": torch and (lambda: torch.nn.functional.conv2d(
            torch.from_numpy(image[None]), torch.from_numpy(weight), padding=1, groups=3)),
    }
    return _compare("3x3 depthwise, 3x2048x2048", repeat,
                    lambda: conv2d(image, weight, padding="same", groups=3, padding_mode="reflect"),
                    references, flops=conv_flops(2048 * 2048, out_channels=3, taps=9))


def channels_case(repeat: int, in_channels: int = 3, out_channels: int = 16, side: int = 2048,
                  target: float = 0.35) -> list[Measurement]:
    """in_channels -> out_channels, 3x3, zero border, on side x side: 3 -> 16 on 2048^2 (a first
    CNN layer, #16: <= 0.35x torch) or 16 -> 16 on 1024^2 (a middle one, <= 0.5x)."""
    import numpy as np

    from .engine import conv2d

    rng = np.random.default_rng(16)
    image = rng.random((in_channels, side, side), dtype=np.float32)
    weight = rng.standard_normal((out_channels, in_channels, 3, 3)).astype(np.float32)
    ndimage, torch = _scipy_ndimage(), _torch()

    def scipy_layer():
        """Each output channel is the sum of one 2-D correlation per input channel."""
        return np.stack([sum(ndimage.correlate(image[c], weight[o, c], mode="constant")
                             for c in range(in_channels)) for o in range(out_channels)])

    references = {
        "torch conv2d": torch and (lambda: torch.nn.functional.conv2d(
            torch.from_numpy(image[None]), torch.from_numpy(weight), padding=1)),
        # 16 x 16 planes would be 256 correlations (seconds a call): scipy only for 3 -> 16.
        f"scipy.ndimage.correlate ({out_channels} x {in_channels} planes)":
            ndimage and in_channels * out_channels <= 48 and scipy_layer,
    }
    return _compare(f"{in_channels} -> {out_channels} channels 3x3, {in_channels}x{side}x{side}",
                    repeat, lambda: conv2d(image, weight, padding=1), references,
                    flops=conv_flops(side * side, out_channels, 9, in_channels),
                    targets={"torch conv2d": target})


def stride_case(repeat: int) -> list[Measurement]:
    """3x3 with stride 2 on 1x4096x4096 (OpenCV filters every pixel, then subsamples)."""
    import numpy as np

    from .engine import conv2d

    rng = np.random.default_rng(2)
    image = rng.random((4096, 4096), dtype=np.float32)
    kernel = rng.random((3, 3), dtype=np.float32)
    cv2, ndimage, torch = _optional("cv2"), _scipy_ndimage(), _torch()
    references = {
        "cv2.filter2D then [::2, ::2]": cv2 and (lambda: np.ascontiguousarray(cv2.filter2D(
            image, -1, kernel, borderType=cv2.BORDER_CONSTANT)[::2, ::2])),
        "scipy.ndimage.correlate then [::2, ::2]": ndimage and (lambda: np.ascontiguousarray(
            ndimage.correlate(image, kernel, mode="constant")[::2, ::2])),
        "torch conv2d stride=2": torch and (lambda: torch.nn.functional.conv2d(
            torch.from_numpy(image[None, None]), torch.from_numpy(kernel[None, None]),
            padding=1, stride=2)),
    }
    return _compare("3x3 stride 2, 1x4096x4096", repeat,
                    lambda: conv2d(image[None], kernel[None, None], padding=1, stride=2),
                    references, flops=conv_flops(2048 * 2048, taps=9))


# --- layer operations: transposed conv, pooling, conv3d ---------------------------------------

def tconv_case(repeat: int) -> list[Measurement]:
    """A decoder's upsampling step: 16 -> 8 channels, 4x4, stride 2, padding 1, on 256^2 and
    512^2 (no scipy or OpenCV: neither has the operation)."""
    import numpy as np

    from .engine import conv_transpose2d

    rng = np.random.default_rng(11)
    weight = rng.standard_normal((16, 8, 4, 4)).astype(np.float32)
    torch, rows = _torch(), []
    for size in (256, 512):
        image = rng.standard_normal((16, size, size)).astype(np.float32)
        references = {"torch conv_transpose2d": torch and (
            lambda image=image: torch.nn.functional.conv_transpose2d(
                torch.from_numpy(image[None]), torch.from_numpy(weight), stride=2, padding=1))}
        rows += _compare(f"transposed 4x4 stride 2, 16 -> 8 channels, 16x{size}x{size}", repeat,
                         lambda image=image: conv_transpose2d(image, weight, stride=2, padding=1),
                         references, flops=conv_flops(2 * size * 2 * size, out_channels=8,
                                                      taps=2 * 2, in_channels_per_group=16),
                         note="GFLOP/s: 2x2 of the 4x4 taps per output pixel")
    return rows


def pool_case(repeat: int) -> list[Measurement]:
    """Max 2x2 (stride 2) and average 3x3 (stride 2, padding 1) on 16x512x512. scipy filters
    every pixel, then subsamples (its uniform_filter with zero borders is avg_pool2d's
    count_include_pad result); OpenCV has no pooling."""
    import numpy as np

    from .engine import avg_pool2d, max_pool2d

    image = np.random.default_rng(12).standard_normal((16, 512, 512)).astype(np.float32)
    ndimage, torch = _scipy_ndimage(), _torch()
    tensor = torch and torch.from_numpy(image[None])
    max_references = {
        "torch max_pool2d": torch and (lambda: torch.nn.functional.max_pool2d(tensor, 2)),
        "scipy maximum_filter then [1::2, 1::2]": ndimage and (lambda: np.ascontiguousarray(
            ndimage.maximum_filter(image, size=(1, 2, 2))[:, 1::2, 1::2])),
    }
    avg_references = {
        "torch avg_pool2d": torch and (lambda: torch.nn.functional.avg_pool2d(tensor, 3, 2, 1)),
        "scipy uniform_filter then [::2, ::2]": ndimage and (lambda: np.ascontiguousarray(
            ndimage.uniform_filter(image, size=(1, 3, 3), mode="constant")[:, ::2, ::2])),
    }
    return (_compare("max pool 2x2, 16x512x512", repeat, lambda: max_pool2d(image, 2),
                     max_references, floor_bytes=image.nbytes)
            + _compare("avg pool 3x3 stride 2 padding 1, 16x512x512", repeat,
                       lambda: avg_pool2d(image, 3, 2, 1), avg_references))


def conv3d_case(repeat: int) -> list[Measurement]:
    """A 64^3 volume, 3x3x3, padding 1: 1 -> 8 and 8 -> 8 channels."""
    import numpy as np

    from .engine import conv3d

    rng = np.random.default_rng(13)
    ndimage, torch = _scipy_ndimage(), _torch()
    rows = []
    for channels in (1, 8):
        volume = rng.standard_normal((channels, 64, 64, 64)).astype(np.float32)
        weight = rng.standard_normal((8, channels, 3, 3, 3)).astype(np.float32)

        def scipy_layer(volume=volume, weight=weight):
            """Each output channel is the sum of one 3-D correlation per input channel."""
            return np.stack([sum(ndimage.correlate(volume[c], weight[o, c], mode="constant")
                                 for c in range(channels)) for o in range(8)])

        references = {
            "torch conv3d": torch and (lambda volume=volume, weight=weight:
                                       torch.nn.functional.conv3d(torch.from_numpy(volume[None]),
                                                                  torch.from_numpy(weight),
                                                                  padding=1)),
            # 64 volume correlations for 8 -> 8 take seconds: scipy only for 1 -> 8.
            "scipy.ndimage.correlate (8 x C volumes)": ndimage and channels == 1 and scipy_layer,
        }
        rows += _compare(f"conv3d 3x3x3, {channels} -> 8 channels, {channels}x64x64x64", repeat,
                         lambda volume=volume, weight=weight: conv3d(volume, weight, padding=1),
                         references, flops=conv_flops(64 ** 3, out_channels=8, taps=27,
                                                      in_channels_per_group=channels))
    return rows


# --- end to end: the command as a user runs it ----------------------------------------------

def _wall_ms(arguments: list[str], repeat: int, env: dict | None = None) -> float:
    return median_ms(lambda: _run_quietly(arguments, env), repeat, warmup=1)


def end_to_end_case(repeat: int) -> list[Measurement]:
    """`convcli --help`; apply on a 512x512 PNG (warm cache); apply on a 4096x4096 RGB PNG
    (Sobel) with its load/convolve/write split and peak memory (empty caches: ``cold-start``)."""
    import json

    from PIL import Image

    rows = [Measurement("end to end", "convcli --help", _wall_ms(_convcli_command() + ["--help"],
                                                                 repeat), note="whole process")]
    with tempfile.TemporaryDirectory(prefix="convcli-bench-") as folder:
        folder = Path(folder)
        small, large = folder / "small.png", folder / "large.png"
        Image.fromarray(_test_photo((512, 512))).save(small)
        Image.fromarray(_test_photo((4096, 4096))).save(large, compress_level=1)
        apply = _convcli_command() + ["apply", "-k", "sobel", "-o", str(folder / "out"),
                                      "--overwrite", "--report", "json"]
        rows.append(Measurement("end to end", "apply 512x512 RGB PNG, Sobel (warm cache)",
                                _wall_ms(apply + [str(small)], repeat), note="whole process"))
        timings = []
        for _ in range(max(1, repeat // 2)):
            started = time.perf_counter()
            result = _run_quietly(apply + [str(large)])
            wall = (time.perf_counter() - started) * 1e3
            timings.append((wall, json.loads(result.stdout)["timings_ms"]))
        wall, split = sorted(timings, key=lambda item: item[0])[len(timings) // 2]
        rows.append(Measurement("end to end", "apply 4096x4096 RGB PNG, Sobel", wall,
                                note="load {load:.0f} + convolve {convolve:.0f} + write {write:.0f} "
                                     "ms; the rest is start-up".format(**split)))
        peak_mb = _peak_rss_mb(apply + [str(large)])
        image_mb = 4096 * 4096 * 3 * 4 / 2**20
        rows.append(Measurement("end to end", "peak memory, 4096x4096 RGB apply", peak_mb, "MB",
                                peak_mb / image_mb, "ratio: peak / float32 image size"))
    return rows


def _peak_rss_mb(arguments: list[str]) -> float:
    """Peak resident memory of a child process (measured by a fresh parent, so no older child
    can be the maximum)."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True, "
             "check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    result = subprocess.run([sys.executable, "-c", probe, *arguments], capture_output=True,
                            text=True, check=True)
    return int(result.stdout) / 1024  # Linux reports KiB


# --- cold start: the same commands with an empty JIT cache and a warmed one (#14) ----------

_SAMPLES = Path(__file__).resolve().parent.parent / "samples"
_BACKGROUND_TIMEOUT_S = 300


def cold_start_case(repeat: int) -> list[Measurement]:
    """Whole commands with an empty JIT cache (a new one per run) against the same commands
    with a cache ``convcli warmup`` filled, and the compile time of everything (#14)."""
    from PIL import Image

    name = "cold start (whole process; ratio: empty cache / warmed cache)"
    with tempfile.TemporaryDirectory(prefix="convcli-bench-") as folder:
        folder = Path(folder)
        warm_cache = folder / "warm-cache"
        seconds = _warmup_seconds(_cache_env(warm_cache))      # fills the warm cache, from empty
        large = folder / "large.png"
        Image.fromarray(_test_photo((4096, 4096))).save(large, compress_level=1)
        commands = [("apply 4096x4096 RGB PNG, Sobel", 1.3,
                     ["apply", str(large), "-k", "sobel", "-o", str(folder / "out-large")]),
                    ("batch 200 x RGB 512x512 PNG, 3x3 box (a folder)", 1.2,
                     ["apply", str(_batch_inputs(folder)), "-k", "box", "-o",
                      str(folder / "out-batch")])]
        samples = sorted(_SAMPLES.glob("*.png")) + sorted(_SAMPLES.glob("*.jpg"))
        if samples:                     # an installed wheel has no samples: that row is left out
            commands.insert(0, ("README command 1 (samples, -k sobel -k gaussian:sigma=2)", 1.5,
                                ["apply", *map(str, samples), "-k", "sobel", "-k",
                                 "gaussian:sigma=2", "-o", str(folder / "out-readme")]))
        rows = []
        for tool, target, arguments in commands:
            command = _convcli_command() + arguments + ["--overwrite"]
            cold, warm, runs = _cold_and_warm(command, repeat, folder, warm_cache)
            rows.append(Measurement(name, f"{tool}, empty cache", cold, ratio=cold / warm,
                                    note=f"warm {warm:.0f} ms; target <= {target}x; "
                                         f"{runs} cold runs, {repeat} warm"))
    total = sum(seconds.values())
    rows.append(Measurement(name, "compile everything (convcli warmup, empty cache)", total * 1e3,
                            note=", ".join(f"{function} {taken:.1f} s"
                                           for function, taken in seconds.items())))
    return rows


def _cold_and_warm(command: list[str], repeat: int, folder: Path,
                   warm_cache: Path) -> tuple[float, float, int]:
    """(cold ms, warm ms, cold runs): medians of the whole ``command``, each cold run in a new
    empty cache folder under ``folder`` (its background compile awaited, untimed), each warm
    run with ``warm_cache``; taken in turn, after one untimed warm run."""
    cold_runs, warm_env = max(2, repeat // 2), _cache_env(warm_cache)
    _run_quietly(command, warm_env)
    cold, warm = [], []
    for round_ in range(max(repeat, cold_runs)):
        if round_ < repeat:
            warm.append(_timed_ms(command, warm_env))
            _wait_for_background(warm_cache)
        if round_ < cold_runs:
            cache = Path(tempfile.mkdtemp(prefix="empty-cache-", dir=folder))
            cold.append(_timed_ms(command, _cache_env(cache)))
            _wait_for_background(cache)
    return statistics.median(cold), statistics.median(warm), cold_runs


def _cache_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NUMBA_CACHE_DIR": str(cache)}


def _timed_ms(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    _run_quietly(command, env)
    return (time.perf_counter() - started) * 1e3


def _wait_for_background(cache: Path) -> None:
    """Wait, untimed, until no background compile a cold run started fills ``cache``, so it
    takes no cores from the next timed run."""
    from .engine._cache import wait_for_background

    if not wait_for_background(cache, timeout=_BACKGROUND_TIMEOUT_S):
        raise RuntimeError(f"a background compile into {cache} still runs after "
                           f"{_BACKGROUND_TIMEOUT_S} s")


def _warmup_seconds(env: dict[str, str]) -> dict[str, float]:
    """{function: seconds compiling it} from one ``convcli warmup --json`` with ``env``."""
    import json

    result = _run_quietly(_convcli_command() + ["warmup", "--json"], env)
    _wait_for_background(Path(env["NUMBA_CACHE_DIR"]))
    return json.loads(result.stdout)["seconds"]


# --- issue #15's scale rows: large images through whole commands, against libvips ---------

SCALE_KERNEL = "gaussian:sigma=3"
SCALE_PAD_MODE = "reflect"      # apply's default --pad-mode (cli.py), given explicitly
VIPS_PNG = "compression=1, filter=up"   # convcli's PNG writer: deflate level 1, the Up filter
# A child run by a small fresh parent, which prints its wall time, peak RSS and output as
# JSON: Linux carries a parent's peak RSS into a child's ru_maxrss across fork and exec, so
# the bench process (GBs after building an input) must not be the one that measures.
_MEASURING_PARENT = (
    "import json, resource, subprocess, sys, time\n"
    "started = time.perf_counter()\n"
    "result = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "ms = (time.perf_counter() - started) * 1e3\n"
    "print(json.dumps({'ms': ms, 'code': result.returncode, 'stdout': result.stdout,\n"
    "                  'stderr': result.stderr,\n"
    "                  'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
# libvips on a whole file, as a user of pyvips runs it: sequential access (it streams), the
# PNG saved with convcli's compression (argv: source, target, operation).
_VIPS_SCRIPT = (
    "import sys, pyvips\n"
    "source, target, operation = sys.argv[1:4]\n"
    "image = pyvips.Image.new_from_file(source, access='sequential')\n"
    "result = image.gaussblur(3) if operation == 'gaussblur' else image.sobel()\n"
    "result.pngsave(target, compression=1, filter='up')\n")


@dataclass
class _Run:
    ms: float
    peak_mb: float
    stdout: str


def _measured_run(arguments: list[str], check: bool = True) -> _Run | subprocess.CompletedProcess:
    """Wall time and peak resident memory of one whole command (see ``_MEASURING_PARENT``);
    with ``check=False`` a failed command returns its CompletedProcess instead of raising."""
    import json

    probe = subprocess.run([sys.executable, "-c", _MEASURING_PARENT, *arguments],
                           capture_output=True, text=True, check=True)
    result = json.loads(probe.stdout)
    if result["code"] != 0:
        failed = subprocess.CompletedProcess(arguments, result["code"], result["stdout"],
                                             result["stderr"])
        if not check:
            return failed
        raise RuntimeError(f"{' '.join(arguments)} failed: {result['stderr'].strip()}")
    return _Run(result["ms"], result["peak_kib"] / 1024, result["stdout"])   # Linux: KiB


def _vips_python() -> str | None:
    """The interpreter that runs libvips (``VIPS_PYTHON_VARIABLE``, else this one), or None
    where pyvips does not import in it."""
    configured = os.environ.get(VIPS_PYTHON_VARIABLE)
    if not configured:
        return sys.executable if _optional("pyvips") is not None else None
    try:
        subprocess.run([configured, "-c", "import pyvips"], capture_output=True, check=True,
                       timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return configured


def _target(value: float, limit: float, unit: str = "x") -> str:
    return f"target <= {limit:g}{unit}: {'met' if value <= limit else 'missed'}"


def _photo_rows(top: int, rows: int, width: int, height: int) -> "np.ndarray":
    """Rows ``top:top + rows`` of a ``width`` x ``height`` RGB test picture (uint8, HxWx3):
    the chelsea photo scaled to the whole size, the photo at its own size mirrored and tiled
    over it (edges and texture everywhere, as in a real large scan) and a little noise; the
    same rows whichever band asks. Without the sample: ``_test_photo``'s smooth pattern."""
    import numpy as np
    from PIL import Image

    sample = _SAMPLES / "chelsea.png"
    noise = np.random.default_rng(15 + top).integers(-6, 7, (rows, width, 3), dtype=np.int16)
    if not sample.exists():
        y, x = np.mgrid[top:top + rows, 0:width]
        pattern = np.stack([np.sin(x / 17.0), np.cos(y / 23.0), np.sin((x + y) / 31.0)], -1)
        return np.clip(pattern * 120 + 128 + noise, 0, 255).astype(np.uint8)
    photo = Image.open(sample).convert("RGB")
    side_x, side_y = photo.size
    base = np.asarray(photo.resize((width, rows), Image.BILINEAR, box=(
        0, top * side_y / height, side_x, (top + rows) * side_y / height)), np.int16)

    def mirrored(indices, side):
        indices = indices % (2 * side)
        return np.where(indices < side, indices, 2 * side - 1 - indices)

    native = np.asarray(photo, np.int16)
    detail = native[mirrored(np.arange(top, top + rows), side_y)][
        :, mirrored(np.arange(width), side_x)]
    return np.clip((base * 5 + detail * 3) // 8 + noise, 0, 255).astype(np.uint8)


def _write_photo_png(path: Path, side: int, band: int = 1024) -> None:
    """A side x side RGB PNG of ``_photo_rows`` at zlib level 1 (its pixels, side^2 x 3
    bytes, are held once while Pillow encodes them)."""
    import numpy as np
    from PIL import Image

    pixels = np.empty((side, side, 3), np.uint8)
    for top in range(0, side, band):
        pixels[top:top + band] = _photo_rows(top, min(band, side - top), side, side)
    Image.fromarray(pixels).save(path, compress_level=1)


def _write_photo_tiff(path: Path, side: int, tile: int = 256) -> None:
    """A side x side RGB tiled TIFF (tile x tile, zlib level 1) of ``_photo_rows``, built
    one row of tiles at a time (a few MB held, whatever the side)."""
    import numpy as np
    import tifffile

    def tiles():
        for top in range(0, side, tile):
            rows = _photo_rows(top, min(tile, side - top), side, side)
            for left in range(0, side, tile):
                block = np.zeros((tile, tile, 3), np.uint8)      # edge tiles are padded
                part = rows[:, left:left + tile]
                block[:part.shape[0], :part.shape[1]] = part
                yield block

    tifffile.imwrite(path, tiles(), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile),
                     photometric="rgb", compression="zlib", compressionargs={"level": 1},
                     bigtiff=side * side * 3 > 2**31)


def _convcli_and_vips(case: str, source: Path, folder: Path, kernel: str, vips_operation: str,
                      repeat: int, time_target: float,
                      peak_target: float | None = None) -> list[Measurement]:
    """``convcli apply SOURCE -k KERNEL`` (PNG out) against libvips's ``vips_operation`` on
    the same file, whole processes taken in turn (convcli, vips, convcli, ...) after one
    untimed run of each (warm JIT cache, the file in the page cache); medians of the wall
    times, the largest peak RSS. libvips rows only where ``_vips_python`` finds pyvips."""
    import json

    _run_quietly(_convcli_command() + ["warmup"])
    convcli = _convcli_command() + ["apply", str(source), "-k", kernel, "-o",
                                    str(folder / "out"), "--overwrite", "--report", "json"]
    how = "whole process, warm JIT cache"
    first = _measured_run(convcli, check=False)
    if isinstance(first, subprocess.CompletedProcess):   # refused (too large to hold), say so
        convcli += ["--max-memory", "0"]
        _measured_run(convcli)
        how += f"; in memory with --max-memory 0 (refused without it: {_refusal(first)})"
    vips_python = _vips_python()
    commands = {"convcli": convcli}
    if vips_python:
        commands["vips"] = [vips_python, "-c", _VIPS_SCRIPT, str(source),
                            str(folder / f"vips-{vips_operation}.png"), vips_operation]
        _measured_run(commands["vips"])
    runs: dict[str, list[_Run]] = {tool: [] for tool in commands}
    for _ in range(repeat):
        for tool, command in commands.items():
            runs[tool].append(_measured_run(command))
    ms = {tool: statistics.median(run.ms for run in done) for tool, done in runs.items()}
    peak = {tool: max(run.peak_mb for run in done) for tool, done in runs.items()}
    report = json.loads(runs["convcli"][-1].stdout.splitlines()[0])
    split = "load {load:.0f} + convolve {convolve:.0f} + write {write:.0f} ms".format(
        **report["timings_ms"])
    rows = [Measurement(case, f"convcli apply -k {kernel}", ms["convcli"],
                        note=f"{how}; {split} (last run)")]
    if "vips" in ms:
        ratio = ms["convcli"] / ms["vips"]
        rows.append(Measurement(case, f"libvips {vips_operation} (pyvips, sequential)",
                                ms["vips"], ratio=ratio,
                                note=f"{_target(ratio, time_target)}; whole process; "
                                     f"pngsave {VIPS_PNG}; peak {peak['vips']:.0f} MB"))
    note = f"{_target(peak['convcli'], peak_target, ' MB')}; " if peak_target else ""
    rows.append(Measurement(case, "convcli peak memory", peak["convcli"], "MB",
                            peak["convcli"] / peak["vips"] if "vips" in peak else None,
                            note + f"report's peak_memory_mb {report['peak_memory_mb']}"
                            + ("; ratio: convcli / libvips peak" if "vips" in peak else "")))
    return rows


def _refusal(failed: subprocess.CompletedProcess) -> str:
    """Why convcli refused a run, in a few words: its report's error, without the path."""
    import json
    import re

    error = next((json.loads(line)["error"] for line in failed.stdout.splitlines()
                  if line.startswith("{")), None) or failed.stderr.strip()
    reason = re.search(r"cannot be streamed \(([^)]*)\)", error)
    return reason.group(1) if reason else error.split(": ", 1)[-1][:100]


def scale_png_case(repeat: int, side: int = 10_000) -> list[Measurement]:
    """#15: a side x side RGB PNG through gaussian:sigma=3 against libvips gaussblur (sigma 3),
    both writing PNG at zlib level 1: convcli <= 1.5x libvips's time, peak <= 400 MB."""
    with tempfile.TemporaryDirectory(prefix="convcli-bench-") as folder:
        folder = Path(folder)
        source = folder / "scale.png"
        _write_photo_png(source, side)
        return _convcli_and_vips(f"#15 scale: {side}x{side} RGB PNG, {SCALE_KERNEL}", source,
                                 folder, SCALE_KERNEL, "gaussblur", repeat, 1.5, 400)


def scale_sobel_case(repeat: int, side: int = 4096) -> list[Measurement]:
    """#15: a side x side RGB PNG through Sobel against libvips sobel: convcli <= 1.0x."""
    with tempfile.TemporaryDirectory(prefix="convcli-bench-") as folder:
        folder = Path(folder)
        source = folder / "scale.png"
        _write_photo_png(source, side)
        return _convcli_and_vips(f"#15 scale: {side}x{side} RGB PNG, Sobel", source, folder,
                                 "sobel", "sobel", repeat, 1.0)


def scale_tiff_case(repeat: int, side: int = 20_000, window: int = 256) -> list[Measurement]:
    """#15: a side x side RGB tiled TIFF streamed through gaussian:sigma=3 to a tiled float32
    BigTIFF: seconds, peak RSS (target <= 1 GB) and whether windows of the output (corners,
    edge middles, centre) equal the in-memory result. One run per 5 of ``repeat`` (minutes
    each at 20000^2); no libvips row (#15 sets no time target here)."""
    import json

    name = f"#15 scale: {side}x{side} RGB tiled TIFF, {SCALE_KERNEL}, streamed to tiled TIFF"
    with tempfile.TemporaryDirectory(prefix="convcli-bench-") as folder:
        folder = Path(folder)
        source, out = folder / "scale.tif", folder / "out"
        _write_photo_tiff(source, side)
        _run_quietly(_convcli_command() + ["warmup"])
        command = _convcli_command() + [
            "apply", str(source), "-k", SCALE_KERNEL, "-o", str(out), "--format", "tiff",
            "--pad-mode", SCALE_PAD_MODE, "--stream", "--overwrite", "--report", "json"]
        runs = [_measured_run(command) for _ in range(max(1, repeat // 5))]
        report = json.loads(runs[-1].stdout.splitlines()[0])
        seconds = statistics.median(run.ms for run in runs) / 1e3
        peak = max(run.peak_mb for run in runs)
        equal, total, worst = windows_match(source, Path(report["output"]), SCALE_KERNEL,
                                            SCALE_PAD_MODE, window)
    split = ", ".join(f"{part} {ms / 1e3:.1f}" for part, ms in report["timings_ms"].items())
    return [Measurement(name, "convcli apply --format tiff (streamed)", seconds, "s",
                        note=f"{len(runs)} run(s), whole process; {report['strips']} strips; "
                             f"{split} s"),
            Measurement(name, "convcli peak memory", peak, "MB",
                        note=f"{_target(peak, 1024, ' MB')}; report's peak_memory_mb "
                             f"{report['peak_memory_mb']}"),
            Measurement(name, f"windows equal to in-memory: {'yes' if equal == total else 'no'}",
                        equal, f"of {total}",
                        note=f"max abs diff {worst:.3g} (tolerance {WINDOW_TOLERANCE:g}); "
                             f"{window}x{window} at corners, edge middles, centre")]


WINDOW_TOLERANCE = 1e-5       # float32 sums of 19 x 19 taps in another order may differ


def sample_windows(height: int, width: int, window: int) -> list[tuple[int, int, int, int]]:
    """(top, left, rows, cols) of the windows to check: the 4 corners, the middle of each
    edge and the centre (fewer where the image is smaller than 3 windows)."""
    rows, cols = min(window, height), min(window, width)
    tops = sorted({0, (height - rows) // 2, height - rows})
    lefts = sorted({0, (width - cols) // 2, width - cols})
    return [(top, left, rows, cols) for top in tops for left in lefts]


def window_reference(source: Path, kernel: str, pad_mode: str,
                     where: tuple[int, int, int, int]) -> "np.ndarray":
    """The in-memory result of ``apply -k kernel --pad-mode pad_mode`` (stride 1, same
    padding) on one window (top, left, rows, cols) of a TIFF, as (rows, cols, C) float32:
    the window's crop with the kernel's halo around it (clipped at the image's edges) goes
    through the in-memory filter (``stacks.filter_operation``); the crop's inner sides are a
    halo away from the window, the image's own edges get the real border mode."""
    import numpy as np

    from .kernels import resolve
    from .stacks import filter_operation

    operation = resolve(kernel)
    size = max(max(k.size) for k in operation.kernels)
    halo = max((side - 1) // 2 * max(_pair(k.dilation)) for k in operation.kernels
               for side in k.size)
    if size % 2 == 0:
        raise ValueError(f"{kernel}: an even kernel is not centred; windows need odd sides")
    top, left, rows, cols = where
    height, width = _tiff_size(source)
    y0, x0 = max(0, top - halo), max(0, left - halo)
    y1, x1 = min(height, top + rows + halo), min(width, left + cols + halo)
    crop = _tiff_window(source, y0, x0, y1 - y0, x1 - x0)
    scale = 255.0 if crop.dtype == np.uint8 else 65535.0 if crop.dtype == np.uint16 else 1.0
    pixels = np.ascontiguousarray(np.moveaxis(crop, -1, 0), np.float32) / np.float32(scale)
    maps, _ = filter_operation(pixels, operation, pad_mode=pad_mode, flip=False, stride=(1, 1),
                               pads=((halo, halo), (halo, halo)), dilation=(1, 1))
    maps = np.moveaxis(maps, 0, -1)
    return maps[top - y0:top - y0 + rows, left - x0:left - x0 + cols]


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def windows_match(source: Path, output: Path, kernel: str, pad_mode: str,
                  window: int = 256) -> tuple[int, int, float]:
    """(windows equal, windows checked, largest absolute difference) between a filtered
    TIFF ``output`` and ``window_reference`` on ``sample_windows``; only those windows of
    either file are read."""
    import numpy as np

    height, width = _tiff_size(source)
    equal, total, worst = 0, 0, 0.0
    for where in sample_windows(height, width, window):
        expected = window_reference(source, kernel, pad_mode, where)
        got = _tiff_window(output, *where).astype(np.float32)
        difference = float(np.max(np.abs(got - expected))) if got.shape == expected.shape \
            else float("inf")
        worst, total = max(worst, difference), total + 1
        equal += difference <= WINDOW_TOLERANCE
    return equal, total, worst


def _tiff_size(path: Path) -> tuple[int, int]:
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        page = tif.pages[0]
        return int(page.imagelength), int(page.imagewidth)


def _tiff_window(path: Path, top: int, left: int, rows: int, cols: int) -> "np.ndarray":
    """Rows ``top:top + rows``, columns ``left:left + cols`` of a tiled, contiguous TIFF's
    first page as (rows, cols, samples), decoding only the tiles that hold them."""
    import numpy as np
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        page = tif.pages[0]
        if not page.is_tiled or (page.planarconfig == 2 and page.samplesperpixel > 1):
            raise ValueError(f"{path}: windows are read from tiled, contiguous TIFFs only")
        tile_rows, tile_cols = int(page.tilelength), int(page.tilewidth)
        across = -(-int(page.imagewidth) // tile_cols)
        samples = int(page.samplesperpixel)
        out = np.empty((rows, cols, samples), page.dtype)
        for down in range(top // tile_rows, (top + rows - 1) // tile_rows + 1):
            for right in range(left // tile_cols, (left + cols - 1) // tile_cols + 1):
                index = down * across + right
                tif.filehandle.seek(page.dataoffsets[index])
                encoded = tif.filehandle.read(page.databytecounts[index])
                tile, _, _ = page.decode(encoded, index, _fullsize=True)
                tile = tile.reshape(tile.shape[-3:])          # (tile rows, tile cols, samples)
                y0, x0 = down * tile_rows, right * tile_cols
                ys = slice(max(top, y0), min(top + rows, y0 + tile_rows))
                xs = slice(max(left, x0), min(left + cols, x0 + tile_cols))
                out[ys.start - top:ys.stop - top, xs.start - left:xs.stop - left] = \
                    tile[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


CASES: dict[str, Callable[[int], list[Measurement]]] = {
    **{f"dense{k}": (lambda repeat, k=k: dense_case(k, repeat)) for k in (3, 5, 7, 15, 31, 63)},
    "separable": separable_case,
    "dilated": dilated_case,
    "depthwise": depthwise_case,
    "channels": channels_case,
    "channels16": lambda repeat: channels_case(repeat, 16, 16, 1024, 0.5),
    "stride": stride_case,
    "tconv": tconv_case,
    "pool": pool_case,
    "conv3d": conv3d_case,
    "end-to-end": end_to_end_case,
    "batch": batch_case,
    "cold-start": cold_start_case,
    "scale-png": scale_png_case,
    "scale-tiff": scale_tiff_case,
    "scale-sobel": scale_sobel_case,
}
# What `convcli bench` runs without --case: every case but scale-tiff (a 20000^2 TIFF
# streamed to a 4.8 GB BigTIFF takes minutes; `convcli bench --case scale-tiff` runs it).
DEFAULT_CASES = tuple(name for name in CASES if name != "scale-tiff")
# The cases timing the engine on arrays (their convcli rows have GFLOP/s, pool's excepted:
# it does no multiply-adds), before which run_cases measures the FMA peak.
ENGINE_CASES = tuple(CASES)[:tuple(CASES).index("end-to-end")]


def run_cases(names: list[str], repeat: int) -> list[Measurement]:
    """Run the named cases (``DEFAULT_CASES`` when empty) in order."""
    unknown = [name for name in names if name not in CASES]
    if unknown:
        from .errors import UsageError

        raise UsageError(f"unknown bench case {unknown[0]!r}; cases are {', '.join(CASES)}")
    _settle()
    if set(names or DEFAULT_CASES) & set(ENGINE_CASES):
        fma_peak_gflops()
    results = []
    for name in names or list(DEFAULT_CASES):
        results.extend(CASES[name](repeat))
    return results


def _settle(calls: int = 6) -> None:
    """Untimed large convolutions before the first case, on the compiled loops that every
    engine case measures (without ``prefer_compiled`` the first calls of a process take
    NumPy until they would have paid for loading Numba, and these six did). A fresh process
    runs its first few 64 MB allocations and parallel calls several times slower (page
    faults, thread start-up): without this the first case measured 108 ms for a call that
    takes 29 ms once settled."""
    import numpy as np

    from .engine import _runtime, conv2d

    _runtime.prefer_compiled()

    image = np.ones((1, 4096, 4096), np.float32)
    for _ in range(calls):
        conv2d(image, np.ones((1, 1, 3, 3), np.float32), padding=1)


def machine_summary() -> str:
    return f"{platform.processor() or platform.machine()}, {available_cores()} cores, Python {platform.python_version()}"


def peak_summary() -> str:
    """``FMA peak N GFLOP/s (measured)``, or empty when no engine case ran."""
    peak = measured_peak()
    return "" if peak is None else f"FMA peak {peak:.0f} GFLOP/s (measured)"


def as_json(results: list[Measurement]) -> dict:
    return {"machine": machine_summary(), "fma_peak_gflops": measured_peak(),
            "results": [asdict(r) for r in results]}
