"""Pictures of what is not a photograph: feature-map grids, volume montages, signal plots;
kernels as heat maps beside their frequency response; before/after sheets.

Each function takes arrays and returns 8-bit pixels for the PNG writer, gray (H, W) or,
for kernel pictures and colour sheets, RGB (H, W, 3); nothing here reads or writes files.
Maps are stretched min-max to 0..255 one by one (``stretch``): feature maps differ in scale
by orders of magnitude, and a grid on one scale would show the largest and hide the rest.
Kernel weights are coloured on a scale symmetric around 0 (``diverging_colours``: 0 white,
negative blue, positive red), magnitudes on a sequential one (``magnitude_colours``); both
colour maps are written here, in a few anchor colours. Labels are drawn with Pillow's
built-in font (``ImageFont.load_default``), so no font file ships with convcli.

    >>> import numpy as np
    >>> from convcli.pictures import feature_grid
    >>> grid = feature_grid(np.random.rand(8, 32, 32))     # 3 x 3 tiles, labelled 0..7
    >>> grid.dtype, grid.ndim
    (dtype('uint8'), 2)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from math import ceil, prod, sqrt
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["stretch", "montage", "feature_grid", "volume_montage", "signal_plot", "split_maps",
           "picture", "diverging_colours", "magnitude_colours", "frequency_response", "heat_map",
           "KernelRow", "kernel_rows", "kernel_picture", "compare_sheet", "fit_tile"]

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
    """uint8 tiles in rows of ``columns`` (default: a near-square layout, ceil(sqrt(n))
    columns), each with its label centred below it, on white.

    Tiles are gray (H, W) or colour (H, W, 3); one colour tile makes the montage colour
    (H', W', 3). Every cell is as large as the largest tile (each tile at the top of its cell,
    centred across it), so labels line up. Tiles all smaller than ``MIN_TILE`` pixels on their
    longer side are enlarged by a whole factor (each pixel a square block), so a 3 x 3 map is
    still visible.
    """
    if not tiles or len(tiles) != len(labels):
        raise ValueError(f"need one label per tile; got {len(tiles)} tiles, {len(labels)} labels")
    colour = any(tile.ndim == 3 for tile in tiles)
    tiles = [_rgb(tile) for tile in tiles] if colour else list(tiles)
    height = max(tile.shape[0] for tile in tiles)
    width = max(tile.shape[1] for tile in tiles)
    zoom = max(1, ceil(MIN_TILE / max(height, width)))
    font = _font()
    label_widths = [font.getbbox(label)[2] for label in labels]
    cell_width = max(width * zoom, max(label_widths))
    cell_height = height * zoom + _text_height() + 2
    columns = columns or ceil(sqrt(len(tiles)))
    rows = ceil(len(tiles) / columns)
    canvas = np.full((GAP + rows * (cell_height + GAP), GAP + columns * (cell_width + GAP))
                     + ((3,) if colour else ()), BACKGROUND, np.uint8)
    corners = []
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        tile_height, tile_width = tile.shape[0] * zoom, tile.shape[1] * zoom
        top = GAP + row * (cell_height + GAP)
        left = GAP + column * (cell_width + GAP) + (cell_width - tile_width) // 2
        canvas[top:top + tile_height, left:left + tile_width] = (
            np.repeat(np.repeat(tile, zoom, axis=0), zoom, axis=1) if zoom > 1 else tile)
        corners.append((top, GAP + column * (cell_width + GAP)))
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    ink = (INK,) * 3 if colour else INK
    for (top, cell_left), label, label_width in zip(corners, labels, label_widths):
        draw.text((cell_left + (cell_width - label_width) // 2, top + height * zoom + 1), label,
                  fill=ink, font=font)
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
    font = _font()
    text_height = _text_height()
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


# --- kernels: heat maps and frequency responses ----------------------------------------------

# Diverging colours (as matplotlib's RdBu_r): white at 0, reds for positive weights
# (ColorBrewer "Reds" anchors, light to dark), blues for negative ones: the red ramp with
# its red and blue components swapped, so equal magnitudes are equally far from white.
RED_RAMP = np.array([[255, 255, 255], [252, 187, 161], [239, 59, 44], [103, 0, 13]], np.float64)
# Sequential colours for magnitudes (viridis at five anchors): dark purple 0 to yellow max.
MAGNITUDE_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                           [253, 231, 37]], np.float64)
NUMBERS_UP_TO = 9        # kernels up to 9 x 9 taps have their values written in the cells
MIN_CELL = 28            # the smallest cell that holds a written value, in pixels
HEAT_SIZE = 256          # a larger kernel's heat map is about this long on its longer side
STRIP_HEIGHT = 24        # a 1-D kernel's cells are at least this high
RESPONSE_SIZE = 64       # kernels are zero-padded to at least this many taps per axis for |H|
RESPONSE_PIXELS = 128    # a 2-D response is drawn about this large; a 1-D one twice as wide
BAR_HEIGHT = 8           # colour bars under heat maps and responses
GRID = 200               # lines between the cells of a small heat map
MAX_ROWS = 16            # rows of a kernel picture; the rest are counted in a note
RESPONSE_LABEL = "frequency response |H|, DC at centre"
RESPONSE_3D_LABEL = "frequency response |H| at f_z = 0, DC at centre"


def diverging_colours(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Values -> RGB uint8 (..., 3) on a scale symmetric around 0: 0 is white, ``+limit``
    dark red, ``-limit`` dark blue (default limit: the largest magnitude), beyond it clipped.
    ``-v`` gets the colour of ``v`` with red and blue swapped."""
    values = np.asarray(values, np.float64)
    if limit is None:
        limit = float(np.abs(values).max()) if values.size else 0.0
    share = np.clip(np.abs(values) / limit, 0.0, 1.0) if limit > 0 else np.zeros(values.shape)
    colours = _ramp(share, RED_RAMP)
    negative = values < 0
    colours[negative] = colours[negative][:, ::-1]
    return colours


def magnitude_colours(values: np.ndarray, limit: float | None = None) -> np.ndarray:
    """Values >= 0 -> RGB uint8 (..., 3) from dark purple (0) to yellow (``limit``, default
    the maximum), viridis-like: lightness grows with the value."""
    values = np.asarray(values, np.float64)
    if limit is None:
        limit = float(values.max()) if values.size else 0.0
    return _ramp(np.clip(values / limit, 0.0, 1.0) if limit > 0 else np.zeros(values.shape),
                 MAGNITUDE_RAMP)


def _ramp(share: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Shares in [0, 1] -> colours, linear between evenly spaced anchor colours."""
    positions = np.linspace(0.0, 1.0, len(anchors))
    channels = [np.interp(share, positions, anchors[:, index]) for index in range(3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def frequency_response(weights: np.ndarray, *, size: int = RESPONSE_SIZE) -> np.ndarray:
    """|DFT| of a kernel zero-padded to at least ``size`` taps per axis, shifted so that
    frequency 0 (DC: the sum of the weights) is at index ``n // 2`` of every axis."""
    weights = np.asarray(weights, np.float64)
    shape = tuple(max(size, length) for length in weights.shape)
    return np.abs(np.fft.fftshift(np.fft.fftn(weights, shape, axes=range(weights.ndim))))


def heat_map(weights: np.ndarray, *, limit: float | None = None) -> np.ndarray:
    """A 1-D or 2-D kernel as cells in ``diverging_colours``: RGB uint8 (H, W, 3).

    Kernels up to ``NUMBERS_UP_TO`` taps on each side get square cells with their value
    written in them (dark text on light cells, white on dark) and thin lines between the
    cells; larger ones get no numbers and cells sized so the map is about ``HEAT_SIZE``
    pixels long. A 1-D kernel is one row of cells.
    """
    cells = np.atleast_2d(np.asarray(weights, np.float64))
    if cells.ndim != 2:
        raise ValueError(f"a heat map is of a 1-D or 2-D kernel; got shape {cells.shape}")
    if limit is None:
        limit = float(np.abs(cells).max())
    rows, columns = cells.shape
    colours = diverging_colours(cells, limit)
    font = _font()
    if max(rows, columns) > NUMBERS_UP_TO:
        width = max(1, HEAT_SIZE // max(rows, columns))
        height = max(width, STRIP_HEIGHT) if rows == 1 else width
        return np.repeat(np.repeat(colours, height, axis=0), width, axis=1)
    texts = [[_value_text(value, limit) for value in row] for row in cells]
    cell = max(MIN_CELL, max(font.getbbox(text)[2] for row in texts for text in row) + 8)
    image = Image.fromarray(np.repeat(np.repeat(colours, cell, axis=0), cell, axis=1))
    draw = ImageDraw.Draw(image)
    for row in range(1, rows):
        draw.line([(0, row * cell), (columns * cell - 1, row * cell)], fill=(GRID,) * 3)
    for column in range(1, columns):
        draw.line([(column * cell, 0), (column * cell, rows * cell - 1)], fill=(GRID,) * 3)
    for (row, column), colour in zip(np.ndindex(rows, columns), colours.reshape(-1, 3)):
        text = texts[row][column]
        light = colour @ np.array([0.299, 0.587, 0.114]) > 128
        draw.text(((column + 0.5) * cell, (row + 0.5) * cell), text, anchor="mm", font=font,
                  fill=(INK,) * 3 if light else (BACKGROUND,) * 3)
    return np.asarray(image)


def _value_text(value: float, limit: float = 0.0) -> str:
    """A weight as written in a cell or caption: integers without decimals, others with
    3 significant digits; float dust (below 1e-9 of ``limit``) as 0."""
    if abs(value) <= 1e-9 * limit or float(value).is_integer():
        return str(int(round(value)))
    return f"{value:.3g}"


@dataclass(frozen=True, eq=False)
class KernelRow:
    """One row of a kernel picture: a 1-D or 2-D heat map and, beside it, a response."""

    label: str                       # e.g. ``sobel-x``, ``luma [out 0, in 2]``, ``box-3d z=1``
    weights: np.ndarray              # 1-D or 2-D
    limit: float                     # colour scale: the largest magnitude of the whole kernel
    response: np.ndarray | None      # |H|, DC at the centre (None: later slices of a 3-D kernel)
    response_label: str = RESPONSE_LABEL
    response_limit: float = 0.0      # top of the |H| colour scale: the kernel's largest |H|


def kernel_rows(kernels: Sequence[tuple[str, np.ndarray]], *,
                max_rows: int = MAX_ROWS) -> tuple[list[KernelRow], int]:
    """The rows a kernel picture draws, and how many more there would be past ``max_rows``.

    ``kernels`` are (name, weights) pairs. A 1-D or 2-D kernel is one row with its
    ``frequency_response``; a 3-D kernel (kD, kH, kW) a row per depth slice, the first with
    the 3-D response's plane at depth frequency 0 (the response of the slices' sum); C_out x
    C_in x kernel weights (4-D, 5-D) a row (or rows) per (out, in) pair. The slices and pairs
    of one kernel share its colour scales (weights and |H|), so they compare.
    """
    rows: list[KernelRow] = []
    wanted = 0
    for name, weights in kernels:
        weights = np.asarray(weights, np.float64)
        limit = float(np.abs(weights).max())
        pairs = weights.shape[:2] if weights.ndim >= 4 else ()
        per_pair = weights.shape[2] if weights.ndim in (3, 5) else 1
        wanted += prod(pairs) * per_pair
        first = len(rows)
        for index in np.ndindex(*pairs):
            if len(rows) >= max_rows:
                break
            label = f"{name} [out {index[0]}, in {index[1]}]" if pairs else name
            rows.extend(_rows_of(label, weights[index], limit)[:max_rows - len(rows)])
        peak = max((float(row.response.max()) for row in rows[first:] if row.response is not None),
                   default=0.0)
        rows[first:] = [replace(row, response_limit=peak) for row in rows[first:]]
    return rows, wanted - len(rows)


def _rows_of(label: str, kernel: np.ndarray, limit: float) -> list[KernelRow]:
    if kernel.ndim < 3:
        return [KernelRow(label, kernel, limit, frequency_response(kernel))]
    dc_plane = frequency_response(kernel.sum(axis=0))     # = the f_z = 0 plane of the 3-D |H|
    return [KernelRow(f"{label} z={z}", plane, limit, dc_plane if z == 0 else None,
                      RESPONSE_3D_LABEL) for z, plane in enumerate(kernel)]


def kernel_picture(kernels: Sequence[tuple[str, np.ndarray]], *, title: str = "",
                   max_rows: int = MAX_ROWS) -> np.ndarray:
    """Kernels as pictures: RGB uint8 (H, W, 3).

    One row per ``kernel_rows`` row: the heat map (``heat_map``) with its label, size and
    sum and a colour bar from ``-limit`` to ``+limit``; beside it the frequency response
    (``frequency_response``: 2-D on ``magnitude_colours`` with a colour bar from 0 to its
    maximum; 1-D as a line plot), labelled. ``title`` goes on top; rows past ``max_rows``
    are counted in a note at the bottom.
    """
    rows, left_out = kernel_rows(kernels, max_rows=max_rows)
    if not rows:
        raise ValueError("no kernels to draw")
    parts = [_text(title)] if title else []
    heat_panels = [_heat_panel(row) for row in rows]
    column = max(panel.shape[1] for panel in heat_panels)       # the responses line up
    for row, heat_panel in zip(rows, heat_panels):
        panels = [_pad_width(heat_panel, column)]
        if row.response is not None:
            panels.append(_response_panel(row.response, row.response_limit, row.response_label))
        parts.append(_join(panels, vertical=False, gap=4 * GAP))
    if left_out:
        parts.append(_text(f"... and {left_out} more row(s), not drawn "
                           "(convcli kernels show prints every weight)"))
    return np.pad(_join(parts, vertical=True, gap=2 * GAP), ((GAP, GAP), (GAP, GAP), (0, 0)),
                  constant_values=BACKGROUND)


def _heat_panel(row: KernelRow) -> np.ndarray:
    weights = row.weights
    total = float(weights.sum())
    caption = (f"{row.label}  {'x'.join(map(str, weights.shape))}  "
               f"sum {_value_text(total, float(np.abs(weights).sum()))}")
    levels = np.linspace(-row.limit, row.limit, 129)
    bar = _colour_bar(diverging_colours(levels, row.limit),
                      [_value_text(-row.limit), "0", _value_text(row.limit)])
    return _join([_framed(heat_map(weights, limit=row.limit)), bar, _text(caption)],
                 vertical=True, gap=2)


def _response_panel(response: np.ndarray, peak: float, label: str) -> np.ndarray:
    if response.ndim == 1:
        picture = _response_plot(response, peak)
        captions = [_text(label), _text(f"max |H| {_value_text(peak)}")]
    else:
        block = max(1, RESPONSE_PIXELS // max(response.shape))
        picture = np.repeat(np.repeat(magnitude_colours(response, peak), block, axis=0),
                            block, axis=1)
        bar = _colour_bar(magnitude_colours(np.linspace(0.0, peak, 129), peak),
                          ["0", "", _value_text(peak)])
        captions = [bar, _text(label)]
    return _join([_framed(picture)] + captions, vertical=True, gap=2)


def _response_plot(response: np.ndarray, peak: float) -> np.ndarray:
    """A 1-D |H| as a line, 0 at the bottom and ``peak`` at the top, DC marked by a grey line."""
    width = 2 * response.size
    image = Image.new("RGB", (width, PLOT_HEIGHT), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(image)
    dc = (response.size // 2) * (width - 1) / max(response.size - 1, 1)
    draw.line([(dc, 0), (dc, PLOT_HEIGHT - 1)], fill=(GRID,) * 3)
    share = response / peak if peak > 0 else np.zeros_like(response)
    draw.line(_trace((PLOT_HEIGHT - 1) * (1 - share), width, left=0), fill=(INK,) * 3)
    return np.asarray(image)


def _colour_bar(colours: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """A strip of ``colours`` (n, 3) with ``texts`` spread under it (left, ..., right)."""
    strip = np.repeat(colours[np.newaxis], BAR_HEIGHT, axis=0)
    font = _font()
    image = Image.new("RGB", (colours.shape[0], _text_height() + 2), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(image)
    for index, text in enumerate(texts):
        share = index / max(len(texts) - 1, 1)
        anchor = "la" if share == 0 else ("ra" if share == 1 else "ma")
        draw.text((share * (colours.shape[0] - 1), 1), text, anchor=anchor, font=font,
                  fill=(INK,) * 3)
    return np.concatenate([_framed(strip), _pad_width(np.asarray(image), strip.shape[1] + 2)])


# --- before/after sheets ---------------------------------------------------------------------

TILE_WIDTH = 256     # sheet tiles fit a square of this side: three in a row fit a README page
SHEET_ROW = 4        # up to this many tiles make one row; more make a near-square grid


def compare_sheet(pictures: Sequence[np.ndarray], labels: Sequence[str], *,
                  tile_width: int = TILE_WIDTH) -> np.ndarray:
    """Pictures side by side, each labelled below: uint8, RGB (H, W, 3) if any picture is,
    else gray (H, W).

    Each picture (gray (H, W) or RGB (H, W, 3) uint8) is shrunk to fit a ``tile_width``
    square (Lanczos; smaller ones keep their size) and labels are cut to that width. Up to
    ``SHEET_ROW`` pictures make one row; more a near-square grid (see ``montage``).
    """
    if not pictures or len(pictures) != len(labels):
        raise ValueError(f"need one label per picture; got {len(pictures)} pictures, "
                         f"{len(labels)} labels")
    tiles = [fit_tile(picture, tile_width) for picture in pictures]
    columns = len(tiles) if len(tiles) <= SHEET_ROW else ceil(sqrt(len(tiles)))
    return montage(tiles, [_fit(label, tile_width) for label in labels], columns=columns)


def fit_tile(picture: np.ndarray, side: int = TILE_WIDTH) -> np.ndarray:
    """A gray (H, W) or RGB (H, W, 3) uint8 picture shrunk (Lanczos) to fit a ``side``
    square; a smaller one keeps its size."""
    height, width = picture.shape[:2]
    if max(height, width) <= side:
        return picture
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.LANCZOS))


def _fit(text: str, width: int) -> str:
    """``text``, cut and ended with ``...`` when it is wider than ``width`` pixels."""
    font = _font()
    if font.getbbox(text)[2] <= width:
        return text
    while text and font.getbbox(text + "...")[2] > width:
        text = text[:-1]
    return text + "..."


# --- drawing helpers -------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _text_height() -> int:
    return _font().getbbox("Ag0")[3]


def _text(text: str) -> np.ndarray:
    """One line of black text on white: RGB uint8."""
    font = _font()
    image = Image.new("RGB", (max(1, font.getbbox(text)[2]), _text_height() + 2), (BACKGROUND,) * 3)
    ImageDraw.Draw(image).text((0, 1), text, font=font, fill=(INK,) * 3)
    return np.asarray(image)


def _rgb(picture: np.ndarray) -> np.ndarray:
    return np.repeat(picture[:, :, np.newaxis], 3, axis=2) if picture.ndim == 2 else picture


def _framed(picture: np.ndarray) -> np.ndarray:
    """A one-pixel grey frame around an RGB picture (white cells stay visible on white)."""
    return np.pad(picture, ((1, 1), (1, 1), (0, 0)), constant_values=FRAME)


def _pad_width(picture: np.ndarray, width: int) -> np.ndarray:
    return np.pad(picture, ((0, 0), (0, max(0, width - picture.shape[1])), (0, 0)),
                  constant_values=BACKGROUND)


def _join(parts: Sequence[np.ndarray], *, vertical: bool, gap: int) -> np.ndarray:
    """RGB pictures one below the other (left-aligned) or side by side (top-aligned), with
    ``gap`` white pixels between them."""
    axis = 0 if vertical else 1
    across = max(part.shape[1 - axis] for part in parts)
    pieces = []
    for index, part in enumerate(parts):
        missing = [(0, 0), (0, 0), (0, 0)]
        missing[1 - axis] = (0, across - part.shape[1 - axis])
        missing[axis] = (0, gap if index < len(parts) - 1 else 0)
        pieces.append(np.pad(part, missing, constant_values=BACKGROUND))
    return np.concatenate(pieces, axis=axis)
