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
from convcli.cli import main
from convcli.kernels import render_kernel, resolve
from convcli.pictures import GAP, TILE_WIDTH, fit_tile, kernel_picture

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def run(args: list, capsys) -> tuple[int, str, str]:
    """Run ``convcli ARGS`` in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


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
