"""Pictures of feature maps, volumes and signals, and the PNGs that hold them."""

from __future__ import annotations

import io
from math import ceil, sqrt

import numpy as np
import pytest
from PIL import Image

from convcli.images import encode_image, save_image
from convcli.pictures import (BACKGROUND, GAP, MAGNITUDE_RAMP, MAX_ROWS, MID_GREY, MIN_TILE,
                              NUMBERS_UP_TO, PLOT_HEIGHT, PLOT_WIDTHS, RED_RAMP, RESPONSE_SIZE,
                              TILE_WIDTH, compare_sheet, diverging_colours, feature_grid, fit_tile,
                              frequency_response, heat_map, kernel_picture, kernel_rows,
                              magnitude_colours, montage, signal_plot, split_maps, stretch,
                              volume_montage)

DARK = 100          # label ink is black; anti-aliased edges are grey


def cells(picture: np.ndarray, rows: int, columns: int) -> tuple[int, int]:
    """(cell height, cell width) of a montage of ``rows`` x ``columns`` cells."""
    height, width = picture.shape
    assert (height - GAP) % rows == 0 and (width - GAP) % columns == 0
    return (height - GAP) // rows - GAP, (width - GAP) // columns - GAP


def tile_at(picture, index, columns, cell, tile_shape):
    """The tile ``index`` of a montage and the label band below it."""
    (cell_height, cell_width), (height, width) = cell, tile_shape
    row, column = divmod(index, columns)
    top = GAP + row * (cell_height + GAP)
    left = GAP + column * (cell_width + GAP)
    inset = (cell_width - width) // 2
    return (picture[top:top + height, left + inset:left + inset + width],
            picture[top + height:top + cell_height, left:left + cell_width])


# --- stretch ---------------------------------------------------------------------------------

def test_stretch_spans_0_to_255_and_rounds_to_the_nearest_level():
    levels = stretch(np.array([[-2.0, 0.0, 1.0, 2.0]], np.float32))
    np.testing.assert_array_equal(levels, [[0, 128, 191, 255]])      # 127.5 and 191.25, rounded
    assert levels.dtype == np.uint8


def test_stretch_of_a_constant_is_mid_grey_and_of_non_finite_values_is_defined():
    np.testing.assert_array_equal(stretch(np.full((2, 3), 7.5)), MID_GREY)
    values = np.array([np.nan, -np.inf, 1.0, 3.0, np.inf, 2.0])
    np.testing.assert_array_equal(stretch(values), [0, 0, 0, 255, 255, 128])
    np.testing.assert_array_equal(stretch(np.array([np.nan, np.nan])), [0, 0])
    np.testing.assert_array_equal(stretch(np.array([np.inf, 4.0, 4.0])), [255, MID_GREY, MID_GREY])
    huge = np.array([-3e38, 3e38], np.float32)                       # max - min overflows float32
    np.testing.assert_array_equal(stretch(huge), [0, 255])


# --- feature grids ---------------------------------------------------------------------------

@pytest.mark.parametrize("count", [2, 5, 8, 16, 64])
def test_grid_layout_tiles_and_labels(rng, count):
    maps = rng.standard_normal((count, 34, 40)).astype(np.float32) * rng.uniform(0.01, 100, (count, 1, 1))
    maps[count // 2] = 3.0                                           # one constant map
    grid = feature_grid(maps)
    assert grid.dtype == np.uint8 and grid.ndim == 2
    columns = ceil(sqrt(count))
    rows = ceil(count / columns)
    cell = cells(grid, rows, columns)
    assert cell[1] == 40 and 8 <= cell[0] - 34 <= 20                 # the tile, and a label band
    for index in range(count):
        tile, band = tile_at(grid, index, columns, cell, (34, 40))
        np.testing.assert_array_equal(tile, stretch(maps[index]))
        if index == count // 2:
            assert (tile == MID_GREY).all()
        else:
            assert tile.min() == 0 and tile.max() == 255              # each on its own scale
        assert (band < DARK).any()                                    # its label
    for index in range(count, rows * columns):                       # empty cells stay white
        tile, band = tile_at(grid, index, columns, cell, (34, 40))
        assert (tile == BACKGROUND).all() and (band == BACKGROUND).all()


def test_grid_labels_say_the_channel_index(rng):
    grid = feature_grid(rng.random((12, 40, 40)))
    cell = cells(grid, 3, 4)
    bands = [tile_at(grid, index, 4, cell, (40, 40))[1] for index in range(12)]
    assert not np.array_equal(bands[1], bands[7])
    assert (bands[10] < DARK).sum() > (bands[1] < DARK).sum()        # "10" has more ink than "1"


def test_small_maps_are_enlarged_by_a_whole_factor(rng):
    maps = rng.random((2, 3, 4))
    grid = feature_grid(maps)
    zoom = ceil(MIN_TILE / 4)
    cell = cells(grid, 1, 2)
    tile, _ = tile_at(grid, 1, 2, cell, (3 * zoom, 4 * zoom))
    np.testing.assert_array_equal(tile, np.kron(stretch(maps[1]), np.ones((zoom, zoom), np.uint8)))


def test_grid_of_maps_with_nan_and_inf(rng):
    maps = rng.standard_normal((2, 33, 33))
    maps[0, 0, 0], maps[0, 0, 1], maps[1] = np.nan, np.inf, np.nan
    grid = feature_grid(maps)
    cell = cells(grid, 1, 2)
    first, _ = tile_at(grid, 0, 2, cell, (33, 33))
    second, _ = tile_at(grid, 1, 2, cell, (33, 33))
    assert first[0, 0] == 0 and first[0, 1] == 255 and first[1:].min() == 0
    assert (second == 0).all()


def test_split_maps_are_the_grids_tiles(rng):
    maps = rng.standard_normal((3, 5, 6))
    pictures = split_maps(maps)
    assert len(pictures) == 3
    for picture, plane in zip(pictures, maps):
        np.testing.assert_array_equal(picture, stretch(plane))


def test_montage_needs_one_label_per_tile():
    with pytest.raises(ValueError, match="one label per tile"):
        montage([np.zeros((2, 2), np.uint8)], [])


# --- volumes ---------------------------------------------------------------------------------

def test_one_channel_volume_montage_shares_one_scale_across_slices(rng):
    volume = rng.random((1, 5, 40, 36))
    volume[0, 0] *= 0.25                                             # a darker first slice
    picture = volume_montage(volume)
    cell = cells(picture, 2, 3)                                       # 5 slices: 3 x 2
    whole = stretch(volume[0])
    for z in range(5):
        tile, band = tile_at(picture, z, 3, cell, (40, 36))
        np.testing.assert_array_equal(tile, whole[z])
        assert (band < DARK).any()
    first, _ = tile_at(picture, 0, 3, cell, (40, 36))
    assert first.max() < 80                                           # still darker: one scale


def test_many_channel_volume_montage_has_a_row_per_channel(rng):
    volume = rng.random((3, 4, 40, 40)) * np.array([1, 100, 0.01])[:, None, None, None]
    picture = volume_montage(volume)
    cell = cells(picture, 3, 4)
    for channel in range(3):
        levels = stretch(volume[channel])
        for z in range(4):
            tile, band = tile_at(picture, channel * 4 + z, 4, cell, (40, 40))
            np.testing.assert_array_equal(tile, levels[z])
            assert (band < DARK).any()


# --- signals ---------------------------------------------------------------------------------

def plot_box(picture: np.ndarray, channels: int, channel: int) -> np.ndarray:
    """The inside of one channel's plot frame."""
    panel = (picture.shape[0] - GAP) // channels
    bottom = GAP + (channel + 1) * panel - GAP
    return picture[bottom - PLOT_HEIGHT:bottom, GAP:picture.shape[1] - GAP]


def test_signal_plot_draws_a_rising_line_and_labels_each_channel():
    ramp = np.linspace(-1, 1, 300)
    signals = np.stack([ramp, -ramp, np.full(300, 2.0)])
    picture = signal_plot(signals)
    assert picture.dtype == np.uint8 and picture.shape[1] == 2 * GAP + 300
    rising, falling, flat = (plot_box(picture, 3, c) for c in range(3))
    assert rising[-1, 0] < DARK and rising[0, -1] < DARK              # bottom left to top right
    assert falling[0, 0] < DARK and falling[-1, -1] < DARK
    dark_rows = np.nonzero((flat < DARK).any(axis=1))[0]
    assert set(dark_rows) <= {PLOT_HEIGHT // 2 - 1, PLOT_HEIGHT // 2}  # a constant: mid-height
    label = picture[GAP:GAP + 10]
    assert (label < DARK).any()


def test_long_signals_keep_their_peaks_and_short_ones_are_spread(rng):
    long = rng.standard_normal(50_000) * 0.01
    long[31_234] = 5.0                                               # one spike
    picture = signal_plot(long[np.newaxis])
    assert picture.shape[1] == 2 * GAP + PLOT_WIDTHS[1]
    box = plot_box(picture, 1, 0)
    assert (box[0] < DARK).any()                                      # the spike reaches the top
    short = signal_plot(np.array([[0.0, 1.0]]))
    assert short.shape[1] == 2 * GAP + PLOT_WIDTHS[0]
    single = signal_plot(np.array([[4.0]]))
    assert (plot_box(single, 1, 0) < DARK).any()


# --- as PNG ----------------------------------------------------------------------------------

def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "L"
        return np.asarray(image)


def test_png_of_eight_maps_is_their_grid(tmp_path, rng):
    maps = rng.standard_normal((8, 30, 20)).astype(np.float32)
    np.testing.assert_array_equal(decoded(encode_image(maps, fmt="png")), feature_grid(maps))
    save_image(tmp_path / "grid.png", maps, fmt="png", bit_depth=16, normalize="abs")
    with Image.open(tmp_path / "grid.png") as image:                   # always 8-bit, min-max
        np.testing.assert_array_equal(np.asarray(image), feature_grid(maps))


def test_png_of_a_volume_and_of_signals_are_their_pictures(rng):
    volume = rng.standard_normal((1, 3, 10, 12)).astype(np.float32)
    np.testing.assert_array_equal(decoded(encode_image(volume, fmt="png")), volume_montage(volume))
    signals = rng.standard_normal((2, 40)).astype(np.float32)
    np.testing.assert_array_equal(decoded(encode_image(signals, fmt="png")), signal_plot(signals))


def test_png_of_one_or_three_channels_is_still_an_image(rng):
    maps = rng.random((3, 4, 5)).astype(np.float32)
    with Image.open(io.BytesIO(encode_image(maps, fmt="png"))) as image:
        assert image.mode == "RGB" and image.size == (5, 4)


# --- kernel pictures: colour maps ------------------------------------------------------------

WHITE = [255, 255, 255]


def test_diverging_colours_zero_white_negative_blue_positive_red_and_symmetric():
    values = np.array([-3.0, -2.0, -1.0, -0.25, 0.0, 0.25, 1.0, 2.0, 3.0])
    colours = diverging_colours(values, 2.0).astype(int)
    assert colours.shape == (9, 3) and diverging_colours(values).dtype == np.uint8
    np.testing.assert_array_equal(colours[4], WHITE)
    for red, green, blue in colours[5:]:
        assert red > blue and red >= green                            # positive: red
    for red, green, blue in colours[:4]:
        assert blue > red and blue >= green                           # negative: blue
    np.testing.assert_array_equal(colours[:4], colours[5:][::-1, ::-1])   # -v: v, red <-> blue
    np.testing.assert_array_equal(colours[-1], colours[-2])           # beyond the limit: clipped
    np.testing.assert_array_equal(colours[-2], RED_RAMP[-1])          # +limit: the darkest red
    distance = np.abs(colours[4:] - WHITE).sum(axis=1)
    assert (np.diff(distance[:-1]) > 0).all()                         # further from 0: stronger


def test_diverging_colours_default_to_a_scale_symmetric_around_zero():
    colours = diverging_colours(np.array([-1.0, 0.0, 4.0]))           # limit 4, not 1
    np.testing.assert_array_equal(colours[2], RED_RAMP[-1])
    np.testing.assert_array_equal(colours[0], diverging_colours(np.array([1.0]), 4.0)[0][::-1])
    np.testing.assert_array_equal(diverging_colours(np.zeros((2, 2))), np.full((2, 2, 3), 255))


def test_magnitude_colours_get_lighter_with_the_value():
    colours = magnitude_colours(np.linspace(0, 5, 11)).astype(float)
    lightness = colours @ [0.299, 0.587, 0.114]
    assert (np.diff(lightness) > 0).all()
    np.testing.assert_array_equal(magnitude_colours(np.zeros(3)), [MAGNITUDE_RAMP[0]] * 3)


# --- kernel pictures: heat maps and responses ------------------------------------------------

def cell_pixels(picture: np.ndarray, rows: int, columns: int, row: int, column: int) -> np.ndarray:
    height, width = picture.shape[0] // rows, picture.shape[1] // columns
    return picture[row * height + 1:(row + 1) * height, column * width + 1:(column + 1) * width]


@pytest.mark.parametrize("size", [1, 3, NUMBERS_UP_TO])
def test_small_kernels_have_their_values_written_in_the_cells(size):
    weights = np.linspace(-1, 1, size * size).reshape(size, size)
    picture = heat_map(weights)
    assert picture.dtype == np.uint8 and picture.shape[0] == picture.shape[1]
    colours = diverging_colours(weights)
    for row, column in [(0, 0), (size - 1, size - 1), (size // 2, 0)]:
        cell = cell_pixels(picture, size, size, row, column)
        assert (cell == colours[row, column]).all(axis=2).mean() > 0.5    # the cell's colour
        assert not (cell == colours[row, column]).all()                   # and its number


@pytest.mark.parametrize("shape", [(NUMBERS_UP_TO + 1, NUMBERS_UP_TO + 1), (3, 31), (1, 12)])
def test_large_kernels_are_cells_without_numbers(shape, rng):
    weights = rng.standard_normal(shape)
    picture = heat_map(weights)
    height, width = picture.shape[0] // shape[0], picture.shape[1] // shape[1]
    assert picture.shape[:2] == (shape[0] * height, shape[1] * width)
    np.testing.assert_array_equal(picture, np.kron(diverging_colours(weights),
                                                   np.ones((height, width, 1), np.uint8)))


def test_a_one_d_kernel_is_one_row_of_cells():
    picture = heat_map(np.array([1.0, 4.0, 6.0, 4.0, 1.0]))
    assert picture.shape[1] == 5 * picture.shape[0]


def dirichlet(length: int, taps: int) -> np.ndarray:
    """|DFT| of a ``taps``-long box of 1/taps, zero-padded to ``length``, DC at length // 2."""
    f = (np.arange(length) - length // 2) / length
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.abs(np.sin(np.pi * taps * f) / (taps * np.sin(np.pi * f)))
    values[length // 2] = 1.0
    return values


def test_frequency_response_of_a_box_is_a_sinc_like_pattern_peaking_at_the_centre():
    response = frequency_response(np.full((4, 4), 1 / 16))
    assert response.shape == (RESPONSE_SIZE, RESPONSE_SIZE)
    centre = RESPONSE_SIZE // 2
    assert np.unravel_index(response.argmax(), response.shape) == (centre, centre)
    assert response[centre, centre] == pytest.approx(1.0)             # DC: the sum
    profile = dirichlet(RESPONSE_SIZE, 4)
    np.testing.assert_allclose(response, np.outer(profile, profile), atol=1e-12)
    row = response[centre]
    assert row[centre + 16] < 1e-12 and row[centre - 16] < 1e-12      # first zeros at f = 1/4
    assert row[centre + 24] == pytest.approx(0.2706, abs=1e-4)        # then a side lobe
    np.testing.assert_allclose(row[1:], row[1:][::-1], atol=1e-12)    # |H| is even


def test_frequency_response_pads_to_at_least_the_kernel_and_keeps_its_dimensions():
    assert frequency_response(np.ones(5)).shape == (RESPONSE_SIZE,)
    assert frequency_response(np.ones((3, 100))).shape == (RESPONSE_SIZE, 100)
    np.testing.assert_allclose(frequency_response(np.ones(5) / 5), dirichlet(RESPONSE_SIZE, 5),
                               atol=1e-12)
    assert frequency_response(np.ones((2, 3, 3))).shape == (RESPONSE_SIZE,) * 3


# --- kernel pictures: rows and the whole picture ---------------------------------------------

def test_kernel_rows_of_one_d_two_d_three_d_and_four_d_kernels(rng):
    rows, left_out = kernel_rows([("smooth", np.array([1.0, 4, 6, 4, 1]))])
    assert left_out == 0 and [r.label for r in rows] == ["smooth"]
    assert rows[0].weights.ndim == 1 and rows[0].response.shape == (RESPONSE_SIZE,)

    rows, _ = kernel_rows([("blur", np.ones((3, 5)))])
    assert len(rows) == 1 and rows[0].response.shape == (RESPONSE_SIZE, RESPONSE_SIZE)

    volume = rng.standard_normal((3, 4, 5))
    rows, _ = kernel_rows([("cube", volume)])
    assert [r.label for r in rows] == ["cube z=0", "cube z=1", "cube z=2"]
    assert all(r.weights.shape == (4, 5) and r.limit == np.abs(volume).max() for r in rows)
    np.testing.assert_allclose(rows[0].response, frequency_response(volume)[RESPONSE_SIZE // 2])
    assert rows[1].response is None and rows[2].response is None

    bank = rng.standard_normal((2, 3, 3, 3))
    rows, _ = kernel_rows([("bank", bank)])
    assert [r.label for r in rows] == [f"bank [out {o}, in {i}]" for o in range(2) for i in range(3)]
    assert len({r.limit for r in rows}) == 1 and len({r.response_limit for r in rows}) == 1
    assert rows[0].response_limit == max(r.response.max() for r in rows)   # one |H| scale


def test_kernel_rows_are_capped_and_count_the_rest(rng):
    rows, left_out = kernel_rows([("wide", rng.standard_normal((8, 8, 3, 3)))])
    assert len(rows) == MAX_ROWS and left_out == 64 - MAX_ROWS
    rows, left_out = kernel_rows([("deep", rng.standard_normal((2, 1, 3, 3, 3)))])
    assert len(rows) == 6 and left_out == 0 and rows[3].label == "deep [out 1, in 0] z=0"
    rows, left_out = kernel_rows([(f"k{i}", np.eye(3)) for i in range(8)], max_rows=5)
    assert len(rows) == 5 and left_out == 3


def test_kernel_picture_has_a_row_per_kernel_in_its_colours():
    sobel_x = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    one = kernel_picture([("sobel-x", sobel_x)], title="sobel-x")
    two = kernel_picture([("sobel-x", sobel_x), ("sobel-y", sobel_x.T)], title="sobel")
    eight = kernel_picture([(f"k{i}", np.rot90(sobel_x, i)) for i in range(8)], title="compass")
    assert one.dtype == np.uint8 and one.ndim == 3 and one.shape[2] == 3
    assert one.shape[0] < two.shape[0] < eight.shape[0]
    assert 6 * (two.shape[0] - one.shape[0]) == eight.shape[0] - two.shape[0]   # rows of one height
    colours = {tuple(c) for c in one.reshape(-1, 3)}
    assert tuple(RED_RAMP[-1].astype(int)) in colours                   # +2: darkest red
    assert tuple(RED_RAMP[-1].astype(int)[::-1]) in colours             # -2: darkest blue
    assert tuple(magnitude_colours(np.array([1.0]))[0]) in colours      # the response's peak


@pytest.mark.parametrize("shape", [(5,), (1,), (3, 3), (31, 31), (3, 3, 3), (1, 3, 1, 1),
                                   (3, 3, 1, 1), (2, 2, 2, 3, 3), (1, 1, 5)])
def test_kernel_picture_of_any_nesting_is_an_rgb_picture(shape, rng):
    picture = kernel_picture([("k", rng.standard_normal(shape))], title="k")
    assert picture.dtype == np.uint8 and picture.ndim == 3 and min(picture.shape[:2]) > 40


# --- before/after sheets ---------------------------------------------------------------------

def sheet_size(tile: tuple[int, int], rows: int, columns: int) -> tuple[int, int]:
    """(height, width) of a sheet of ``tile``-sized cells, each with a label band below."""
    from PIL import ImageFont

    band = ImageFont.load_default().getbbox("Ag0")[3] + 2
    return GAP + rows * (tile[0] + band + GAP), GAP + columns * (tile[1] + GAP)


@pytest.mark.parametrize("count, rows, columns", [(1, 1, 1), (3, 1, 3), (4, 1, 4), (5, 2, 3),
                                                  (9, 3, 3)])
def test_compare_sheet_is_a_row_or_a_grid_of_shrunk_tiles(rng, count, rows, columns):
    pictures = [rng.integers(0, 256, (400, 640, 3), dtype=np.uint8) for _ in range(count)]
    sheet = compare_sheet(pictures, [f"kernel {i}" for i in range(count)])
    tile = (round(400 * TILE_WIDTH / 640), TILE_WIDTH)
    assert sheet.dtype == np.uint8 and sheet.shape == sheet_size(tile, rows, columns) + (3,)
    np.testing.assert_array_equal(sheet[GAP:GAP + tile[0], GAP:GAP + tile[1]], fit_tile(pictures[0]))


def test_compare_sheet_of_gray_pictures_is_gray_and_small_ones_keep_their_size(rng):
    gray = [rng.integers(0, 256, (50, 60), dtype=np.uint8) for _ in range(2)]
    sheet = compare_sheet(gray, ["a", "b"])
    assert sheet.ndim == 2
    np.testing.assert_array_equal(fit_tile(gray[0]), gray[0])
    mixed = compare_sheet([gray[0], rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)], ["a", "b"])
    assert mixed.ndim == 3
    np.testing.assert_array_equal(mixed[GAP:GAP + 50, GAP:GAP + 60], np.stack([gray[0]] * 3, axis=2))


def test_compare_sheet_cuts_long_labels_to_the_tile_width(rng):
    pictures = [rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)] * 2
    sheet = compare_sheet(pictures, ["input.png", "a-very-long-kernel-file-name " * 10])
    assert sheet.shape[1] == GAP + 2 * (TILE_WIDTH + GAP)
