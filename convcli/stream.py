"""An image bigger than memory, filtered in strips (#15): TIFF or PNG in, TIFF or PNG out.

``apply`` streams a single-page 2-D TIFF (gray, RGB or many samples; striped or tiled;
classic or BigTIFF) or a non-interlaced 8- or 16-bit PNG whose float32 size is above
``--max-memory``, which has ``pipeline.STREAM_FROM_PIXELS`` or more, or with ``--stream``,
when the output is a TIFF or a PNG (``why_not_streamed`` says what else it takes).
Each strip's input rows are decoded from only the parts of the file that hold them
(``TiffRows``: its strips or tiles; ``PngRows``: the image data in file order, inflated as
far as the rows need), scaled as ``load_image`` scales them, filtered by
``strips.RowFilter`` (the in-memory run's numbers), and written as they come: the tiles of
a deflate-compressed, tiled BigTIFF of float32 (TIFF output is the raw floats, as in
memory), or the rows of a PNG (``_png.PngEncoder``; pixels as ``images.render`` maps them;
``--normalize robust``'s percentile from sampled rows computed first, ``_robust_range``),
through a temporary file renamed into place.

Three stages overlap, one strip apart: a thread decodes the next strip's rows
(``_ReadAhead``) while another filters this one (``_made_ahead``) and the caller encodes the
one before. The strip height is a multiple of the TIFF tile height (``TILE``) or of
``PNG_ROWS``: the smallest that holds ``STRIP_BYTES`` of rows and reads at most
``HALO_SHARE`` more rows than it writes, within ``BUDGET_SHARE`` of ``--max-memory`` per
strip (three are alive at once).
"""

from __future__ import annotations

import contextlib
import math
import queue
import re
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import FileFailure, UsageError

__all__ = ["DEFAULT_MAX_MEMORY", "parse_memory", "peak_memory_mb", "why_not_streamed",
           "stream_image", "TiffRows", "PngRows", "PixelRows", "NpyRows", "open_rows"]

DEFAULT_MAX_MEMORY = 1 << 30
TILE = 256                 # TIFF output tiles are TILE x TILE; its strips are multiples of TILE rows
PNG_ROWS = 32              # PNG output strips are multiples of PNG_ROWS rows
BUDGET_SHARE = 0.2         # of --max-memory for one strip's rows: three strips are alive at
#                            once (read ahead, filtering, encoding), and the engine's scratch
#                            and the interpreter itself need the rest
STRIP_BYTES = 24 << 20     # strips of this size run as fast as larger ones, and their arrays
#                            (< 32 MB) reuse freed memory: glibc maps larger ones afresh each
#                            time, and its page faults took 2.9 of 8.9 CPU seconds (10000^2 RGB)
HALO_SHARE = 0.125         # ...unless it reads more than this share of extra (halo) rows
MAX_STRIP_ROWS = 8192      # ...and at most this many rows (a narrow image's strips are cheap)
STREAMED_FORMATS = ("tiff", "png")
STREAMED_NORMALIZE = ("clip", "abs", "offset", "robust")    # minmax needs the whole output
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
STREAMED_BITS = (8, 16, 32, 64)
ENCODE_THREADS = 2         # TIFF tiles compressed at once (deflate level 1: float32 noise
#                            barely compresses; level 6 took 8 times as long)


def parse_memory(text: str | int | None) -> int:
    """``--max-memory``: bytes, or a number with K, M, G or T (powers of 1024; a trailing B
    or iB is allowed); 0 is no limit (streams only with ``--stream``). UsageError otherwise."""
    if text is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
        if not match:
            raise UsageError(f"--max-memory must be bytes or a size like 512M or 2G (0: no "
                             f"limit); got {text!r}")
        value = int(float(match.group(1)) * UNITS[match.group(2).upper()])
    if value < 0:
        raise UsageError(f"--max-memory must be >= 0; got {text!r}")
    return value


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, in MB: Linux's VmHWM, else ru_maxrss
    (KiB on Linux). ru_maxrss is not used where VmHWM is: Linux carries the parent's peak
    into it across fork and exec, so a child of a large process would report the parent's."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _size_text(size: int) -> str:
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}B"
    return f"{size} bytes"


# --- deciding --------------------------------------------------------------------------------

def float_bytes(shape) -> int:
    return 4 * math.prod(shape)


def why_not_streamed(source, jobs, options, data) -> str | None:
    """None when this input and its jobs can be streamed, else why not (a few words)."""
    if data is not None or source.from_stdin:
        return "it comes from standard input"
    if options.fmt not in STREAMED_FORMATS:
        return f"the output is {options.fmt}; tiff and png outputs stream"
    for job in jobs if options.fmt == "png" else ():
        normalize = _normalize(job, options)
        if normalize is None:
            return ("--normalize auto stretches a stack's maps by their whole range unless "
                    f"they lie in [0, 1]; give --normalize {', '.join(STREAMED_NORMALIZE)}")
        if normalize not in STREAMED_NORMALIZE:
            chosen = "" if normalize == options.normalize else f" (--normalize {options.normalize})"
            return (f"--normalize {normalize}{chosen} stretches by the whole output's range; "
                    f"{', '.join(STREAMED_NORMALIZE)} stream")
    if any(job.to_stdout for job in jobs):
        return "the output goes to standard output"
    if options.save_stages or options.split or any(job.compare for job in jobs):
        return "--save-stages, --split and --compare need the whole image"
    try:
        reader = open_rows(source.path, gray=options.gray)
    except _NotStreamable as error:
        return str(error)
    try:
        if options.fmt == "png" and reader.has_alpha:
            return "it has alpha, which a png output keeps; stream it to --format tiff"
        for job in jobs:
            try:
                row_filter, _ = row_filter_for(job, reader.shape, source.path, options)
            except UsageError as error:          # a layer that cannot stream yet
                return str(error)
            except FileFailure:                  # does not fit the image: fails as in memory
                return None
            if options.fmt == "png" and row_filter.output_shape[0] not in (1, 3):
                return (f"its {row_filter.output_shape[0]} maps make a png picture of the "
                        "maps; stream them to --format tiff")
    finally:
        reader.close()
    return None


def _normalize(job, options) -> str | None:
    """How a job's maps become PNG pixels; ``auto`` as ``pipeline`` decides it for a ``-k``
    operation (a stack's depends on its values: None)."""
    from .kernels import Operation
    from .pipeline import _auto_normalize

    if options.normalize != "auto":
        return options.normalize
    return _auto_normalize(job.operation, None) if isinstance(job.operation, Operation) else None


def open_rows(path: Path, gray: bool = False, hold_bytes: int = 0):
    """The ``read_rows`` of a streamable file: ``NpyRows``, ``TiffRows``, ``PngRows`` (which
    keeps its decoded rows when they fit ``hold_bytes``), else ``PixelRows`` (decoded whole,
    floats by strips); raises _NotStreamable saying why it cannot be streamed."""
    from ._npy import NPY_SIGNATURE
    from ._png import SIGNATURE
    from ._tiff import TIFF_SIGNATURES

    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(NPY_SIGNATURE) or Path(path).suffix.lower() == ".npy":
        return NpyRows(path, gray=gray)
    if head.startswith(TIFF_SIGNATURES):
        return TiffRows(path, gray=gray)
    if head.startswith(SIGNATURE):
        try:
            return PngRows(path, gray=gray, hold_bytes=hold_bytes)
        except _NotStreamable:              # interlaced, a tRNS colour, turned: Pillow's
            pass
    return PixelRows(path, gray=gray)


class _NotStreamable(Exception):
    pass


# --- reading ---------------------------------------------------------------------------------

class _Rows:
    """What the readers share: calling one with sorted row indices gives those rows, (C, n,
    W) float32, as ``load_image`` gives them: ``_planes`` (each reader's: the colour
    channels, scaled; alpha left out), then ``images._gray`` for ``--gray``; the time it
    takes adds up in ``read_ms``."""

    read_ms = 0.0
    gray = False
    first_row_in_order = 0       # the lowest row it gives without starting over (PngRows')

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        from .images import _gray

        started = time.perf_counter()
        out = _gray(self._planes(np.asarray(rows, np.int64)), self.gray, self.path)
        self.read_ms += (time.perf_counter() - started) * 1e3
        return out


class TiffRows(_Rows):
    """``read_rows`` over the first page of a TIFF: the rows asked for, (C, n, W) float32,
    scaled as ``load_image`` scales a TIFF's samples (alpha left out, ``--gray`` applied),
    decoding only the strips or tiles that hold them (uncompressed strips: only the rows)."""

    def __init__(self, path: Path, gray: bool = False):
        """Raises _NotStreamable saying why the file cannot be streamed (a damaged one: the
        in-memory reader then says why in its own words)."""
        import tifffile

        from ._tiff import tifffile_logs
        from .images import _gray_channels, _raw_scale

        self.path = Path(path)
        self._open = contextlib.ExitStack()        # the file, and tifffile's logs kept off
        try:                                       # stderr until close()
            logs = self._open.enter_context(tifffile_logs())
            try:
                self._tif = self._open.enter_context(tifffile.TiffFile(str(path)))
                page, self.layout, self.drop_alpha = self._page_and_layout(self._tif)
            except _NotStreamable:
                raise
            except Exception as error:
                raise _NotStreamable(f"tifffile cannot read it ({error})") from None
            if logs.errors:                        # read in part
                raise _NotStreamable(f"tifffile cannot read it ({logs.errors[0]})")
        except BaseException:
            self._open.close()
            raise
        self.page = page
        self.height, self.width = int(page.imagelength), int(page.imagewidth)
        self.samples = int(page.samplesperpixel)
        self.separate = page.planarconfig == 2 and self.samples > 1
        self.tiled = page.is_tiled
        self.chunk_rows = int(page.tilelength if self.tiled else
                              min(page.rowsperstrip or self.height, self.height))
        self.chunk_cols = int(page.tilewidth) if self.tiled else self.width
        self.down = -(-self.height // self.chunk_rows)
        self.across = -(-self.width // self.chunk_cols)
        self.dtype = page.dtype
        self.scale, self.bit_depth = _raw_scale(page.dtype)
        self.has_alpha = bool(self.drop_alpha)
        self.gray = gray
        self.channels = self.samples - self.drop_alpha
        try:
            self.shape = (_gray_channels(self.channels, gray, self.path), self.height,
                          self.width)
        except BaseException:
            self._open.close()
            raise
        self._decode = page.decode
        self.raw = page.compression == 1 and not self.tiled and page.fillorder == 1

    def close(self) -> None:
        self._open.close()

    @staticmethod
    def _page_and_layout(tif):
        from ._tiff import COLOUR_SAMPLES, pillow_decodes, tiff_layout

        if len(tif.pages) != 1:
            raise _NotStreamable("it is a stack of pages (a volume); one page streams")
        page = tif.pages[0]
        if page.photometric not in COLOUR_SAMPLES:
            raise _NotStreamable(f"its pages are {page.photometric.name.lower()}; gray, RGB and "
                                 "min-is-black samples stream")
        if page.bitspersample not in STREAMED_BITS or page.dtype is None or \
                page.dtype.kind not in "uif" or getattr(page, "imagedepth", 1) != 1:
            raise _NotStreamable(f"its samples are {page.bitspersample}-bit "
                                 f"{page.dtype}; 8- to 64-bit integers and floats stream")
        layout = tiff_layout(tif)
        if len(layout.shape) != 3:
            raise _NotStreamable("it is a volume; 2-D images stream")
        if layout.orientation != 1:
            raise _NotStreamable(f"its Orientation tag turns it ({layout.orientation}); "
                                 "upright images stream")
        if pillow_decodes(tif):          # as Pillow reads it: any extra sample is dropped
            drop = page.samplesperpixel > COLOUR_SAMPLES[page.photometric]
        else:
            drop = layout.alpha
        return page, layout, int(drop)

    def _planes(self, rows: np.ndarray) -> np.ndarray:
        from .images import _planes_over

        bands = rows // self.chunk_rows
        values = [self._band(int(band), rows[bands == band] - band * self.chunk_rows)
                  for band in np.unique(bands)]        # sorted rows: the bands in order
        values = (np.concatenate(values) if values
                  else np.empty((0, self.width, self.samples), self.dtype))
        return _planes_over(values[:, :, :self.channels], self.scale)

    def _band(self, band: int, local: np.ndarray) -> np.ndarray:
        """Rows ``local`` (within chunk row ``band``) as (n, W, S) raw samples."""
        page, fh = self.page, self._tif.filehandle
        if self.raw:
            return self._raw_rows(band, local)
        top = band * self.chunk_rows
        rows = min(self.chunk_rows, self.height - top)
        values = np.empty((rows, self.width, self.samples), self.dtype)
        planes = self.samples if self.separate else 1
        for plane in range(planes):
            for column in range(self.across):
                index = (plane * self.down + band) * self.across + column
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                if count:
                    with fh.lock:
                        fh.seek(offset)
                        encoded = fh.read(count)
                else:
                    encoded = None
                segment, _, _ = self._decode(encoded, index, _fullsize=self.tiled)
                if segment is None:                          # an empty chunk: fill value 0
                    segment = np.zeros((1, self.chunk_rows, self.chunk_cols,
                                        1 if self.separate else self.samples), self.dtype)
                segment = segment.reshape(segment.shape[-3:])   # (rows, cols, contig samples)
                width = min(self.chunk_cols, self.width - column * self.chunk_cols)
                target = values[:, column * self.chunk_cols:column * self.chunk_cols + width]
                if self.separate:
                    target[:, :, plane] = segment[:rows, :width, 0]
                else:
                    target[...] = segment[:rows, :width]
        return values[local]

    def _raw_rows(self, band: int, local: np.ndarray) -> np.ndarray:
        """Uncompressed strips: read just the rows asked for from the file."""
        page, fh = self.page, self._tif.filehandle
        dtype = self.dtype.newbyteorder(self._tif.byteorder)
        planes = self.samples if self.separate else 1
        per_row = self.width * (1 if self.separate else self.samples)
        values = np.empty((local.size, self.width, self.samples), self.dtype)
        for plane in range(planes):
            index = plane * self.down + band
            base = page.dataoffsets[index]
            for number, row in enumerate(local):
                with fh.lock:
                    fh.seek(base + int(row) * per_row * dtype.itemsize)
                    data = np.frombuffer(fh.read(per_row * dtype.itemsize), dtype)
                data = data.reshape(self.width, -1)
                if self.separate:
                    values[number, :, plane] = data[:, 0]
                else:
                    values[number] = data
        return values


class PngRows(_Rows):
    """``read_rows`` over a non-interlaced 8- or 16-bit PNG: the rows asked for, (C, n, W)
    float32 as ``load_image`` gives them (/255 or /65535; a palette looked up; alpha left
    out; ``--gray`` applied). Decodes in file order (``_png.PngRowDecoder``), keeping only
    the rows of the last call: a call for rows before them starts over from the top (once
    per image with circular padding, whose first strip reads the last rows, and after
    ``--normalize robust``'s first pass) unless the image's bytes fit ``hold_bytes``: then
    every row decoded is kept (a quarter of its float32 size for 8-bit samples)."""

    DECODE_ROWS = 64                         # rows unfiltered per step

    def __init__(self, path: Path, gray: bool = False, hold_bytes: int = 0):
        from ._png import PngRowDecoder
        from .images import _orientation_in, _png_chunk

        self.path = Path(path)
        try:
            self._decoder = decoder = PngRowDecoder(path)
        except (ValueError, OSError) as error:
            raise _NotStreamable(f"its PNG header cannot be read for streaming ({error})") \
                from None
        try:
            if decoder.interlaced:
                raise _NotStreamable("it is an interlaced (Adam7) PNG; rows come in file "
                                     "order only from non-interlaced ones")
            if decoder.colour == 3 and (decoder.depth != 8 or decoder.palette is None):
                raise _NotStreamable("its palette PNG is not 8-bit or has no palette")
            if decoder.transparency is not None:
                raise _NotStreamable("it has a transparent colour (tRNS), which loads as alpha")
            if _orientation_in(_png_chunk(self.path, b"eXIf")) != 1:
                raise _NotStreamable("its EXIF orientation turns it; upright images stream")
        except BaseException:
            decoder.close()
            raise
        self.height, self.width = decoder.height, decoder.width
        self.samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[decoder.colour]
        self.has_alpha = decoder.colour in (4, 6)
        channels = 1 if decoder.colour in (0, 4) else 3
        self.bit_depth = decoder.depth
        self.scale = 255.0 if decoder.depth == 8 else 65535.0
        if decoder.palette is not None:        # missing entries are black, as in Pillow
            self._palette = np.zeros((256, 3), np.uint8)
            self._palette[:len(decoder.palette)] = decoder.palette[:256]
        self.gray = gray
        self.shape = (1 if gray else channels, self.height, self.width)
        self._colour_channels = channels
        self._held_rows = np.empty(0, np.int64)
        self._held = np.empty((0, decoder.row_bytes), np.uint8)
        self._all = None                       # every row decoded so far, when they fit
        self._hold = decoder.row_bytes * self.height <= hold_bytes

    def close(self) -> None:
        self._decoder.close()

    @property
    def first_row_in_order(self) -> int:
        """The lowest row a call gives without decoding from the top again."""
        if self._all is not None:              # every row decoded so far is kept
            return 0
        return int(self._held_rows[0]) if self._held_rows.size else self._decoder.next_row

    def _planes(self, rows: np.ndarray) -> np.ndarray:
        from .images import _planes_over

        samples = self._raw_rows(rows).view(">u2" if self.bit_depth == 16 else np.uint8)
        samples = samples.reshape(rows.size, self.width, self.samples)
        if self._decoder.colour == 3:
            samples = self._palette[samples[:, :, 0]]
        return _planes_over(samples[:, :, :self._colour_channels], self.scale)

    def _raw_rows(self, rows: np.ndarray) -> np.ndarray:
        """The unfiltered bytes of ``rows`` (sorted), from the rows held or decoded now."""
        raw = np.empty((rows.size, self._decoder.row_bytes), np.uint8)
        held = np.isin(rows, self._held_rows)
        if held.any():
            raw[held] = self._held[np.searchsorted(self._held_rows, rows[held])]
        missing = np.flatnonzero(~held)
        if missing.size and self._all is not None:    # held so far: rows below next_row
            kept = missing[rows[missing] < self._decoder.next_row]
            raw[kept] = self._all[rows[kept]]
            missing = np.setdiff1d(missing, kept, assume_unique=True)
        if missing.size:
            decoder = self._decoder
            if rows[missing[0]] < decoder.next_row:
                decoder.restart()
            last = int(rows[missing[-1]])
            while decoder.next_row <= last:
                top = decoder.next_row
                try:
                    band = decoder.next_rows(min(self.DECODE_ROWS, last + 1 - top))
                except ValueError as error:
                    raise FileFailure(f"{self.path}: cannot decode the image ({error})") \
                        from None
                wanted = missing[(rows[missing] >= top) & (rows[missing] < top + len(band))]
                raw[wanted] = band[rows[wanted] - top]
                if self._hold:
                    if self._all is None:
                        self._all = np.empty((self.height, decoder.row_bytes), np.uint8)
                    self._all[top:top + len(band)] = band
        self._held_rows, self._held = rows, raw
        return raw


class PixelRows(_Rows):
    """``read_rows`` over an image Pillow decodes only whole (JPEG, WebP, BMP, GIF, and the
    PNGs ``PngRows`` cannot read in order): decoded once, at the first call, to its samples
    as ``load_image`` has them before they become floats (upright; 8-bit samples are a
    quarter of the float32 image), and made float32 rows only as they are asked for."""

    def __init__(self, path: Path, gray: bool = False):
        from .images import has_alpha, read_header

        self.path = Path(path)
        try:
            self.shape = read_header(self.path, gray=gray)
            self.has_alpha = has_alpha(self.path)
        except FileFailure as error:
            raise _NotStreamable(str(error).split(": ", 1)[-1]) from None
        if len(self.shape) != 3:
            raise _NotStreamable("it is not a 2-D image")
        _, self.height, self.width = self.shape
        self.gray = gray
        self._samples = None

    @property
    def bit_depth(self) -> int:
        return self._decoded()[3]

    def close(self) -> None:
        self._samples = None

    def _decoded(self):
        if self._samples is None:
            from .images import pillow_samples

            started = time.perf_counter()
            values, alpha, _, scale, bit_depth = pillow_samples(self.path)
            if values.ndim == 2:
                values = values[:, :, np.newaxis]
            self._samples = (values, values.shape[2] - alpha, scale, bit_depth)
            self.read_ms += (time.perf_counter() - started) * 1e3
        return self._samples

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        self._decoded()                        # (timed apart: the decode is load time too)
        return super().__call__(rows)

    def _planes(self, rows: np.ndarray) -> np.ndarray:
        from .images import _planes_over

        values, channels, scale, _ = self._decoded()
        return _planes_over(values[rows][:, :, :channels], scale)


class NpyRows(_Rows):
    """``read_rows`` over a (C, H, W) ``.npy`` array, memory-mapped: the rows asked for as
    float32, values unchanged, as ``load_image`` gives them."""

    bit_depth, has_alpha = 32, False

    def __init__(self, path: Path, gray: bool = False):
        from ._npy import npy_header
        from .images import _gray_channels

        self.path = Path(path)
        try:
            with open(path, "rb") as file:
                shape, fortran, dtype = npy_header(file, Path(path).stat().st_size)
                offset = file.tell()
        except (ValueError, OSError) as error:
            raise _NotStreamable(f"its .npy header cannot be read ({error})") from None
        if len(shape) != 3:
            raise _NotStreamable(f"its array is {len(shape)}-D; (C, H, W) images stream")
        try:
            channels = _gray_channels(shape[0], gray, self.path)
        except FileFailure as error:
            raise _NotStreamable(str(error).split(": ", 1)[-1]) from None
        self._values = np.memmap(path, dtype, "r", offset, shape, order="F" if fortran else "C")
        self.shape = (channels,) + tuple(shape[1:])
        self.height, self.width = shape[1], shape[2]
        self.gray = gray

    def close(self) -> None:
        self._values = None

    def _planes(self, rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(self._values[:, rows], np.float32)


# --- filtering and writing -------------------------------------------------------------------

def row_filter_for(job, shape, path: Path, options):
    """The ``RowFilter`` of a job on an image of ``shape``, as the in-memory run plans it."""
    from .layers import Stack, kernel_geometry
    from .pipeline import _plan_job
    from .strips import RowFilter

    plan = _plan_job(job.operation, shape, path, options)
    common = dict(pad_mode=options.pad_mode, flip=options.flip, engine_path=options.engine,
                  path=path)
    if isinstance(plan, Stack):
        return RowFilter(shape, plan, **common), plan
    first = job.operation.kernels[0]
    stride, spec, dilation = kernel_geometry(first, options.stride, options.padding,
                                             options.dilation)
    return RowFilter(shape, job.operation, stride=stride, padding=spec, dilation=dilation,
                     **common), plan


def strip_height(row_filter, max_memory: int, step: int) -> int:
    """The output rows of a strip, a multiple of ``step``: the fewest whose strips hold
    ``STRIP_BYTES`` of rows and read at most ``HALO_SHARE`` more rows than they write, or
    ``MAX_STRIP_ROWS``, but none holding more than ``BUDGET_SHARE`` of ``max_memory`` (at
    least ``step``). Found by doubling, then halving the interval (each test plans three
    strips)."""
    rows_out = row_filter.output_shape[1]
    budget = max_memory * BUDGET_SHARE if max_memory else float("inf")

    def fits(height: int) -> bool:
        return max(s.peak_bytes for s in _sample_strips(row_filter, height)) <= budget

    def done(height: int) -> bool:           # false, ..., false, true, ... as height grows
        if height >= min(rows_out, MAX_STRIP_ROWS) or not fits(height + step):
            return True
        strips = _sample_strips(row_filter, height)
        middle = strips[len(strips) // 2]
        written = middle.out_rows[1] - middle.out_rows[0]
        return (max(s.peak_bytes for s in strips) >= STRIP_BYTES
                and middle.input_rows.size <= written * (1 + HALO_SHARE))

    low, high = 0, step                      # done(high) once found; not done(low) (or 0)
    while not done(high):
        low, high = high, high * 2
    while high - low > step:                 # the first multiple of step that is done
        middle = (low + high) // 2 // step * step
        low, high = (low, middle) if done(middle) else (middle, high)
    return high


def _sample_strips(row_filter, height: int):
    """The first, a middle and the last strip of ``height`` (the edges read the most under
    circular padding; every inner strip reads as many rows as the middle one)."""
    rows_out = row_filter.output_shape[1]
    starts = sorted({0, (rows_out // 2 // height) * height,
                     ((rows_out - 1) // height) * height})
    return [row_filter.strip(first, height) for first in starts]


def stream_image(source, jobs, options, strips_from=None):
    """Every job's output of an image, streamed; one ``OutputRecord`` per job (outputs that
    exist were refused by ``pipeline.apply_to_image``). ``strips_from`` makes the strips'
    outputs, as ``_filtered_strips`` (its default) does here: ``cluster.ClusterPool.strips``
    has a Dask cluster's workers make them."""
    from .engine import _runtime
    from .engine._compile_log import compile_seconds
    from .images import atomic_write
    from .pipeline import _bit_depth

    records = []

    _runtime.expect_a_long_run()
    for job in jobs:
        normalize = _normalize(job, options) if options.fmt == "png" else None
        reread = normalize == "robust" or options.pad_mode == "circular"   # rows read twice
        reader = open_rows(source.path, gray=options.gray,
                           hold_bytes=int(options.max_memory * BUDGET_SHARE) if reread else 0)
        try:
            started, compiled_before = time.perf_counter(), compile_seconds()
            row_filter, plan = row_filter_for(job, reader.shape, source.path, options)
            step = PNG_ROWS if options.fmt == "png" else TILE
            height = strip_height(row_filter, options.max_memory, step)
            strips = row_filter.iter_strips(height)
            timing = {"convolve": 0.0, "write": 0.0, "clipped": 0,
                      "strips": -(-row_filter.output_shape[1] // height)}
            value_range = (_robust_range(row_filter, reader, options.max_memory, timing)
                           if normalize == "robust" else None)
            make = strips_from or _filtered_strips
            outputs = _made_ahead(lambda: make(row_filter, reader, strips, timing))
            if options.fmt == "png":
                write = _png_writer(row_filter.output_shape, outputs, _bit_depth(reader, options),
                                    normalize, value_range, timing)
            else:
                write = _tile_writer(row_filter.output_shape, outputs)
            writing = time.perf_counter()
            try:
                atomic_write(job.destination, write, overwrite=options.overwrite)
            finally:
                outputs.close()                       # stops the threads on a failure
            timing["write"] = (time.perf_counter() - writing) * 1e3 - outputs.waited_ms
            timing["compile"] = (compile_seconds() - compiled_before) * 1e3
            total_ms = (time.perf_counter() - started) * 1e3
        finally:
            reader.close()
        records.append(_record(job, reader, row_filter, plan, options, timing, total_ms))
    return records


def _robust_range(row_filter, reader, max_memory: int, timing: dict) -> tuple[float, float]:
    """``--normalize robust``'s (0, high), as the in-memory run finds it: the output rows it
    samples (``images.robust_rows``, a few dozen) computed first, in groups whose input rows
    fit a strip's share of ``max_memory``, each group from one ascending read."""
    from .images import robust_high, robust_rows
    from .strips import FLOAT_BYTES

    rows, column_step = robust_rows(row_filter.output_shape)
    channels, _, width = row_filter.shape
    most_rows = (max(1, int(max_memory * BUDGET_SHARE // (FLOAT_BYTES * channels * width)))
                 if max_memory else 1 << 62)
    samples, group, held_rows = [], [], np.empty(0, np.int64)

    def run_group() -> None:
        held = reader(held_rows)
        for row in group:                    # (run asks for the rows it reads)
            maps = row_filter.run(lambda wanted: held[:, np.searchsorted(held_rows, wanted)],
                                  row, row + 1)
            samples.append(maps[:, :, ::column_step])

    started = time.perf_counter()
    with np.errstate(all="ignore"):
        for row in map(int, rows):
            reads = row_filter.rows_read(row, row + 1)[0]
            needed = np.union1d(held_rows, reads)
            if group and needed.size > most_rows:
                run_group()
                group, needed = [], reads
            group.append(row)
            held_rows = needed
        run_group()
    timing["convolve"] += (time.perf_counter() - started) * 1e3
    return (0.0, robust_high(np.concatenate(samples, axis=1)))


def _filtered_strips(row_filter, reader, strips, timing: dict):
    """Each strip's output rows (C, n, W) in order, ``strips`` planned one ahead (an
    iterator: a tall image's plan is never made whole); the next strip's input is decoded
    by another thread meanwhile (``_ReadAhead``)."""
    ahead = _ReadAhead(reader)
    strips = iter(strips)
    current = next(strips, None)
    if current is not None:
        ahead.then(current.input_rows)
    try:
        with np.errstate(all="ignore"):          # (per thread) NaN spreads, as in memory
            while current is not None:
                following = next(strips, None)
                ahead.then(None if following is None else following.input_rows)
                started = time.perf_counter()
                waited_before = ahead.waited_ms
                maps = row_filter.run(ahead, *current.out_rows)
                timing["convolve"] += ((time.perf_counter() - started) * 1e3
                                       - (ahead.waited_ms - waited_before))
                yield maps
                current = following
    finally:
        ahead.close()


class _ReadAhead:
    """``read_rows`` that reads ahead: ``then(rows)`` names the call after the next one (or
    the first call), which a thread decodes as soon as the call before it is answered, while
    the caller works on that one; any other call is read at once."""

    def __init__(self, reader):
        self._reader = reader
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="convcli-read")
        self._pending = None                      # (rows, future) being read
        self._next = None                         # rows to read once _pending is taken
        self.waited_ms = 0.0

    def then(self, rows) -> None:
        if self._pending is None and rows is not None:
            self._pending = (rows, self._pool.submit(self._reader, rows))
        else:
            self._next = rows

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        pending, self._pending = self._pending, None
        if pending is not None and np.array_equal(rows, pending[0]):
            result = pending[1].result()
        else:                                     # off the plan: read it now
            if pending is not None:
                pending[1].result()
            result = self._reader(rows)
        self.waited_ms += (time.perf_counter() - started) * 1e3
        upcoming, self._next = self._next, None
        if upcoming is not None:
            self._pending = (upcoming, self._pool.submit(self._reader, upcoming))
        return result

    def close(self) -> None:
        if self._pending is not None:
            self._pending[1].cancel()
        self._pool.shutdown(wait=True)


class _made_ahead:
    """Iterate ``make()`` (a generator) in a thread, one item ahead of the caller; its
    exceptions come out of ``next``. ``close()`` (also at the end) stops the thread after
    the item it is making."""

    _DONE = object()

    def __init__(self, make):
        self.waited_ms = 0.0                     # the caller's time spent waiting for items
        self._items: queue.Queue = queue.Queue(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True,
                                        name="convcli-filter")
        self._thread.start()

    def _run(self, make) -> None:
        try:
            for item in make():
                if not self._put((item, None)):
                    return
            self._put((self._DONE, None))
        except BaseException as error:           # noqa: BLE001 - handed to the caller
            self._put((None, error))

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        try:
            while True:
                started = time.perf_counter()
                item, error = self._items.get()
                self.waited_ms += (time.perf_counter() - started) * 1e3
                if error is not None:
                    raise error
                if item is self._DONE:
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._items.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()


def _png_writer(shape, outputs, bit_depth: int, normalize: str, value_range, timing: dict):
    """``write(file)``: the strips as a PNG's rows, mapped to pixels as ``images.render``
    maps them (``value_range``: robust's, of the whole output); counts the values clipped
    in ``timing["clipped"]``."""
    from ._png import PngEncoder
    from .images import _png_pixels

    channels, rows_out, columns = shape

    def write(file) -> None:
        encoder = PngEncoder(columns, rows_out, channels, bit_depth)
        file.write(encoder.header())
        for maps in outputs:
            pixels, clipped = _png_pixels(maps, None, bit_depth, normalize, value_range)
            timing["clipped"] += clipped * maps.size
            file.write(encoder.encode(pixels))
        file.write(encoder.finish())

    return write


def _tile_writer(shape, outputs):
    """``write(file)``: the strips as a tiled, deflate-compressed BigTIFF of float32, its
    tiles compressed here (``_deflate``, ``ENCODE_THREADS`` at a time) and handed to
    tifffile as bytes: its own zlib wrote 37 MB/s of float32, ISA-L 545."""
    import tifffile

    from ._deflate import deflate

    channels, rows_out, columns = shape

    def tiles():
        with ThreadPoolExecutor(ENCODE_THREADS, thread_name_prefix="convcli-deflate") as pool:
            for maps in outputs:
                maps = np.moveaxis(maps, 0, -1)             # (rows, W, C)
                blocks = []
                for top in range(0, maps.shape[0], TILE):
                    for left in range(0, columns, TILE):
                        block = np.zeros((TILE, TILE, channels), np.float32)   # edges: 0s
                        part = maps[top:top + TILE, left:left + TILE]
                        block[:part.shape[0], :part.shape[1]] = part
                        blocks.append(block)
                del maps
                for data in pool.map(deflate, blocks):
                    yield data, len(data)

    if channels == 1:
        tiff_shape, photometric, extra = (rows_out, columns), "minisblack", {}
    elif channels == 3:
        tiff_shape, photometric, extra = (rows_out, columns, 3), "rgb", {"planarconfig": "contig"}
    else:
        tiff_shape, photometric, extra = ((rows_out, columns, channels), "minisblack",
                                          {"planarconfig": "contig"})

    def write(file) -> None:
        with tifffile.TiffWriter(file, bigtiff=True) as tif:
            tif.write(tiles(), shape=tiff_shape, dtype=np.float32, tile=(TILE, TILE),
                      compression="zlib", photometric=photometric, **extra)

    return write


def _record(job, reader, row_filter, plan, options, timing: dict, total_ms: float):
    """The job's ``OutputRecord``. Its timings are each stage's busy time (they overlap, so
    they add up to more than ``total``, the wall time)."""
    from .layers import Stack
    from .pipeline import OutputRecord, _one_layer_geometry

    engines = []
    for paths in row_filter._paths or []:
        engines.extend([paths] if isinstance(paths, str) else list(paths))
    engine = "+".join(dict.fromkeys(engines))
    compile_ms = round(timing.get("compile", 0.0), 3)      # reported apart, as in memory
    convolve_ms = round(max(timing["convolve"] - compile_ms, 0.0), 3)
    load_ms = round(reader.read_ms, 3)
    write_ms = round(max(timing["write"], 0.0), 3)
    if isinstance(plan, Stack):
        geometry = _one_layer_geometry(plan, row_filter.explanation, options.pad_mode)
        layers = [{"layer": f"{number}: {layer.describe()}", "output_shape": list(row.output_shape),
                   "engine": engine, "ms": None}
                  for number, (layer, row) in enumerate(zip(plan.layers,
                                                            row_filter.explanation.layers), 1)]
    else:
        first = job.operation.kernels[0]
        geometry = {"kernel_shape": [plan.out_channels, reader.shape[0] // plan.groups,
                                     *first.size],
                    "stride": list(plan.stride), "padding": plan.padding.as_dict(),
                    "dilation": list(plan.dilation), "pad_mode": options.pad_mode}
        layers = [{"layer": f"1: conv {'x'.join(map(str, first.size))} {job.operation.name}",
                   "output_shape": list(row_filter.output_shape), "engine": engine,
                   "ms": convolve_ms}]
    pixels = reader.height * reader.width
    return OutputRecord(
        input=str(job.source.path), output=str(job.destination), kernel=job.operation.name,
        input_shape=list(reader.shape), output_shape=list(row_filter.output_shape), **geometry,
        engine=engine, timings_ms={"load": load_ms, "convolve": convolve_ms, "write": write_ms,
                                   **({"compile": compile_ms} if compile_ms else {}),
                                   "total": round(total_ms, 3)},
        megapixels_per_s=round(pixels / 1e6 / max(convolve_ms / 1e3, 1e-9), 2), layers=layers,
        clipped_fraction=round(timing["clipped"] / max(math.prod(row_filter.output_shape), 1), 6),
        peak_memory_mb=peak_memory_mb(), strips=timing["strips"])
