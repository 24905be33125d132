"""Pictures of feature maps, volumes and signals, and the PNGs that hold them."""

from __future__ import annotations

import io
from math import ceil, sqrt

import numpy as np
import pytest
from PIL import Image

from convcli.images import encode_image, save_image
from convcli.pictures import (BACKGROUND, GAP, MID_GREY, MIN_TILE, PLOT_HEIGHT, PLOT_WIDTHS,
                              feature_grid, montage, signal_plot, split_maps, stretch,
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
