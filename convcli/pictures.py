"""Pictures of what is not a photograph: feature-map grids, volume montages, signal plots.

Each function takes float arrays and returns 8-bit gray pixels (H, W) for the PNG writer;
nothing here reads or writes files. Maps are stretched min-max to 0..255 one by one
(``stretch``): feature maps differ in scale by orders of magnitude, and a grid on one
scale would show the largest and hide the rest. Labels are drawn with Pillow's built-in
font (``ImageFont.load_default``), so no font file ships with convcli.

    >>> import numpy as np
    >>> from convcli.pictures import feature_grid
    >>> grid = feature_grid(np.random.rand(8, 32, 32))     # 3 x 3 tiles, labelled 0..7
    >>> grid.dtype, grid.ndim
    (dtype('uint8'), 2)
"""

from __future__ import annotations

from math import ceil, sqrt
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["stretch", "montage", "feature_grid", "volume_montage", "signal_plot", "split_maps",
           "picture"]

GAP = 4                  # background pixels between tiles and around the picture
BACKGROUND = 255         # white: dark labels read on it, and it frames the tiles
INK = 0                  # label and plot line colour
MID_GREY = 128           # a constant map: no contrast to show
FRAME = 160              # the box around a signal's plot
MIN_TILE = 32            # tiles smaller than this (longer side) are enlarged by a whole factor
PLOT_HEIGHT = 64
PLOT_WIDTHS = (256, 1024)   # a plot is one pixel per sample, within these bounds


def stretch(values: np.ndarray) -> np.ndarray:
    """Float values -> uint8 0..255, from the minimum to the maximum of the finite values.

    A constant array is mid-grey (128); NaN and -inf are 0, +inf is 255; rounded to the
    nearest level, so the minimum is exactly 0 and the maximum exactly 255.
    """
    values = np.asarray(values, np.float64)         # float64: max - min never overflows
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    picked = values if all_finite else values[finite]
    low, high = (float(picked.min()), float(picked.max())) if picked.size else (0.0, 0.0)
    if high > low:
        levels = np.where(finite, values, low) if not all_finite else values.copy()
        levels -= low
        levels *= 255.0 / (high - low)
        out = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
    else:
        out = np.full(values.shape, MID_GREY, np.uint8)
    if not all_finite:
        out[np.isnan(values) | (values == -np.inf)] = 0
        out[values == np.inf] = 255
    return out


def montage(tiles: Sequence[np.ndarray], labels: Sequence[str], *,
            columns: int | None = None) -> np.ndarray:
    """uint8 tiles of one shape in rows of ``columns`` (default: a near-square layout,
    ceil(sqrt(n)) columns), each with its label centred below it, on white.

    Tiles smaller than ``MIN_TILE`` pixels on their longer side are enlarged by a whole
    factor (each pixel a square block), so a 3 x 3 map is still visible.
    """
    if not tiles or len(tiles) != len(labels):
        raise ValueError(f"need one label per tile; got {len(tiles)} tiles, {len(labels)} labels")
    height, width = tiles[0].shape
    zoom = max(1, ceil(MIN_TILE / max(height, width)))
    font = ImageFont.load_default()
    text_height = font.getbbox("Ag0")[3]
    label_widths = [font.getbbox(label)[2] for label in labels]
    cell_width = max(width * zoom, max(label_widths))
    cell_height = height * zoom + text_height + 2
    columns = columns or ceil(sqrt(len(tiles)))
    rows = ceil(len(tiles) / columns)
    canvas = np.full((GAP + rows * (cell_height + GAP), GAP + columns * (cell_width + GAP)),
                     BACKGROUND, np.uint8)
    corners = []
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        top = GAP + row * (cell_height + GAP)
        left = GAP + column * (cell_width + GAP) + (cell_width - width * zoom) // 2
        canvas[top:top + height * zoom, left:left + width * zoom] = (
            np.repeat(np.repeat(tile, zoom, axis=0), zoom, axis=1) if zoom > 1 else tile)
        corners.append((top, GAP + column * (cell_width + GAP)))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for (top, cell_left), label, label_width in zip(corners, labels, label_widths):
        draw.text((cell_left + (cell_width - label_width) // 2, top + height * zoom + 1), label,
                  fill=INK, font=font)
    return np.asarray(image)


def feature_grid(maps: np.ndarray) -> np.ndarray:
    """A labelled grid of (C, H, W) feature maps: uint8 (H', W'), tiles in a near-square
    layout, each map stretched on its own (``stretch``), its channel index below it."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"feature maps are (C, H, W); got shape {maps.shape}")
    return montage(split_maps(maps), [str(index) for index in range(maps.shape[0])])


def split_maps(maps: np.ndarray) -> list[np.ndarray]:
    """Each of the (C, H, W) maps as its own uint8 (H, W) picture, stretched on its own
    (one PNG per map)."""
    return [stretch(plane) for plane in maps]


def volume_montage(volume: np.ndarray) -> np.ndarray:
    """A montage of the depth slices of a (C, D, H, W) volume: uint8 (H', W').

    One channel: the slices in a near-square layout, labelled ``z=0``, ``z=1``, ...
    Several: one row per channel, one column per slice, labelled ``c=i z=k``. Each channel
    is stretched over all its slices together, so slices of one channel compare (a slice
    that is darker is darker in the data), while channels, like feature maps, each get
    their own scale.
    """
    volume = np.asarray(volume)
    if volume.ndim != 4:
        raise ValueError(f"a volume is (C, D, H, W); got shape {volume.shape}")
    channels, depth = volume.shape[:2]
    slices = [plane for channel in volume for plane in stretch(channel)]
    if channels == 1:
        return montage(slices, [f"z={z}" for z in range(depth)])
    labels = [f"c={c} z={z}" for c in range(channels) for z in range(depth)]
    return montage(slices, labels, columns=depth)


def signal_plot(signals: np.ndarray) -> np.ndarray:
    """(C, L) signals as one line plot per channel, stacked: uint8 (H', W').

    Each plot is ``PLOT_HEIGHT`` pixels high and one pixel per sample wide, within
    ``PLOT_WIDTHS``; a longer signal is drawn as its min-max envelope per pixel column
    (no peak is lost), a shorter one is spread out. Each channel is stretched on its own;
    the label above it gives the channel and its range. NaN and -inf plot at the bottom,
    +inf at the top.
    """
    signals = np.asarray(signals)
    if signals.ndim != 2:
        raise ValueError(f"signals are (C, L); got shape {signals.shape}")
    channels, length = signals.shape
    width = min(max(length, PLOT_WIDTHS[0]), PLOT_WIDTHS[1])
    font = ImageFont.load_default()
    text_height = font.getbbox("Ag0")[3]
    panel = text_height + 2 + PLOT_HEIGHT + GAP
    image = Image.new("L", (2 * GAP + width, GAP + channels * panel), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for channel, signal in enumerate(signals):
        top = GAP + channel * panel
        finite = signal[np.isfinite(signal)]
        scale = (f"min {finite.min():.4g}  max {finite.max():.4g}" if finite.size
                 else "no finite values")
        draw.text((GAP, top), f"c={channel}  {scale}", fill=INK, font=font)
        plot_top = top + text_height + 2
        draw.rectangle((GAP - 1, plot_top - 1, GAP + width, plot_top + PLOT_HEIGHT), outline=FRAME)
        heights = plot_top + (PLOT_HEIGHT - 1) * (1 - stretch(signal) / 255.0)
        draw.line(_trace(heights, width, left=GAP), fill=INK)
    return np.asarray(image)


def _trace(heights: np.ndarray, width: int, *, left: int) -> list[tuple[float, float]]:
    """Points of a plot line ``width`` pixels wide through ``heights`` (one per sample)."""
    length = heights.size
    if length <= width:
        xs = left + (np.arange(length) * (width - 1) / max(length - 1, 1) if length > 1
                     else np.array([(width - 1) / 2]))
        points = list(zip(xs.tolist(), heights.tolist()))
        return points if length > 1 else points * 2       # one sample: a dot
    starts = (np.arange(width) * length) // width         # samples of each pixel column
    low, high = np.minimum.reduceat(heights, starts), np.maximum.reduceat(heights, starts)
    return [(left + x, y) for x in range(width) for y in (low[x], high[x])]


def picture(maps: np.ndarray) -> np.ndarray:
    """The picture for maps a PNG cannot hold as an image: a plot of (C, L) signals, a grid
    of (C, H, W) feature maps, a montage of a (C, D, H, W) volume."""
    maps = np.asarray(maps)
    drawers = {2: signal_plot, 3: feature_grid, 4: volume_montage}
    if maps.ndim not in drawers:
        raise ValueError(f"no picture for an array of shape {maps.shape}")
    return drawers[maps.ndim](maps)
