"""Every engine path against the float64 reference, torch and scipy, on random inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from convcli import UsageError, conv2d
from convcli.engine import (_cache, _fft, _gemm, _numpy, _runtime, border_map, choose_path,
                            convolve, rank_one_factors)
from convcli.geometry import Padding
from reference import reference_conv2d

MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
RELATIVE_TOLERANCE = 1e-5
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


def assert_matches_reference(result, x, weight, bias=None, **geometry):
    """Within 1e-5 of the float64 reference, relative to the sum of |terms| (a float32 bound)."""
    expected = reference_conv2d(x, weight, bias, **geometry)
    magnitude = reference_conv2d(np.abs(x), np.abs(weight),
                                 None if bias is None else np.abs(bias), **geometry)
    assert result.shape == expected.shape
    error = np.abs(result - expected) / np.maximum(magnitude, 1.0)
    assert error.max() <= RELATIVE_TOLERANCE, error.max()


@st.composite
def problems(draw, depthwise_rank_one=False, wide=False, tall=False):
    """A random convolution: shapes, groups, stride, per-side padding, dilation, border mode.
    ``wide`` rows are long enough for the vectorised loop bodies, not only their tails;
    ``tall`` images have enough rows for several strips of the NumPy path."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, 4)) for _ in range(4))
    if depthwise_rank_one:
        groups = channels = draw(st.integers(1, 3))
        out_channels = channels * draw(st.integers(1, 2))
        columns = rng.standard_normal((out_channels, kernel[0]))
        rows = rng.standard_normal((out_channels, kernel[1]))
        weight = np.einsum("ci,cj->cij", columns, rows)[:, np.newaxis]
    else:
        groups = draw(st.integers(1, 3))
        channels = groups * draw(st.integers(1, 3))
        out_channels = groups * draw(st.integers(1, 3))
        weight = rng.standard_normal((out_channels, channels // groups) + kernel)
    # Large enough for at least one output pixel.
    height = (max(dilation[0] * (kernel[0] - 1) + 1 - padding[0] - padding[1], 1)
              + draw(st.integers(0, 40) if tall else st.integers(0, 12)))
    width = (max(dilation[1] * (kernel[1] - 1) + 1 - padding[2] - padding[3], 1)
             + draw(st.integers(40, 300) if wide else st.integers(0, 12)))
    x = rng.standard_normal((draw(st.integers(1, 2)), channels, height, width)).astype(np.float32)
    bias = rng.standard_normal(out_channels) if draw(st.booleans()) else None
    return dict(x=x, weight=weight.astype(np.float32), bias=bias, stride=stride,
                padding=padding, dilation=dilation, groups=groups, mode=draw(st.sampled_from(MODES)))


def run_engine(problem, engine, factors=None):
    top, bottom, left, right = problem["padding"]
    return convolve(problem["x"], problem["weight"], problem["bias"], stride=problem["stride"],
                    padding=Padding(top, bottom, left, right), dilation=problem["dilation"],
                    groups=problem["groups"], padding_mode=problem["mode"], factors=factors,
                    engine=engine)


def reference_for(problem):
    return {k: problem[k] for k in ("stride", "padding", "dilation", "groups", "mode")}


@pytest.mark.parametrize("engine", ["direct", "fft", "gemm", "numpy"])
@SETTINGS
@given(problem=problems())
def test_general_paths_match_reference(engine, problem):
    result, path = run_engine(problem, engine)
    assert path == engine
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data(), kernel=st.tuples(st.integers(1, 12), st.integers(1, 12)))
def test_direct_blocks_of_every_kernel_size_match_reference(data, kernel):
    """``direct_conv`` (stride and dilation 1 across) cuts kernels into 3x3, 5x5, 4x7 and 5x1
    blocks: sizes up to 12 take every mix of them, on rows wide enough to vectorise."""
    problem = data.draw(problems(wide=True))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    weight = problem["weight"]
    problem["weight"] = rng.standard_normal(weight.shape[:2] + kernel).astype(np.float32)
    problem["stride"], problem["dilation"] = (problem["stride"][0], 1), (problem["dilation"][0], 1)
    top, bottom, left, right = problem["padding"]
    assume(problem["x"].shape[2] + top + bottom >= problem["dilation"][0] * (kernel[0] - 1) + 1)
    assume(problem["x"].shape[3] + left + right >= kernel[1])
    result, path = run_engine(problem, "direct")
    assert path == "direct"
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


def test_direct_rows_have_the_same_bits_whatever_the_task_split(rng):
    """Threads and strips cut the output rows anywhere: a row's sums must not depend on it."""
    from convcli.engine._loops import direct_conv

    x = rng.standard_normal((1, 2, 23, 97)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 7, 9)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    row_map, col_map = border_map(23, (3, 3), "reflect"), border_map(97, (4, 4), "reflect")
    arguments = (x, weight, bias, row_map, col_map, 4, 1, 1, 1, 1, 1)
    whole = np.zeros((1, 3, 23, 97), np.float32)
    direct_conv(0, 69, *arguments, whole)
    for cuts in ([0, 1, 69], [0, 5, 6, 40, 69], list(range(70))):
        pieces = np.zeros_like(whole)
        for first, last in zip(cuts, cuts[1:]):
            direct_conv(first, last, *arguments, pieces)
        np.testing.assert_array_equal(pieces, whole)


@pytest.mark.parametrize("engine", ["direct", "separable"])
@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_wide_rows_match_reference(engine, data):
    problem = data.draw(problems(depthwise_rank_one=engine == "separable", wide=True))
    result, path = run_engine(problem, engine)
    assert path == engine
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


@pytest.mark.parametrize("engine", ["separable", "numpy"])
@SETTINGS
@given(problems(depthwise_rank_one=True), st.booleans())
def test_separable_path_matches_reference(engine, problem, carry_factors):
    """The separable loops, and NumPy's column and row passes for the same kernels."""
    factors = rank_one_factors(problem["weight"]) if carry_factors else None
    result, path = run_engine(problem, engine, factors)
    assert path == engine
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


@pytest.mark.parametrize("strip_bytes, multiply_adds", [(1, 1), (20_000, 50)])
@pytest.mark.parametrize("rank_one", [False, True])
@SETTINGS
@given(data=st.data())
def test_numpy_path_in_strips_matches_reference(strip_bytes, multiply_adds, rank_one, data):
    """Strips of one output row, taps stacked one at a time, matrix products one pixel wide;
    or strips of a few rows, chunks of a few taps, products of a few pixels: every strip
    border and chunk boundary on small inputs."""
    problem = data.draw(problems(depthwise_rank_one=rank_one, tall=True))
    factors = rank_one_factors(problem["weight"]) if rank_one else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_numpy, "STRIP_BYTES", strip_bytes)
        patch.setattr(_numpy, "BLAS_SERIAL_MULTIPLY_ADDS", multiply_adds)
        result, path = run_engine(problem, "numpy", factors)
    assert path == "numpy"
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


# ``_gemm.SHIFTED_MIN_DEPTH`` for each of the GEMM path's ways: shifted copies (stride 1 in
# rows) for every kernel, or im2col for every kernel.
GEMM_WAYS = {"shifted": 1, "im2col": 10**9}


@pytest.mark.parametrize("way", GEMM_WAYS)
@pytest.mark.parametrize("block_bytes, multiply_adds", [(1, 1), (3_000, 40), (3_000, 6_000)])
@SETTINGS
@given(data=st.data())
def test_gemm_path_in_blocks_matches_reference(way, block_bytes, multiply_adds, data):
    """Blocks of one output row and products one column wide; blocks of a few rows cut into
    stacks of products (some 64 columns wide) and a rest: every block border and cut, with
    shifted copies where the rows' stride is 1 and with im2col."""
    problem = data.draw(problems(tall=True, wide=data.draw(st.booleans())))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_gemm, "BLOCK_BYTES", block_bytes)
        patch.setattr(_gemm, "SHIFTED_MIN_DEPTH", GEMM_WAYS[way])
        patch.setattr(_numpy, "BLAS_SERIAL_MULTIPLY_ADDS", multiply_adds)
        result, path = run_engine(problem, "gemm")
    assert path == "gemm"
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


@SETTINGS
@given(st.data())
def test_tiles_gather_through_border_maps(data):
    """``_fft._tile`` (FFT tiles; its ``_take`` gathers the NumPy strips' rows) equals
    indexing every entry, -1 reading zero."""
    height, width = data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    rows = np.array(data.draw(st.lists(st.integers(-1, height - 1), min_size=1, max_size=12)))
    cols = np.array(data.draw(st.lists(st.integers(-1, width - 1), min_size=1, max_size=12)))
    if data.draw(st.booleans()):                                 # a run inside the image
        start = data.draw(st.integers(0, width - 1))
        cols = np.r_[cols, np.arange(start, width), cols]
    channels = np.arange(2 * height * width, dtype=np.float32).reshape(2, height, width) + 1
    expected = channels[:, np.maximum(rows, 0)][:, :, np.maximum(cols, 0)]
    expected[:, rows < 0] = 0
    expected[:, :, cols < 0] = 0
    np.testing.assert_array_equal(_fft._tile(channels, rows, cols), expected)


def test_fft_path_on_tiles_larger_than_one(rng):
    """An image several FFT tiles wide, with a dilated kernel and a stride."""
    x = rng.standard_normal((1, 2, 700, 1300)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 9, 7)).astype(np.float32)
    geometry = dict(stride=(2, 3), padding=(4, 5, 6, 7), dilation=(2, 1), mode="reflect")
    result, path = convolve(x, weight, stride=(2, 3), padding=Padding(4, 5, 6, 7),
                            dilation=(2, 1), padding_mode="reflect", engine="fft")
    assert path == "fft"
    assert_matches_reference(result, x, weight, **geometry)


@pytest.mark.parametrize("tile_target", [1, 7])
@settings(max_examples=40, deadline=None, derandomize=True)
@given(data=st.data())
def test_fft_path_in_many_tiles_matches_reference(tile_target, data):
    """Tiles a few pixels wider than the kernel (ducc0's float32 transforms): every tile
    border, short last tiles, border tiles gathered through the maps, rectangular tiles where
    the padded input is narrower than a tile, with random groups, strides, dilations and
    paddings on random non-zero inputs."""
    problem = data.draw(problems(tall=True, wide=data.draw(st.booleans())))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_fft, "TILE_TARGET", tile_target)
        result, path = run_engine(problem, "fft")
    assert path == "fft"
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


def test_auto_uses_fft_only_where_the_cost_model_says(rng):
    """Measured on 1024^2 (see ``COST``): FFT / direct 1.19 at 11 x 11, 0.61 at 15 x 15."""
    big = rng.standard_normal((1, 1, 1024, 1024)).astype(np.float32)
    assert convolve(big, rng.standard_normal((1, 1, 41, 41)))[1] == "fft"
    assert convolve(big, rng.standard_normal((1, 1, 15, 15)))[1] == "fft"
    assert convolve(big, rng.standard_normal((1, 1, 11, 11)))[1] == "direct"
    small = rng.standard_normal((1, 1, 40, 40)).astype(np.float32)
    assert convolve(small, rng.standard_normal((1, 1, 15, 15)))[1] == "direct"


@SETTINGS
@given(problems())
def test_auto_path_matches_reference(problem):
    result, _ = run_engine(problem, "auto")
    assert_matches_reference(result, problem["x"], problem["weight"], problem["bias"],
                             **reference_for(problem))


def test_numpy_takes_calls_until_they_would_have_paid_for_starting_numba(rng, monkeypatch):
    """Small calls take NumPy while their estimated total stays below Numba's start-up;
    after that (or for a call too big from the start) the compiled loops, for good."""
    small = rng.standard_normal((1, 3, 512, 512)).astype(np.float32)
    large = rng.standard_normal((1, 1, 4096, 4096)).astype(np.float32)
    sobel = np.outer([1.0, 2, 1], [-1.0, 0, 1])[None, None].repeat(3, 0)
    dense = rng.standard_normal((3, 1, 3, 3))
    monkeypatch.setitem(_runtime._state, "compiled_in_use", False)
    monkeypatch.setitem(_runtime._state, "background", False)
    monkeypatch.setitem(_runtime._state, "numpy_ns_spent", 0.0)
    nine = rng.standard_normal((1, 1, 9, 9))
    assert convolve(large, nine)[1] == "direct"                 # too big: compiled at once
    monkeypatch.setitem(_runtime._state, "compiled_in_use", False)
    assert convolve(small, sobel, groups=3)[1] == "numpy"
    paths = [convolve(small, dense, groups=3)[1] for _ in range(200)]
    switch = paths.index("direct")
    assert set(paths[:switch]) == {"numpy"} and set(paths[switch:]) == {"direct"}
    per_call = _runtime.NUMPY_NS_PER_TAP * 3 * 9 * 510 * 510           # no padding: 510^2 out
    assert switch == int((_runtime.NUMBA_START_NS - per_call * 6 / 9) // per_call)
    assert convolve(small, sobel, groups=3)[1] == "separable"


def test_a_cold_cache_sends_calls_to_numpy_while_the_loops_compile_elsewhere(rng, monkeypatch):
    """With background compiling on and the loops not cached: NumPy takes every call it ends
    sooner than a compile would, and the background compile is asked for; once the cache is
    ready (or for a call too big for NumPy) the compiled loops run."""
    image = rng.standard_normal((1, 2, 70, 90)).astype(np.float32)
    dense = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    started, ready = [], [False]

    def fresh_process(spent: float = _runtime.NUMBA_START_NS):        # past the NumPy budget
        monkeypatch.setitem(_runtime._state, "compiled_in_use", False)
        monkeypatch.setitem(_runtime._state, "numpy_ns_spent", spent)
        monkeypatch.setitem(_runtime._state, "background", True)

    fresh_process()
    monkeypatch.setattr(_cache, "loops_ready", lambda: ready[0])
    monkeypatch.setattr(_cache, "start_background_warmup",
                        lambda on_start=None: started.append(1) or True)
    out, path = convolve(image, dense, padding=Padding(1, 2, 0, 1), padding_mode="reflect")
    assert path == "numpy" and started
    assert_matches_reference(out, image, dense, None, padding=(1, 2, 0, 1), mode="reflect")
    monkeypatch.setattr(_runtime, "COMPILE_NS", 1e4)        # NumPy slower than compiling
    assert convolve(image, dense)[1] == "direct"
    monkeypatch.setattr(_runtime, "COMPILE_NS", 4e9)
    fresh_process()
    ready[0] = True
    assert convolve(image, dense)[1] == "direct"


def test_auto_picks_separable_only_when_it_saves_work(rng):
    x = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    rank_one = np.outer([1.0, 2, 1], [-1.0, 0, 1])[None, None].repeat(2, 0)
    assert convolve(x, rank_one, groups=2)[1] == "separable"
    assert convolve(x, rng.standard_normal((2, 1, 3, 3)), groups=2)[1] == "direct"
    assert convolve(x, rng.standard_normal((2, 1, 1, 3)), groups=2)[1] == "direct"  # 1+3 > 3
    assert convolve(x, np.ones((1, 2, 3, 3)))[1] == "direct"                       # not depthwise


def test_auto_picks_gemm_for_many_channels_only(rng):
    """Kernels that mix channels both ways take BLAS; depthwise, single-output and
    few-channel ones the loops (or NumPy); large kernels on large images the FFT."""
    shape, same = (1, 16, 512, 512), Padding(1, 1, 1, 1)
    assert choose_path((1, 3, 2048, 2048), np.ones((16, 3, 3, 3)), padding=same) == "gemm"
    assert choose_path(shape, np.ones((16, 16, 3, 3)), padding=same) == "gemm"
    # 8 -> 8 3x3 on 1024^2 measured 0.84-0.93x the direct loops' time, 4 -> 8 1.12x.
    assert choose_path((1, 8, 1024, 1024), np.ones((8, 8, 3, 3)), padding=same) == "gemm"
    assert choose_path((1, 4, 1024, 1024), np.ones((8, 4, 3, 3)), padding=same) != "gemm"
    assert choose_path(shape, np.ones((64, 8, 3, 3)), padding=same, groups=2) == "gemm"
    for weight, groups in [(np.ones((16, 1, 3, 3)), 16), (np.ones((1, 16, 3, 3)), 1),
                           (np.ones((4, 4, 3, 3)), 4), (np.ones((2, 2, 3, 3)), 8)]:
        assert choose_path(shape[:1] + (weight.shape[1] * groups,) + shape[2:], weight,
                           padding=same, groups=groups) != "gemm"
    assert choose_path(shape, np.ones((16, 16, 41, 41)), padding=Padding(20, 20, 20, 20)) == "fft"
    x = rng.standard_normal((1, 8, 96, 96)).astype(np.float32)
    weight = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    result, path = convolve(x, weight, padding=same, engine="auto")
    assert path == "gemm"
    assert_matches_reference(result, x, weight, padding=(1, 1, 1, 1))


def test_rank_one_factors_rebuild_the_kernel(rng):
    weight = np.einsum("ci,cj->cij", rng.standard_normal((3, 4)), rng.standard_normal((3, 5)))
    column, row = rank_one_factors(weight[:, None])
    np.testing.assert_allclose(np.einsum("ci,cj->cij", column, row), weight, rtol=1e-5, atol=1e-6)
    weight[1, 0, 0] += 1.0
    assert rank_one_factors(weight[:, None]) is None


def test_known_answer():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    result = conv2d(x, np.ones((1, 1, 2, 2), np.float32), np.array([0.5]), stride=2)
    np.testing.assert_array_equal(result, [[[10.5, 18.5], [42.5, 50.5]]])
    edges = conv2d(x, np.array([[[[-1, 0, 1]]]], np.float32), padding=(0, 1))
    np.testing.assert_array_equal(edges[0, 1], [5, 2, 2, -6])     # zeros beyond both edges


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (2, 2)])
@pytest.mark.parametrize("mode", MODES)
def test_tiny_images_with_every_border(rng, shape, mode):
    x = rng.standard_normal((1, 2) + shape).astype(np.float32)
    weight = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    result, _ = convolve(x, weight, groups=2, padding=Padding(1, 1, 1, 1), padding_mode=mode)
    assert_matches_reference(result, x, weight, padding=(1, 1, 1, 1), groups=2, mode=mode)


def test_nan_spreads_only_to_the_windows_that_cover_it(rng):
    x = rng.standard_normal((1, 1, 9, 11)).astype(np.float32)
    x[0, 0, 4, 6] = np.nan
    for weight in (rng.standard_normal((1, 1, 3, 3)),                       # direct
                   np.outer([1.0, 2, 1], [1.0, 0, -1])[None, None]):        # separable
        result, _ = convolve(x, weight, padding=Padding(1, 1, 1, 1))
        expected = np.zeros((9, 11), bool)
        expected[3:6, 5:8] = True
        np.testing.assert_array_equal(np.isnan(result[0, 0]), expected)


@pytest.mark.parametrize("engine", ["direct", "separable", "gemm", "numpy"])
def test_inf_gives_inf_not_nan(rng, engine):
    """The unused slots of a pass multiply zeros by zero, never an image value by zero."""
    x = rng.random((1, 1, 9, 40)).astype(np.float32)
    x[0, 0, 4, 20] = np.inf
    weight = np.outer([1.0, 2, 1, 1, 3], [1.0, 2, 1, 4, 1])[None, None]  # 25 taps: 6 x 4 + 1
    result, _ = convolve(x, weight, padding=Padding(2, 2, 2, 2), engine=engine)
    expected = np.zeros((9, 40), bool)
    expected[2:7, 18:23] = True
    np.testing.assert_array_equal(np.isposinf(result[0, 0]), expected)
    assert np.isfinite(result[0, 0][~expected]).all()


@pytest.mark.parametrize("way", GEMM_WAYS)
def test_nan_stays_in_its_windows_on_the_gemm_path(rng, monkeypatch, way):
    """A NaN in the column matrix reaches only the products' columns (pixels) it is in (with
    shifted copies, each tap row's product reads rows the others read too)."""
    monkeypatch.setattr(_gemm, "SHIFTED_MIN_DEPTH", GEMM_WAYS[way])
    monkeypatch.setattr(_gemm, "BLOCK_BYTES", 4 * 12 * 70 * 4)     # blocks of 2-3 rows
    x = rng.standard_normal((1, 4, 20, 70)).astype(np.float32)
    x[0, 2, 9, 33] = np.nan
    result, path = convolve(x, rng.standard_normal((8, 4, 3, 3)), rng.standard_normal(8),
                            padding=Padding(1, 1, 1, 1), engine="gemm")
    assert path == "gemm"
    expected = np.zeros((8, 20, 70), bool)
    expected[:, 8:11, 32:35] = True
    np.testing.assert_array_equal(np.isnan(result[0]), expected)


@pytest.mark.parametrize("way", GEMM_WAYS)
def test_inf_gives_inf_not_nan_on_the_gemm_path(rng, monkeypatch, way):
    """Zero padding is zeros in the copies, and a zero bias adds no row: an inf reaches only
    its windows, as inf (each weight positive), with and without a bias."""
    monkeypatch.setattr(_gemm, "SHIFTED_MIN_DEPTH", GEMM_WAYS[way])
    monkeypatch.setattr(_gemm, "BLOCK_BYTES", 3 * 15 * 40 * 4)
    x = rng.random((1, 3, 17, 40)).astype(np.float32)
    x[0, 1, 4, 20] = np.inf
    x[0, 0, 0, 0] = np.inf                                       # next to the zero padding
    weight = rng.random((4, 3, 5, 5)) + 0.5
    expected = np.zeros((4, 17, 40), bool)
    expected[:, 2:7, 18:23] = True
    expected[:, :3, :3] = True
    for bias in (None, rng.standard_normal(4)):
        result, path = convolve(x, weight, bias, padding=Padding(2, 2, 2, 2), engine="gemm")
        assert path == "gemm"
        np.testing.assert_array_equal(np.isposinf(result[0]), expected)
        assert np.isfinite(result[0][~expected]).all()


@pytest.mark.parametrize("shape, groups", [((1, 16, 37, 150), 1), ((2, 24, 20, 67), 2)])
@pytest.mark.parametrize("mode", MODES)
def test_gemm_takes_shifted_copies_for_deep_kernels(rng, shape, groups, mode):
    """Kernels deep enough for the shifted copies by default (16 and 12 inputs per group, 3
    columns), in blocks of a few rows, against the reference: every border mode, a bias."""
    assert shape[1] // groups * 3 >= _gemm.SHIFTED_MIN_DEPTH
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((8, shape[1] // groups, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(8)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_gemm, "BLOCK_BYTES", 16 * 3 * 150 * 4 * 6)
        result, path = convolve(x, weight, bias, padding=Padding(1, 2, 2, 1), dilation=(2, 1),
                                groups=groups, padding_mode=mode, engine="gemm")
    assert path == "gemm"
    assert_matches_reference(result, x, weight, bias, padding=(1, 2, 2, 1), dilation=(2, 1),
                             groups=groups, mode=mode)


def test_nan_with_a_large_kernel_stays_local(rng):
    """auto would take the FFT path, where a NaN would fill its whole tile."""
    x = rng.standard_normal((1, 1, 1024, 1024)).astype(np.float32)
    x[0, 0, 500, 600] = np.nan
    result, path = convolve(x, rng.standard_normal((1, 1, 41, 41)), padding=Padding(20, 20, 20, 20))
    assert path == "direct"
    expected = np.zeros((1024, 1024), bool)
    expected[480:521, 580:621] = True
    np.testing.assert_array_equal(np.isnan(result[0, 0]), expected)


def test_flip_is_true_convolution(rng):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = rng.standard_normal((11, 13)).astype(np.float32)
    kernel = rng.standard_normal((3, 5)).astype(np.float32)
    result = conv2d(image[None], kernel[None, None], padding="same", flip=True)
    expected = ndimage.convolve(image.astype(np.float64), kernel.astype(np.float64), mode="constant")
    np.testing.assert_allclose(result[0], expected, rtol=1e-5, atol=1e-5)


SCIPY_MODES = {"zeros": "constant", "reflect": "mirror", "replicate": "nearest",
               "circular": "wrap", "symmetric": "reflect"}


@pytest.mark.parametrize("mode", MODES)
def test_same_padding_matches_scipy_ndimage(rng, mode):
    ndimage = pytest.importorskip("scipy.ndimage")
    image = rng.standard_normal((17, 12))
    kernel = rng.standard_normal((5, 3))
    result = conv2d(image[None], kernel[None, None], padding="same", padding_mode=mode)
    expected = ndimage.correlate(image, kernel, mode=SCIPY_MODES[mode])
    np.testing.assert_allclose(result[0], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SETTINGS
@given(problems(), st.sampled_from(["numbers", "same", "valid"]))
def test_conv2d_matches_torch(problem, padding_kind):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x, weight, bias = problem["x"], problem["weight"], problem["bias"]
    padding = {"numbers": problem["padding"][::2], "same": "same", "valid": "valid"}[padding_kind]
    stride = (1, 1) if padding_kind == "same" else problem["stride"]
    pads = (0, 0) if padding_kind == "valid" else problem["padding"][::2]
    assume(all(x.shape[2 + i] + 2 * pads[i] >= problem["dilation"][i] * (weight.shape[2 + i] - 1) + 1
               for i in range(2)))
    kwargs = dict(stride=stride, padding=padding, dilation=problem["dilation"], groups=problem["groups"])
    tensor_bias = None if bias is None else torch.from_numpy(bias.astype(np.float32))
    expected = functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), tensor_bias, **kwargs)
    result = conv2d(x, weight, bias, **kwargs)
    np.testing.assert_allclose(result, expected.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(conv2d(x[0], weight, bias, **kwargs), expected.numpy()[0],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_match_torch_conv2d_module(rng, mode):
    torch = pytest.importorskip("torch")
    layer = torch.nn.Conv2d(4, 6, (3, 4), stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2,
                            padding_mode=mode)
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    with torch.no_grad():
        expected = layer(torch.from_numpy(x)).numpy()
    result = conv2d(x, layer.weight.detach().numpy(), layer.bias.detach().numpy(), stride=(2, 1),
                    padding=(2, 1), dilation=(1, 2), groups=2, padding_mode=mode)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_inputs_are_never_modified_and_dtypes_are_accepted(rng):
    x = rng.integers(0, 255, (3, 8, 8)).astype(np.uint8)
    weight = rng.standard_normal((3, 1, 3, 3))
    before = x.copy()
    result = conv2d(x, weight, padding=1, groups=3)
    assert result.dtype == np.float32
    np.testing.assert_array_equal(x, before)
    assert_matches_reference(result[None], x[None].astype(np.float32), weight.astype(np.float32),
                             padding=(1, 1, 1, 1), groups=3)


@pytest.mark.parametrize("call, phrases", [
    (lambda x, w: conv2d(x, w, stride=2, padding="same"), ["same", "stride"]),
    (lambda x, w: conv2d(x, w, groups=2), ["groups=2", "divide"]),
    (lambda x, w: conv2d(x[:2], w), ["expects 3 input channels", "x has 2"]),
    (lambda x, w: conv2d(x, w, padding=-1), ["padding", ">= 0"]),
    (lambda x, w: conv2d(x[:, :2, :2], w), ["height 2 is too small", "at least 3"]),
    (lambda x, w: conv2d(x, w, np.ones(3)), ["bias", "(4,)"]),
    (lambda x, w: conv2d(x, w, padding_mode="mirror"), ["padding_mode", "reflect"]),
    (lambda x, w: conv2d(x, w, stride=0), ["stride", ">= 1"]),
    (lambda x, w: conv2d(x[0], w), ["(C, H, W)"]),
    (lambda x, w: conv2d(x.astype(complex), w), ["real numbers"]),
    (lambda x, w: conv2d(x, w, engine="separable"), ["separable", "rank-1"]),
    (lambda x, w: conv2d(x, w, engine="winograd"), ["engine", "auto", "fft"]),
])
def test_bad_arguments_raise_clear_errors(rng, call, phrases):
    x = rng.standard_normal((3, 6, 6)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    with pytest.raises(UsageError) as error:
        call(x, weight)
    for phrase in phrases:
        assert phrase in str(error.value)


@pytest.mark.slow
def test_compiled_cache_works_from_a_read_only_install():
    """Installed read-only (e.g. system-wide), Numba caches in the user's cache folder.

    Root ignores file permissions, so ``engine/__pycache__`` is also made a plain file:
    then no user can create the in-tree cache folder.
    """
    base = Path(tempfile.mkdtemp(prefix="convcli-readonly-"))
    package, cache = base / "site" / "convcli", base / "cache"
    shutil.copytree(Path(__file__).resolve().parent.parent / "convcli", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    cache.mkdir()
    (package / "engine" / "__pycache__").write_text("not a folder")
    for path in [base, package.parent, package, *package.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    cache.chmod(0o777)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(PYTHONPATH=str(package.parent), XDG_CACHE_HOME=str(cache), HOME=str(cache))
    script = ("import numpy as np, convcli\n"
              "x = np.arange(48, dtype=np.float32).reshape(3, 4, 4)\n"
              "print(convcli.conv2d(x, np.ones((3, 1, 3, 3)), groups=3, padding=1,\n"
              "                     engine='direct')[1, 1, 1])")
    try:
        for _ in range(2):
            result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                    env=env, timeout=300, cwd=base)
            assert result.returncode == 0, result.stderr
            assert float(result.stdout) == 9 * 21.0
        assert not list(package.rglob("*.nbi"))
        assert list(cache.rglob("*.nbi")), "no Numba cache index in the user cache"
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base)
