"""`convcli apply`, `convcli kernels` end to end: outputs checked against scipy.ndimage."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import subprocess_env
from conftest import run_cli as run
from convcli.kernels import resolve

ndimage = pytest.importorskip("scipy.ndimage")

SAMPLES = Path(__file__).resolve().parent.parent / "samples"




def write_png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def rgb_png(tmp_path, rng) -> Path:
    return write_png(tmp_path / "photo.png", rng.integers(0, 256, (37, 41, 3), dtype=np.uint8))


def gaussian_taps(sigma: float) -> np.ndarray:
    radius = int(np.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-x**2 / (2 * sigma**2))
    return taps / taps.sum()


def test_gaussian_blur_matches_scipy_with_reflect_borders(tmp_path, rgb_png, capsys):
    code, out, err = run(["apply", rgb_png, "-k", "gaussian:sigma=1.5", "-o", tmp_path / "out",
                          "--format", "npy", "--report", "none"], capsys)
    assert code == 0, err
    result = np.load(tmp_path / "out" / "photo_gaussian-sigma-1.5.npy")
    image = np.asarray(Image.open(rgb_png), np.float64).transpose(2, 0, 1) / 255
    taps = gaussian_taps(1.5)
    expected = np.stack([ndimage.correlate(c, np.outer(taps, taps), mode="mirror") for c in image])
    assert result.shape == expected.shape == (3, 37, 41)
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_several_kernels_in_one_call_match_separate_calls(tmp_path, rgb_png, capsys):
    """The last job's result is stored over the input's pixels; earlier jobs must not see it."""
    kernels = ["sobel", "gaussian:sigma=1", "laplacian"]
    arguments = ["--format", "npy", "--report", "none"]
    code, _, err = run(["apply", rgb_png, *sum((["-k", k] for k in kernels), []),
                        "-o", tmp_path / "together", *arguments], capsys)
    assert code == 0, err
    for kernel in kernels:
        code, _, err = run(["apply", rgb_png, "-k", kernel, "-o", tmp_path / kernel, *arguments],
                           capsys)
        assert code == 0, err
        (alone,) = (tmp_path / kernel).iterdir()
        np.testing.assert_array_equal(np.load(alone), np.load(tmp_path / "together" / alone.name))


def test_sobel_magnitude_matches_scipy(tmp_path, rng, capsys):
    gray = write_png(tmp_path / "g.png", rng.integers(0, 256, (30, 26), dtype=np.uint8))
    code, _, err = run(["apply", gray, "-k", "sobel", "-o", tmp_path / "s.npy", "--format", "npy",
                        "--pad-mode", "replicate", "--report", "none"], capsys)
    assert code == 0, err
    image = np.asarray(Image.open(gray), np.float64) / 255
    gx = ndimage.correlate(image, np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1.0]]), mode="nearest")
    gy = ndimage.correlate(image, np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1.0]]), mode="nearest")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy")[0], np.hypot(gx, gy), atol=1e-5)


def test_flip_gives_true_convolution(tmp_path, rng, capsys):
    gray = write_png(tmp_path / "g.png", rng.integers(0, 256, (20, 23), dtype=np.uint8))
    code, _, err = run(["apply", gray, "-k", "emboss", "-o", tmp_path / "e.npy", "--format", "npy",
                        "--flip", "--pad-mode", "zeros", "--report", "none"], capsys)
    assert code == 0, err
    emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2.0]])
    image = np.asarray(Image.open(gray), np.float64) / 255
    expected = ndimage.convolve(image, emboss, mode="constant")
    np.testing.assert_allclose(np.load(tmp_path / "e.npy")[0], expected, atol=1e-5)


def test_stride_with_same_padding_gives_ceil_size(tmp_path, rgb_png, capsys):
    code, out, err = run(["apply", rgb_png, "-k", "box:size=4", "--stride", "2", "-o", tmp_path,
                          "--report", "json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["output_shape"] == [3, 19, 21]          # ceil(37/2), ceil(41/2)
    assert Image.open(record["output"]).size == (21, 19)


def test_json_report_has_documented_keys_one_line_per_output(tmp_path, rgb_png, capsys):
    code, out, err = run(["apply", rgb_png, "-k", "sobel-x", "-k", "gaussian:sigma=1", "-o", tmp_path / "o",
                          "--report", "json"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        record = json.loads(line)
        for key in ("input", "output", "input_shape", "output_shape", "kernel", "kernel_shape",
                    "stride", "padding", "dilation", "engine", "timings_ms"):
            assert key in record, key
        assert set(record["timings_ms"]) >= {"load", "convolve", "write"}
        assert record["input_shape"] == [3, 37, 41]
        assert Path(record["output"]).exists()
    engines = {json.loads(line)["kernel"]: json.loads(line)["engine"] for line in lines}
    assert engines["gaussian:sigma=1"] == "separable"


def test_table_report_names_shapes_and_engine(tmp_path, rgb_png, capsys):
    code, out, err = run(["apply", rgb_png, "-k", "laplacian", "-o", tmp_path], capsys)
    assert code == 0, err
    assert "3x37x41" in out and "direct" in out and "laplacian" in out


def test_quiet_prints_no_table_but_still_the_json_report(tmp_path, rgb_png, capsys):
    code, out, err = run(["apply", rgb_png, "-k", "laplacian", "-o", tmp_path / "a", "-q"], capsys)
    assert code == 0 and out == "" and err == "", out + err
    assert (tmp_path / "a" / "photo_laplacian.png").exists()
    code, out, err = run(["apply", rgb_png, "-k", "laplacian", "-o", tmp_path / "b", "-q",
                          "--report", "json"], capsys)
    assert code == 0 and json.loads(out)["kernel"] == "laplacian" and err == "", err


def test_dilation_and_valid_padding_shrink_the_output(tmp_path, rgb_png, capsys):
    code, out, _ = run(["apply", rgb_png, "-k", "laplacian:dilation=3", "--padding", "valid", "-o", tmp_path,
                        "--report", "json"], capsys)
    assert code == 0
    record = json.loads(out)
    assert record["dilation"] == [3, 3]
    assert record["output_shape"] == [3, 37 - 6, 41 - 6]


def test_rgba_alpha_passes_through_unfiltered(tmp_path, rng, capsys):
    pixels = rng.integers(0, 256, (16, 18, 4), dtype=np.uint8)
    source = write_png(tmp_path / "a.png", pixels)
    code, _, err = run(["apply", source, "-k", "box", "-o", tmp_path / "b.png", "--report", "none"], capsys)
    assert code == 0, err
    result = Image.open(tmp_path / "b.png")
    assert result.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(result)[..., 3], pixels[..., 3])


def test_sixteen_bit_input_gives_sixteen_bit_png(tmp_path, rng, capsys):
    values = rng.integers(0, 65536, (12, 14), dtype=np.uint16)
    source = tmp_path / "deep.png"
    Image.fromarray(values).save(source)
    code, _, err = run(["apply", source, "-k", "identity", "-o", tmp_path / "o.png", "--report", "none"],
                       capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")).astype(np.uint16), values)


def test_colour_kernel_maps_three_channels_to_one(tmp_path, rgb_png, capsys):
    code, out, err = run(["apply", rgb_png, "-k", "luma", "-o", tmp_path, "--report", "json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["output_shape"] == [1, 37, 41] and record["kernel_shape"] == [1, 3, 1, 1]
    image = np.asarray(Image.open(rgb_png), np.float64) / 255
    expected = image @ np.array([0.299, 0.587, 0.114])
    written = np.asarray(Image.open(record["output"]), np.float64) / 255
    assert np.max(np.abs(written - expected)) <= 0.5 / 255 + 1e-6


def test_existing_output_is_kept_without_overwrite(tmp_path, rgb_png, capsys):
    target = tmp_path / "x.png"
    target.write_bytes(b"precious")
    code, _, err = run(["apply", rgb_png, "-k", "box", "-o", target], capsys)
    assert code == 1
    assert "already exists" in err and "--overwrite" in err
    assert target.read_bytes() == b"precious"
    code, _, err = run(["apply", rgb_png, "-k", "box", "-o", target, "--overwrite", "--report", "none"], capsys)
    assert code == 0, err
    assert Image.open(target).size == (41, 37)


def test_dry_run_says_what_becomes_of_outputs_that_exist(tmp_path, rgb_png, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo_box.png").write_bytes(b"old")
    for extra, fate in (([], "fails without --overwrite or --skip-existing"),
                        (["--overwrite"], "replaced with --overwrite"),
                        (["--skip-existing"], "skipped with --skip-existing")):
        code, listing, err = run(["apply", rgb_png, "-k", "box", "-k", "sobel", "-o", out,
                                  "--dry-run", *extra], capsys)
        assert code == 0, err
        assert listing.splitlines() == [f"{rgb_png} -> {out / 'photo_box.png'}  (box; exists: {fate})",
                                        f"{rgb_png} -> {out / 'photo_sobel.png'}  (sobel)"]
        assert err == "convcli: dry run: 1 input(s), 2 output(s) (1 exists); nothing written\n"
    assert [p.name for p in out.iterdir()] == ["photo_box.png"]
    assert (out / "photo_box.png").read_bytes() == b"old"


def test_input_is_never_modified(tmp_path, rgb_png, capsys):
    before = hashlib.sha256(rgb_png.read_bytes()).hexdigest()
    code, _, _ = run(["apply", rgb_png, "-k", "sharpen", "-o", tmp_path, "--report", "none"], capsys)
    assert code == 0
    assert hashlib.sha256(rgb_png.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("args, code, phrases", [
    (["-k", "gausian"], 2, ["gausian", "gaussian"]),
    (["-k", "gaussian:sigma=-1"], 2, ["sigma"]),
    (["-k", "box", "--pad-mode", "mirror"], 2, ["--pad-mode", "reflect"]),
    (["-k", "box", "--stride", "0"], 2, ["--stride"]),
    (["-k", "box", "--padding", "lots"], 2, ["--padding", "same"]),
    (["-k", "box", "--format", "jpg"], 2, ["--format", "png"]),
    (["-k", "box", "--report", "xml"], 2, ["--report", "json"]),
    (["-k", "box", "--scale", "nan"], 2, ["--scale must be a finite number; got nan"]),
    (["-k", "box", "--scale", "-inf"], 2, ["--scale must be a finite number; got -inf"]),
    (["-k", "box", "--bias", "inf"], 2, ["--bias must be a finite number; got inf"]),
    (["-k", "box", "--bias", "1e999"], 2, ["--bias must be a finite number"]),
    (["-k", "box", "--bias", "half"], 2, ["--bias", "not a valid float"]),
    (["--layer", "relu", "--bias", "1"], 2, ["--scale and --bias change -k kernels", "bias:value"]),
    (["-k", "3x3: 1 2 3"], 2, ["kernel '3x3: 1 2 3'", "needs 9 values; got 3"]),
    (["-k", "[[1, 2], [3]]"], 2, ["kernel '[[1, 2], [3]]'", "rectangular"]),
    (["-k", "sharpen", "--scale", "1e38"], 2, ["float32's range"]),
])
def test_usage_errors_are_one_line_with_exit_2(tmp_path, rgb_png, capsys, args, code, phrases):
    exit_code, out, err = run(["apply", rgb_png, *args, "-o", tmp_path], capsys)
    assert exit_code == code
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, err
    assert not list(tmp_path.glob("*_*.png"))


def test_missing_and_unreadable_files_fail_with_exit_1(tmp_path, rgb_png, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    code, out, err = run(["apply", tmp_path / "missing.png", notes, rgb_png, "-k", "box", "-o", tmp_path / "o",
                          "--report", "json"], capsys)
    assert code == 1
    errors = [line for line in err.strip().splitlines() if line.startswith("convcli: error: ")]
    assert len(errors) == 2
    assert "missing.png: no such file" in errors[0] and "notes.txt: not an image" in errors[1]
    assert err.strip().splitlines()[-1].startswith("convcli: 1 done, 0 skipped, 2 failed")
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["status"] for r in records] == ["failed", "failed", "done"]   # every input accounted for
    assert records[0]["error"].endswith("missing.png: no such file")


def test_debug_shows_the_traceback_of_a_failed_file(tmp_path, capsys):
    code, _, err = run(["--debug", "apply", tmp_path / "gone.png", "-k", "box", "-o", tmp_path], capsys)
    assert code == 1
    assert "Traceback" in err and "FileFailure: " in err and "gone.png: no such file" in err


def test_kernel_larger_than_padded_image_names_the_smallest_size(tmp_path, rng, capsys):
    tiny = write_png(tmp_path / "tiny.png", rng.integers(1, 256, (3, 3), dtype=np.uint8))
    code, _, err = run(["apply", tiny, "-k", "box:size=5", "--padding", "valid", "-o", tmp_path / "o"], capsys)
    assert code == 2            # the only input: a usage error before any work (#13)
    assert "tiny.png" in err and "at least 5" in err


def test_one_file_output_for_several_outputs_is_a_usage_error(tmp_path, rgb_png, capsys):
    code, _, err = run(["apply", rgb_png, "-k", "box", "-k", "sharpen", "-o", tmp_path / "x.png"], capsys)
    assert code == 2 and "2 outputs" in err


def test_many_feature_maps_as_png_make_a_labelled_grid(tmp_path, rng, rgb_png, capsys):
    from convcli.pictures import feature_grid

    spec = tmp_path / "bank.yaml"
    weights = rng.standard_normal((4, 3, 3, 3)).round(3).tolist()
    spec.write_text(json.dumps({"name": "bank", "weights": weights}))   # JSON is valid YAML
    outputs = {}
    for fmt in ("png", "npy"):
        code, out, err = run(["apply", rgb_png, "-k", spec, "-o", tmp_path / fmt, "--format", fmt,
                              "--padding", "valid", "--report", "json"], capsys)
        assert code == 0, err
        record = json.loads(out)
        assert record["output_shape"] == [4, 35, 39]
        outputs[fmt] = record["output"]
    with Image.open(outputs["png"]) as grid:
        assert grid.mode == "L"
        np.testing.assert_array_equal(np.asarray(grid), feature_grid(np.load(outputs["npy"])))


@pytest.mark.parametrize("fmt", ["tiff", "npy"])
def test_raw_feature_maps_chain_into_the_next_run(tmp_path, rng, rgb_png, capsys, fmt):
    spec = tmp_path / "bank.yaml"
    spec.write_text(json.dumps({"name": "bank", "weights": rng.standard_normal((5, 3, 3, 3)).tolist()}))
    first = tmp_path / f"maps.{'tif' if fmt == 'tiff' else fmt}"
    code, _, err = run(["apply", rgb_png, "-k", spec, "-o", first, "--report", "none"], capsys)
    assert code == 0, err
    code, _, err = run(["apply", first, "-k", "box", "-o", tmp_path / "second.npy", "--report", "none"],
                       capsys)
    assert code == 0, err
    maps = np.load(first) if fmt == "npy" else __import__("tifffile").imread(first)
    assert maps.shape == (5, 37, 41)
    expected = ndimage.uniform_filter(maps.astype(np.float64), size=(1, 3, 3), mode="mirror")
    np.testing.assert_allclose(np.load(tmp_path / "second.npy"), expected, atol=1e-4)


def test_bad_raw_inputs_fail_on_one_line_each(tmp_path, capsys):
    (tmp_path / "pickled.npy").write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00}\x94.")
    np.save(tmp_path / "complex.npy", np.ones((2, 4, 4), np.complex64))
    (tmp_path / "cut.tif").write_bytes(b"II*\0" + bytes(range(200)))
    code, out, err = run(["apply", tmp_path, "-k", "box", "-o", tmp_path / "out", "--report", "none"],
                         capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("convcli: error: ")]
    assert len(lines) == 3 and "Traceback" not in err and "3 failed" in err, err
    assert len(err.strip().splitlines()) == 4, err            # and the summary: no log lines
    for line, name in zip(sorted(lines), ["complex.npy", "cut.tif", "pickled.npy"]):
        assert line.startswith(f"convcli: error: {tmp_path / name}: "), line


def test_kernels_list_and_show(capsys):
    code, out, _ = run(["kernels", "list"], capsys)
    assert code == 0
    for name in ("gaussian", "sobel", "kirsch", "unsharp", "luma"):
        assert name in out
    code, out, _ = run(["kernels", "show", "sobel-x"], capsys)
    assert code == 0 and "separable" in out and "-2" in out


def test_kernels_list_for_scripts_as_json_or_names(capsys):
    code, out, err = run(["kernels", "list", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert all(set(row) == {"name", "size", "kind", "description"} for row in rows), rows
    assert {"gaussian", "sobel", "kirsch"} <= {row["name"] for row in rows}
    code, out, err = run(["kernels", "list", "--names"], capsys)
    assert code == 0, err
    assert out.splitlines() == [row["name"] for row in rows]
    for name in out.splitlines():          # for k in $(convcli kernels list --names) ... -k $k
        resolve(name)
    code, out, err = run(["kernels", "list", "--names", "--json"], capsys)
    assert code == 2 and out == "" and "give one" in err


def _apply_npy(capsys, image, spec, out: Path, *options) -> np.ndarray:
    """``convcli apply IMAGE -k SPEC`` into the folder ``out``; its one .npy output."""
    code, _, err = run(["apply", image, "-k", spec, "-o", out, "--format", "npy", "--report", "none",
                        *options], capsys)
    assert code == 0, err
    (output,) = out.iterdir()
    return np.load(output)


def test_inline_kernels_give_the_yaml_files_output(tmp_path, rng, rgb_png, capsys):
    """Both inline spellings, the same weights as a YAML file: the same maps, bit for bit,
    named by the inline label; two inline kernels in one run write two files."""
    weights = rng.integers(-3, 4, (3, 5)).astype(float)           # 3 rows x 5 columns
    weights[1, 2] = 9
    path = tmp_path / "mine.yaml"
    path.write_text(json.dumps({"weights": weights.tolist()}))
    nested = json.dumps(weights.tolist())
    imagemagick = "5x3: " + "  ".join(",".join(f"{v:g}" for v in row) for row in weights)
    from_file = _apply_npy(capsys, rgb_png, path, tmp_path / "file")
    for spec in (nested, imagemagick):
        out = tmp_path / str(len(spec))
        np.testing.assert_array_equal(_apply_npy(capsys, rgb_png, spec, out), from_file)
        assert [p.name for p in out.iterdir()] == [f"photo_{resolve(spec).name}.npy"]
    code, out, err = run(["apply", rgb_png, "-k", nested, "-k", "[[1, 0, -1]]", "-o",
                          tmp_path / "two", "--report", "json"], capsys)
    assert code == 0, err
    names = [json.loads(line)["kernel"] for line in out.splitlines()]
    assert names[0].startswith("inline-3x5-") and names[1].startswith("inline-1x3-")
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(f"photo_{n}.png" for n in names)


def test_scale_and_bias_are_the_yaml_files_scale_and_bias(tmp_path, rng, rgb_png, capsys):
    """--scale 2 --bias 0.5 gives 2 x response + 0.5: the output of the same YAML kernel with
    scale: 2 and bias: 0.5."""
    weights = rng.standard_normal((3, 3)).round(3).tolist()
    plain, scaled = tmp_path / "plain.yaml", tmp_path / "scaled.yaml"
    plain.write_text(json.dumps({"weights": weights}))
    scaled.write_text(json.dumps({"weights": weights, "scale": 2, "bias": 0.5}))
    response = _apply_npy(capsys, rgb_png, plain, tmp_path / "a")
    from_options = _apply_npy(capsys, rgb_png, plain, tmp_path / "b", "--scale", "2", "--bias", "0.5")
    from_yaml = _apply_npy(capsys, rgb_png, scaled, tmp_path / "c")
    np.testing.assert_allclose(from_options, from_yaml, rtol=0, atol=1e-6)
    np.testing.assert_allclose(from_options, 2 * response.astype(np.float64) + 0.5, rtol=0, atol=1e-6)
    inline = _apply_npy(capsys, rgb_png, json.dumps(weights), tmp_path / "d", "--scale", "2",
                        "--bias", "0.5")
    np.testing.assert_array_equal(inline, from_options)


def test_bias_is_added_after_an_operation_combines_its_kernels(tmp_path, rgb_png, capsys):
    magnitude = _apply_npy(capsys, rgb_png, "sobel", tmp_path / "a").astype(np.float64)
    shifted = _apply_npy(capsys, rgb_png, "sobel", tmp_path / "b", "--scale", "-2", "--bias", "0.25")
    np.testing.assert_allclose(shifted, 2 * magnitude + 0.25, rtol=0, atol=1e-5)   # |-2 g| = 2 |g|


def test_scale_and_bias_reach_kernels_on_volumes(tmp_path, rng, capsys):
    volume = tmp_path / "v.npy"
    np.save(volume, rng.standard_normal((2, 5, 6, 7)).astype(np.float32))
    weights = rng.standard_normal((3, 3, 3)).round(3).tolist()
    path = tmp_path / "k3.yaml"
    path.write_text(json.dumps({"weights": weights, "scale": 2, "bias": 0.5}))
    from_yaml = _apply_npy(capsys, volume, path, tmp_path / "a")
    inline = _apply_npy(capsys, volume, json.dumps(weights), tmp_path / "b", "--scale", "2",
                        "--bias", "0.5")
    assert inline.shape == from_yaml.shape == (2, 5, 6, 7)
    np.testing.assert_allclose(inline, from_yaml, rtol=0, atol=1e-5)


def test_a_bias_shows_negative_edges_as_darker_than_mid_grey(tmp_path, capsys):
    """--normalize auto takes |response| for edge kernels, unless a bias lifts them into view
    (ImageMagick's -bias 50%): a flat image is mid-grey, an edge darker on one side."""
    step = np.full((8, 8), 100, np.uint8)
    step[:, 4:] = 200
    image = write_png(tmp_path / "step.png", step)
    code, _, err = run(["apply", image, "-k", "sobel-x", "--bias", "0.5", "-o", tmp_path / "b.png",
                        "--report", "none"], capsys)
    assert code == 0, err
    pixels = np.asarray(Image.open(tmp_path / "b.png"))
    assert pixels[0, 0] == 128 and pixels[0, 4] == 255 and pixels[0, 6] == 128
    code, _, err = run(["apply", image, "-k", "sobel-x", "--scale", "-1", "--bias", "0.5",
                        "-o", tmp_path / "n.png", "--report", "none"], capsys)
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "n.png"))[0, 4] == 0


def test_kernels_show_and_explain_take_inline_kernels(capsys):
    code, out, err = run(["kernels", "show", "3x3: 0,-1,0 -1,5,-1 0,-1,0"], capsys)
    assert code == 0, err
    assert out.splitlines()[0].startswith("inline-3x3-") and "sum 1, separable: no" in out
    assert [line.split() for line in out.splitlines()[2:5]] == [["0", "-1", "0"], ["-1", "5", "-1"],
                                                                ["0", "-1", "0"]]
    code, out, err = run(["explain", "--size", "20", "-k", "[[1, 2, 1]]", "--stride", "2"], capsys)
    assert code == 0, err
    assert out.startswith("conv 1x3 inline-1x3-") and "(1, 20, 20) -> (1, 10, 10)" in out
    code, _, err = run(["kernels", "show", "3x3: 1 2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "needs 9 values" in err


@pytest.mark.slow
def test_real_entry_point_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "convcli", "apply", str(SAMPLES / "coins.png"), "-k", "sobel",
         "-o", str(tmp_path), "--report", "json"],
        capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert Path(record["output"]).exists() and record["output_shape"][1:] == record["input_shape"][1:]

    bad = subprocess.run([sys.executable, "-m", "convcli", "apply", str(tmp_path / "nope.png"),
                          "-k", "sobel", "-o", str(tmp_path)],
                         capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "nope.png" in bad.stderr


def test_help_imports_neither_numba_nor_numpy(tmp_path):
    """`convcli --help` stays fast: NumPy alone costs ~0.1 s to import, Numba seconds, Dask's
    distributed ~0.5 s (it is imported only with --scheduler)."""
    code = ("import sys\nfrom convcli.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [name for name in ('numba', 'numpy', 'dask', 'distributed')\n"
            "         if name in sys.modules]\n"
            "print(heavy or 'CLEAN')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=subprocess_env(), timeout=120)
    assert result.stdout.strip().endswith("CLEAN"), result.stdout + result.stderr
    assert "apply" in result.stdout


def test_a_small_image_in_a_fresh_process_skips_numba(tmp_path, rng):
    """Cold start: auto takes the NumPy path, never imports Numba, and writes what the
    compiled separable path writes (float32 rounding apart: at most 1 level of 255)."""
    source = write_png(tmp_path / "small.png", rng.integers(0, 256, (60, 70, 3), dtype=np.uint8))
    code = ("import sys\nfrom convcli.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as stop:\n    code = stop.code\n"
            "print('NUMBA' if 'numba' in sys.modules else 'CLEAN', file=sys.stderr)\n"
            "sys.exit(code)")
    outputs = {}
    for engine in ("auto", "separable"):
        result = subprocess.run(
            [sys.executable, "-c", code, "apply", str(source), "-k", "sobel", "--engine", engine,
             "-o", str(tmp_path / f"{engine}.png"), "--report", "json"],
            capture_output=True, text=True, env=subprocess_env(), timeout=300)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["engine"] == ("numpy" if engine == "auto" else "separable")
        assert result.stderr.strip().endswith("CLEAN" if engine == "auto" else "NUMBA")
        outputs[engine] = np.asarray(Image.open(tmp_path / f"{engine}.png"), np.int16)
    assert np.abs(outputs["auto"] - outputs["separable"]).max() <= 1
