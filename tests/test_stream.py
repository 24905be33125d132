"""convcli.stream: a TIFF or PNG filtered in strips (--stream, --max-memory) writes the numbers
of the in-memory run, in bounded memory; what cannot stream falls back or fails in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from convcli import stream
from convcli.cli import main
from convcli.engine import PADDING_MODES

from conftest import subprocess_env

LAYOUTS = {
    "striped": dict(rowsperstrip=5),
    "striped-zlib": dict(rowsperstrip=7, compression="zlib"),
    "one-strip": dict(),
    "tiled": dict(tile=(16, 32), compression="zlib"),
    "tiled-bigtiff": dict(tile=(32, 16), bigtiff=True),
    "planar": dict(rowsperstrip=9, planarconfig="separate"),
    "big-endian": dict(rowsperstrip=4, byteorder=">"),
    "big-endian-tiled": dict(tile=(16, 16), byteorder=">", compression="zlib", predictor=True),
}
OPERATIONS = {
    "sobel": ["-k", "sobel"],
    "gaussian": ["-k", "gaussian:sigma=1.5"],
    "stride": ["-k", "box", "--stride", "2", "--dilation", "2"],
    "stack": ["--layer", "conv:k=3,c=2,init=random,seed=3", "--layer", "relu",
              "--layer", "pool:k=2"],
}


def write_tiff(path, rng, layout: str, dtype: str, channels: int, shape=(83, 61)):
    if dtype.startswith("float"):
        values = rng.normal(0.5, 1.0, shape + (channels,)).astype(dtype)
    else:
        values = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, shape + (channels,), endpoint=True,
                              dtype=dtype)
    options = dict(LAYOUTS[layout])
    if dtype.startswith("float"):
        options.pop("predictor", None)             # the float predictor needs imagecodecs
    if channels == 1:
        values = values[..., 0]
        options.pop("planarconfig", None)
    elif options.get("planarconfig") == "separate":
        values = np.moveaxis(values, -1, 0)            # tifffile takes separate planes first
    photometric = "rgb" if channels == 3 else "minisblack"
    tifffile.imwrite(path, values, photometric=photometric, **options)


def run(args) -> list[dict]:
    """``convcli apply`` in this process; its JSON records."""
    with pytest.raises(SystemExit) as stopped:
        main(["apply", *args, "--report", "json", "-q"])
    assert stopped.value.code == 0
    return stopped


def records(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def as_chw(values: np.ndarray, channels: int) -> np.ndarray:
    """tifffile's array of a convcli TIFF output as (C, H, W)."""
    values = np.squeeze(values)
    if values.ndim == 2:
        return values[np.newaxis]
    return values if values.shape[0] == channels else np.moveaxis(values, -1, 0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pad_mode", PADDING_MODES)
@pytest.mark.parametrize("operation", OPERATIONS)
def test_streamed_output_equals_the_in_memory_output(tmp_path, rng, monkeypatch, capsys,
                                                     pad_mode, operation, layout):
    """Every layout, border mode and operation; the sample type and count drawn at random."""
    monkeypatch.setattr(stream, "TILE", 16)                  # strips of 16 rows: many strips
    dtype = str(rng.choice(["uint8", "uint16", "float32", "int16", "float64"]))
    channels = int(rng.choice([1, 3]))
    source = tmp_path / "in.tif"
    write_tiff(source, rng, layout, dtype, channels)
    common = [str(source), *OPERATIONS[operation], "--pad-mode", pad_mode]
    run([*common, "-o", str(tmp_path / "streamed.tif"), "--stream", "--max-memory", "1K"])
    streamed, = records(capsys)
    if layout == "big-endian-tiled" and dtype == "float32" and channels == 1:
        # Pillow (which load_image uses for gray float32) misreads big-endian zlib float
        # pages (a bug of the in-memory reader, not of streaming): compare with the same
        # values little-endian
        tifffile.imwrite(source, tifffile.imread(source), tile=(16, 16))
    run([*common, "-o", str(tmp_path / "memory.tif"), "--max-memory", "0"])
    in_memory, = records(capsys)

    assert streamed["strips"] > 1 and in_memory["strips"] is None
    assert streamed["peak_memory_mb"] > 0 and in_memory["peak_memory_mb"] > 0
    for key in ("input_shape", "output_shape", "kernel_shape", "stride", "padding", "dilation"):
        assert streamed[key] == in_memory[key], key
    out_channels = in_memory["output_shape"][0]
    got = as_chw(tifffile.imread(tmp_path / "streamed.tif"), out_channels)
    expected = as_chw(tifffile.imread(tmp_path / "memory.tif"), out_channels)
    assert got.dtype == np.float32 and got.shape == expected.shape
    context = f"{layout} {dtype} x{channels}"
    if operation == "stack":        # a conv that mixes channels: BLAS sums in another order
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=context)
    else:
        assert np.array_equal(got, expected, equal_nan=True), context
    with tifffile.TiffFile(tmp_path / "streamed.tif") as tif:
        page = tif.pages[0]
        assert tif.is_bigtiff and page.is_tiled and page.compression == 8    # zlib


PNG_KINDS = ("gray8", "rgb8", "palette", "gray16", "rgb16")
PNG_OPERATIONS = {
    "sobel": ["-k", "sobel"],                              # auto: robust
    "laplacian": ["-k", "laplacian", "--normalize", "abs"],
    "gaussian": ["-k", "gaussian:sigma=1.5"],              # auto: clip
    "stride": ["-k", "box", "--stride", "2", "--dilation", "2", "--normalize", "offset"],
    "stack": ["--layer", "conv:k=3,c=3,init=random,seed=3", "--layer", "relu",
              "--layer", "pool:k=2", "--normalize", "clip"],
}


def write_png(path, rng, kind: str, shape=(71, 53)):
    """A PNG as other programs write them: Pillow's (it picks each row's filter) or, for
    16-bit colour, which Pillow cannot write, convcli's own encoder."""
    from PIL import Image

    from convcli._png import encode_png

    smooth = np.cumsum(rng.integers(-9, 10, shape + (3,)), axis=1)     # photo-like rows
    rgb = (smooth - smooth.min()) / max(np.ptp(smooth), 1)
    if kind == "gray8":
        Image.fromarray((rgb[:, :, 0] * 255).astype(np.uint8)).save(path)
    elif kind == "rgb8":
        Image.fromarray((rgb * 255).astype(np.uint8)).save(path)
    elif kind == "palette":
        Image.fromarray((rgb * 255).astype(np.uint8)).quantize(40).save(path)
    elif kind == "gray16":
        Image.fromarray((rgb[:, :, 0] * 65535).astype(np.uint16)).save(path)
    else:
        path.write_bytes(encode_png((rgb * 65535).astype(np.uint16)))


def interlaced_png(rng) -> bytes:
    """An Adam7-interlaced 16-bit RGB PNG (Pillow writes none)."""
    from test_images import _reference_png16

    return _reference_png16(rng.integers(0, 65535, (30, 20, 3), dtype=np.uint16),
                            interlace=True, rng=rng)


def png_rows(path) -> np.ndarray:
    """A PNG's unfiltered rows as stored (bytes), whatever its type."""
    from convcli._png import PngRowDecoder

    decoder = PngRowDecoder(path)
    try:
        return decoder.next_rows(decoder.height)
    finally:
        decoder.close()


@pytest.mark.parametrize("kind", PNG_KINDS)
@pytest.mark.parametrize("pad_mode", PADDING_MODES)
@pytest.mark.parametrize("operation", PNG_OPERATIONS)
def test_a_streamed_png_equals_the_in_memory_png(tmp_path, rng, monkeypatch, capsys, kind,
                                                 pad_mode, operation):
    """PNG in, PNG out, in strips of 16 rows: every pixel as the in-memory run writes it
    (circular padding makes the first strip read the last rows: the decoder starts over)."""
    monkeypatch.setattr(stream, "PNG_ROWS", 16)
    source = tmp_path / "in.png"
    write_png(source, rng, kind)
    common = [str(source), *PNG_OPERATIONS[operation], "--pad-mode", pad_mode]
    run([*common, "-o", str(tmp_path / "streamed.png"), "--stream", "--max-memory", "1K"])
    streamed, = records(capsys)
    run([*common, "-o", str(tmp_path / "memory.png"), "--max-memory", "0"])
    in_memory, = records(capsys)
    assert streamed["strips"] > 1 and in_memory["strips"] is None
    for key in ("input_shape", "output_shape", "clipped_fraction"):
        assert streamed[key] == pytest.approx(in_memory[key]), key
    got, expected = png_rows(tmp_path / "streamed.png"), png_rows(tmp_path / "memory.png")
    assert got.shape == expected.shape
    if operation == "stack":        # a conv that mixes channels: BLAS sums in another order
        assert np.abs(got.astype(int) - expected).max() <= 1
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("pad_mode", ["circular", "reflect"])
def test_a_png_read_twice_is_decoded_once_when_it_fits(tmp_path, rng, monkeypatch, capsys,
                                                       pad_mode):
    """Sobel (--normalize robust: its sampled rows first) with circular padding (the first
    strip reads the last rows): the decoded rows are kept, the decoder never starts over,
    and the output is the in-memory one."""
    from convcli._png import PngRowDecoder

    monkeypatch.setattr(stream, "PNG_ROWS", 16)
    monkeypatch.setattr(stream, "STRIP_BYTES", 1)
    restarts = []                                                # decoder of each call
    original = PngRowDecoder.restart
    monkeypatch.setattr(PngRowDecoder, "restart",
                        lambda self: restarts.append(id(self)) or original(self))
    write_png(tmp_path / "in.png", rng, "rgb8")
    common = [str(tmp_path / "in.png"), "-k", "sobel", "--pad-mode", pad_mode]
    run([*common, "-o", str(tmp_path / "streamed.png"), "--stream", "--max-memory", "64M"])
    streamed, = records(capsys)
    assert streamed["strips"] > 1
    assert max(restarts.count(decoder) for decoder in restarts) == 1     # each when opened
    run([*common, "-o", str(tmp_path / "memory.png"), "--max-memory", "0"])
    np.testing.assert_array_equal(png_rows(tmp_path / "streamed.png"),
                                  png_rows(tmp_path / "memory.png"))


def test_png_and_tiff_stream_into_each_other(tmp_path, rng, monkeypatch, capsys):
    """PNG in, float TIFF out (alpha dropped, as in memory) and TIFF in, PNG out; --gray."""
    from PIL import Image

    monkeypatch.setattr(stream, "TILE", 16)
    monkeypatch.setattr(stream, "PNG_ROWS", 16)
    rgba = rng.integers(0, 255, (50, 41, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    write_png(tmp_path / "rgb.png", rng, "rgb16")
    tifffile.imwrite(tmp_path / "f.tif", rng.random((45, 38, 3), dtype=np.float32),
                     photometric="rgb", tile=(16, 16))
    for name, fmt, extra in (("rgba.png", "tiff", []), ("rgb.png", "tiff", ["--gray"]),
                             ("f.tif", "png", ["--gray"]), ("f.tif", "png", [])):
        common = [str(tmp_path / name), "-k", "gaussian:sigma=1", *extra, "--overwrite"]
        run([*common, "-o", str(tmp_path / f"s.{fmt}"), "--stream", "--max-memory", "1K"])
        streamed, = records(capsys)
        run([*common, "-o", str(tmp_path / f"m.{fmt}"), "--max-memory", "0"])
        in_memory, = records(capsys)
        assert streamed["strips"] > 1 and streamed["output_shape"] == in_memory["output_shape"]
        if fmt == "png":
            np.testing.assert_array_equal(png_rows(tmp_path / "s.png"), png_rows(tmp_path / "m.png"))
        else:
            channels = in_memory["output_shape"][0]
            np.testing.assert_array_equal(as_chw(tifffile.imread(tmp_path / "s.tiff"), channels),
                                          as_chw(tifffile.imread(tmp_path / "m.tiff"), channels))


def test_a_png_that_cannot_stream_says_why(tmp_path, rng, capsys):
    """Alpha (or a transparent colour) into a PNG, --normalize minmax, a 5-map picture: too
    large for --max-memory, each fails in one line that says why."""
    from PIL import Image

    rgb = rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "keyed.png", transparency=(1, 2, 3))
    Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])).save(tmp_path / "alpha.png")
    Image.fromarray(rgb).save(tmp_path / "plain.png")
    for name, extra, why in (("keyed.png", [], "alpha"),
                             ("alpha.png", [], "alpha"),
                             ("plain.png", ["-k", "box", "--normalize", "minmax"],
                              "--normalize minmax"),
                             ("plain.png", ["--layer", "conv:k=3,c=5,init=random", "--normalize",
                                            "clip"], "5 maps"),
                             ("plain.png", ["--layer", "conv:k=3,c=3,init=random"],
                              "--normalize auto stretches a stack's maps")):
        with pytest.raises(SystemExit) as stopped:
            main(["apply", str(tmp_path / name), *(extra or ["-k", "box"]), "-q",
                  "-o", str(tmp_path / "out/"), "--max-memory", "1K"])
        assert stopped.value.code == 1
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and name in error and why in error, error
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("kind", ["jpeg", "turned-jpeg", "interlaced-png", "webp", "npy"])
def test_images_pillow_decodes_whole_stream_as_they_load(tmp_path, rng, monkeypatch, capsys,
                                                         kind):
    """JPEG (EXIF-turned too), an interlaced PNG, WebP: decoded whole to their integer
    samples, floats by strips; a (C, H, W) .npy memory-mapped. Output: the in-memory one."""
    from PIL import Image

    monkeypatch.setattr(stream, "PNG_ROWS", 16)
    photo = Image.fromarray((np.cumsum(rng.integers(-9, 10, (61, 47, 3)), axis=1) % 256
                             ).astype(np.uint8))
    source = tmp_path / {"jpeg": "a.jpg", "turned-jpeg": "a.jpg", "interlaced-png": "a.png",
                         "webp": "a.webp", "npy": "a.npy"}[kind]
    if kind == "turned-jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6                                       # turned 90 degrees clockwise
        photo.save(source, exif=exif)
    elif kind == "interlaced-png":
        source.write_bytes(interlaced_png(rng))
    elif kind == "npy":
        np.save(source, rng.normal(0.5, 0.3, (3, 61, 47)).astype(">f8"))
    else:
        photo.save(source)
    common = [str(source), "-k", "gaussian:sigma=1.5", "--pad-mode", "circular"]
    run([*common, "-o", str(tmp_path / "streamed.png"), "--stream", "--max-memory", "1K"])
    streamed, = records(capsys)
    run([*common, "-o", str(tmp_path / "memory.png"), "--max-memory", "0"])
    in_memory, = records(capsys)
    assert streamed["strips"] > 1 and streamed["output_shape"] == in_memory["output_shape"]
    np.testing.assert_array_equal(png_rows(tmp_path / "streamed.png"),
                                  png_rows(tmp_path / "memory.png"))


def test_a_damaged_png_fails_in_one_line_and_writes_nothing(tmp_path, rng, capsys):
    from convcli._png import encode_png

    data = encode_png(rng.integers(0, 255, (64, 40, 3), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(SystemExit) as stopped:
        main(["apply", str(tmp_path / "cut.png"), "-k", "box", "-q", "-o",
              str(tmp_path / "out.png"), "--stream", "--max-memory", "1K"])
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "cut.png" in error and "decode" in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.png"]


def test_gray_alpha_and_many_samples_stream_as_they_load(tmp_path, rng, monkeypatch, capsys):
    """An RGBA page loses its alpha, --gray makes luminance, 5 samples stay 5 maps."""
    monkeypatch.setattr(stream, "TILE", 16)
    rgba = rng.integers(0, 255, (50, 40, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=[2],
                     tile=(16, 16))
    five = rng.random((40, 37, 5), dtype=np.float32)
    tifffile.imwrite(tmp_path / "five.tif", five, photometric="minisblack",
                     planarconfig="contig", rowsperstrip=3)
    for name, extra in (("rgba", []), ("rgba", ["--gray"]), ("five", [])):
        common = [str(tmp_path / f"{name}.tif"), "-k", "gaussian:sigma=1", *extra, "--overwrite"]
        run([*common, "-o", str(tmp_path / "s.tif"), "--stream", "--max-memory", "1K"])
        streamed, = records(capsys)
        run([*common, "-o", str(tmp_path / "m.tif"), "--max-memory", "0"])
        in_memory, = records(capsys)
        channels = in_memory["output_shape"][0]
        assert streamed["output_shape"] == in_memory["output_shape"]
        got = as_chw(tifffile.imread(tmp_path / "s.tif"), channels)
        expected = as_chw(tifffile.imread(tmp_path / "m.tif"), channels)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7, err_msg=name)


def test_what_cannot_stream_runs_in_memory_when_it_fits(tmp_path, rng, capsys):
    """--normalize minmax into a PNG, a stack of pages, a transposed convolution: --stream
    leaves them in memory."""
    (tmp_path / "a.png").write_bytes(interlaced_png(rng))
    tifffile.imwrite(tmp_path / "stack.tif", rng.random((3, 20, 20), dtype=np.float32),
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "one.tif", rng.random((20, 20), dtype=np.float32))
    for args in ([str(tmp_path / "a.png"), "-k", "box", "--normalize", "minmax", "--format",
                  "png"],
                 [str(tmp_path / "stack.tif"), "-k", "box-3d", "--format", "tiff"],
                 [str(tmp_path / "one.tif"), "--layer", "tconv:k=2,s=2,init=random", "--format",
                  "tiff"]):
        run([*args, "-o", str(tmp_path / "out/"), "--stream"])
        record, = records(capsys)
        assert record["strips"] is None


def test_too_large_to_hold_and_to_stream_fails_in_one_line(tmp_path, rng, capsys):
    from PIL import Image

    Image.fromarray(rng.integers(0, 255, (30, 20), dtype=np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as stopped:
        main(["apply", str(tmp_path / "a.png"), "-k", "box", "-o", str(tmp_path / "out/"),
              "--format", "jpeg", "--max-memory", "1K", "-q"])
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "a.png" in error and "--max-memory" in error and "cannot be streamed" in error
    assert "the output is jpeg" in error


def test_a_tiff_too_large_streams_without_being_asked(tmp_path, rng, monkeypatch, capsys):
    monkeypatch.setattr(stream, "TILE", 16)
    tifffile.imwrite(tmp_path / "a.tif", rng.random((40, 30), dtype=np.float32), tile=(16, 16))
    run([str(tmp_path / "a.tif"), "-k", "box", "-o", str(tmp_path / "o.tif"),
         "--max-memory", "2K"])
    record, = records(capsys)
    assert record["strips"] == 3


@pytest.mark.parametrize("value", ["lots", "-5", "1.5Q", ""])
def test_a_bad_max_memory_is_a_usage_error(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as stopped:
        main(["apply", "x.tif", "-k", "box", "-o", str(tmp_path / "out/"),
              "--max-memory", value])
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--max-memory" in error


@pytest.mark.parametrize("text, size", [("0", 0), ("123", 123), ("64K", 65536), ("1.5M", 1572864),
                                        ("2G", 2 << 30), ("512MiB", 512 << 20), ("3gb", 3 << 30)])
def test_max_memory_sizes(text, size):
    assert stream.parse_memory(text) == size


def test_streaming_holds_much_less_than_the_whole_image(tmp_path, rng):
    """A 3000 x 2000 RGB TIFF: the streamed run's peak memory is well below the in-memory
    run's (each measured in its own process)."""
    values = rng.integers(0, 255, (3000, 2000, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", values, photometric="rgb", tile=(256, 256))
    peaks = {}
    for mode, extra in (("streamed", ["--stream", "--max-memory", "64M"]),
                        ("memory", ["--max-memory", "0"])):
        done = subprocess.run(
            [sys.executable, "-m", "convcli", "apply", str(tmp_path / "big.tif"), "-k",
             "gaussian:sigma=2", "-o", str(tmp_path / f"{mode}.tif"), "--report", "json", "-q",
             "--engine", "numpy", *extra], capture_output=True, text=True, env=subprocess_env(), timeout=60)
        assert done.returncode == 0, done.stderr
        record = json.loads(done.stdout)
        peaks[mode] = record["peak_memory_mb"]
    # (NumPy's path in both: loading the compiled loops costs either run ~100 MB)
    # the in-memory run holds the 72 MB float32 input and its output, and more
    assert peaks["streamed"] < 0.6 * peaks["memory"], peaks


@pytest.mark.parametrize("width, height, why", [
    (1_000_000, 1_000_000, "is more than --max-pixels 68,719,476,736"),
    (1, (1 << 24) + 1, "rows is more than a streamed image may have"),
    (200_000, 200_000, "image data ends early"),
    (3, 5_000_000, "image data ends early"),
])
def test_a_header_that_promises_a_huge_image_fails_at_once(tmp_path, capsys, width, height,
                                                            why):
    """A PNG header is not proof of an image: a few bytes of data claiming 10^12 pixels, 2^24
    rows or 4 * 10^10 pixels fail in one line, quickly, writing nothing (they used to plan
    strips for minutes)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                        + chunk(b"IDAT", zlib.compress(bytes(1000)))
                                        + chunk(b"IEND", b""))
    with pytest.raises(SystemExit) as stopped:
        main(["apply", str(tmp_path / "bomb.png"), "-k", "sobel", "-q", "-o",
              str(tmp_path / "out.png")])
    assert stopped.value.code == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "bomb.png" in error and why in error, error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bomb.png"]
