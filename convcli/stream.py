"""A TIFF bigger than memory, filtered in strips (#15): TIFF in, tiled BigTIFF out.

``apply`` streams a single-page 2-D TIFF (gray, RGB or many samples; striped or tiled;
classic or BigTIFF) whose float32 size is above ``--max-memory`` (or always with
``--stream``) when the output is a TIFF: each strip's input rows are decoded from only the
strips or tiles of the file that hold them (``TiffRows``), scaled as ``load_image`` scales
them, filtered by ``strips.RowFilter`` (the in-memory run's numbers) and written as the
tiles of a zlib-compressed, tiled BigTIFF of float32 (no normalisation: TIFF output is the
raw floats, as in memory), through a temporary file renamed into place.

The strip height is the largest multiple of the tile height (``TILE``) whose rows held at
once (``Strip.peak_bytes``) fit ``BUDGET_SHARE`` of ``--max-memory``; at least one tile row.
"""

from __future__ import annotations

import math
import re
import resource
import time
from pathlib import Path

import numpy as np

from .errors import FileFailure, UsageError

__all__ = ["DEFAULT_MAX_MEMORY", "parse_memory", "peak_memory_mb", "why_not_streamed",
           "stream_image", "TiffRows"]

DEFAULT_MAX_MEMORY = 1 << 30
TILE = 256                 # output tiles are TILE x TILE; strips are multiples of TILE rows
BUDGET_SHARE = 0.25        # of --max-memory for one strip's rows (the rest: decoding, tiles,
#                            encoding, the engine's scratch and the interpreter itself)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
STREAMED_BITS = (8, 16, 32, 64)
ZLIB_LEVEL = 1             # float32 noise barely compresses: level 6 took 8 times as long
ENCODE_THREADS = 2         # tifffile encodes this many tiles at once, ENCODE_BUFFER bytes at a time
ENCODE_BUFFER = 16 << 20   # (its default, 256 MB of tiles, doubled the streamed peak)


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
    if options.fmt != "tiff":
        return f"the output is {options.fmt}, not tiff"
    if any(job.to_stdout for job in jobs):
        return "the output goes to standard output"
    if options.save_stages or options.split or any(job.compare for job in jobs):
        return "--save-stages, --split and --compare need the whole image"
    try:
        TiffRows.check(source.path)
    except _NotStreamable as error:
        return str(error)
    from .images import read_header

    shape = read_header(source.path, gray=options.gray)
    for job in jobs:
        try:
            row_filter_for(job, shape, source.path, options)
        except UsageError as error:          # a layer that cannot stream yet
            return str(error)
        except FileFailure:                  # does not fit the image: fails as in memory
            return None
    return None


class _NotStreamable(Exception):
    pass


# --- reading ---------------------------------------------------------------------------------

class TiffRows:
    """``read_rows`` over the first page of a TIFF: the rows asked for, (C, n, W) float32,
    scaled as ``load_image`` scales a TIFF's samples (alpha left out, ``--gray`` applied),
    decoding only the strips or tiles that hold them (uncompressed strips: only the rows)."""

    def __init__(self, path: Path, gray: bool = False):
        import tifffile

        from .images import _raw_scale

        self.path = Path(path)
        self._tif = tifffile.TiffFile(str(path))
        page, self.layout, self.drop_alpha = self._page_and_layout(self._tif)
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
        self.scale = np.float32(_raw_scale(page.dtype)[0])
        self.gray = gray
        channels = self.samples - self.drop_alpha
        if gray and channels not in (1, 3):
            raise FileFailure(f"{path}: --gray makes one luminance channel out of 3 (RGB) but "
                              f"this input has {channels} channels; leave --gray out")
        self.shape = (1 if gray else channels, self.height, self.width)
        self._decode = page.decode
        self.raw = page.compression == 1 and not self.tiled and page.fillorder == 1
        self.read_ms = 0.0

    def close(self) -> None:
        self._tif.close()

    @staticmethod
    def check(path: Path) -> None:
        """Raise _NotStreamable saying why the file cannot be streamed."""
        import tifffile

        with open(path, "rb") as file:
            head = file.read(4)
        from ._tiff import TIFF_SIGNATURES

        if not head.startswith(TIFF_SIGNATURES):
            raise _NotStreamable("it is not a TIFF")
        try:
            with tifffile.TiffFile(str(path)) as tif:
                TiffRows._page_and_layout(tif)
        except _NotStreamable:
            raise
        except Exception as error:       # a damaged file: the in-memory reader says why
            raise _NotStreamable(f"tifffile cannot read it ({error})") from None

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

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        rows = np.asarray(rows, np.int64)
        channels = self.samples - self.drop_alpha
        out = np.empty((channels, rows.size, self.width), np.float32)
        for band in np.unique(rows // self.chunk_rows):
            at = np.flatnonzero(rows // self.chunk_rows == band)
            local = rows[at] - band * self.chunk_rows
            values = self._band(int(band), local)          # (len(local), W, S) raw samples
            place = slice(int(at[0]), int(at[-1]) + 1)    # the rows of one band are a run
            for channel in range(channels):
                np.divide(values[:, :, channel], self.scale, out=out[channel, place],
                          casting="unsafe")
        if self.gray and channels == 3:
            from .images import LUMA_WEIGHTS

            out = np.tensordot(np.asarray(LUMA_WEIGHTS, np.float32), out, axes=1)[np.newaxis]
        self.read_ms += (time.perf_counter() - started) * 1e3
        return out

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


def strip_height(row_filter, max_memory: int) -> int:
    """The most output rows, a multiple of ``TILE``, whose strips hold at most
    ``BUDGET_SHARE`` of ``max_memory`` (at least ``TILE``)."""
    rows_out = row_filter.output_shape[1]
    budget = max_memory * BUDGET_SHARE if max_memory else float("inf")
    height = TILE
    while height < rows_out:
        bigger = height * 2
        if max(s.peak_bytes for s in _sample_strips(row_filter, bigger)) > budget:
            break
        height = bigger
    # then step up by single tiles between height and 2 x height
    step = height
    while step > TILE:
        step //= 2
        trial = height + step
        if trial < rows_out and \
                max(s.peak_bytes for s in _sample_strips(row_filter, trial)) <= budget:
            height = trial
    return max(TILE, (height // TILE) * TILE)


def _sample_strips(row_filter, height: int):
    """The first, a middle and the last strip of ``height`` (the edges read the most under
    circular padding; every inner strip reads as many rows as the middle one)."""
    rows_out = row_filter.output_shape[1]
    starts = sorted({0, (rows_out // 2 // height) * height,
                     ((rows_out - 1) // height) * height})
    from .strips import Strip

    strips = []
    for first in starts:
        needed = row_filter.rows_read(first, min(first + height, rows_out))
        strips.append(Strip((first, first + needed[-1].size), needed[0],
                            row_filter._peak_bytes(needed)))
    return strips


def stream_image(source, jobs, options):
    """Every job's output of a TIFF, streamed; one ``OutputRecord`` per job."""
    from .images import atomic_write

    records = []
    for job in jobs:
        if not options.overwrite and job.destination.exists():
            raise FileFailure(f"{job.destination}: already exists; use --overwrite to replace it")
    for job in jobs:
        reader = TiffRows(source.path, gray=options.gray)
        try:
            started = time.perf_counter()
            row_filter, plan = row_filter_for(job, reader.shape, source.path, options)
            height = strip_height(row_filter, options.max_memory)
            timing = {"convolve": 0.0, "strips": 0}
            write = _tile_writer(row_filter, reader, height, timing)
            with np.errstate(all="ignore"):
                atomic_write(job.destination, write, overwrite=options.overwrite)
            total_ms = (time.perf_counter() - started) * 1e3
        finally:
            reader.close()
        records.append(_record(job, reader, row_filter, plan, options, timing, total_ms))
    return records


def _tile_writer(row_filter, reader: TiffRows, height: int, timing: dict):
    """``write(file)``: the filtered image as a tiled, zlib-compressed BigTIFF of float32."""
    import tifffile

    channels, rows_out, columns = row_filter.output_shape

    def tiles():
        for first in range(0, rows_out, height):
            started = time.perf_counter()
            read_before = reader.read_ms
            maps = row_filter.run(reader, first, min(first + height, rows_out))
            timing["convolve"] += (time.perf_counter() - started) * 1e3 - (
                reader.read_ms - read_before)
            timing["strips"] += 1
            maps = np.moveaxis(maps, 0, -1)                 # (rows, W, C)
            for top in range(0, maps.shape[0], TILE):
                for left in range(0, columns, TILE):
                    tile = maps[top:top + TILE, left:left + TILE]
                    yield np.array(tile[:, :, 0] if channels == 1 else tile, order="C")
            del maps

    if channels == 1:
        shape, photometric, extra = (rows_out, columns), "minisblack", {}
    elif channels == 3:
        shape, photometric, extra = (rows_out, columns, 3), "rgb", {"planarconfig": "contig"}
    else:
        shape, photometric, extra = ((rows_out, columns, channels), "minisblack",
                                     {"planarconfig": "contig"})

    def write(file) -> None:
        with tifffile.TiffWriter(file, bigtiff=True) as tif:
            tif.write(tiles(), shape=shape, dtype=np.float32, tile=(TILE, TILE),
                      compression="zlib", compressionargs={"level": ZLIB_LEVEL},
                      maxworkers=ENCODE_THREADS, buffersize=ENCODE_BUFFER,
                      photometric=photometric, **extra)

    return write


def _record(job, reader: TiffRows, row_filter, plan, options, timing: dict, total_ms: float):
    from .layers import Stack
    from .pipeline import OutputRecord, _one_layer_geometry

    engines = []
    for paths in row_filter._paths or []:
        engines.extend([paths] if isinstance(paths, str) else list(paths))
    engine = "+".join(dict.fromkeys(engines))
    convolve_ms = round(timing["convolve"], 3)
    load_ms = round(reader.read_ms, 3)
    write_ms = round(max(total_ms - convolve_ms - load_ms, 0.0), 3)
    if isinstance(plan, Stack):
        geometry = _one_layer_geometry(plan, row_filter.explanation, options.pad_mode)
        layers = [{"layer": f"{number}: {layer.describe()}", "output_shape": list(row.output_shape),
                   "engine": engine}
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
        engine=engine, timings_ms={"load": load_ms, "convolve": convolve_ms, "write": write_ms},
        megapixels_per_s=round(pixels / 1e6 / max(convolve_ms / 1e3, 1e-9), 2), layers=layers,
        peak_memory_mb=peak_memory_mb(), strips=timing["strips"])
