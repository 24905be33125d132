"""Files <-> float32 arrays: images (C, H, W), signals (C, L), volumes (C, D, H, W); value
mapping, and atomic writers.

Pillow decodes photographs (and ``_png`` the 16-bit colour PNGs Pillow reads at 8 bits);
tifffile reads TIFF stacks and pages of many or deep samples (``_tiff``); ``.npy`` arrays
are read raw (``_npy``). Loading scales integer pixels to [0, 1] (8-bit / 255, 16-bit /
65535) and keeps float images as they are; alpha is split off so filters never touch it.
Saving maps float responses back to pixels (``map_to_unit``) for PNG, where feature maps,
volumes and signals become pictures (``pictures``), or writes the raw floats (TIFF, NPY).
Every write goes to a temporary file in the target folder and is renamed into place.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._npy import NPY_SIGNATURE, npy_header, read_npy
from ._png import deep_colour_channels, encode_png, read_png16
from ._tiff import TIFF_SIGNATURES, orientation_number, read_raw, write_tiff
from .choices import NORMALIZE_MODES, OUTPUT_FORMATS
from .engine.api import all_finite
from .errors import FileFailure, UsageError, check_choice

__all__ = ["LoadedImage", "load_image", "read_header", "map_to_unit", "save_image", "encode_image",
           "render", "Rendered", "display_pixels", "save_picture",
           "atomic_write", "leftover_temporaries",
           "IMAGE_SUFFIXES", "OUTPUT_FORMATS", "NORMALIZE_MODES", "LUMA_WEIGHTS"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm",
                  ".pgm", ".pbm", ".pnm", ".tga", ".npy")     # the files a folder gives as inputs
# 8-bit formats Pillow writes (like PNG's pixels, without 16 bits; JPEG without alpha).
PILLOW_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF"}
ROBUST_PERCENTILE = 99.5          # --normalize robust: this percentile of |response| -> white
ROBUST_SAMPLES = 1_000_000        # ... estimated from at most this many evenly spaced values
ROBUST_ROWS = 1024                # ... in at most this many rows (robust_rows)
NUMPY_NS_PER_LEVEL = 3.0          # NumPy's time to map one value to a level (_levels_into)
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's convert("L")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
GRAY_MODES = ("1", "L", "LA", "La")
ONE_CHANNEL_MODES = GRAY_MODES + SIXTEEN_BIT_MODES + ("F",)
READ_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
               Image.DecompressionBombError)
DECODE_ERRORS = READ_ERRORS + (zlib.error,)
# convcli's --max-pixels (checked from the header, before decoding) replaces Pillow's
# decompression-bomb guard, whose warning would leak onto stderr at 89 MP.
Image.MAX_IMAGE_PIXELS = None
UMASK = os.umask(0o022)  # read once (os.umask can only be read by setting it) and restored
os.umask(UMASK)
EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the turn PIL.ImageOps.exif_transpose makes, on an (H, W, ...) array.
ORIENTATIONS = {
    2: lambda a: a[:, ::-1],                     # mirrored left-right
    3: lambda a: a[::-1, ::-1],                  # turned 180 degrees
    4: lambda a: a[::-1],                        # mirrored top-bottom
    5: lambda a: a.swapaxes(0, 1),               # transposed
    6: lambda a: np.rot90(a, -1),                # turned 90 degrees clockwise
    7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],   # transversed
    8: lambda a: np.rot90(a, 1),                 # turned 90 degrees counter-clockwise
}
# EXIF orientations 5-8 turn the image by 90 degrees, swapping height and width.
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
HEAD_BYTES = 26          # enough for every signature and a PNG's bit depth and colour type


@dataclass(frozen=True)
class LoadedImage:
    """An input as float32 channels plus optional (H, W) alpha in [0, 1].

    ``pixels`` is (C, H, W) for an image, (C, L) for 1-D signals (``.npy`` only) and
    (C, D, H, W) for a volume (a ``.npy`` array or a TIFF stack of D pages); C-contiguous.
    ``mode`` is the source's Pillow mode, or for files read raw (``.npy``, TIFFs read by
    tifffile) the NumPy type of their samples (``float32``, ``uint16``, ...); ``bit_depth``
    is 8, 16 (16-bit and 32-bit integer sources, scaled by 1/65535) or 32 (float sources and
    ``.npy`` arrays, values kept as they are).
    """

    path: Path
    pixels: np.ndarray
    alpha: np.ndarray | None
    mode: str
    bit_depth: int


# --- reading ---------------------------------------------------------------------------------

def _head(path: Path, data: bytes | None) -> bytes:
    """The input's first bytes (its signature), or a FileFailure that names the path."""
    if data is not None:
        return data[:HEAD_BYTES]
    if path.is_dir():
        raise FileFailure(f"{path}: is a folder, not an image")
    try:
        with open(path, "rb") as file:
            return file.read(HEAD_BYTES)
    except FileNotFoundError:
        raise FileFailure(f"{path}: no such file") from None
    except PermissionError:
        raise FileFailure(f"{path}: cannot read (permission denied)") from None
    except OSError as error:
        raise FileFailure(f"{path}: cannot read ({error.strerror or error})") from None


def _is_npy(path: Path, head: bytes) -> bool:
    """A ``.npy`` file by its signature, or by its name (so that a damaged one says so)."""
    return head.startswith(NPY_SIGNATURE) or path.suffix.lower() == ".npy"


def _open(path: Path, data: bytes | None = None) -> Image.Image:
    """Open lazily (header only) or raise a FileFailure that names the path.

    With ``data`` the image comes from those bytes (standard input) and ``path`` only names it.
    """
    try:
        return Image.open(path if data is None else io.BytesIO(data))
    except UnidentifiedImageError:
        raise FileFailure(f"{path}: not an image Pillow can read (unknown file format)") from None
    except Image.DecompressionBombError as error:
        raise FileFailure(f"{path}: too large to decode safely ({error})") from None
    except READ_ERRORS as error:
        raise FileFailure(f"{path}: cannot read the image ({error})") from None


def _deep_png_channels(image: Image.Image, head: bytes) -> int | None:
    """Channels of a 16-bit colour PNG (which Pillow would read at 8 bits), else None."""
    return deep_colour_channels(head) if image.format == "PNG" else None


def read_header(path: Path, *, gray: bool = False) -> tuple[int, ...]:
    """The shape ``load_image`` would return, from the header alone (no pixel decode):
    (C, H, W) for an image, (C, L) for signals, (C, D, H, W) for a volume."""
    path = Path(path)
    head = _head(path, None)
    if _is_npy(path, head):
        shape = _npy_shape(path)
    elif head.startswith(TIFF_SIGNATURES) and (found := _tiff(path, None, read=False)):
        layout = found[0]
        shape = layout.shape
        if layout.alpha:
            shape = (shape[0] - 1,) + shape[1:]
        if layout.orientation in TRANSPOSING_ORIENTATIONS:
            shape = shape[:-2] + (shape[-1], shape[-2])
    else:
        with _open(path) as image:
            width, height = image.size
            if _orientation(image, path) in TRANSPOSING_ORIENTATIONS:
                width, height = height, width
            deep = _deep_png_channels(image, head)
            one = deep == 2 if deep else image.mode in ONE_CHANNEL_MODES   # deep 2: gray + alpha
            shape = (1 if one else 3, height, width)
    return (_gray_channels(shape[0], gray, path),) + shape[1:]


def _gray_channels(channels: int, gray: bool, path: Path) -> int:
    """Channels after ``--gray``: 3 (RGB) become 1 luminance channel, 1 stays; else refused."""
    if not gray or channels == 1:
        return channels
    if channels != 3:
        raise FileFailure(f"{path}: --gray makes one luminance channel out of 3 (RGB) but this "
                          f"input has {channels} channels; leave --gray out")
    return 1


def _gray(pixels: np.ndarray, gray: bool, path: Path) -> np.ndarray:
    """``pixels`` as one luminance channel (ITU-R BT.601 on the float values) with ``gray``."""
    if _gray_channels(pixels.shape[0], gray, path) == pixels.shape[0]:
        return pixels
    return np.tensordot(np.asarray(LUMA_WEIGHTS, np.float32), pixels, axes=1)[np.newaxis]


def _orientation(image: Image.Image, path: Path) -> int:
    """The EXIF orientation tag without decoding pixels (Pillow's PNG getexif() decodes them
    when the eXIf chunk follows the image data, so PNG chunks are scanned here instead)."""
    if image.format != "PNG":
        return _exif_orientation(image.getexif)
    return _orientation_in(image.info.get("exif") or _png_chunk(path, b"eXIf"))


def _orientation_in(exif_data: bytes | None) -> int:
    """The orientation tag of raw EXIF data (1, upright, when there is none)."""
    if not exif_data:
        return 1
    exif = Image.Exif()
    return _exif_orientation(lambda: (exif.load(exif_data), exif)[1])


def _exif_orientation(read_exif) -> int:
    """The orientation in the EXIF ``read_exif()`` returns; 1 (upright) when the EXIF is
    damaged, as ImageMagick and libvips read such files (its pixels are still the image)."""
    try:
        return orientation_number(read_exif().get(EXIF_ORIENTATION, 1))
    except (SyntaxError, ValueError, TypeError, KeyError, OSError, struct.error):
        return 1


def _png_chunk(path: Path, kind: bytes) -> bytes | None:
    """The data of the first ``kind`` chunk of a PNG file, skipping over all others."""
    with open(path, "rb") as file:
        file.seek(8)
        while header := file.read(8):
            if len(header) < 8:
                return None
            length, found = struct.unpack(">I4s", header)
            if found == kind:
                return file.read(length)
            if found == b"IEND":
                return None
            file.seek(length + 4, os.SEEK_CUR)
    return None


def load_image(path: Path, *, gray: bool = False, data: bytes | None = None) -> LoadedImage:
    """Decode ``path`` into float32 pixels plus alpha, orientation applied: an image
    (C, H, W) in [0, 1], or the raw values of a ``.npy`` array or float TIFF.

    Parameters
    ----------
    path : Path
        The image file; with ``data``, only the name used in messages.
    gray : bool
        Return one luminance channel (ITU-R BT.601 weights on the float values).
    data : bytes, optional
        The file's bytes, when they come from standard input.

    Returns
    -------
    LoadedImage
        1-bit and 8-bit values / 255, 16-bit and 32-bit integers / 65535, floats unchanged;
        palette, CMYK, YCbCr, HSV and LAB images as RGB (RGBA with transparency).
        ``.npy``: (L,) and (C, L) as (C, L) signals, (C, H, W) images, (C, D, H, W) volumes,
        any real dtype, values unchanged. TIFF: one page of S samples is (S, H, W), a stack
        of D pages (C, D, H, W), an ImageJ hyperstack (C, H, W) or (C, D, H, W) by its
        channels and slices; the samples of TIFF stacks are never taken as alpha.

    Raises
    ------
    FileFailure
        The file is missing, a folder, not an image, or damaged; ``--gray`` on an input of
        other than 1 or 3 channels; the message starts with the file.
    """
    path = Path(path)
    head = _head(path, data)
    if _is_npy(path, head):
        values = _npy(path, data, read=True)
        pixels, alpha, mode, bit_depth = (values if values.ndim > 1 else values[np.newaxis],
                                          None, values.dtype.name, 32)
    elif head.startswith(TIFF_SIGNATURES) and (raw := _tiff_values(path, data)) is not None:
        pixels, alpha, mode, bit_depth = raw
    else:
        pixels, alpha, mode, bit_depth = _pillow_image(path, data, head)
    pixels = _gray(pixels, gray, path)
    return LoadedImage(path, np.ascontiguousarray(pixels, np.float32), alpha, mode, bit_depth)


def _npy(path: Path, data: bytes | None, *, read: bool):
    """A ``.npy`` input's raw array (``read``) or its stored shape, checked (see ``_npy``)."""
    try:
        with open(path, "rb") if data is None else io.BytesIO(data) as file:
            size = os.fstat(file.fileno()).st_size if data is None else len(data)
            return read_npy(file, size) if read else npy_header(file, size)[0]
    except ValueError as error:
        raise FileFailure(f"{path}: {error}") from None
    except OSError as error:
        raise FileFailure(f"{path}: cannot read ({error.strerror or error})") from None


def _npy_shape(path: Path) -> tuple[int, ...]:
    shape = _npy(path, None, read=False)
    return shape if len(shape) > 1 else (1,) + shape


def _tiff(path: Path, data: bytes | None, *, read: bool):
    """(layout, raw samples if ``read``) of a TIFF tifffile reads; None for one Pillow decodes."""
    try:
        return read_raw(str(path) if data is None else io.BytesIO(data), pixels=read)
    except ValueError as error:
        raise FileFailure(f"{path}: cannot read the TIFF ({error})") from None


def _tiff_values(path: Path, data: bytes | None):
    """(pixels, alpha, mode, bit depth) of a TIFF tifffile reads, scaled as Pillow's would be
    and turned upright; None for one Pillow decodes."""
    found = _tiff(path, data, read=True)
    if found is None:
        return None
    layout, values = found
    scale, bit_depth = _raw_scale(layout.dtype)
    planes = np.empty(layout.shape, np.float32)   # its reshape only splits axes: a view
    np.divide(values, np.float32(scale), out=planes.reshape(values.shape), casting="unsafe")
    del values
    turn = ORIENTATIONS.get(layout.orientation)
    if turn:       # ORIENTATIONS turn (H, W, ...) arrays
        planes = np.ascontiguousarray(
            np.moveaxis(turn(np.moveaxis(planes, (-2, -1), (0, 1))), (0, 1), (-2, -1)))
    pixels, alpha = (planes[:-1], planes[-1]) if layout.alpha else (planes, None)
    return pixels, alpha, layout.dtype.name, bit_depth


def _raw_scale(dtype: np.dtype) -> tuple[float, int]:
    """(full-scale value, bit depth) of TIFF samples, as Pillow's modes scale them."""
    if dtype.kind == "f":
        return 1.0, 32                  # raw, as mode F
    if dtype.kind == "b":
        return 1.0, 8                   # bilevel: 0 or 1, as mode 1
    return (255.0, 8) if dtype.itemsize == 1 else (65535.0, 16)   # as L; I;16 and I


def _pillow_image(path: Path, data: bytes | None, head: bytes):
    """(pixels, alpha, mode, bit depth) of an image Pillow (or ``_png``) decodes."""
    values, has_alpha, mode, scale, bit_depth = pillow_samples(path, data, head)
    planes = _planes_over(values, scale)
    del values
    pixels, alpha = (planes[:-1], planes[-1]) if has_alpha else (planes, None)
    return pixels, alpha, mode, bit_depth


def pillow_samples(path: Path, data: bytes | None = None, head: bytes | None = None):
    """(values (H, W[, C]) as decoded, upright; last channel is alpha; Pillow's mode; the
    full-scale value ``load_image`` divides by; bit depth) of an image Pillow (or ``_png``)
    decodes: ``load_image``'s pixels before they become floats."""
    head = _head(path, data) if head is None else head
    with _open(path, data) as opened:
        mode = opened.mode
        said: list[str] = []
        try:
            deep = _deep_png_channels(opened, head)
            with _c_stderr_kept(said) if opened.format == "TIFF" else contextlib.nullcontext():
                values, has_alpha, scale, bit_depth = (
                    _deep_png_values(path, data) if deep else _pillow_values(opened))
        except DECODE_ERRORS as error:
            why = f"{said[0]}; {error}" if said else error
            raise FileFailure(f"{path}: cannot decode the image ({why})") from None
    return values, has_alpha, mode, scale, bit_depth


def has_alpha(path: Path) -> bool:
    """Would ``load_image`` give this (Pillow-read) image an alpha plane? From the header."""
    with _open(path) as opened:
        deep = _deep_png_channels(opened, _head(path, None))
        if deep:
            return deep in (2, 4)
        return opened.mode not in SIXTEEN_BIT_MODES + ("F",) and \
            _target_mode(opened).endswith("A")


@contextlib.contextmanager
def _c_stderr_kept(said: list[str]):
    """Keep what C code writes to file descriptor 2 meanwhile (libtiff prints "PackBitsDecode:
    Not enough data for scanline 0." there when Pillow decodes a damaged TIFF) off the
    terminal: its lines are put in ``said`` (a failed decode names the first), and lines of
    convcli's own (a warning routed while decoding) are printed again. One decode at a time."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 2)
            try:
                yield said
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                sink.seek(0)
                for line in sink.read().decode("utf-8", "replace").splitlines():
                    if line.startswith("convcli: "):
                        print(line, file=sys.stderr, flush=True)
                    elif line.strip():
                        said.append(line.strip())
    finally:
        os.close(saved)


def _pillow_values(opened: Image.Image) -> tuple[np.ndarray, bool, float, int]:
    """(values (H, W[, C]), last channel is alpha, full-scale value, bit depth), upright.

    Turned here by ``ORIENTATIONS``, not by ``ImageOps.exif_transpose``: that also rewrites
    the EXIF data, and fails on a tag of the wrong type (a rational where a SHORT belongs)."""
    opened.load()
    turn = ORIENTATIONS.get(_exif_orientation(opened.getexif))
    values, has_alpha, scale, bit_depth = _mode_values(opened)
    return (np.ascontiguousarray(turn(values)) if turn else values), has_alpha, scale, bit_depth


def _mode_values(image: Image.Image) -> tuple[np.ndarray, bool, float, int]:
    if image.mode in SIXTEEN_BIT_MODES:
        return np.asarray(image), False, 65535.0, 16
    if image.mode == "F":
        return np.asarray(image, np.float32), False, 1.0, 32
    target = _target_mode(image)
    if image.mode != target:
        image = image.convert(target)
    return np.asarray(image), target.endswith("A"), 255.0, 8


def _target_mode(image: Image.Image) -> str:
    """L or RGB, + A when the image has alpha or a transparent colour (``tRNS``, GIF)."""
    transparent = image.mode.endswith(("A", "a")) or "transparency" in image.info  # not LAB's A
    return ("L" if image.mode in GRAY_MODES else "RGB") + ("A" if transparent else "")


def _deep_png_values(path: Path, data: bytes | None) -> tuple[np.ndarray, bool, float, int]:
    """``_pillow_values`` for a 16-bit colour PNG, decoded exactly by our own reader."""
    values, exif_data = read_png16(path.read_bytes() if data is None else data)
    turn = ORIENTATIONS.get(_orientation_in(exif_data))
    return (turn(values) if turn else values), values.shape[2] in (2, 4), 65535.0, 16


def _planes_over(values: np.ndarray, scale: float) -> np.ndarray:
    """Interleaved (H, W[, C]) values -> planar (C, H, W) float32 divided by ``scale``,
    one plane at a time (no full-size float temporary: peak memory is the result)."""
    if values.ndim == 2:
        values = values[:, :, np.newaxis]
    planes = np.empty((values.shape[2],) + values.shape[:2], dtype=np.float32)
    for index in range(values.shape[2]):
        np.divide(values[:, :, index], np.float32(scale), out=planes[index], casting="unsafe")
    return planes


# --- value mapping ---------------------------------------------------------------------------

def map_to_unit(maps: np.ndarray, normalize: str,
                value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Float responses -> [0, 1] for display.

    clip: as they are, clipped; abs: magnitude, clipped (edge strength); robust: magnitude
    divided by its 99.5th percentile (edges of any strength, a few brightest pixels clip);
    minmax: the whole array stretched to [0, 1] (a constant array gives 0); offset: + 0.5,
    clipped, so negative responses stay visible as darker than mid-grey. ``value_range``
    gives minmax (min, max) and robust (0, percentile) of a larger whole when ``maps`` is
    one part of it.
    """
    return _unit_and_clipped(maps, normalize, value_range)[0]


def _unit_and_clipped(maps: np.ndarray, normalize: str,
                      value_range: tuple[float, float] | None = None) -> tuple[np.ndarray, int]:
    """``map_to_unit`` and how many values it clipped (fell outside [0, 1])."""
    check_choice("--normalize", normalize, NORMALIZE_MODES)
    maps = np.array(maps, dtype=np.float32)        # one copy; every step below is in place
    if not all_finite(maps):
        np.nan_to_num(maps, copy=False, nan=0.0, posinf=1.0, neginf=0.0)
    if normalize in ("abs", "robust"):
        np.abs(maps, out=maps)
    elif normalize == "offset":
        maps += np.float32(0.5)
    if normalize in ("minmax", "robust"):
        low, high = value_range or _value_range(maps, normalize)
        maps -= np.float32(low)
        maps *= np.float32(1.0 / (high - low)) if high > low else np.float32(0.0)
    clipped = int(np.count_nonzero((maps < 0.0) | (maps > 1.0)))
    return np.clip(maps, 0.0, 1.0, out=maps), clipped


def _levels_into(out: np.ndarray, plane: np.ndarray, normalize: str,
                 value_range: tuple[float, float] | None, bit_depth: int) -> int:
    """Write ``_quantize(map_to_unit(plane))`` into ``out`` (one channel of the pixels) and
    return how many values the mapping clipped: by NumPy, or in one compiled pass
    (``engine._pixel_loops.quantize_plane``, the same levels) once the engine runs compiled
    loops or NumPy would take long (``_runtime.use_numpy``)."""
    from .engine import _runtime

    if _runtime.use_numpy(plane.size, NUMPY_NS_PER_LEVEL):
        unit, clipped = _unit_and_clipped(plane, normalize, value_range)
        out[...] = _quantize(unit, bit_depth)
        return clipped
    from .engine._pixel_loops import AS_IS, MAGNITUDE, OFFSET, quantize_plane

    mode = {"abs": MAGNITUDE, "robust": MAGNITUDE, "offset": OFFSET}.get(normalize, AS_IS)
    stretch = normalize in ("minmax", "robust")
    low, high = value_range if stretch else (0.0, 0.0)
    factor = np.float32(1.0 / (high - low)) if high > low else np.float32(0.0)
    top = np.float32(255 if bit_depth == 8 else 65535)
    return int(quantize_plane(np.ascontiguousarray(plane, np.float32), mode, np.float32(low),
                              factor, stretch, top, out))


def _value_range(maps: np.ndarray, normalize: str) -> tuple[float, float]:
    """(low, high) that minmax or robust stretches to [0, 1], over all of ``maps`` (NaN as
    0, infinities as 1 and 0, as ``map_to_unit`` draws them); robust from the values
    ``robust_rows`` picks (an image's) or evenly spaced ones."""
    if not maps.size:
        return (0.0, 0.0)
    if normalize == "robust":
        if maps.ndim == 3:
            rows, column_step = robust_rows(maps.shape)
            return (0.0, robust_high(maps[:, rows, ::column_step]))
        flat = maps.reshape(-1)
        return (0.0, robust_high(flat[::max(1, flat.size // ROBUST_SAMPLES)]))
    finite = maps if all_finite(maps) else np.nan_to_num(maps, nan=0.0, posinf=1.0, neginf=0.0)
    return (float(finite.min()), float(finite.max()))


def robust_rows(shape: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """The rows, and the step between columns in them, of the values ``--normalize robust``
    samples in (C, H, W) maps: about ``ROBUST_SAMPLES`` values in evenly spaced whole rows
    (every k-th column when one row holds more), so that a streamed run can compute these
    rows before all others (``stream``) and stretch as the in-memory run does."""
    channels, height, width = shape
    column_step = max(1, -(-channels * width // ROBUST_SAMPLES))
    per_row = channels * -(-width // column_step)
    count = min(ROBUST_ROWS, max(1, ROBUST_SAMPLES // per_row))
    return np.arange(0, height, max(1, -(-height // count))), column_step


def robust_high(samples: np.ndarray) -> float:
    """``ROBUST_PERCENTILE`` of the magnitudes of ``samples`` (NaN as 0, infinities as 1)."""
    samples = np.abs(np.nan_to_num(np.asarray(samples, np.float32), nan=0.0, posinf=1.0,
                                   neginf=0.0))
    return float(np.percentile(samples, ROBUST_PERCENTILE)) if samples.size else 0.0


def _quantize(unit: np.ndarray, bit_depth: int) -> np.ndarray:
    """[0, 1] floats -> the nearest integer level; scales ``unit`` in place (it is a copy)."""
    unit *= np.float32(255 if bit_depth == 8 else 65535)
    np.rint(unit, out=unit)
    return unit.astype(np.uint8 if bit_depth == 8 else np.uint16)


# --- writing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    """An output ready to write: ``write(file)`` and the share of its values the mapping to
    pixels clipped (0 for raw formats and for pictures of feature maps)."""

    write: Callable[[BinaryIO], None]
    clipped_fraction: float = 0.0


def save_image(path: Path, maps: np.ndarray, *, fmt: str, alpha: np.ndarray | None = None,
               bit_depth: int = 8, normalize: str = "clip", overwrite: bool = False,
               quality: int = 95) -> float:
    """Write float maps (C, H, W), signals (C, L) or a volume (C, D, H, W) as PNG, JPEG,
    WebP, BMP, GIF, TIFF (float32) or NPY, atomically (see ``atomic_write`` and ``render``).
    Returns the share of values clipped on the way to pixels."""
    rendered = render(maps, fmt=fmt, alpha=alpha, bit_depth=bit_depth, normalize=normalize,
                      quality=quality)
    atomic_write(Path(path), rendered.write, overwrite=overwrite)
    return rendered.clipped_fraction


def encode_image(maps: np.ndarray, **arguments) -> bytes:
    """The bytes of the file ``save_image`` writes (also what ``-o png:-`` sends to stdout)."""
    buffer = io.BytesIO()
    render(maps, **arguments).write(buffer)
    return buffer.getvalue()


def display_pixels(maps: np.ndarray, normalize: str = "clip") -> np.ndarray:
    """The 8-bit pixels an 8-bit PNG of ``maps`` holds, without alpha: (H, W) or (H, W, 3)
    uint8 (``normalize`` as in ``render``; a picture for other maps)."""
    return _png_pixels(np.asarray(maps), None, 8, normalize)[0]


def save_picture(path: Path, pixels: np.ndarray, *, overwrite: bool = False) -> None:
    """Write 8-bit pixels (H, W) or (H, W, 3), such as a ``pictures`` drawing, as a PNG,
    atomically (see ``atomic_write``)."""
    data = encode_png(np.ascontiguousarray(pixels, np.uint8))
    atomic_write(Path(path), lambda file: file.write(data), overwrite=overwrite)


def render(maps: np.ndarray, *, fmt: str, alpha: np.ndarray | None = None, bit_depth: int = 8,
           normalize: str = "clip", quality: int = 95) -> Rendered:
    """How ``maps`` become a file of format ``fmt``; 8- and 16-bit formats are encoded (and
    every option checked) now, so a usage error comes before any file is created. TIFF and
    NPY are written straight into the file (no second copy of the data in memory).

    png: 1 or 3 channels of an image as 8- or 16-bit pixels (``normalize``, + ``alpha``);
    other channel counts as a labelled grid of the maps, a volume as a montage of its depth
    slices, signals as line plots: 8-bit gray pictures, each map stretched min-max on its
    own, whatever ``normalize`` and ``bit_depth`` say (see ``pictures``).
    jpeg (``quality``, no alpha), webp (``quality``), bmp, gif: the same 8-bit pixels, by Pillow.
    tiff: float32 raw; 1 map a float page, 3 an RGB page, other counts an ImageJ hyperstack
    of one page per map; a volume one of these per depth slice (see ``_tiff.write_tiff``).
    npy: float32 raw, the array as it is. TIFF and NPY hold no alpha.
    """
    check_choice("--format", fmt, OUTPUT_FORMATS)
    maps = np.asarray(maps)
    if not 2 <= maps.ndim <= 4:
        raise ValueError(f"maps must be (C, L), (C, H, W) or (C, D, H, W); got {maps.shape}")
    if fmt == "npy":
        return Rendered(lambda file: np.save(file, np.ascontiguousarray(maps, np.float32)))
    if fmt == "tiff":
        return Rendered(lambda file: write_tiff(file, maps))
    if fmt in PILLOW_FORMATS and bit_depth != 8:
        raise UsageError(f"{fmt} holds 8 bits per channel; --bit-depth 16 needs png (or tiff "
                         "for the raw float values)")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality must be 1 to 100; got {quality}")
    pixels, clipped = _png_pixels(maps, None if fmt == "jpeg" else alpha, bit_depth, normalize)
    if fmt == "png":
        data = encode_png(pixels)
    else:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=PILLOW_FORMATS[fmt], quality=quality)
        data = buffer.getvalue()
    return Rendered(lambda file: file.write(data), clipped)


def _png_pixels(maps: np.ndarray, alpha: np.ndarray | None, bit_depth: int,
                normalize: str, value_range: tuple[float, float] | None = None
                ) -> tuple[np.ndarray, float]:
    """((H, W) or (H, W, C) unsigned integers, colour then alpha; or a picture of the maps),
    and the share of the values the mapping clipped. ``value_range``: minmax's or robust's
    (see ``map_to_unit``) when ``maps`` is part of a larger whole."""
    if bit_depth not in (8, 16):
        raise UsageError(f"--bit-depth must be 8 or 16; got {bit_depth}")
    check_choice("--normalize", normalize, NORMALIZE_MODES)
    if maps.ndim != 3 or maps.shape[0] not in (1, 3):
        from . import pictures                    # Pillow's ImageDraw: imported when needed

        return pictures.picture(maps), 0.0
    if value_range is None and normalize in ("minmax", "robust"):
        value_range = _value_range(maps, normalize)
    channels = maps.shape[0] + (alpha is not None)
    pixels = np.empty(maps.shape[1:] + (channels,), np.uint8 if bit_depth == 8 else np.uint16)
    clipped = 0
    for index, plane in enumerate(maps):      # one plane at a time: small temporaries
        clipped += _levels_into(pixels[:, :, index], plane, normalize, value_range, bit_depth)
    if alpha is not None:
        pixels[:, :, -1] = _quantize(np.clip(alpha, 0.0, 1.0).astype(np.float32), bit_depth)
    return (pixels[:, :, 0] if channels == 1 else pixels), clipped / max(maps.size, 1)


def _temporary_prefix(path: Path) -> str:
    """Temporary files for ``path`` are ``.{name}.tmp-<random>`` beside it (hidden, so folder
    inputs skip them)."""
    return f".{path.name}.tmp-"


def leftover_temporaries(path: Path) -> list[Path]:
    """Temporary files ``atomic_write`` left for ``path``: only a killed process leaves any."""
    return sorted(path.parent.glob(_temporary_prefix(path) + "*"))


def atomic_write(path: Path, write: Callable[[io.BufferedWriter], None], *,
                 overwrite: bool = False) -> None:
    """Write via ``write(file)`` to a temporary file beside ``path``, then move it into place.

    Without ``overwrite`` an existing ``path`` is never replaced (checked atomically with a
    hard link where the file system has them). A failure or Ctrl-C leaves no temporary file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=_temporary_prefix(path), dir=path.parent)
    except OSError as error:
        raise FileFailure(f"{path}: cannot write ({error.strerror or error})") from None
    try:
        # the file object is named by its path (tifffile needs a name, fdopen's is a number)
        with open(temporary, "wb", opener=lambda *_: descriptor) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~UMASK)
        _move_into_place(temporary, path, overwrite)
    except OSError as error:
        raise FileFailure(f"{path}: cannot write ({error.strerror or error})") from None
    finally:  # also on KeyboardInterrupt
        if os.path.exists(temporary):
            os.unlink(temporary)


def _move_into_place(temporary: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)          # fails if path exists: no race with another writer
    except FileExistsError:
        raise FileFailure(f"{path}: already exists; use --overwrite to replace it") from None
    except OSError:                       # no hard links here (some network/FAT file systems)
        if path.exists():
            raise FileFailure(f"{path}: already exists; use --overwrite to replace it") from None
        os.replace(temporary, path)

