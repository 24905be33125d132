"""`convcli bench` runs and reports ratios (the numbers themselves are never asserted)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from conftest import run_cli as run
from convcli.bench import CASES, Measurement, run_cases
from convcli.cli import main
from convcli.errors import UsageError


def test_a_case_reports_convcli_first_and_ratios_against_the_others():
    rows = run_cases(["stride"], repeat=1)
    assert rows[0].tool == "convcli" and rows[0].ratio is None and rows[0].ms > 0
    for row in rows[1:]:
        assert row.ratio == pytest.approx(rows[0].ms / row.ms)


def test_unknown_case_lists_the_cases():
    with pytest.raises(UsageError, match="dense3"):
        run_cases(["dense4"], repeat=1)
    assert {"dense3", "dense31", "separable", "channels", "end-to-end", "batch",
            "cold-start"} <= set(CASES)


def test_the_help_names_every_case_in_order():
    """`bench --help` lists choices.BENCH_CASES (importing bench.py would import NumPy)."""
    from convcli.choices import BENCH_CASES

    assert tuple(CASES) == BENCH_CASES


def test_cli_writes_json(tmp_path, capsys):
    target = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--case", "stride", "--repeat", "1", "--json", str(target)])
    assert exit_info.value.code == 0
    result = json.loads(target.read_text())
    assert "cores" in result["machine"] and result["results"][0]["tool"] == "convcli"
    assert "3x3 stride 2" in capsys.readouterr().out


def test_cli_prints_the_measured_peak_and_gflops_of_engine_rows(tmp_path, capsys):
    target = tmp_path / "bench.json"
    code, out, err = run(["bench", "--case", "stride", "--repeat", "1", "--json", str(target)],
                         capsys)
    assert code == 0, err
    result = json.loads(target.read_text())
    assert result["fma_peak_gflops"] > 0
    assert f"FMA peak {result['fma_peak_gflops']:.0f} GFLOP/s (measured)" in out
    assert "GFLOP/s (peak %)" in out
    ours, *theirs = result["results"]
    assert ours["gflops"] == pytest.approx(2 * 9 * 2048 * 2048 / (ours["ms"] * 1e6))
    assert ours["peak_share"] == pytest.approx(ours["gflops"] / result["fma_peak_gflops"])
    assert all(row["gflops"] is None and row["peak_share"] is None for row in theirs)


# --- GFLOP/s and the FMA peak probe (#16) -----------------------------------------------------

def test_conv_flops_counts_two_per_multiply_add_on_a_known_shape():
    from convcli.bench import achieved_gflops, conv_flops

    # 16 -> 16 channels, 3x3, 1024^2 outputs: 16 * 16 * 9 multiply-adds per output pixel.
    assert conv_flops(1024 * 1024, out_channels=16, taps=9, in_channels_per_group=16) \
        == 2 * 16 * 16 * 9 * 1024 * 1024 == 4_831_838_208
    assert conv_flops(4096 * 4096, taps=63 * 63) == 133_177_540_608
    assert conv_flops(10, taps=31 + 31) == 1240           # separable: kH + kW per pixel
    assert achieved_gflops(4_831_838_208, 100.0) == pytest.approx(48.31838208)


def test_the_peak_probe_does_a_fixed_count_of_flops_and_returns_a_positive_rate():
    from convcli import bench

    assert bench.probe_flops(1000) == 2 * bench.PROBE_CHAINS * bench.PROBE_LANES * 1000
    assert bench._fma_probe(5000) == bench._fma_probe(5000)       # same work, same result
    peak = bench.fma_peak_gflops(seconds=0.02, rounds=1)
    assert peak > 0 and bench.measured_peak() == peak
    assert bench.peak_summary() == f"FMA peak {peak:.0f} GFLOP/s (measured)"


def test_new_cases_run_on_small_shapes_with_gflops_and_issue_16_targets():
    from convcli.bench import channels_case, conv_flops, dense_case

    assert {"dense63", "channels16"} <= set(CASES)
    dense = dense_case(63, 1, side=128)
    assert dense[0].case == "63x63 dense, 1x128x128" and dense[0].tool == "convcli"
    assert dense[0].gflops == pytest.approx(conv_flops(128 * 128, taps=63 * 63)
                                            / (dense[0].ms * 1e6))
    assert dense[0].note.startswith("path ")
    assert {row.tool for row in dense} <= {"convcli", "cv2.filter2D"}     # no scipy or torch
    cv2_row = next(row for row in dense if row.tool == "cv2.filter2D")
    assert cv2_row.note == f"target <= 0.6x: {'met' if cv2_row.ratio <= 0.6 else 'missed'}"
    assert cv2_row.gflops is None
    layer = channels_case(1, 16, 16, 64, 0.5)
    assert layer[0].case == "16 -> 16 channels 3x3, 16x64x64"
    assert layer[0].gflops == pytest.approx(2 * 16 * 16 * 9 * 64 * 64 / (layer[0].ms * 1e6))
    torch_row = next(row for row in layer if row.tool == "torch conv2d")
    assert torch_row.note.startswith("target <= 0.5x: ")
    assert not any("scipy" in row.tool for row in layer)


def test_missing_reference_libraries_are_named_before_the_run(monkeypatch, capsys):
    """A library that does not import: one note per library, with how to install it, before
    the cases run (they leave its rows out)."""
    import convcli.bench

    monkeypatch.setitem(sys.modules, "cv2", None)        # import cv2 raises ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "pyvips", None)
    monkeypatch.delenv("CONVCLI_BENCH_VIPS_PYTHON", raising=False)
    ran = []
    monkeypatch.setattr(convcli.bench, "run_cases", lambda names, repeat: ran.append(names) or [
        Measurement("3x3 stride 2", "convcli", 1.0)])
    code, out, err = run(["bench", "--case", "stride", "--repeat", "1"], capsys)
    assert code == 0, err
    assert err.splitlines() == [
        "convcli: note: opencv-python-headless is not installed: the OpenCV rows are left out "
        "(pip install 'convcli[bench]')",
        "convcli: note: torch is not installed: the torch rows are left out (pip install "
        "torch==2.13.0, its CPU build)",
        "convcli: note: pyvips is not installed: the libvips rows are left out (pip install "
        "'convcli[bench]', or set CONVCLI_BENCH_VIPS_PYTHON to a Python that has it)"]
    assert ran == [["stride"]] and "3x3 stride 2" in out


# --- the cold-start case's helpers (the case itself takes minutes: run it with `convcli bench`) --

def test_cold_runs_each_get_a_new_empty_cache_and_wait_for_its_background_compile(
        tmp_path, monkeypatch):
    """A stand-in command logs the cache it was given and whether it was empty, then fills it."""
    import convcli.bench as bench

    log, warm_cache = tmp_path / "log", tmp_path / "warm-cache"
    warm_cache.mkdir()
    command = [sys.executable, "-c",
               "import os, sys; cache = os.environ['NUMBA_CACHE_DIR']; "
               "open(sys.argv[1], 'a').write(f'{cache} {len(os.listdir(cache))}\\n'); "
               "open(os.path.join(cache, 'compiled'), 'w').close()", str(log)]
    awaited = []
    monkeypatch.setattr(bench, "_wait_for_background", awaited.append)
    cold, warm, runs = bench._cold_and_warm(command, 3, tmp_path, warm_cache)
    assert runs == 2 and cold > 0 and warm > 0
    seen = [line.rsplit(" ", 1) for line in log.read_text().splitlines()]
    warm_runs = [entries for cache, entries in seen if cache == str(warm_cache)]
    cold_runs = [(cache, entries) for cache, entries in seen if cache != str(warm_cache)]
    assert len(warm_runs) == 1 + 3                   # one untimed, then `repeat` timed
    assert len({cache for cache, _ in cold_runs}) == 2 and all(
        entries == "0" and Path(cache).parent == tmp_path for cache, entries in cold_runs)
    assert {str(cache) for cache in awaited} >= {cache for cache, _ in cold_runs}


@pytest.mark.slow
def test_warmup_seconds_read_the_real_warmup(tmp_path):
    """Every compiled loop's seconds are read from warmup --json, from an empty cache."""
    from conftest import subprocess_env
    from convcli.bench import _warmup_seconds
    from convcli.engine.warmup import COMPILED_FUNCTIONS

    seconds = _warmup_seconds(subprocess_env(NUMBA_CACHE_DIR=str(tmp_path / "empty-cache")))
    assert set(seconds) == set(COMPILED_FUNCTIONS) and all(s > 0 for s in seconds.values())


def test_a_configured_vips_python_that_lacks_pyvips_is_named(monkeypatch, tmp_path):
    import convcli.bench as bench

    monkeypatch.setenv("CONVCLI_BENCH_VIPS_PYTHON", str(tmp_path / "no-such-python"))
    assert bench._vips_python() is None
    assert [line for line in bench.missing_references() if "libvips" in line] == [
        f"pyvips does not import in CONVCLI_BENCH_VIPS_PYTHON={tmp_path / 'no-such-python'}: "
        "the libvips rows are left out"]


def test_the_default_run_leaves_out_only_the_minutes_long_scale_tiff(monkeypatch):
    import convcli.bench as bench

    assert set(CASES) - set(bench.DEFAULT_CASES) == {"scale-tiff"}
    ran = []
    monkeypatch.setattr(bench, "_settle", lambda: None)
    for name in CASES:
        monkeypatch.setitem(CASES, name, lambda repeat, name=name: ran.append(name) or [])
    run_cases([], repeat=1)
    assert ran == list(bench.DEFAULT_CASES)
    run_cases(["scale-tiff"], repeat=1)
    assert ran[-1] == "scale-tiff"


# --- the scale cases' window check (#15): the streamed output against the in-memory result ---

@pytest.fixture
def small_tiff(tmp_path):
    """A 150x150 RGB tiled TIFF of the bench's test picture, 64x64 tiles (edge tiles partial)."""
    from convcli.bench import _write_photo_tiff

    path = tmp_path / "small.tif"
    _write_photo_tiff(path, 150, tile=64)
    return path


def test_tiff_windows_read_only_their_tiles_and_equal_the_whole_image(small_tiff):
    import tifffile

    from convcli.bench import _tiff_window

    whole = tifffile.imread(small_tiff)
    assert whole.shape == (150, 150, 3) and whole.std() > 20      # not flat
    for top, left, rows, cols in ((0, 0, 150, 150), (60, 5, 70, 90), (149, 100, 1, 50)):
        assert (_tiff_window(small_tiff, top, left, rows, cols)
                == whole[top:top + rows, left:left + cols]).all()


def test_window_reference_is_the_whole_image_filtered_in_memory(small_tiff):
    """Against scipy on the whole image (mirror is convcli's reflect, dcb|abcd): the crop, its
    halo and the image's own borders must all be right for every window to match."""
    import numpy as np
    import tifffile
    from scipy import ndimage

    from convcli.bench import sample_windows, window_reference
    from convcli.builtin_kernels import gaussian_taps

    image = tifffile.imread(small_tiff).astype(np.float64) / 255
    taps = gaussian_taps(3.0)
    whole = ndimage.correlate1d(ndimage.correlate1d(image, taps, axis=0, mode="mirror"), taps,
                                axis=1, mode="mirror")
    windows = sample_windows(150, 150, 40)
    assert len(windows) == 9 and (110, 110, 40, 40) in windows
    for top, left, rows, cols in windows:
        got = window_reference(small_tiff, "gaussian:sigma=3", "reflect", (top, left, rows, cols))
        assert np.abs(got - whole[top:top + rows, left:left + cols]).max() < 1e-5
    corner = window_reference(small_tiff, "gaussian:sigma=3", "zeros", (0, 0, 40, 40))
    assert np.abs(corner - whole[:40, :40]).max() > 0.01      # the border mode is seen


def test_windows_match_finds_a_changed_pixel(small_tiff, tmp_path):
    import numpy as np
    import tifffile

    from convcli.bench import window_reference, windows_match

    output = np.zeros((150, 150, 3), np.float32)
    output[:] = window_reference(small_tiff, "sobel", "reflect", (0, 0, 150, 150))
    path = tmp_path / "out.tif"
    tifffile.imwrite(path, output, tile=(64, 64), photometric="rgb")
    assert windows_match(small_tiff, path, "sobel", "reflect", window=40) == (9, 9, 0.0)
    output[149, 75, 1] += 0.5                                  # the bottom edge's middle
    tifffile.imwrite(path, output, tile=(64, 64), photometric="rgb")
    equal, total, worst = windows_match(small_tiff, path, "sobel", "reflect", window=40)
    assert (equal, total) == (8, 9) and worst == pytest.approx(0.5)


@pytest.mark.slow
def test_scale_tiff_case_streams_a_small_tiff_and_its_windows_match():
    from convcli.bench import scale_tiff_case

    streamed, peak, windows = scale_tiff_case(1, side=300, window=64)
    assert streamed.unit == "s" and "strips" in streamed.note
    assert peak.unit == "MB" and "target <= 1024 MB" in peak.note
    assert windows.tool == "windows equal to in-memory: yes" and windows.ms == 9


def test_interleaved_rounds_start_one_tool_further_on():
    """Every tool is timed ``repeat`` times, and no tool always follows the same one (a call
    right after another library's long call runs slower)."""
    from convcli.bench import interleaved_medians

    calls = []
    tools = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    medians = interleaved_medians(tools, repeat=4, warmup=1)
    assert set(medians) == set("abc") and all(value >= 0 for value in medians.values())
    timed = calls[3:]                                   # after one warm-up call each
    assert timed == list("abc" "bca" "cab" "abc")
