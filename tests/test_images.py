"""Loading every Pillow mode, 16-bit PNGs, value mapping, writers and atomic writes."""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from convcli._png import encode_png, read_png16
from convcli.errors import FileFailure, UsageError
from convcli.images import (atomic_write, encode_image, load_image, map_to_unit, read_header,
                            save_image)

LUMA = np.array([0.299, 0.587, 0.114])


def saved(tmp_path, image: Image.Image, name: str = "in.png", **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


def planar(values: np.ndarray) -> np.ndarray:
    """(H, W[, C]) -> (C, H, W) float64."""
    values = np.asarray(values, np.float64)
    return values[np.newaxis] if values.ndim == 2 else np.moveaxis(values, -1, 0)


# --- every mode ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, name", [("L", "in.png"), ("RGB", "in.png"), ("RGB", "in.bmp"),
                                        ("L", "in.tif"), ("RGB", "in.ppm"), ("L", "in.pgm")])
def test_eight_bit_modes_scale_by_255(tmp_path, rng, mode, name):
    shape = (5, 7) if mode == "L" else (5, 7, 3)
    values = rng.integers(0, 256, shape, dtype=np.uint8)
    loaded = load_image(saved(tmp_path, Image.fromarray(values, mode), name))
    assert loaded.pixels.dtype == np.float32 and loaded.pixels.flags.c_contiguous
    assert loaded.pixels.shape == (len(mode), 5, 7)
    assert loaded.alpha is None and loaded.bit_depth == 8 and loaded.mode == mode
    np.testing.assert_array_equal(loaded.pixels, (planar(values) / 255).astype(np.float32))


@pytest.mark.parametrize("mode", ["LA", "RGBA"])
def test_alpha_is_split_off(tmp_path, rng, mode):
    values = rng.integers(0, 256, (4, 6, len(mode)), dtype=np.uint8)
    loaded = load_image(saved(tmp_path, Image.fromarray(values, mode)))
    assert loaded.pixels.shape == (len(mode) - 1, 4, 6) and loaded.mode == mode
    np.testing.assert_array_equal(loaded.alpha, (values[..., -1] / 255).astype(np.float32))
    np.testing.assert_array_equal(loaded.pixels, (planar(values[..., :-1]) / 255).astype(np.float32))


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 51, 255] + [0] * 759)
    palette.putdata([0, 1, 2, 2, 1, 0])
    plain = load_image(saved(tmp_path, palette))
    assert plain.pixels.shape == (3, 2, 3) and plain.alpha is None and plain.mode == "P"
    np.testing.assert_array_equal(plain.pixels[0], [[0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(plain.pixels[1], np.float32([[0, 0, 0.2], [0.2, 0, 0]]))
    palette.info["transparency"] = 0
    see_through = load_image(saved(tmp_path, palette, "t.png"))
    assert see_through.pixels.shape == (3, 2, 3)
    np.testing.assert_array_equal(see_through.alpha, [[0, 1, 1], [1, 1, 0]])


def test_gif_transparency_becomes_alpha(tmp_path):
    palette = Image.new("P", (2, 2))
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.putdata([0, 1, 1, 0])
    loaded = load_image(saved(tmp_path, palette, "t.gif", transparency=1))
    np.testing.assert_array_equal(loaded.alpha, [[1, 0], [0, 1]])


@pytest.mark.parametrize("mode, key", [("L", 7), ("RGB", (1, 2, 3))])
def test_png_transparent_colour_becomes_alpha(tmp_path, mode, key):
    values = np.array([[7, 9]] if mode == "L" else [[[1, 2, 3], [1, 2, 4]]], np.uint8)
    loaded = load_image(saved(tmp_path, Image.fromarray(values, mode), transparency=key))
    assert loaded.pixels.shape == (len(mode), 1, 2)
    np.testing.assert_array_equal(loaded.alpha, [[0, 1]])
    np.testing.assert_array_equal(loaded.pixels, (planar(values) / 255).astype(np.float32))


@pytest.mark.parametrize("name", ["in.png", "in.tif"])
def test_sixteen_bit_gray_keeps_precision(tmp_path, rng, name):
    values = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    values[0, :2] = (0, 65535)
    loaded = load_image(saved(tmp_path, Image.fromarray(values), name))
    assert loaded.mode.startswith("I") and loaded.bit_depth == 16 and loaded.pixels.shape == (1, 6, 5)
    np.testing.assert_array_equal(loaded.pixels[0], (values / 65535).astype(np.float32))
    assert loaded.pixels[0, 0, 0] == 0 and loaded.pixels[0, 0, 1] == 1


def test_thirty_two_bit_integers_scale_as_sixteen_bit(tmp_path):
    values = np.array([[0, 257, 65535, 131070]], np.int32)
    loaded = load_image(saved(tmp_path, Image.fromarray(values), "i.tif"))
    assert loaded.mode == "I" and loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.pixels[0], np.float32([[0, 257 / 65535, 1, 2]]))


def test_float_images_keep_raw_values(tmp_path, rng):
    values = rng.standard_normal((4, 3)).astype(np.float32) * 10
    loaded = load_image(saved(tmp_path, Image.fromarray(values, "F"), "f.tif"))
    assert loaded.mode == "F" and loaded.bit_depth == 32
    np.testing.assert_array_equal(loaded.pixels[0], values)


def test_bilevel_is_zero_or_one(tmp_path):
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    loaded = load_image(saved(tmp_path, bits, "b.png"))
    assert loaded.mode == "1" and loaded.bit_depth == 8
    np.testing.assert_array_equal(loaded.pixels, [[[0, 1], [1, 0]]])


@pytest.mark.parametrize("mode, name", [("CMYK", "c.tif"), ("CMYK", "c.jpg"), ("YCbCr", "y.tif"),
                                        ("LAB", "l.tif")])
def test_other_colour_spaces_load_as_rgb(tmp_path, rng, mode, name):
    source = Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).convert(mode)
    path = saved(tmp_path, source, name)
    loaded = load_image(path)
    with Image.open(path) as written:
        assert loaded.mode == written.mode == mode
        expected = written.convert("RGB")
    assert loaded.pixels.shape == (3, 3, 4) and loaded.alpha is None
    np.testing.assert_array_equal(loaded.pixels, (planar(expected) / 255).astype(np.float32))
    assert read_header(path) == (3, 3, 4)


def _bytes_of(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_bytes_from_standard_input_are_decoded_and_named_by_path(tmp_path, rng):
    values = rng.integers(0, 256, (3, 2, 3), dtype=np.uint8)
    loaded = load_image(tmp_path / "-", data=_bytes_of(Image.fromarray(values), "PNG"))
    assert loaded.path == tmp_path / "-"
    np.testing.assert_array_equal(loaded.pixels, (planar(values) / 255).astype(np.float32))
    with pytest.raises(FileFailure, match=r"^<stdin>: not an image Pillow can read \("):
        load_image("<stdin>", data=b"plain text")


# --- gray ------------------------------------------------------------------------------------

def test_gray_uses_bt601_weights_and_keeps_alpha(tmp_path, rng):
    values = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    values[0, 0] = (255, 0, 0, 9)
    loaded = load_image(saved(tmp_path, Image.fromarray(values, "RGBA")), gray=True)
    assert loaded.pixels.shape == (1, 5, 7)
    assert loaded.pixels[0, 0, 0] == pytest.approx(0.299, abs=1e-7)
    np.testing.assert_allclose(loaded.pixels[0], values[..., :3] @ LUMA / 255, atol=1e-6)
    np.testing.assert_array_equal(loaded.alpha, (values[..., 3] / 255).astype(np.float32))
    gray = load_image(saved(tmp_path, Image.fromarray(values[..., 0]), "g.png"), gray=True)
    np.testing.assert_array_equal(gray.pixels[0], (values[..., 0] / 255).astype(np.float32))


def test_gray_of_sixteen_bit_colour_keeps_sixteen_bit_precision(tmp_path):
    levels = np.array([[[1, 2, 3], [65535, 0, 0]]], np.uint16)        # below one 8-bit step
    path = tmp_path / "deep.png"
    path.write_bytes(encode_png(levels))
    loaded = load_image(path, gray=True)
    assert loaded.bit_depth == 16
    np.testing.assert_allclose(loaded.pixels[0], levels @ LUMA / 65535, rtol=1e-6, atol=0)
    assert loaded.pixels[0, 0, 0] > 0


# --- EXIF orientation ------------------------------------------------------------------------

def test_exif_orientation_is_applied_and_read_from_the_header(tmp_path, rng):
    values = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    image = Image.fromarray(values)
    exif = image.getexif()
    exif[0x0112] = 6                                   # rotate 90 degrees clockwise to display
    for name in ("turned.png", "turned.jpg"):
        path = saved(tmp_path, image, name, exif=exif)
        loaded = load_image(path)
        assert loaded.pixels.shape == (3, 6, 4)
        assert read_header(path) == (3, 6, 4) and read_header(path, gray=True) == (1, 6, 4)
    loaded = load_image(tmp_path / "turned.png")
    # the left column, read bottom to top, is the top row of the upright image
    upright_top_row = np.moveaxis(values[::-1, 0, :], -1, 0) / 255
    np.testing.assert_array_equal(loaded.pixels[:, 0, :], upright_top_row.astype(np.float32))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sixteen_bit_png_turns_like_pillow_turns_eight_bit(tmp_path, rng, orientation):
    values = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    eight, deep = tmp_path / "eight.png", tmp_path / "deep.png"
    eight.write_bytes(_with_chunk(encode_png(values), b"eXIf", exif.tobytes()))
    deep.write_bytes(_with_chunk(encode_png(values.astype(np.uint16) * 257), b"eXIf", exif.tobytes()))
    by_pillow, by_ours = load_image(eight), load_image(deep)
    assert (by_pillow.bit_depth, by_ours.bit_depth) == (8, 16)
    np.testing.assert_array_equal(by_ours.pixels, by_pillow.pixels)
    assert read_header(deep) == by_ours.pixels.shape


def _with_chunk(png: bytes, kind: bytes, body: bytes) -> bytes:
    """``png`` with one more chunk right after IHDR (which always ends at byte 33)."""
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return png[:33] + chunk + png[33:]


# --- 16-bit colour PNGs: our reader ----------------------------------------------------------

@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (5, 9), (17, 12)])
@pytest.mark.parametrize("filters", [5, 3])           # types 0-4; 0-2 only (the row-wise path)
def test_png16_reader_undoes_every_filter_and_interlacing(rng, channels, interlace, shape, filters):
    levels = rng.integers(0, 65536, shape + (channels,), dtype=np.uint16)
    levels[0, 0] = 65535
    data = _reference_png16(levels, interlace=interlace, rng=rng, filters=filters)
    decoded, exif = read_png16(data)
    assert exif is None
    np.testing.assert_array_equal(decoded, levels)


@pytest.mark.parametrize("depth, channels", [(8, 1), (8, 3), (8, 4), (16, 1), (16, 2),
                                             (16, 3)])
def test_row_decoder_gives_any_bands_of_rows_under_every_filter(tmp_path, rng, depth, channels):
    """``PngRowDecoder``: random filters on every row, the image data split over several IDAT
    chunks (one empty), read in bands of random heights, then again after ``restart``."""
    from convcli._png import PngRowDecoder

    height, width = int(rng.integers(1, 40)), int(rng.integers(1, 30))
    dtype = np.uint8 if depth == 8 else np.uint16
    levels = rng.integers(0, np.iinfo(dtype).max, (height, width, channels), dtype=dtype,
                          endpoint=True)
    as_bytes = levels.astype(">u2" if depth == 16 else np.uint8).view(np.uint8)
    stream = zlib.compress(_filter_rows(as_bytes.reshape(height, -1), channels * depth // 8,
                                        rng, 5))
    cuts = sorted(rng.integers(0, len(stream), 3))
    pieces = [stream[:cuts[0]], b"", stream[cuts[0]:cuts[1]], stream[cuts[1]:]]
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunks = [(b"IHDR", header), (b"tEXt", b"a\0b")] + [(b"IDAT", piece) for piece in pieces]
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks + [(b"IEND", b"")]))
    decoder = PngRowDecoder(tmp_path / "a.png")
    try:
        for _ in range(2):
            bands = []
            while decoder.next_row < height:
                bands.append(decoder.next_rows(int(rng.integers(1, 9))))
            got = np.concatenate(bands).reshape(height, width * channels * depth // 8)
            np.testing.assert_array_equal(got, as_bytes.reshape(height, -1))
            decoder.restart()
    finally:
        decoder.close()


def test_row_decoder_says_where_the_data_is_damaged(tmp_path, rng):
    from convcli._png import PngRowDecoder

    image = rng.integers(0, 255, (20, 10, 3), dtype=np.uint8)
    data = encode_png(image)
    (tmp_path / "short.png").write_bytes(data[:len(data) // 2])
    decoder = PngRowDecoder(tmp_path / "short.png")
    with pytest.raises(ValueError, match="ends"):
        decoder.next_rows(20)
    decoder.close()
    damaged = bytearray(data)
    damaged[60:70] = b"\xff" * 10
    (tmp_path / "bad.png").write_bytes(bytes(damaged))
    decoder = PngRowDecoder(tmp_path / "bad.png")
    with pytest.raises(ValueError):
        decoder.next_rows(20)
    decoder.close()


@pytest.mark.parametrize("normalize", ["clip", "abs", "offset", "minmax", "robust"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_compiled_levels_equal_numpys(rng, normalize, bit_depth):
    """``quantize_plane`` (one compiled pass) gives ``_quantize(_unit_and_clipped(...))``'s
    levels and clipped count exactly: values in and far outside [0, 1], NaN, +-inf, -0."""
    from convcli.engine._pixel_loops import AS_IS, MAGNITUDE, OFFSET, quantize_plane
    from convcli.images import _quantize, _unit_and_clipped, _value_range

    shape = tuple(int(n) for n in rng.integers(1, 60, 2))
    plane = (rng.normal(0.5, rng.uniform(0.1, 3), shape)).astype(np.float32)
    flat = plane.reshape(-1)
    flat[rng.integers(0, flat.size, 4)] = rng.choice([np.nan, np.inf, -np.inf, -0.0, 0.5], 4)
    value_range = _value_range(plane, normalize) if normalize in ("minmax", "robust") else None
    unit, clipped = _unit_and_clipped(plane, normalize, value_range)
    expected = _quantize(unit, bit_depth)
    out = np.zeros(shape + (2,), expected.dtype)[:, :, 1]            # a strided channel
    mode = {"abs": MAGNITUDE, "robust": MAGNITUDE, "offset": OFFSET}.get(normalize, AS_IS)
    low, high = value_range or (0.0, 0.0)
    factor = np.float32(1.0 / (high - low)) if high > low else np.float32(0.0)
    got = quantize_plane(plane, mode, np.float32(low), factor, value_range is not None,
                         np.float32(255 if bit_depth == 8 else 65535), out)
    np.testing.assert_array_equal(out, expected)
    assert got == clipped


def _reference_png16(levels: np.ndarray, *, interlace: bool, rng, filters: int = 5) -> bytes:
    """A 16-bit PNG whose rows use random filter types below ``filters`` (encoding, unlike
    decoding, is vectorisable)."""
    height, width, channels = levels.shape
    passes = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
              (1, 0, 2, 1)) if interlace else ((0, 0, 1, 1),)
    stream = []
    for top, left, row_step, column_step in passes:
        part = levels[top::row_step, left::column_step]
        if part.size:
            stream.append(_filter_rows(part.astype(">u2").view(np.uint8).reshape(part.shape[0], -1),
                                       2 * channels, rng, filters))
    colour = {2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, int(interlace))
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(b"".join(stream)))]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks + [(b"IEND", b"")])


def _filter_rows(rows: np.ndarray, bpp: int, rng, filters: int) -> bytes:
    """PNG filtering (specification section 9.2), each row with a random filter type."""
    x = rows.astype(np.int64)
    a = np.pad(x, ((0, 0), (bpp, 0)))[:, :-bpp]                  # left
    b = np.pad(x, ((1, 0), (0, 0)))[:-1]                          # above
    c = np.pad(x, ((1, 0), (bpp, 0)))[:-1, :-bpp]                # above left
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    predictions = [0 * x, a, b, (a + b) // 2, paeth]
    kinds = np.resize(rng.permutation(filters), rows.shape[0])    # every type once at least
    out = [np.concatenate([[kind], (x[r] - predictions[kind][r]) % 256]) for r, kind in enumerate(kinds)]
    return np.array(out, np.uint8).tobytes()


def test_sixteen_bit_colour_png_from_opencv_loads_exactly(tmp_path, rng):
    cv2 = pytest.importorskip("cv2")
    y, x = np.mgrid[0:40, 0:50]
    levels = np.stack([x * 1000, y * 1500, rng.integers(0, 65536, x.shape)], -1).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "cv.png"), levels[..., ::-1])      # OpenCV writes BGR
    loaded = load_image(tmp_path / "cv.png")
    assert loaded.bit_depth == 16 and loaded.pixels.shape == (3, 40, 50)
    np.testing.assert_array_equal(loaded.pixels, (planar(levels) / 65535).astype(np.float32))


def test_sixteen_bit_gray_alpha_png_loads_as_one_channel_and_alpha(tmp_path, rng):
    levels = rng.integers(0, 65536, (4, 3, 2), dtype=np.uint16)
    path = tmp_path / "la.png"
    path.write_bytes(encode_png(levels))
    loaded = load_image(path)
    assert loaded.pixels.shape == (1, 4, 3) and loaded.bit_depth == 16
    np.testing.assert_array_equal(loaded.pixels[0], (levels[..., 0] / 65535).astype(np.float32))
    np.testing.assert_array_equal(loaded.alpha, (levels[..., 1] / 65535).astype(np.float32))
    assert read_header(path) == (1, 4, 3)


def test_sixteen_bit_rgb_transparent_colour_becomes_alpha(tmp_path):
    levels = np.array([[[1, 2, 3], [1, 2, 4]]], np.uint16)
    path = tmp_path / "key.png"
    path.write_bytes(_with_chunk(encode_png(levels), b"tRNS", struct.pack(">3H", 1, 2, 3)))
    loaded = load_image(path)
    assert loaded.pixels.shape == (3, 1, 2)
    np.testing.assert_array_equal(loaded.alpha, [[0, 1]])


def test_damaged_sixteen_bit_png_fails_with_the_path_first(tmp_path, rng):
    data = encode_png(rng.integers(0, 65536, (30, 30, 3), dtype=np.uint16))
    path = tmp_path / "cut.png"
    path.write_bytes(data[:-40] + b"\0" * 28)                     # the stream's end overwritten
    with pytest.raises(FileFailure, match=f"^{path}: cannot decode the image"):
        load_image(path)


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make, phrase", [
    (lambda p: p / "missing.png", "no such file"),
    (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt",
     "not an image Pillow can read ("),
    (lambda p: (p / "empty.png").write_bytes(b"") == 0 and p / "empty.png",
     "not an image Pillow can read ("),
    (lambda p: p, "is a folder"),
    (lambda p: (p / "cut.png").write_bytes(_truncated_png()) and p / "cut.png", "cannot decode"),
])
def test_unreadable_files_fail_with_the_path_first(tmp_path, make, phrase):
    path = make(tmp_path)
    with pytest.raises(FileFailure) as error:
        load_image(path)
    assert str(error.value).startswith(f"{path}: ") and phrase in str(error.value)
    assert error.value.exit_code == 1


def _truncated_png() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    return _bytes_of(Image.fromarray(noise), "PNG")[:2000]      # the header and a third of the pixels


# --- value mapping ---------------------------------------------------------------------------

def test_map_to_unit_modes():
    maps = np.array([[[-0.5, 0.25, 1.5]]], np.float32)
    np.testing.assert_array_equal(map_to_unit(maps, "clip"), [[[0, 0.25, 1]]])
    np.testing.assert_array_equal(map_to_unit(maps, "abs"), [[[0.5, 0.25, 1]]])
    np.testing.assert_array_equal(map_to_unit(maps, "offset"), [[[0, 0.75, 1]]])
    np.testing.assert_array_equal(map_to_unit(maps, "minmax"), [[[0, 0.375, 1]]])
    np.testing.assert_array_equal(map_to_unit(np.full((1, 2, 2), 3.0), "minmax"), 0)
    assert map_to_unit(maps, "clip").dtype == np.float32
    np.testing.assert_array_equal(maps, [[[-0.5, 0.25, 1.5]]])     # the input is untouched
    with pytest.raises(UsageError, match="--normalize"):
        map_to_unit(maps, "log")


def test_minmax_spans_the_whole_array_not_each_channel():
    maps = np.array([[[0.0, 1.0]], [[2.0, 4.0]]], np.float32)
    np.testing.assert_array_equal(map_to_unit(maps, "minmax"), [[[0, 0.25]], [[0.5, 1]]])


@pytest.mark.parametrize("normalize, expected", [
    ("clip", [0, 0, 64, 255]), ("abs", [128, 0, 64, 255]), ("offset", [0, 128, 191, 255]),
    ("minmax", [0, 85, 128, 255])])                               # minmax: (x + 0.5) / 1.5
def test_png_writes_each_normalize_mode(tmp_path, normalize, expected):
    maps = np.array([[[-0.5, 0.0, 0.25, 1.0]]], np.float32)
    save_image(tmp_path / "n.png", maps, fmt="png", normalize=normalize)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "n.png")), [expected])


# --- writers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("channels, alpha", [(1, False), (3, False), (1, True), (3, True)])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_round_trip(tmp_path, rng, channels, alpha, bit_depth):
    top = 2 ** bit_depth - 1
    levels = rng.integers(0, top + 1, (channels, 5, 6))
    levels[:, 0, 0] = top
    alpha_levels = rng.integers(0, top + 1, (5, 6)) if alpha else None
    path = tmp_path / "out.png"
    save_image(path, (levels / top).astype(np.float32), fmt="png", bit_depth=bit_depth,
               alpha=None if alpha_levels is None else (alpha_levels / top).astype(np.float32))
    expected = np.concatenate([levels, alpha_levels[None]]) if alpha else levels
    if bit_depth == 16 and (channels > 1 or alpha):
        written = _read_png16(path)                    # Pillow reads 16-bit colour as 8-bit
    else:
        written = planar(Image.open(path)).astype(np.int64)
    np.testing.assert_array_equal(written, expected)
    loaded = load_image(path)                          # and our reader gives the same back
    assert loaded.bit_depth == bit_depth
    np.testing.assert_array_equal(loaded.pixels, (levels / top).astype(np.float32))
    if alpha:
        np.testing.assert_array_equal(loaded.alpha, (alpha_levels / top).astype(np.float32))


def _read_png16(path) -> np.ndarray:
    """Decode our own (Up-filtered) 16-bit PNGs, as an independent check."""
    data = path.read_bytes()
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert depth == 16
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    stream, offset = b"", 8
    while offset < len(data):                          # the IDAT chunks' bodies, in order
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            stream += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    rows = np.frombuffer(zlib.decompress(stream), np.uint8).reshape(height, -1)
    assert (rows[:, 0] == 2).all()                     # the Up filter on every row
    unfiltered = np.cumsum(rows[:, 1:], axis=0, dtype=np.uint64) % 256
    pixels = unfiltered.astype(np.uint8).view(">u2").reshape(height, width, channels)
    return np.moveaxis(pixels.astype(np.int64), -1, 0)


def test_png_rounds_to_the_nearest_level(tmp_path):
    maps = np.array([[[0.5 / 255 - 1e-4, 0.5 / 255 + 1e-4, 254.4 / 255]]], np.float32)
    save_image(tmp_path / "r.png", maps, fmt="png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "r.png")), [[0, 1, 254]])


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


def test_tiff_and_npy_hold_raw_floats(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    maps = (rng.standard_normal((4, 3, 5)) * 7).astype(np.float32)
    alpha = np.ones((3, 5), np.float32)
    save_image(tmp_path / "m.tif", maps, fmt="tiff", alpha=alpha, normalize="minmax")
    with tifffile.TiffFile(tmp_path / "m.tif") as tiff:              # 4 channels: 4 pages
        assert len(tiff.pages) == 4 and tiff.series[0].axes == "CYX"
        assert tiff.pages[0].dtype == np.float32
        np.testing.assert_array_equal(tiff.asarray(), maps)           # no alpha page
    save_image(tmp_path / "m.npy", maps, fmt="npy", alpha=alpha, normalize="minmax")
    loaded = np.load(tmp_path / "m.npy")
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, maps)


# --- atomic writes ---------------------------------------------------------------------------

def test_atomic_write_keeps_existing_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "out.bin"
    seen = []

    def first(file):
        seen.extend(p.name for p in target.parent.iterdir())
        file.write(b"first")

    atomic_write(target, first)                        # creates the folder too
    assert target.read_bytes() == b"first"
    assert len(seen) == 1 and seen[0].startswith(".out.bin.tmp-")
    with pytest.raises(FileFailure, match=f"^{target}: already exists; use --overwrite"):
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


def test_write_errors_name_the_file_and_leave_nothing(tmp_path):
    def full_disk(file):
        file.write(b"part")
        raise OSError(28, "No space left on device")

    target = tmp_path / "out.png"
    with pytest.raises(FileFailure, match=f"^{target}: cannot write \\(No space left on device\\)"):
        atomic_write(target, full_disk)
    assert not list(tmp_path.iterdir())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FileFailure, match=f"^{blocker / 'out.png'}: cannot write"):
        save_image(blocker / "out.png", np.zeros((1, 2, 2), np.float32), fmt="png")


def test_save_image_keeps_an_existing_output_without_overwrite(tmp_path):
    target = tmp_path / "x.png"
    target.write_bytes(b"precious")
    maps = np.zeros((1, 2, 2), np.float32)
    with pytest.raises(FileFailure, match="already exists"):
        save_image(target, maps, fmt="png")
    assert target.read_bytes() == b"precious"
    save_image(target, maps, fmt="png", overwrite=True)
    assert Image.open(target).size == (2, 2)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_png_taller_than_one_encoding_block_reads_back(tmp_path, rng, monkeypatch):
    """Rows are filtered and compressed in blocks (zlib decides when to emit IDAT chunks)."""
    monkeypatch.setattr("convcli._png.FILTER_BLOCK_BYTES", 100)       # 3 rows of 31 x 3 bytes
    levels = rng.integers(0, 256, (3, 20, 31))
    save_image(tmp_path / "b.png", (levels / 255).astype(np.float32), fmt="png")
    np.testing.assert_array_equal(np.moveaxis(np.asarray(Image.open(tmp_path / "b.png")), -1, 0),
                                  levels)


# --- raw arrays: .npy, and TIFF through tifffile ---------------------------------------------

RAW_SHAPES = [(5, 17), (1, 6, 7), (2, 6, 7), (5, 6, 7), (16, 6, 7), (2, 3, 6, 7), (1, 4, 6, 7),
              (3, 1, 6, 7)]


def _raw_maps(rng, shape) -> np.ndarray:
    """Random float32 values, none zero, a few of them subnormal, huge or negative."""
    maps = (rng.standard_normal(shape) * 100).astype(np.float32)
    maps[maps == 0] = 1.5
    maps.flat[:3] = (1e-42, -3e38, 7.0)
    return maps


@pytest.mark.parametrize("shape", RAW_SHAPES + [(1, 9)])
@pytest.mark.parametrize("fmt", ["npy", "tiff"])
def test_raw_round_trip_is_bit_exact_and_the_header_agrees(tmp_path, rng, fmt, shape):
    maps = _raw_maps(rng, shape)
    path = tmp_path / f"maps.{fmt}"
    save_image(path, maps, fmt=fmt)
    loaded = load_image(path)
    # a TIFF page holds rows: (C, L) signals come back as (C, 1, L)
    expected = maps[:, np.newaxis] if fmt == "tiff" and maps.ndim == 2 else maps
    assert loaded.pixels.shape == read_header(path) == expected.shape
    assert loaded.pixels.dtype == np.float32 and loaded.pixels.flags.c_contiguous
    assert loaded.bit_depth == 32 and loaded.alpha is None
    np.testing.assert_array_equal(loaded.pixels.view(np.uint32), expected.view(np.uint32))


# (photometric, planar config, samples per page, pages, tifffile's axes, tifffile's array from maps)
TIFF_LAYOUTS = {
    (1, 6, 7): ("MINISBLACK", "CONTIG", 1, 1, "YX", lambda m: m[0]),
    (3, 6, 7): ("RGB", "CONTIG", 3, 1, "YXS", lambda m: np.moveaxis(m, 0, -1)),
    (3, 1, 1): ("RGB", "CONTIG", 3, 1, "YXS", lambda m: np.moveaxis(m, 0, -1)),
    (3, 17): ("RGB", "CONTIG", 3, 1, "YXS", lambda m: np.moveaxis(m, 0, -1)[np.newaxis]),
    (2, 6, 7): ("MINISBLACK", "CONTIG", 1, 2, "CYX", lambda m: m),
    (4, 6, 3): ("MINISBLACK", "CONTIG", 1, 4, "CYX", lambda m: m),       # W 3: not samples
    (16, 6, 1): ("MINISBLACK", "CONTIG", 1, 16, "CYX", lambda m: m),
    (5, 17): ("MINISBLACK", "CONTIG", 1, 5, "CYX", lambda m: m[:, np.newaxis]),
    (1, 4, 6, 7): ("MINISBLACK", "CONTIG", 1, 4, "QYX", lambda m: m[0]),
    (3, 4, 6, 7): ("RGB", "CONTIG", 3, 4, "QYXS", lambda m: np.moveaxis(m, 0, -1)),
    (3, 1, 6, 7): ("RGB", "CONTIG", 3, 1, "QYXS", lambda m: np.moveaxis(m, 0, -1)),
    (2, 3, 6, 7): ("MINISBLACK", "CONTIG", 1, 6, "ZCYX", lambda m: m.transpose(1, 0, 2, 3)),
    (5, 1, 6, 7): ("MINISBLACK", "CONTIG", 1, 5, "CYX", lambda m: m[:, 0]),
    (4, 3, 1, 1): ("MINISBLACK", "CONTIG", 1, 12, "ZCYX", lambda m: m.transpose(1, 0, 2, 3)),
}


@pytest.mark.parametrize("shape", TIFF_LAYOUTS, ids=str)
def test_tiff_layout_is_what_viewers_read_and_reads_back_bit_exact(tmp_path, rng, shape):
    """1 map: a float page; 3 (colours): one RGB page of interleaved samples; any other
    count: an ImageJ hyperstack of single-sample pages (ImageJ refuses float pages of several
    samples); a volume: one such page (or C pages) per slice."""
    tifffile = pytest.importorskip("tifffile")
    photometric, planar, samples, pages, axes, as_tifffile_reads = TIFF_LAYOUTS[shape]
    maps = _raw_maps(rng, shape)
    path = tmp_path / "maps.tif"
    save_image(path, maps, fmt="tiff")
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        assert (tifffile.PHOTOMETRIC(page.photometric).name,
                tifffile.PLANARCONFIG(page.planarconfig).name, page.samplesperpixel) == (
            photometric, planar, samples)
        assert page.dtype == np.float32 and page.bitspersample == 32
        assert len(tiff.pages) == pages and tiff.series[0].axes == axes
        assert (tiff.series[0].kind == "imagej") == ("C" in axes)
        stored = tiff.series[0].asarray()
    np.testing.assert_array_equal(stored.view(np.uint32), as_tifffile_reads(maps).view(np.uint32))
    expected = maps[:, np.newaxis] if maps.ndim == 2 else maps
    loaded = load_image(path)
    assert loaded.pixels.shape == read_header(path) == expected.shape
    assert loaded.mode in ("F", "float32") and loaded.bit_depth == 32 and loaded.alpha is None
    np.testing.assert_array_equal(loaded.pixels.view(np.uint32), expected.view(np.uint32))


def test_rgb_tiff_output_is_the_photos_colours(tmp_path, rng):
    """A blurred RGB photo's TIFF: Pillow's channel order, interleaved, raw float32 values
    (outside [0, 1] too), and the next run reads back the same (3, H, W) floats."""
    tifffile = pytest.importorskip("tifffile")
    maps = _raw_maps(rng, (3, 5, 8)) / np.float32(50)
    save_image(tmp_path / "c.tif", maps, fmt="tiff")
    assert tifffile.imread(tmp_path / "c.tif").shape == (5, 8, 3)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c.tif")[2, 3], maps[:, 2, 3])
    np.testing.assert_array_equal(load_image(tmp_path / "c.tif").pixels, maps)
    streamed = encode_image(maps, fmt="tiff")                         # -o tiff:-
    np.testing.assert_array_equal(load_image(tmp_path / "-", data=streamed).pixels, maps)


def test_a_volume_of_one_slice_stays_a_volume(tmp_path, rng):
    for shape in [(1, 1, 4, 5), (3, 1, 4, 5), (2, 1, 4, 5), (6, 1, 1, 1)]:
        save_image(tmp_path / "v.tif", _raw_maps(rng, shape), fmt="tiff", overwrite=True)
        assert load_image(tmp_path / "v.tif").pixels.shape == read_header(tmp_path / "v.tif") == shape


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int64, np.float16, np.float64,
                                   ">f4", ">i4", bool])
def test_npy_of_any_real_dtype_is_read_raw(tmp_path, rng, dtype):
    values = (rng.standard_normal((2, 3, 4)) * 50).astype(dtype)
    np.save(tmp_path / "a.npy", values)
    loaded = load_image(tmp_path / "a.npy")
    assert loaded.mode == np.dtype(dtype).name and loaded.bit_depth == 32
    np.testing.assert_array_equal(loaded.pixels, values.astype(np.float32))   # never scaled


def test_npy_in_fortran_order_and_one_dimensional(tmp_path, rng):
    values = np.asfortranarray(rng.standard_normal((3, 4, 5)).astype(np.float32))
    np.save(tmp_path / "f.npy", values)
    loaded = load_image(tmp_path / "f.npy")
    assert loaded.pixels.flags.c_contiguous
    np.testing.assert_array_equal(loaded.pixels, values)
    line = rng.standard_normal(11).astype(np.float32)
    np.save(tmp_path / "line.npy", line)
    assert read_header(tmp_path / "line.npy") == (1, 11)
    np.testing.assert_array_equal(load_image(tmp_path / "line.npy").pixels, line[np.newaxis])
    assert load_image(tmp_path / "line.npy").pixels.flags.writeable


def test_raw_inputs_from_standard_input(tmp_path, rng):
    maps = _raw_maps(rng, (5, 6, 7))
    for fmt in ("npy", "tiff"):
        from convcli.images import encode_image

        loaded = load_image(tmp_path / "-", data=encode_image(maps, fmt=fmt))
        np.testing.assert_array_equal(loaded.pixels, maps)


def test_read_header_reads_no_data(tmp_path, rng, monkeypatch):
    import tifffile

    save_image(tmp_path / "a.npy", _raw_maps(rng, (2, 3, 6, 7)), fmt="npy")
    save_image(tmp_path / "a.tif", _raw_maps(rng, (2, 3, 6, 7)), fmt="tiff")

    def refuse(*args, **kwargs):
        raise AssertionError("read_header decoded the data")

    monkeypatch.setattr("convcli.images.read_npy", refuse)
    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", refuse)
    assert read_header(tmp_path / "a.npy") == read_header(tmp_path / "a.tif") == (2, 3, 6, 7)
    with pytest.raises(FileFailure, match="decoded the data"):
        load_image(tmp_path / "a.tif")


def _npy_bytes(values, **options) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values, **options)
    return buffer.getvalue()


BAD_NPY = {
    "objects": (lambda: _npy_bytes(np.array([1, "a"], object), allow_pickle=True), "Python objects"),
    "complex": (lambda: _npy_bytes(np.ones((2, 3), np.complex64)), "complex values"),
    "records": (lambda: _npy_bytes(np.zeros(3, [("a", "f4")])), "non-numeric values"),
    "text": (lambda: _npy_bytes(np.array(["ab", "cd"])), "non-numeric values"),
    "five-d": (lambda: _npy_bytes(np.ones((1, 2, 1, 2, 2))), "has 5 dimensions"),
    "zero-d": (lambda: _npy_bytes(np.float32(3)), "has 0 dimensions"),
    "empty": (lambda: _npy_bytes(np.ones((0, 3))), "is empty"),
    "truncated": (lambda: _npy_bytes(np.ones((3, 40, 40), np.float32))[:500], "truncated"),
    "random": (lambda: np.random.default_rng(5).bytes(300), "not a NumPy .npy file"),
    "pickle": (lambda: pickle.dumps({"weights": [1, 2]}), "not a NumPy .npy file"),
    "nothing": (lambda: b"", "not a NumPy .npy file"),
    "header": (lambda: b"\x93NUMPY\x01\x00\x10\x00{'descr': oops}\n", "damaged .npy header"),
}


@pytest.mark.parametrize("name", BAD_NPY)
def test_bad_npy_files_fail_on_one_line_naming_the_file(tmp_path, name, capfd, recwarn):
    make, phrase = BAD_NPY[name]
    path = tmp_path / f"{name}.npy"
    path.write_bytes(make())
    for read in (load_image, read_header):
        with pytest.raises(FileFailure) as error:
            read(path)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and phrase in message and "\n" not in message
        assert "valid: " in message or "save it again" in message
    assert capfd.readouterr() == ("", "") and not recwarn.list


def _tiff_bytes(rng, shape=(3, 20, 30)) -> bytes:
    from convcli.images import encode_image

    return encode_image(_raw_maps(rng, shape), fmt="tiff")


BAD_TIFF = {
    "data cut": (lambda rng: _tiff_bytes(rng)[:3000], "failed to read"),
    "header cut": (lambda rng: _tiff_bytes(rng)[:12], "IFD"),
    "signature only": (lambda rng: b"II*\0" + rng.bytes(200), "cannot read the TIFF"),
    "no pages": (lambda rng: b"MM\0*" + b"\0" * 4, "no pages"),
    "page chain cut": (lambda rng: _tiff_bytes(rng, (3, 5, 20, 30))[:-300], "page offset"),
    "hyperstack cut": (lambda rng: _tiff_bytes(rng, (5, 20, 30))[:3000], "corrupted file"),
}


@pytest.mark.parametrize("name", BAD_TIFF)
def test_bad_tiff_files_fail_on_one_line_naming_the_file(tmp_path, rng, name, capfd, recwarn):
    make, phrase = BAD_TIFF[name]
    path = tmp_path / "bad.tif"
    path.write_bytes(make(rng))
    with pytest.raises(FileFailure) as error:
        load_image(path)
    message = str(error.value)
    assert message.startswith(f"{path}: cannot read the TIFF (") and phrase in message
    assert "\n" not in message
    assert capfd.readouterr() == ("", "") and not recwarn.list        # tifffile's log is kept


def test_tiff_stacks_from_other_writers(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    pages = [rng.integers(0, 256, (4, 5), dtype=np.uint8) for _ in range(3)]
    Image.fromarray(pages[0]).save(tmp_path / "stack.tif", save_all=True,
                                   append_images=[Image.fromarray(p) for p in pages[1:]])
    stack = load_image(tmp_path / "stack.tif")                       # Pillow's multi-page file
    assert stack.pixels.shape == read_header(tmp_path / "stack.tif") == (1, 3, 4, 5)
    assert stack.bit_depth == 8
    np.testing.assert_array_equal(stack.pixels[0], (np.stack(pages) / 255).astype(np.float32))
    levels = rng.integers(0, 65536, (2, 3, 4, 5), dtype=np.uint16)    # ImageJ: Z pages of C
    tifffile.imwrite(tmp_path / "ij.tif", levels, imagej=True, metadata={"axes": "ZCYX"})
    hyper = load_image(tmp_path / "ij.tif")
    assert hyper.pixels.shape == read_header(tmp_path / "ij.tif") == (3, 2, 4, 5)
    np.testing.assert_array_equal(hyper.pixels, (levels.transpose(1, 0, 2, 3) / 65535).astype(np.float32))
    rgb = rng.integers(0, 65536, (2, 4, 5, 3), dtype=np.uint16)      # a stack of RGB pages
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    colour = load_image(tmp_path / "rgb.tif")
    assert colour.pixels.shape == (3, 2, 4, 5) and colour.bit_depth == 16
    np.testing.assert_array_equal(colour.pixels, (np.moveaxis(rgb, -1, 0) / 65535).astype(np.float32))


def test_sixteen_bit_colour_tiff_loads_exactly_with_alpha(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    levels = rng.integers(0, 65536, (4, 5, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgba.tif", levels, photometric="rgb", extrasamples=["unassalpha"])
    loaded = load_image(tmp_path / "rgba.tif")
    assert loaded.pixels.shape == read_header(tmp_path / "rgba.tif") == (3, 4, 5)
    assert loaded.bit_depth == 16 and loaded.mode == "uint16"
    np.testing.assert_array_equal(loaded.pixels, (planar(levels[..., :3]) / 65535).astype(np.float32))
    np.testing.assert_array_equal(loaded.alpha, (levels[..., 3] / 65535).astype(np.float32))
    gray = load_image(tmp_path / "rgba.tif", gray=True)
    np.testing.assert_allclose(gray.pixels[0], levels[..., :3] @ LUMA / 65535, rtol=1e-6)


def test_many_eight_bit_samples_scale_by_255(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    levels = rng.integers(0, 256, (5, 4, 6), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "five.tif", levels, photometric="minisblack", planarconfig="separate")
    loaded = load_image(tmp_path / "five.tif")
    assert loaded.bit_depth == 8 and loaded.alpha is None
    np.testing.assert_array_equal(loaded.pixels, (levels / 255).astype(np.float32))


def test_tiff_orientation_turns_tifffile_pages_as_pillow_turns_photos(tmp_path, rng):
    tifffile = pytest.importorskip("tifffile")
    levels = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    turned = [(274, "H", 1, 6, True)]                             # Orientation: 90 degrees clockwise
    Image.fromarray(levels).save(tmp_path / "photo.png", exif=_exif(6))
    tifffile.imwrite(tmp_path / "deep.tif", levels.astype(np.uint16) * 257, photometric="rgb",
                     extratags=turned)
    by_pillow, by_tifffile = load_image(tmp_path / "photo.png"), load_image(tmp_path / "deep.tif")
    assert by_tifffile.bit_depth == 16 and read_header(tmp_path / "deep.tif") == (3, 6, 4)
    np.testing.assert_array_equal(by_tifffile.pixels, by_pillow.pixels)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "1", "P"])
def test_eight_bit_photo_tiffs_stay_with_pillow(tmp_path, rng, mode):
    image = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)).convert(mode)
    image.save(tmp_path / "p.png")
    image.save(tmp_path / "p.tif")
    png, tif = load_image(tmp_path / "p.png"), load_image(tmp_path / "p.tif")
    assert tif.mode == mode and tif.bit_depth == 8
    assert read_header(tmp_path / "p.tif") == tif.pixels.shape == png.pixels.shape
    np.testing.assert_array_equal(tif.pixels, png.pixels)
    assert (tif.alpha is None) == (png.alpha is None) == (mode not in ("RGBA", "LA"))
    if png.alpha is not None:
        np.testing.assert_array_equal(tif.alpha, png.alpha)


def test_gray_on_signals_volumes_and_maps(tmp_path, rng):
    for shape in [(3, 10), (3, 2, 4, 5)]:
        values = rng.random(shape).astype(np.float32)
        np.save(tmp_path / "rgb.npy", values)
        loaded = load_image(tmp_path / "rgb.npy", gray=True)
        assert loaded.pixels.shape == read_header(tmp_path / "rgb.npy", gray=True) == (1,) + shape[1:]
        np.testing.assert_allclose(loaded.pixels[0], np.tensordot(LUMA, values, axes=1), rtol=1e-6)
    np.save(tmp_path / "one.npy", values[:1])
    np.testing.assert_array_equal(load_image(tmp_path / "one.npy", gray=True).pixels, values[:1])
    np.save(tmp_path / "five.npy", rng.random((5, 4, 4)))
    for read in (load_image, read_header):
        with pytest.raises(FileFailure, match=f"^{tmp_path / 'five.npy'}: --gray .* has 5 channels"):
            read(tmp_path / "five.npy", gray=True)


def test_folders_give_npy_files_as_inputs(tmp_path):
    from convcli.inputs import expand_inputs

    for name in ("a.npy", "b.png", "c.txt", "d.NPY"):
        (tmp_path / name).write_bytes(b"")
    expansion = expand_inputs([str(tmp_path)])
    assert [source.path.name for source in expansion.sources] == ["a.npy", "b.png", "d.NPY"]
    assert [path.name for path in expansion.not_images] == ["c.txt"]
