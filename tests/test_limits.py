"""Hostile input (issue #13): huge kernels, huge or malicious YAML files, numbers no float holds.

Each is refused up front with one line naming the limit (and how to raise it) or the file,
exit code 2, no traceback, in bounded time. Anything that hung before these fixes runs in a
subprocess with a timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli, subprocess_env


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(np.arange(20 * 30, dtype=np.uint8).reshape(20, 30)).save(path)
    return path


def run_bounded(args, tmp_path, timeout: float = 30.0) -> tuple[int, str]:
    """``convcli ARGS`` in a subprocess that may take at most ``timeout`` seconds."""
    done = subprocess.run([sys.executable, "-m", "convcli", *map(str, args)], cwd=tmp_path,
                          env=subprocess_env(), capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stderr


def assert_one_line(stderr: str, *words: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convcli: error: "), stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0], (word, stderr)


# --- kernels from parameters -------------------------------------------------------------

@pytest.mark.parametrize("spec, side", [
    ("binomial:size=1000000", "1,000,000"), ("dog:sigma2=1000", "6,001"),
    ("box:size=100000", "100,000"), ("gaussian:sigma=5000", "30,001"),
    ("log:sigma=2000", "12,001"), ("motion:length=100000", "100,001"),
    ("gaussian:sigma=1e300", "x")])
def test_huge_builtin_kernel_is_refused_before_it_is_built(spec, side, small, tmp_path):
    code, stderr = run_bounded(["apply", small, "-k", spec, "-o", tmp_path / "out"], tmp_path)
    assert code == 2
    assert_one_line(stderr, spec, side, "--max-kernel 1025", "0: no limit")
    assert not (tmp_path / "out").exists()


def test_max_kernel_option_raises_and_lowers_the_limit(small, tmp_path, capsys):
    code, _, err = run_cli(["apply", small, "-k", "gaussian:sigma=2", "--max-kernel", "9",
                            "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line(err, "13 x 13 taps", "--max-kernel 9", "--max-kernel 13")
    code, _, err = run_cli(["apply", small, "-k", "box:size=1100", "--max-kernel", "0",
                            "-o", tmp_path / "out"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["apply", small, "-k", "box:size=3", "--max-kernel", "-1",
                            "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line(err, "--max-kernel must be >= 0")


def test_separable_yaml_kernel_is_checked_before_it_is_multiplied_out(tmp_path, small, capsys):
    kernel = tmp_path / "wide.yaml"
    kernel.write_text(f"separable:\n  column: [{', '.join(['1'] * 2000)}]\n  row: [1, 1]\n")
    code, _, err = run_cli(["apply", small, "-k", kernel, "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line(err, str(kernel), "2,000 x 2,000", "--max-kernel 1025")


def test_kernel_larger_than_the_padded_single_image_is_a_usage_error(small, tmp_path, capsys):
    code, _, err = run_cli(["apply", small, "-k", "box:size=25", "--padding", "valid",
                            "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line(err, str(small), "height 20", "at least 25")
    assert not list((tmp_path / "out").glob("*.png"))


def test_kernel_too_large_for_one_of_several_images_fails_only_that_one(small, tmp_path, capsys):
    large = tmp_path / "large.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(large)
    code, _, err = run_cli(["apply", small, large, "-k", "box:size=25", "--padding", "valid",
                            "-o", tmp_path / "out", "--report", "none"], capsys)
    assert code == 1
    assert "small.png" in err and (tmp_path / "out" / "large_box-size-25.png").exists()


def test_rank_one_test_of_a_huge_kernel_needs_no_svd(monkeypatch):
    from convcli.builtin_kernels import gaussian_taps
    from convcli.engine.api import rank_one_factors

    def no_svd(matrix, *args, **kwargs):
        raise AssertionError(f"an SVD of a {matrix.shape} kernel (O(n^3): hours at 6001^2)")

    monkeypatch.setattr(np.linalg, "svd", no_svd)
    taps = gaussian_taps(300.0, 2001)
    column, row = rank_one_factors(np.outer(taps, 2 * taps)[None, None])
    np.testing.assert_allclose(np.outer(column[0], row[0]), np.outer(taps, 2 * taps),
                               rtol=1e-5, atol=1e-12)
    other = gaussian_taps(200.0, 2001)
    assert rank_one_factors((np.outer(taps, taps) - np.outer(other, other))[None, None]) is None


def test_gaussian_family_carries_its_factors():
    from convcli.kernels import resolve

    for spec in ("gaussian:sigma=100", "binomial:size=1025", "box:size=1000"):
        kernel = resolve(spec).kernels[0]
        assert kernel.factors is not None and kernel.is_separable
    taps = resolve("binomial:size=1025").kernels[0].factors[0]     # comb(1024, k) > float64
    assert np.isfinite(taps).all() and taps.sum() == pytest.approx(1.0)


# --- YAML files ----------------------------------------------------------------------------

BILLION_LAUGHS = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi")) + "weights: [*i, *i]\n"


def test_billion_laughs_is_refused_not_expanded(tmp_path, small):
    kernel = tmp_path / "laughs.yaml"
    kernel.write_text(BILLION_LAUGHS)
    code, stderr = run_bounded(["apply", small, "-k", kernel, "-o", tmp_path / "out"], tmp_path)
    assert code == 2
    assert_one_line(stderr, str(kernel), "alias")


def test_large_yaml_kernel_parses_in_bounded_time(tmp_path, small):
    """A 1200 x 1200 matrix (14 MB) took over a minute with PyYAML's Python loader."""
    kernel = tmp_path / "big.yaml"
    rows = np.random.default_rng(1).random((1200, 1200))
    with kernel.open("w") as file:
        file.write("weights:\n")
        file.writelines("  - [" + ", ".join(f"{v:.6f}" for v in row) + "]\n" for row in rows)
    code, stderr = run_bounded(["apply", small, "-k", kernel, "-o", tmp_path / "out"], tmp_path,
                               timeout=50)
    assert code == 2
    assert_one_line(stderr, str(kernel), "1,200 x 1,200", "--max-kernel")


def test_yaml_file_above_max_yaml_bytes_is_refused_before_it_is_read(tmp_path, small, capsys):
    kernel = tmp_path / "k.yaml"
    kernel.write_text("weights: [[1, 2, 1], [2, 4, 2], [1, 2, 1]]\nnormalize: true\n")
    code, _, err = run_cli(["apply", small, "-k", kernel, "--max-yaml-bytes", "20",
                            "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line(err, str(kernel), "--max-yaml-bytes 20", "0: no limit")


def test_yaml_exponent_floats_stay_numbers_with_the_c_loader(tmp_path):
    from convcli.yaml_files import read_yaml

    path = tmp_path / "k.yaml"
    path.write_text("weights: [[1e-3, 2.5E+2, -1e0]]\n")
    assert read_yaml(path, "kernel file") == {"weights": [[0.001, 250.0, -1.0]]}
    path.write_text("weights: [[1, 2]\n  bad: [\n")
    with pytest.raises(Exception, match=r"k.yaml: line \d+: invalid YAML"):
        read_yaml(path, "kernel file")


@pytest.mark.parametrize("text, words", [
    ("weights: [[1, 1" + "0" * 400 + "]]\n", ["weights", "too large"]),          # OverflowError
    ("weights: [[1]]\nbias: 1" + "0" * 400 + "\n", ["bias", "too large"]),       # OverflowError
    ("weights: [[1]]\nscale: 1" + "0" * 400 + "\n", ["scale", "too large"]),     # OverflowError
    ("weights: [[1, " + "9" * 5000 + "]]\n", ["invalid YAML", "digits"]),        # ValueError
    ("weights: " + "[" * 5000 + "1" + "]" * 5000 + "\n", ["invalid YAML", "nesting"]),
    ("weights:\n" + "".join(" " * i + "-\n" for i in range(1, 3000)) + " " * 3000 + "- 1\n",
     ["invalid YAML", "nesting"]),                                               # RecursionError
    ("weights: " + "[" * 100 + "1" + "]" * 100 + "\n", ["nested more than 64"]),
])
def test_numbers_and_nesting_no_float_holds_are_one_line_errors(text, words, tmp_path, small,
                                                                capsys):
    kernel = tmp_path / "k.yaml"
    kernel.write_text(text)
    code, _, err = run_cli(["apply", small, "-k", kernel, "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line(err, str(kernel), *words)


def test_layers_file_gets_the_same_yaml_defences(tmp_path, small, capsys):
    layers = tmp_path / "net.yaml"
    layers.write_text(BILLION_LAUGHS.replace("weights:", "layers:"))
    code, _, err = run_cli(["apply", small, "--layer", layers, "-o", tmp_path / "out"], capsys)
    assert code == 2
    assert_one_line(err, str(layers), "alias")
