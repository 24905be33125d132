"""Issue #12: what a new user meets in the first hour, each with a test that failed before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli as run

SAMPLES = Path(__file__).resolve().parent.parent / "samples"





# --- 1. -o with an image suffix is a file in that format ---------------------------------------

@pytest.mark.parametrize("suffix, pillow_format", [(".jpg", "JPEG"), (".jpeg", "JPEG"),
                                                   (".webp", "WEBP"), (".bmp", "BMP"),
                                                   (".gif", "GIF")])
def test_an_image_suffix_writes_that_format(tmp_path, photo, capsys, suffix, pillow_format):
    out = tmp_path / f"result{suffix}"
    code, _, err = run(["apply", photo, "-k", "gaussian:sigma=1", "-o", out], capsys)
    assert code == 0, err
    assert out.is_file()
    with Image.open(out) as written:
        assert written.format == pillow_format and written.size == (40, 30)


def test_jpeg_quality(tmp_path, photo, capsys):
    sizes = {}
    for quality in (20, 95):
        out = tmp_path / f"q{quality}.jpg"
        code, _, err = run(["apply", photo, "-k", "box:size=3", "-o", out, "--quality", quality],
                           capsys)
        assert code == 0, err
        sizes[quality] = out.stat().st_size
    assert sizes[20] < sizes[95]
    code, _, err = run(["apply", photo, "-k", "box:size=3", "--quality", "0", "-o", tmp_path / "x.jpg"],
                       capsys)
    assert code == 2 and "--quality must be 1 to 100" in err


@pytest.mark.parametrize("out, phrase", [
    ("result.xyz", ".xyz is not an output format"),
    ("-", "png:-"),
    ("gif16.gif --bit-depth 16", "--bit-depth 16 needs png"),
])
def test_bad_outputs_are_usage_errors(tmp_path, photo, capsys, out, phrase):
    target, *extra = out.split()
    code, _, err = run(["apply", photo, "-k", "sobel", "-o", tmp_path / target if target != "-"
                        else "-", *extra], capsys)
    assert code == 2 and phrase in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / target).exists()


def test_a_folder_with_a_dot_is_written_with_a_slash(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "sobel", "-o", f"{tmp_path / 'out.v2'}/"], capsys)
    assert code == 0, err
    assert (tmp_path / "out.v2" / "photo_sobel.png").is_file()


# --- 3. auto shows zero-sum kernels; every record says what was clipped ------------------------

def test_auto_shows_edges_and_reports_clipping(tmp_path, capsys):
    """On a real photo, Scharr's magnitude clipped 27% of the pixels and a DoG peaked at 61/255."""
    for spec in ("scharr", "dog:sigma1=1,sigma2=2", "log:sigma=2"):
        code, out, err = run(["apply", SAMPLES / "camera.png", "-k", spec, "-o", tmp_path / "e.png",
                              "--overwrite", "--report", "json"], capsys)
        assert code == 0, err
        record = json.loads(out)
        assert record["clipped_fraction"] <= 0.01, (spec, record["clipped_fraction"])
        pixels = np.asarray(Image.open(tmp_path / "e.png"))
        assert pixels.max() == 255 and np.percentile(pixels, 99) > 150, spec


def test_clipping_above_one_percent_warns(tmp_path, capsys):
    code, out, err = run(["apply", SAMPLES / "camera.png", "-k", "scharr", "--normalize", "clip",
                          "-o", tmp_path / "e.png", "--report", "json"], capsys)
    assert code == 0
    clipped = json.loads(out)["clipped_fraction"]
    assert clipped > 0.01
    assert "were clipped" in err and "--normalize robust" in err
    assert len(err.strip().splitlines()) == 1
    code, out, err = run(["apply", SAMPLES / "camera.png", "-k", "scharr", "--format", "npy",
                          "-o", tmp_path / "e.npy", "--report", "json"], capsys)
    assert json.loads(out)["clipped_fraction"] == 0.0 and err == ""


# --- 2. a kernel that cannot run on an image fails it before anything is written ---------------

@pytest.mark.parametrize("order", [["sobel", "luma"], ["luma", "sobel"]])
def test_report_and_summary_equal_what_is_on_disk(tmp_path, rng, capsys, order):
    gray = tmp_path / "in" / "gray.png"
    gray.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(gray)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "in" / "rgb.png")
    args = [a for spec in order for a in ("-k", spec)]
    code, out, err = run(["apply", tmp_path / "in", *args, "-o", tmp_path / "o", "--report", "json"],
                         capsys)
    assert code == 1
    records = [json.loads(line) for line in out.splitlines()]
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert written == ["rgb_luma.png", "rgb_sobel.png"]            # nothing of gray.png
    assert sorted(Path(r["output"]).name for r in records if r["status"] == "done") == written
    assert {r["status"] for r in records if "gray" in r["input"]} == {"failed"}
    assert "1 failed" in err and "2 output(s) written" in err


# --- 4. a run never reads its own outputs, never writes over an input --------------------------

def test_outputs_in_the_input_folder_are_not_inputs(tmp_path, photo, capsys):
    folder = photo.parent
    for _ in range(2):
        code, _, err = run(["apply", folder, "-k", "sobel", "-o", folder, "--skip-existing"], capsys)
        assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["photo.png", "photo_sobel.png"]


def test_the_output_tree_inside_a_recursive_input_is_left_out(tmp_path, photo, capsys):
    folder = photo.parent
    for _ in range(2):
        code, _, err = run(["apply", folder, "-r", "-k", "sobel", "-o", folder / "edges",
                            "--overwrite"], capsys)
        assert code == 0, err
    assert sorted(p.name for p in (folder / "edges").rglob("*.png")) == ["photo_sobel.png"]


def test_an_input_is_never_written_over(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "sobel", "-o", photo, "--overwrite"], capsys)
    assert code == 2 and "over the input" in err
    code, _, err = run(["apply", photo.parent, "-k", "sobel", "-o", photo.parent, "--name",
                        "{stem}.{ext}", "--overwrite"], capsys)
    assert code == 2 and "over the input" in err
    assert Image.open(photo).mode == "RGB"                     # still the photo, untouched


# --- 5. workers import the convcli the parent imported ---------------------------------------

@pytest.mark.slow
def test_workers_ignore_a_convcli_folder_in_the_working_directory(tmp_path, rng):
    """Run from inside another checkout: its stale convcli/ must not reach the workers."""
    import subprocess
    import sys

    from conftest import subprocess_env

    import shutil

    import convcli

    stale = tmp_path / "checkout"                 # a working copy that says when it is imported
    shutil.copytree(Path(convcli.__file__).parent, stale / "convcli",
                    ignore=shutil.ignore_patterns("__pycache__"))
    marker = tmp_path / "stale-imported"
    with open(stale / "convcli" / "__init__.py", "a") as init:
        init.write(f"\nopen({str(marker)!r}, 'w').close()\n")
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / f"{index}.png")
    script = tmp_path / "bin" / "run_convcli.py"              # like the installed entry point
    script.parent.mkdir()
    script.write_text("import sys\nfrom convcli.cli import main\n"
                      "if __name__ == '__main__':\n    main(sys.argv[1:])\n")
    result = subprocess.run([sys.executable, str(script), "apply", str(folder), "-k", "sobel",
                             "-o", str(tmp_path / "out"), "-j", "2", "-q", "--engine", "numpy"],
                            cwd=stale,
                            env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").iterdir())) == 3
    assert not marker.exists(), "a worker imported the convcli of the working folder"


# --- 6. problems with the run itself come once, before any work ------------------------------

@pytest.mark.parametrize("make_args, phrase", [
    (lambda tmp, photo: ["--engine", "gpu", "-o", tmp / "o"], "--engine must be one of"),
    (lambda tmp, photo: ["-o", (tmp / "afile").write_text("x") and tmp / "afile"],
     "is a file, not a folder"),
    (lambda tmp, photo: ["-o", "/proc/convcli-cannot-write-here/"], "cannot write there"),
])
def test_run_level_problems_are_one_usage_error(tmp_path, rng, capsys, make_args, phrase):
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (12, 12), dtype=np.uint8)).save(folder / f"{index}.png")
    code, out, err = run(["apply", folder, "-k", "sobel", *make_args(tmp_path, folder)], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and phrase in err, err


# --- 7. --debug anywhere ---------------------------------------------------------------------

def test_debug_after_the_subcommand_is_accepted(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "sobel", "-o", tmp_path / "o", "--debug"], capsys)
    assert code == 0, err
    code, _, err = run(["apply", photo, "-k", "nope", "-o", tmp_path / "o", "--quiet"], capsys)
    assert code == 2 and "Traceback" not in err


# --- 8. name clashes get advice that fixes them; YAML parameters stay in {kernel} ------------

def test_suffix_clash_advice_and_the_suffix_field(tmp_path, rng, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "coffee.webp")
    Image.fromarray(pixels).save(folder / "coffee.gif")
    code, _, err = run(["apply", folder, "-k", "sobel", "-o", tmp_path / "o"], capsys)
    assert code == 2 and "{suffix}" in err and "{parent}" not in err, err
    code, _, err = run(["apply", folder, "-k", "sobel", "-o", tmp_path / "o", "--name",
                        "{stem}_{suffix}_{kernel}.{ext}"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["coffee_gif_sobel.png",
                                                                 "coffee_webp_sobel.png"]


def test_yaml_kernel_parameters_stay_in_the_output_name(tmp_path, photo, capsys):
    kernel = tmp_path / "ridge.yaml"
    kernel.write_text("weights: [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]]\n")
    code, _, err = run(["apply", photo, "-k", f"{kernel}:dilation=2", "-k", str(kernel),
                        "-o", tmp_path / "o"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["photo_ridge-dilation-2.png",
                                                                 "photo_ridge.png"]


# --- 9. nothing prints a raw Python warning; image size is convcli's limit -----------------------

def test_a_huge_image_is_refused_by_max_pixels_without_a_pillow_warning(tmp_path, capsys):
    big = tmp_path / "big.png"
    Image.new("L", (9500, 9500)).save(big, compress_level=1)      # 90 MP: Pillow would warn
    code, _, err = run(["apply", big, "-k", "sobel", "-o", tmp_path / "o", "--max-pixels",
                        "50000000"], capsys)
    assert code == 1
    assert err.count("\n") == 1 and "more than --max-pixels 50,000,000" in err, err
    assert "DecompressionBomb" not in err and "Warning" not in err


def test_non_finite_inputs_are_one_convcli_warning(tmp_path, rng, capsys):
    values = rng.random((1, 20, 20)).astype(np.float32)
    values[0, 3, 4], values[0, 10, 10] = np.nan, np.inf
    np.save(tmp_path / "maps.npy", values)
    code, _, err = run(["apply", tmp_path / "maps.npy", "-k", "sobel", "-o", tmp_path / "o.png"],
                       capsys)
    assert code == 0
    assert err.splitlines() == [f"convcli: warning: {tmp_path / 'maps.npy'}: 2 NaN or infinite "
                                "input value(s); they spread to every output whose window reads them"]


def test_python_warnings_become_convcli_lines(capsys):
    import warnings

    from convcli.errors import route_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        route_warnings()
        warnings.warn("Corrupt EXIF data", UserWarning)
    assert capsys.readouterr().err == "convcli: warning: Corrupt EXIF data\n"


# --- 13. the first run says it compiles, and keeps compile time out of the speed ---------------

@pytest.mark.slow
def test_a_first_run_compiles_in_the_background_and_never_waits(tmp_path):
    """An empty cache: the run says the loops compile in the background, filters with NumPy
    (no compile time in its report), and the next run uses the compiled loops where they pay
    (its second image), with the same numbers within float32 rounding."""
    import subprocess
    import sys

    from conftest import images_past_the_numpy_budget, subprocess_env
    from convcli.engine._cache import wait_for_background

    images = images_past_the_numpy_budget(tmp_path, 2, taps_per_pixel=9)
    cache = tmp_path / "empty-cache"
    env = subprocess_env(NUMBA_CACHE_DIR=str(cache))

    def run(output: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
        command = [sys.executable, "-m", "convcli", "apply", *map(str, images), "-k", "laplacian",
                   "-o", str(tmp_path / output), "--format", "npy", "--report", "json", "-j", "1"]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr
        return result, [json.loads(line) for line in result.stdout.splitlines()]

    first, first_records = run("first")
    assert first.stderr.count("compiles in the background") == 1, first.stderr
    assert [r["engine"] for r in first_records] == ["numpy", "numpy"]
    assert all("compile" not in r["timings_ms"] for r in first_records)
    assert wait_for_background(cache, timeout=600)
    second, second_records = run("second")
    assert "compil" not in second.stderr
    assert [r["engine"] for r in second_records] == ["numpy", "direct"]
    assert all("compile" not in r["timings_ms"] for r in second_records)
    for path in sorted((tmp_path / "first").glob("*.npy")):
        np.testing.assert_allclose(np.load(path), np.load(tmp_path / "second" / path.name),
                                   rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_a_run_that_waits_on_the_compiler_says_so_and_reports_compile_time_apart(tmp_path):
    """CONVCLI_BACKGROUND_COMPILE=0: the first run compiles itself, says so once, and keeps
    the seconds out of the convolve time; the second loads them."""
    import subprocess
    import sys

    from conftest import images_past_the_numpy_budget, subprocess_env

    images = images_past_the_numpy_budget(tmp_path, 2, taps_per_pixel=9)
    env = subprocess_env(NUMBA_CACHE_DIR=str(tmp_path / "empty-cache"), CONVCLI_BACKGROUND_COMPILE="0")
    command = [sys.executable, "-m", "convcli", "apply", *map(str, images), "-k", "laplacian",
               "-o", str(tmp_path / "o"), "--report", "json", "--overwrite", "-j", "1",
               "--max-memory", "0"]                        # in memory (they would stream)
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("convcli: note: compiling the engine") == 1
    records = [json.loads(line) for line in first.stdout.splitlines()]
    compiled = [r["timings_ms"]["compile"] for r in records if "compile" in r["timings_ms"]]
    assert compiled and compiled[0] > 100                 # seconds of LLVM, reported apart
    assert all(r["timings_ms"]["convolve"] < compiled[0] for r in records)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert "compiling" not in second.stderr
    assert all("compile" not in json.loads(line)["timings_ms"] for line in second.stdout.splitlines())
