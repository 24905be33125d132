"""Loading every Pillow mode, value mapping, writers and atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from convcli.errors import FileFailure, UsageError
from convcli.images import (atomic_write, load_image, map_to_unit, read_header, save_image)


def saved(tmp_path, image: Image.Image, name: str = "in.png"):
    path = tmp_path / name
    image.save(path)
    return path


def test_rgb_and_gray_scale_to_unit(tmp_path, rng):
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    loaded = load_image(saved(tmp_path, Image.fromarray(rgb)))
    assert loaded.pixels.shape == (3, 5, 7) and loaded.pixels.dtype == np.float32
    np.testing.assert_allclose(loaded.pixels, rgb.transpose(2, 0, 1) / 255, rtol=1e-6)
    assert loaded.alpha is None and loaded.bit_depth == 8 and loaded.mode == "RGB"
    gray = load_image(saved(tmp_path, Image.fromarray(rgb), "g.png"), gray=True)
    expected = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255
    np.testing.assert_allclose(gray.pixels[0], expected, atol=1e-6)


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_split_off(tmp_path, rng, mode):
    channels = len(mode)
    values = rng.integers(0, 256, (4, 6, channels), dtype=np.uint8)
    loaded = load_image(saved(tmp_path, Image.fromarray(values, mode)))
    assert loaded.pixels.shape == (channels - 1, 4, 6)
    np.testing.assert_allclose(loaded.alpha, values[..., -1] / 255, rtol=1e-6)
    np.testing.assert_allclose(loaded.pixels, np.moveaxis(values[..., :-1], -1, 0) / 255, rtol=1e-6)


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255] + [0] * 759)
    palette.putdata([0, 1, 2, 2, 1, 0])
    plain = load_image(saved(tmp_path, palette))
    assert plain.pixels.shape == (3, 2, 3) and plain.alpha is None
    np.testing.assert_array_equal(plain.pixels[0], [[0, 1, 0], [0, 1, 0]])
    palette.info["transparency"] = 0
    see_through = load_image(saved(tmp_path, palette, "t.png"))
    np.testing.assert_array_equal(see_through.alpha, [[0, 1, 1], [1, 1, 0]])


def test_sixteen_bit_gray_keeps_precision(tmp_path, rng):
    values = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    loaded = load_image(saved(tmp_path, Image.fromarray(values)))
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (1, 6, 5)
    np.testing.assert_allclose(loaded.pixels[0], values / 65535, rtol=1e-6)


def test_float_and_bilevel_modes(tmp_path, rng):
    values = rng.standard_normal((4, 3)).astype(np.float32) * 10
    loaded = load_image(saved(tmp_path, Image.fromarray(values, "F"), "f.tif"))
    np.testing.assert_array_equal(loaded.pixels[0], values)
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    np.testing.assert_array_equal(load_image(saved(tmp_path, bits, "b.png")).pixels[0], [[0, 1], [1, 0]])


def test_exif_orientation_is_applied_and_read_from_the_header(tmp_path, rng):
    values = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    image = Image.fromarray(values)
    exif = image.getexif()
    exif[0x0112] = 6                                   # rotate 90 degrees clockwise to display
    path = tmp_path / "turned.png"
    image.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.pixels.shape == (3, 6, 4)
    np.testing.assert_allclose(loaded.pixels[:, 0, :], np.moveaxis(values[::-1, 0, :], -1, 0) / 255,
                               rtol=1e-6)
    assert read_header(path) == (3, 6, 4) and read_header(path, gray=True) == (1, 6, 4)


@pytest.mark.parametrize("make, phrase", [
    (lambda p: p / "missing.png", "no such file"),
    (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", "not an image"),
    (lambda p: p, "is a folder"),
    (lambda p: (p / "cut.png").write_bytes(_truncated_png()) and p / "cut.png", "cannot"),
])
def test_unreadable_files_fail_with_the_path_first(tmp_path, make, phrase):
    path = make(tmp_path)
    with pytest.raises(FileFailure) as error:
        load_image(path)
    assert str(error.value).startswith(str(path)) and phrase in str(error.value)


def _truncated_png() -> bytes:
    import io

    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")
    return buffer.getvalue()[:2000]                    # the header and a third of the pixels


def test_map_to_unit_modes():
    maps = np.array([[[-0.5, 0.25, 1.5]]], np.float32)
    np.testing.assert_allclose(map_to_unit(maps, "clip"), [[[0, 0.25, 1]]])
    np.testing.assert_allclose(map_to_unit(maps, "abs"), [[[0.5, 0.25, 1]]])
    np.testing.assert_allclose(map_to_unit(maps, "offset"), [[[0, 0.75, 1]]])
    np.testing.assert_allclose(map_to_unit(maps, "minmax"), [[[0, 0.375, 1]]])
    np.testing.assert_array_equal(map_to_unit(np.full((1, 2, 2), 3.0), "minmax"), 0)
    with pytest.raises(UsageError, match="--normalize"):
        map_to_unit(maps, "log")


@pytest.mark.parametrize("channels, alpha", [(1, False), (3, False), (1, True), (3, True)])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_round_trip(tmp_path, rng, channels, alpha, bit_depth):
    top = 2 ** bit_depth - 1
    levels = rng.integers(0, top + 1, (channels, 5, 6))
    alpha_levels = rng.integers(0, top + 1, (5, 6)) if alpha else None
    path = tmp_path / "out.png"
    save_image(path, (levels / top).astype(np.float32), fmt="png", bit_depth=bit_depth,
               alpha=None if alpha_levels is None else (alpha_levels / top).astype(np.float32))
    expected = np.concatenate([levels, alpha_levels[None]]) if alpha else levels
    if bit_depth == 16 and (channels > 1 or alpha):
        written = _read_png16(path)                    # Pillow reads 16-bit colour as 8-bit
    else:
        written = np.asarray(Image.open(path)).astype(np.int64)
        written = written[None] if written.ndim == 2 else np.moveaxis(written, -1, 0)
    np.testing.assert_array_equal(written, expected)


def _read_png16(path) -> np.ndarray:
    """Decode our own (Up-filtered, one IDAT) 16-bit PNGs, as an independent check."""
    import struct
    import zlib

    data = path.read_bytes()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert depth == 16
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8:start - 4])[0]
    rows = np.frombuffer(zlib.decompress(data[start:start + length]), np.uint8).reshape(height, -1)
    assert (rows[:, 0] == 2).all()                     # the Up filter on every row
    unfiltered = np.cumsum(rows[:, 1:], axis=0, dtype=np.uint64) % 256
    pixels = unfiltered.astype(np.uint8).view(">u2").reshape(height, width, channels)
    return np.moveaxis(pixels.astype(np.int64), -1, 0)


def test_png_written_by_convcli_reads_back_in_opencv(tmp_path, rng):
    cv2 = pytest.importorskip("cv2")
    levels = rng.integers(0, 65536, (3, 9, 7))
    save_image(tmp_path / "c.png", (levels / 65535).astype(np.float32), fmt="png", bit_depth=16)
    decoded = cv2.imread(str(tmp_path / "c.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_array_equal(np.moveaxis(decoded, -1, 0), levels)


def test_sixteen_bit_colour_png_opens_in_pillow(tmp_path, rng):
    path = tmp_path / "deep.png"
    save_image(path, rng.random((3, 4, 5)).astype(np.float32), fmt="png", bit_depth=16)
    with Image.open(path) as image:
        assert image.size == (5, 4)
        image.load()


def test_png_refuses_other_channel_counts(tmp_path):
    with pytest.raises(UsageError, match="tiff or npy"):
        save_image(tmp_path / "x.png", np.zeros((2, 3, 3), np.float32), fmt="png")
    assert not list(tmp_path.iterdir())


def test_tiff_and_npy_hold_raw_floats(tmp_path, rng):
    maps = (rng.standard_normal((4, 3, 5)) * 7).astype(np.float32)
    save_image(tmp_path / "m.tif", maps, fmt="tiff")
    with Image.open(tmp_path / "m.tif") as tiff:
        pages = []
        for page in range(tiff.n_frames):
            tiff.seek(page)
            pages.append(np.asarray(tiff, np.float32))
    np.testing.assert_array_equal(np.stack(pages), maps)
    save_image(tmp_path / "m.npy", maps, fmt="npy")
    np.testing.assert_array_equal(np.load(tmp_path / "m.npy"), maps)


def test_atomic_write_keeps_existing_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    atomic_write(target, lambda f: f.write(b"first"))
    assert target.read_bytes() == b"first"
    with pytest.raises(FileFailure, match="already exists; use --overwrite"):
        atomic_write(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"first"
    atomic_write(target, lambda f: f.write(b"third"), overwrite=True)
    assert target.read_bytes() == b"third"

    def explode(file):
        file.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "sub" / "never.bin", explode)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.bin"]
    assert oct(os.stat(target).st_mode & 0o777) != "0o600"       # not mkstemp's private mode
