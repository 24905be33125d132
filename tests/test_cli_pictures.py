"""Pictures from the command line: `kernels show --png` and `apply --compare`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from conftest import subprocess_env
from conftest import run_cli as run
from convcli.kernels import render_kernel, resolve
from convcli.pictures import GAP, TILE_WIDTH, fit_tile, kernel_picture

SAMPLES = Path(__file__).resolve().parent.parent / "samples"




def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def write_rgb(path: Path, rng, shape=(200, 300, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def sheet_size(tile: tuple[int, int], rows: int, columns: int) -> tuple[int, int]:
    """(height, width) of a sheet of ``tile``-sized cells, each with a label band below."""
    band = ImageFont.load_default().getbbox("Ag0")[3] + 2
    return GAP + rows * (tile[0] + band + GAP), GAP + columns * (tile[1] + GAP)


# --- kernels show --png ----------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["sobel", "log:sigma=1.4", "luma", "smooth-1d", "box-3d"])
def test_kernels_show_png_draws_the_kernel_and_keeps_the_text(tmp_path, capsys, spec):
    code, plain, _ = run(["kernels", "show", spec], capsys)
    assert code == 0
    target = tmp_path / "kernel.png"
    code, out, err = run(["kernels", "show", spec, "--png", target], capsys)
    assert code == 0, err
    assert out == plain                                           # the text stays as it was
    operation = resolve(spec)
    expected = kernel_picture([(k.name, k.weights) for k in operation.kernels],
                              title=render_kernel(operation).splitlines()[0])
    np.testing.assert_array_equal(pixels(target), expected)


def test_kernels_show_png_refuses_an_existing_file_without_overwrite(tmp_path, capsys):
    target = tmp_path / "sobel.png"
    target.write_bytes(b"precious")
    code, out, err = run(["kernels", "show", "sobel", "--png", target], capsys)
    assert code == 1 and out == ""
    assert err.strip().count("\n") == 0 and "already exists" in err and "--overwrite" in err
    assert target.read_bytes() == b"precious"
    code, _, err = run(["kernels", "show", "sobel", "--png", target, "--overwrite"], capsys)
    assert code == 0, err
    assert pixels(target).ndim == 3
    assert not [p for p in tmp_path.iterdir() if p.name != "sobel.png"]   # no temporary left


def test_kernels_show_png_needs_a_png_name(tmp_path, capsys):
    code, _, err = run(["kernels", "show", "sobel", "--png", tmp_path / "sobel.jpg"], capsys)
    assert code == 2 and "--png" in err and ".png" in err
    assert not list(tmp_path.iterdir())


# --- apply --compare -------------------------------------------------------------------------

def test_compare_writes_one_sheet_per_input_with_every_output(tmp_path, rng, capsys):
    inputs = [write_rgb(tmp_path / "in" / f"{name}.png", rng) for name in ("a", "b")]
    out = tmp_path / "out"
    code, report, err = run(["apply", *inputs, "-k", "sobel", "-k", "gaussian:sigma=2", "-o", out,
                             "--compare", "--report", "json"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in report.splitlines()]
    assert len(records) == 4 and not any(r["output"].endswith("_compare.png") for r in records)
    assert sorted(p.name for p in out.iterdir()) == [
        "a_compare.png", "a_gaussian-sigma-2.png", "a_sobel.png",
        "b_compare.png", "b_gaussian-sigma-2.png", "b_sobel.png"]
    tile = (round(200 * TILE_WIDTH / 300), TILE_WIDTH)                # 300 wide -> TILE_WIDTH
    for name in ("a", "b"):
        sheet = pixels(out / f"{name}_compare.png")
        assert sheet.shape == sheet_size(tile, 1, 3) + (3,)             # input, sobel, gaussian
        for column, shown in enumerate([tmp_path / "in" / f"{name}.png", out / f"{name}_sobel.png",
                                        out / f"{name}_gaussian-sigma-2.png"]):
            left = GAP + column * (TILE_WIDTH + GAP)
            np.testing.assert_array_equal(sheet[GAP:GAP + tile[0], left:left + tile[1]],
                                          fit_tile(pixels(shown)))       # as read, as written


def test_compare_with_many_kernels_is_a_grid(tmp_path, rng, capsys):
    source = write_rgb(tmp_path / "photo.png", rng, (90, 120, 3))     # wider than its labels
    kernels = ["box", "sharpen", "laplacian", "emboss", "sobel"]
    code, _, err = run(["apply", source, *sum((["-k", k] for k in kernels), []), "-o", tmp_path / "o",
                        "--compare", "--report", "none"], capsys)
    assert code == 0, err
    assert pixels(tmp_path / "o" / "photo_compare.png").shape[:2] == sheet_size((90, 120), 2, 3)


def test_compare_with_a_stack_shows_the_input_and_the_stack_output(tmp_path, rng, capsys):
    source = write_rgb(tmp_path / "photo.png", rng, (40, 50, 3))
    code, _, err = run(["apply", source, "--layer", "conv:kernel=sobel-x", "--layer", "relu",
                        "--gray", "-o", tmp_path / "o", "--compare", "--report", "none"], capsys)
    assert code == 0, err
    sheet = pixels(tmp_path / "o" / "photo_compare.png")
    assert sheet.ndim == 2                                            # gray in, gray out: gray sheet
    assert sheet.shape[0] == sheet_size((40, 50), 1, 2)[0]            # one row: input, stack
    output = pixels(tmp_path / "o" / "photo_stack.png")
    band = sheet[GAP:GAP + 40]
    assert any(np.array_equal(band[:, left:left + 50], output)
               for left in range(sheet.shape[1] // 2, sheet.shape[1] - 50))   # right half


def test_compare_of_a_signal_shows_its_plots(tmp_path, capsys):
    code, _, err = run(["apply", SAMPLES / "sunspots.npy", "-k", "smooth-1d", "-o", tmp_path,
                        "--compare", "--report", "none"], capsys)
    assert code == 0, err
    assert pixels(tmp_path / "sunspots_compare.png").ndim == 2


@pytest.mark.parametrize("target", ["x.png", "png:-", "maps.npy"])
def test_compare_with_one_file_or_a_stream_is_a_usage_error(tmp_path, rng, capsys, target):
    source = write_rgb(tmp_path / "photo.png", rng, (20, 20, 3))
    output = target if target.endswith(":-") else tmp_path / target
    code, out, err = run(["apply", source, "-k", "box", "-o", output, "--compare"], capsys)
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "--compare" in err and "folder" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"]


def test_compare_refuses_an_existing_sheet_and_a_sheet_named_like_an_output(tmp_path, rng, capsys):
    source = write_rgb(tmp_path / "photo.png", rng, (20, 20, 3))
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "photo_compare.png").write_bytes(b"precious")
    code, _, err = run(["apply", source, "-k", "box", "-o", tmp_path / "o", "--compare"], capsys)
    assert code == 1 and "photo_compare.png: already exists" in err
    assert (tmp_path / "o" / "photo_compare.png").read_bytes() == b"precious"
    code, _, err = run(["apply", source, "-k", "box", "-o", tmp_path / "o", "--compare",
                        "--overwrite", "--report", "none"], capsys)
    assert code == 0, err
    assert pixels(tmp_path / "o" / "photo_compare.png").ndim == 3

    clash = tmp_path / "compare.yaml"
    clash.write_text("weights: [[1]]\n")
    code, _, err = run(["apply", source, "-k", clash, "-o", tmp_path / "p", "--compare"], capsys)
    assert code == 2 and "--compare" in err and "photo_compare.png" in err
    assert not (tmp_path / "p").exists()


def test_compare_follows_the_name_template(tmp_path, rng, capsys):
    sources = [write_rgb(tmp_path / folder / "photo.png", rng, (20, 20, 3)) for folder in "xy"]
    code, _, err = run(["apply", *sources, "-k", "box", "-o", tmp_path / "o", "--compare",
                        "--name", "{parent}-{stem}.{ext}", "--report", "none"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "x-photo.png", "x-photo_compare.png", "y-photo.png", "y-photo_compare.png"]


@pytest.mark.slow
def test_compare_sheets_from_worker_processes_are_the_same(tmp_path, rng):
    for index in range(4):
        write_rgb(tmp_path / "in" / f"{index}.png", rng, (30, 40, 3))
    sheets = {}
    for jobs in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-m", "convcli", "apply", str(tmp_path / "in"), "-k", "sobel", "-k",
             "box", "-o", str(tmp_path / jobs), "--compare", "-j", jobs, "--report", "none", "-q"],
            capture_output=True, text=True, env=subprocess_env(), timeout=300)
        assert result.returncode == 0, result.stderr
        sheets[jobs] = {p.name: p.read_bytes() for p in (tmp_path / jobs).glob("*_compare.png")}
    assert len(sheets["2"]) == 4 and sheets["1"] == sheets["2"]
