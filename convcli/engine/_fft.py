"""FFT convolution by overlap-save, for large kernels.

The padded image is cut into tiles of a size ducc0's real FFT is fast on
(``ducc0.fft.good_size``: 2-3-5 numbers), square and at least twice the dilated kernel, or
cut to the padded image along an axis where it is smaller; each tile's spectrum times the
kernel's (computed once per call) gives, by the convolution theorem, the valid part of the
tile's correlation. Work per pixel grows with log(tile) instead of kH x kW. Transforms are
ducc0's float32 ``r2c`` / ``c2r`` into per-thread buffers: on a 288^2 tile ducc0 took 0.18 ms
forward where NumPy's float64 rfft2 took 0.58 ms (its float32 one 1.44 ms), and float32 stays
within 4e-7 of the float64 reference (relative to the sum of |terms|, 41 x 41 kernels and
offset images included; the tests allow 1e-5). An image mixing very large and very small
values within one tile loses the small ones' digits below ~1e-7 of the large ones. ducc0
releases the GIL, so tiles run on ``thread_count()`` threads (``run_tasks``, whole tiles per
thread): giving each tile's transforms ducc0's own 2 threads instead ran 1.0-1.3x slower on
4096^2. On one thread, 63 x 63 on 4096^2 (256 tiles of 320^2) spent 121 of 219 ms in the
transforms, 54 in gathering and copying tiles, 35 in storing results (first writes to the
output's pages) and 9 in the spectral products. Stride > 1 takes every S-th pixel of the
stride-1 result.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import geometry
from ._runtime import run_tasks, thread_count

# Useful outputs per tile side (then rounded up to a good size). 4096^2, reflect, 2 threads,
# against cv2.filter2D interleaved (medians of 9; the shared machine moved ratios by 1.5x
# between runs, not their order): 31 x 31 took 0.77 / 0.61 / 0.57 / 0.58 / 0.70x cv2's time
# with targets 192 / 256 / 320 / 384 / 448 (tiles 225 / 288 / 360 / 432 / 480), 63 x 63
# 1.06 / 0.70 / 0.70 / 0.84 / 0.90x, 15 x 15 1.10 / 0.74 / 0.64 / 0.63 / 0.60x. One tile's
# transforms took ~4.1-4.8 ns per pixel (270^2 to 512^2, single thread); larger targets
# recompute fewer borders but fall out of the 512 KB L2 cache. A later run (lighter load)
# found tiles 288 to 400 level within noise for 31 x 31 (0.88-0.92x) and 320 to 384 for
# 63 x 63 (0.89-0.96x), 432 and up slower.
TILE_TARGET = 320
TRANSFORM_DTYPE = np.float32      # ducc0's transforms run in this precision (see above)


def fft_size(span: int, padded: int | None = None) -> int:
    """A tile side: at least ``TILE_TARGET + span - 1`` and ``2 * span``, a size ducc0's
    real FFT is fast on (``ducc0.fft.good_size``); at most the good size covering the
    ``padded`` input's side along that axis, so a small image (or strip) is one small tile."""
    from ducc0.fft import good_size

    side = good_size(max(TILE_TARGET + span - 1, 2 * span), True)
    return side if padded is None else min(side, good_size(padded, True))


def fft_conv(x, weight, bias, row_map, col_map, pad_left, stride_h, stride_w, dilation_h,
             dilation_w, groups, out):
    """Same arguments and result as ``direct_conv``."""
    from ducc0.fft import c2r, r2c

    batch, out_channels = out.shape[:2]
    group_in, kernel_h, kernel_w = weight.shape[1:]
    group_out = out_channels // groups
    span_h, span_w = dilation_h * (kernel_h - 1) + 1, dilation_w * (kernel_w - 1) + 1
    full_h = geometry.conv_output_size(row_map.shape[0], kernel_h, dilation=dilation_h)
    full_w = geometry.conv_output_size(col_map.shape[0], kernel_w, dilation=dilation_w)
    span = max(span_h, span_w)
    tile_h, tile_w = fft_size(span, row_map.shape[0]), fft_size(span, col_map.shape[0])
    step_h, step_w = tile_h - span_h + 1, tile_w - span_w + 1
    # Correlation is convolution with the flipped (and, for dilation, zero-stuffed) kernel;
    # its spectrum, once per call, carries the inverse transform's 1 / (tile_h tile_w)
    # (inorm=2); ducc0's threads only for many kernels (waking them cost more for a few).
    stuffed = np.zeros((out_channels, group_in, tile_h, tile_w), TRANSFORM_DTYPE)
    stuffed[:, :, :span_h:dilation_h, :span_w:dilation_w] = weight[:, :, ::-1, ::-1]
    spectra = r2c(stuffed, axes=(2, 3), inorm=2,
                  nthreads=thread_count() if out_channels * group_in >= 8 else 1)
    del stuffed
    origins = [(top, left) for top in range(0, full_h, step_h) for left in range(0, full_w, step_w)]
    buffers = threading.local()

    def run_tile(n, g, top, left):
        if not hasattr(buffers, "block"):               # one set per thread, reused
            buffers.block = np.empty((group_in, tile_h, tile_w), TRANSFORM_DTYPE)
            buffers.spectra = np.empty((group_in,) + spectra.shape[2:], spectra.dtype)
            # One output channel per group multiplies in place: no product buffer.
            buffers.product = (buffers.spectra[0] if group_out == 1 else
                               np.empty(spectra.shape[2:], spectra.dtype))
        block = _tile(x[n, g * group_in:(g + 1) * group_in], row_map[top:top + tile_h],
                      col_map[left:left + tile_w])
        rows, cols = block.shape[1:]
        padded = buffers.block
        padded[:, :rows, :cols] = block                 # the last tiles of a row or column
        padded[:, rows:] = 0.0                          # are cut short: zeros beyond
        padded[:, :rows, cols:] = 0.0
        image_spectra = r2c(padded, axes=(1, 2), out=buffers.spectra)
        height, width = min(step_h, full_h - top), min(step_w, full_w - left)
        for index in range(group_out):
            co = g * group_out + index
            product = np.multiply(image_spectra[0], spectra[co, 0], out=buffers.product)
            for ci in range(1, group_in):               # summed over the group's inputs
                product += image_spectra[ci] * spectra[co, ci]
            result = c2r(product, axes=(0, 1), lastsize=tile_w, forward=False,
                         out=padded[0], allow_overwriting_input=True)   # input read by now
            valid = result[span_h - 1:span_h - 1 + height, span_w - 1:span_w - 1 + width]
            _store(out[n, co], valid, top, left, stride_h, stride_w, bias[co])

    def run_tiles(first, last):
        for n, g, top, left in jobs[first:last]:
            run_tile(n, g, top, left)

    jobs = [(n, g, top, left) for n in range(batch) for g in range(groups) for top, left in origins]
    # The compiled loops' thread pool, this thread taking chunks of tiles too: a pool started
    # per call (and a single tile sent to it) cost 0.2-7 ms of thread start-up and wake-ups
    # on the shared 2 cores, 10-16 ms a call on 48^2.
    run_tasks(run_tiles, len(jobs))


def _tile(channels: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The padded image's pixels at ``rows`` x ``cols`` (map entries; -1 reads zero): a view
    when the tile lies inside the image, else gathered (``_take``) from the part it reads."""
    part, rows = _part_read(channels, rows, axis=1)
    part, cols = _part_read(part, cols, axis=2)
    return _take(_take(part, rows, axis=1), cols, axis=2)


def _part_read(array: np.ndarray, indices: np.ndarray, axis: int):
    """The slab of ``array`` along ``axis`` between the least and greatest map entries (a
    view), and the entries shifted into it."""
    read = indices[indices >= 0]
    if read.size == 0:
        return array, indices
    low = int(read.min())
    return (array[_along(axis, slice(low, int(read.max()) + 1))],
            np.where(indices >= 0, indices - low, -1))


def _take(array: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
    """``array`` at map entries ``indices`` along ``axis`` (-1 reads zero): a view when they
    are consecutive; else a copy whose longest consecutive run (the inside of the image) is
    copied as one slice and the other entries (the borders) by index. (Indexing every entry
    took 20x longer than a slice copy on a 4096-wide image.)"""
    if _consecutive(indices):
        return array[_along(axis, slice(indices[0], indices[-1] + 1))]
    shape = list(array.shape)
    shape[axis] = indices.shape[0]
    result = np.empty(shape, array.dtype)
    start, stop = _longest_run(indices)
    result[_along(axis, slice(start, stop))] = \
        array[_along(axis, slice(indices[start], indices[start] + stop - start))]
    rest = np.r_[0:start, stop:indices.shape[0]]
    result[_along(axis, rest)] = array[_along(axis, np.maximum(indices[rest], 0))]
    result[_along(axis, rest[indices[rest] < 0])] = 0.0
    return result


def _longest_run(indices: np.ndarray) -> tuple[int, int]:
    """The positions [start, stop) of the longest run of consecutive entries >= 0 (empty
    when there are none)."""
    inside = indices >= 0
    continues = (np.diff(indices) == 1) & inside[:-1]
    breaks = np.flatnonzero(~continues) + 1                     # where a new run starts
    starts = np.r_[0, breaks]
    stops = np.r_[breaks, indices.shape[0]]
    lengths = np.where(inside[starts], stops - starts, 0)
    best = int(np.argmax(lengths))
    return int(starts[best]), int(starts[best] + lengths[best])


def _along(axis: int, index) -> tuple:
    return (slice(None),) * axis + (index,)


def _consecutive(indices: np.ndarray) -> bool:
    return bool(indices.size and indices[0] >= 0 and np.all(np.diff(indices) == 1))


def _store(target, valid, top, left, stride_h, stride_w, bias):
    """Put the stride-1 block ``valid`` (at full-resolution ``top``, ``left``) into ``target``,
    keeping every stride-th pixel."""
    first_row = -(-top // stride_h) * stride_h - top        # first multiple of the stride
    first_col = -(-left // stride_w) * stride_w - left
    picked = valid[first_row::stride_h, first_col::stride_w]
    row, col = (top + first_row) // stride_h, (left + first_col) // stride_w
    np.add(picked, bias, out=target[row:row + picked.shape[0], col:col + picked.shape[1]])
