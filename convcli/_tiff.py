"""TIFF through tifffile: pages of many samples, page stacks, and the float32 writer
(``write_tiff``: a float page per map, RGB for colours, ImageJ hyperstacks for other counts).

A single page of C samples (feature maps, float or 16-bit colour) reads as (C, H, W); a
stack of D pages as a volume (C, D, H, W); tifffile's axes say which is which (``S``
samples and ``C`` channels (ImageJ, OME) are channels, ``Y`` and ``X`` rows and columns,
every other axis is depth). Single-page photographs, the files Pillow decodes exactly
(``pillow_decodes``), stay with Pillow: it converts palette, CMYK, YCbCr and LAB to RGB
and is what convcli has always used for them.

tifffile is imported on first use: importing it costs ~0.15 s, which every ``convcli``
start would pay otherwise. Its log messages are collected while a file is read (never
printed), and any failure becomes a ValueError that names the problem.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from dataclasses import dataclass
from math import prod
from typing import BinaryIO

import numpy as np

__all__ = ["TIFF_SIGNATURES", "TiffLayout", "read_raw", "pillow_decodes", "tiff_layout",
           "write_tiff"]

TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")   # classic and BigTIFF, both orders
MINISBLACK, RGB = 1, 2                   # PhotometricInterpretation (TIFF 6.0, section 3 and 6)
COLOUR_SAMPLES = {MINISBLACK: 1, RGB: 3}
ALPHA_EXTRA_SAMPLES = (1, 2)             # ExtraSamples: associated, unassociated alpha
PILLOW_DEEP_DTYPES = ("uint16", "int32", "float32")    # one-sample pages Pillow reads exactly
ORIENTATION_TAG = 274
CHANNEL_AXES = "SC"
REAL_KINDS = "biuf"
IMAGEJ_VOLUME_KEY = "convcli"         # convcli=volume: an ImageJ hyperstack of one slice is a volume


@dataclass(frozen=True)
class TiffLayout:
    """How the first series of a TIFF becomes convcli's array, known from the header alone."""

    shape: tuple[int, ...]    # (C, H, W) or (C, D, H, W), as stored (before orientation)
    order: tuple[int, ...]    # the series' axes in the order channels, depth, rows, columns
    dtype: np.dtype
    orientation: int          # TIFF Orientation tag of the first page (1: upright)
    alpha: bool               # one page whose last sample is alpha


def read_raw(source: str | BinaryIO, *, pixels: bool = True):
    """(layout, raw samples or None without ``pixels``) of a TIFF that tifffile reads; None
    for a photograph Pillow decodes (``pillow_decodes``). The samples are a view with the
    series' axes in ``layout.order``: reshaped, it is ``layout.shape`` (the caller's copy
    into float32 does that, so the raw samples are never copied twice).

    Raises ValueError, with one line saying why, for a file tifffile cannot read: it
    raises ValueError, IndexError, KeyError, struct.error, ... on damaged files. Its log
    messages are kept, not printed; for the files read here an error logged (a broken page
    chain, a corrupted tag list: tifffile then reads what it can, e.g. fewer pages) fails
    the file too. Photographs are left to Pillow whatever tifffile logged, as before.
    """
    with tifffile_logs() as handler:
        return _read_raw(source, pixels, handler)


def _read_raw(source, pixels: bool, handler: "_Collect"):
    import tifffile

    try:
        with tifffile.TiffFile(source) as tif:
            if pillow_decodes(tif):
                return None
            layout = tiff_layout(tif)
            values = tif.series[0].asarray() if pixels else None
        if handler.errors:
            raise ValueError(handler.errors[0])
    except Exception as error:                  # a decoder's failure, whatever its class
        detail = re.sub(r"<\w+\.(\w+): \d+>", r"\1", str(error)) or type(error).__name__
        if "imagecodecs" in detail:
            detail += "; install it with: pip install imagecodecs"
        logged = handler.errors + handler.warnings
        if logged and logged[0] != detail:
            detail = f"{logged[0]}; {detail}"
        raise ValueError(detail) from None
    return layout, (None if values is None else values.transpose(layout.order))


@contextlib.contextmanager
def tifffile_logs():
    """Keep tifffile's log messages off stderr meanwhile: the ``_Collect`` it yields holds
    them (a damaged file's warnings and errors, for convcli's own one-line message)."""
    handler = _Collect()
    logger = logging.getLogger("tifffile")
    propagate, logger.propagate = logger.propagate, False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _Collect(logging.Handler):
    """Keeps tifffile's log messages (without the object each starts with) unprinted."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r"^(<[^>]*>\s*)+", "", record.getMessage())
        (self.errors if record.levelno >= logging.ERROR else self.warnings).append(message)


def pillow_decodes(tif) -> bool:
    """True for a one-page photograph that Pillow decodes exactly and convcli always read
    with Pillow: 1- to 8-bit gray or RGB (+ alpha), palette, CMYK, YCbCr, LAB, and 16-bit,
    32-bit integer or float gray. Stacks and pages of many or deep samples are tifffile's."""
    series = tif.series[0]
    page = series.keyframe
    if len(series.pages) != 1 or len(series.shape) > len(page.shape):
        return False                            # a stack (perhaps of one page: a volume)
    images = (tif.imagej_metadata or {}).get("images", 1)
    if isinstance(images, int) and images > 1:
        return False                            # a damaged ImageJ stack: tifffile says why
    if page.photometric not in COLOUR_SAMPLES:
        return True                             # Pillow converts them to RGB, or says why not
    extra = page.samplesperpixel - COLOUR_SAMPLES[page.photometric]
    if page.bitspersample <= 8:
        return extra == 0 or (extra == 1 and (page.photometric == RGB or _alpha_last(page)))
    return (page.samplesperpixel == 1 and page.dtype is not None
            and page.dtype.name in PILLOW_DEEP_DTYPES)


def tiff_layout(tif) -> TiffLayout:
    """The layout of the file's first series; ValueError for what convcli cannot use."""
    series = tif.series[0]
    page = series.keyframe
    axes, shape = series.axes, series.shape
    if page.photometric not in COLOUR_SAMPLES:
        raise ValueError(f"a stack of {page.photometric.name.lower()} pages; convcli reads "
                         "stacks of gray, RGB or multi-sample (min-is-black) pages")
    if page.dtype is None or page.dtype.kind not in REAL_KINDS:
        raise ValueError(f"samples of type {page.dtype} ({page.sampleformat.name.lower()}, "
                         f"{page.bitspersample} bits); convcli reads integer and float samples")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"no rows and columns among the axes {axes!r}")
    channels = [index for index, axis in enumerate(axes) if axis in CHANNEL_AXES]
    depth = [index for index, axis in enumerate(axes) if axis not in CHANNEL_AXES + "YX"]
    rows, columns = axes.index("Y"), axes.index("X")
    size = (prod(shape[i] for i in channels),) + ((prod(shape[i] for i in depth),) if depth else ())
    if not depth and _imagej_volume(tif):
        size += (1,)                            # ImageJ drops the depth axis of one slice
    alpha = not depth and [axes[i] for i in channels] == ["S"] and _alpha_last(page)
    return TiffLayout(shape=size + (shape[rows], shape[columns]),
                      order=tuple(channels + depth + [rows, columns]), dtype=page.dtype,
                      orientation=orientation_number(page.tags.valueof(ORIENTATION_TAG, 1)), alpha=alpha)


def orientation_number(value) -> int:
    """An orientation tag's value as 1 to 8; 1 (upright) for anything else. Files carry
    rationals (Pillow's IFDRational, tifffile's (numerator, denominator)) where a SHORT
    belongs, and numbers out of range: those are no turn, not an internal error."""
    if isinstance(value, tuple) and len(value) == 2:
        value = value[0] / value[1] if value[1] else None
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return 1
    return int(number) if number.is_integer() and 1 <= number <= 8 else 1


def _imagej_volume(tif) -> bool:
    """An ImageJ hyperstack that ``write_tiff`` wrote from a volume (``convcli=volume``)."""
    return tif.series[0].kind == "imagej" and \
        (tif.imagej_metadata or {}).get(IMAGEJ_VOLUME_KEY) == "volume"


def _alpha_last(page) -> bool:
    """The page's last sample is alpha (ExtraSamples says associated or unassociated)."""
    return bool(page.extrasamples) and page.extrasamples[-1] in ALPHA_EXTRA_SAMPLES


def write_tiff(file: BinaryIO, maps: np.ndarray) -> None:
    """Float32 maps, raw, in the layout viewers read (every one reads back bit for bit):

    - 1 map: a plain float page, min-is-black; a volume (1, D, H, W): D such pages.
    - 3 maps (colours, e.g. a blurred photo): one RGB page of interleaved (contiguous)
      samples; a volume (3, D, H, W): D such pages.
    - any other count C: an ImageJ hyperstack, C float pages (channels) per depth slice with
      ImageJ's description (``channels=C``, ``slices=D``), which ImageJ and Fiji open natively
      as C channels. ImageJ cannot open one page of several float samples ("ImageJ can only
      open 8 and 16 bit/channel images"); Fiji only through Bio-Formats. tifffile reads the
      axes back as CYX or ZCYX; ``convcli=volume`` in the description keeps a volume of one
      slice a volume (ImageJ drops axes of length 1).

    (C, L) signals are written as C maps of one row (they read back as (C, 1, L)). BigTIFF is
    chosen by tifffile when the data passes ~4 GB; an ImageJ hyperstack that large is written
    as ImageJ itself writes it (the data contiguous after the first page).
    """
    import tifffile

    maps = np.asarray(maps, np.float32)
    if maps.ndim == 2:
        maps = maps[:, np.newaxis]
    volume = maps.ndim == 4
    if maps.shape[0] == 1:                                        # (H, W) or (D, H, W)
        tifffile.imwrite(file, np.ascontiguousarray(maps[0]), photometric="minisblack")
    elif maps.shape[0] == 3:                                      # (H, W, 3) or (D, H, W, 3)
        tifffile.imwrite(file, np.ascontiguousarray(np.moveaxis(maps, 0, -1)), photometric="rgb",
                         planarconfig="contig")
    else:              # ImageJ's order Z, C, Y, X; the samples axis S (1) named, else
        pages = maps.transpose(1, 0, 2, 3) if volume else maps    # tifffile takes X=1 for it
        metadata = {"axes": "ZCYXS", IMAGEJ_VOLUME_KEY: "volume"} if volume else {"axes": "CYXS"}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*truncating ImageJ file")   # > 4 GB: as ImageJ does
            tifffile.imwrite(file, np.ascontiguousarray(pages)[..., np.newaxis], imagej=True,
                             photometric="minisblack", metadata=metadata)
