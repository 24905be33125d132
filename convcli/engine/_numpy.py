"""The NumPy path: the direct and separable convolutions without Numba, for calls too small
to be worth starting it and for every call while the compiled loops are not cached yet.

The output is cut into strips of rows whose input and temporaries stay in the cache
(``STRIP_BYTES``); ``_runtime.run_tasks`` shares the (image, strip) tasks among threads, as
it does the compiled loops' rows (NumPy releases the GIL in its loops). The image is never
padded whole: a strip's input rows come through the row map (``api.border_map``;
``_fft._take``: a view where no padding is read), its padded columns are filled through the
column map. Every tap is then a strided view of the strip, and each step covers every
channel at once:

- depthwise kernels (one input channel per group; C_out = k * C_in): per tap, one multiply
  of the tap's view by the channels' weights, added into the output strip;
- rank-1 depthwise kernels: a column pass (kH taps) over the strip's unpadded rows, its
  borders filled, then a row pass (kW taps), as in the separable loops;
- other kernels, per group: the taps' views stacked (in chunks that fit ``STRIP_BYTES``)
  and one matrix product with the (C_out/groups, taps x C_in/groups) weights.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np

from ._fft import _take
from ._runtime import run_tasks

# Bytes of input, temporaries and output per strip. On 2 threads (L2 1 MB per core, L3 32 MB)
# 4-8 MB ran fastest: 4096^2 RGB sobel 80-90 ms against 140-160 ms at 1 MB and 185-290 ms at
# 512 KB, gaussian 13 x 13 275-330 ms against 470-590 and 730-810 ms; 512^2 RGB 2-3 ms against
# 4-7 ms. Strips that fit L2 pay NumPy's per-call cost (several us) on every tap too often.
STRIP_BYTES = 4 * 1024 * 1024
FLOAT_BYTES = 4
# Multiply-adds per matrix product. OpenBLAS (NumPy's BLAS) runs a product on m*n*k / 2^18
# threads of its own, on top of ours: on a busy 2-core machine, products of (16, 27) x
# (27, 4096) took 2-40x longer than on one thread, even with our threads idle.
BLAS_SERIAL_MULTIPLY_ADDS = 2**18


class _Columns(NamedTuple):
    """Where a padded row's columns come from: the image's ``width`` columns start at
    ``pad_left``; ``positions`` copy the padded row at ``sources``; ``zeros`` are zero."""
    pad_left: int
    width: int
    padded_w: int
    positions: np.ndarray
    sources: np.ndarray
    zeros: np.ndarray

    def fill_borders(self, padded_rows: np.ndarray) -> None:
        """Fill the padding of ``padded_rows`` (..., padded_w), whose middle is set."""
        if self.positions.size:
            padded_rows[..., self.positions] = padded_rows[..., self.sources]
        if self.zeros.size:
            padded_rows[..., self.zeros] = 0.0


class _Strips(NamedTuple):
    """A call's geometry and its cut into strips of ``rows`` output rows (the last fewer)."""
    rows: int
    count: int           # strips per image
    stride_h: int
    stride_w: int
    dilation_h: int
    dilation_w: int
    kernel_h: int
    kernel_w: int
    row_map: np.ndarray
    columns: _Columns

    def each(self, first_task: int, last_task: int, out_h: int):
        """(image, first output row, end row) of the tasks [first_task, last_task)."""
        for task in range(first_task, last_task):
            top = (task % self.count) * self.rows
            yield task // self.count, top, min(top + self.rows, out_h)

    def input_rows(self, image: np.ndarray, top: int, bottom: int) -> np.ndarray:
        """The (C, padded rows, W) input rows that output rows [top, bottom) read."""
        span = self.dilation_h * (self.kernel_h - 1) + 1
        return _take(image, self.row_map[top * self.stride_h:(bottom - 1) * self.stride_h + span],
                     axis=1)

    def padded_buffer(self, channels: int) -> np.ndarray:
        """A buffer for ``padded``: the padded input of the largest strip."""
        span = self.dilation_h * (self.kernel_h - 1) + 1
        return _scratch((channels, (self.rows - 1) * self.stride_h + span,
                         self.columns.padded_w))

    def padded(self, image: np.ndarray, top: int, bottom: int, buffer: np.ndarray) -> np.ndarray:
        """The (C, padded rows, padded columns) input of output rows [top, bottom): the
        input rows, or a copy in ``buffer`` with the padded columns filled."""
        rows = self.input_rows(image, top, bottom)
        columns = self.columns
        if columns.padded_w == columns.width:
            return rows
        block = _fit(buffer, rows.shape[:2] + (columns.padded_w,))
        block[..., columns.pad_left:columns.pad_left + columns.width] = rows
        columns.fill_borders(block)
        return block

    def window(self, block: np.ndarray, ky: int, kx: int, rows: int, out_w: int) -> np.ndarray:
        """The view of ``block`` (..., padded rows, padded columns) that tap (ky, kx) reads
        for ``rows`` x ``out_w`` outputs."""
        return block[..., _every(ky * self.dilation_h, rows, self.stride_h),
                     _every(kx * self.dilation_w, out_w, self.stride_w)]


def numpy_conv(x, weight, bias, factors, row_map, col_map, pad_left, stride_h, stride_w,
               dilation_h, dilation_w, groups, out):
    """The arguments and result of ``direct_conv``, and ``factors``: (column (C_out, kH), row
    (C_out, kW)) float32 of a rank-1 depthwise kernel, for the separable passes, or None."""
    batch, out_channels, out_h, out_w = out.shape
    in_channels, width = x.shape[1], x.shape[3]
    group_in, kernel_h, kernel_w = weight.shape[1:]
    padded_w = col_map.shape[0]
    per_input = out_channels // in_channels
    bias = bias if bias.any() else None

    def strips(row_floats: int) -> _Strips:
        """As many output rows per strip as fit ``STRIP_BYTES`` at ``row_floats`` each."""
        rows = int(np.clip(STRIP_BYTES // (FLOAT_BYTES * row_floats), 1, out_h))
        return _Strips(rows, -(-out_h // rows), stride_h, stride_w, dilation_h, dilation_w,
                       kernel_h, kernel_w, row_map, _columns(col_map, pad_left, width))

    if factors is not None:
        plan = strips(in_channels * width * stride_h
                      + out_channels * (padded_w + max(width, out_w) + out_w))
        column, row = (f.reshape(in_channels, per_input, -1, 1, 1) for f in factors)
        run_tasks(_separable_strips, batch * plan.count, x, column, row,
                  _by_input(bias, in_channels), plan, out)
    elif group_in == 1:
        plan = strips(in_channels * padded_w * stride_h + 2 * out_channels * out_w)
        taps = weight[:, 0].reshape(in_channels, per_input, kernel_h, kernel_w)
        taps = np.ascontiguousarray(taps.transpose(2, 3, 0, 1))[..., None, None]
        run_tasks(_depthwise_strips, batch * plan.count, x, taps, _by_input(bias, in_channels),
                  plan, out)
    else:
        group_out = out_channels // groups
        plan = strips(in_channels * padded_w * stride_h + (out_channels + group_out) * out_w)
        # Taps per matrix product: their stacked views of one group within STRIP_BYTES.
        stacked_bytes = FLOAT_BYTES * group_in * plan.rows * out_w
        chunk = int(np.clip(STRIP_BYTES // stacked_bytes, 1, kernel_h * kernel_w))
        run_tasks(_dense_strips, batch * plan.count, x, _weight_chunks(weight, groups, chunk),
                  bias, plan, out)


def _columns(col_map: np.ndarray, pad_left: int, width: int) -> _Columns:
    positions = np.r_[0:pad_left, pad_left + width:col_map.shape[0]]
    sources = col_map[positions]
    inside = sources >= 0
    return _Columns(pad_left, width, col_map.shape[0], positions[inside],
                    pad_left + sources[inside], positions[~inside])


def _by_input(bias, in_channels):
    """``bias`` as (C_in, k, 1, 1), to add to an output strip seen by input channel."""
    return None if bias is None else bias.reshape(in_channels, -1, 1, 1)


def _every(start: int, count: int, stride: int) -> slice:
    """The ``count`` positions one tap reads along an axis: start, start + stride, ..."""
    return slice(start, start + stride * (count - 1) + 1, stride)


def _scratch(shape) -> np.ndarray:
    """A float32 buffer for the largest strip; ``_fit`` takes a contiguous piece of it."""
    return np.empty(math.prod(shape), np.float32)


def _fit(buffer: np.ndarray, shape) -> np.ndarray:
    """The first floats of ``buffer`` as an array of ``shape``."""
    return buffer[:math.prod(shape)].reshape(shape)


def _accumulate(target, index, window, taps, product):
    """``target (+)= window * taps``: the first tap (index 0) writes, the others add."""
    if index == 0:
        np.multiply(window, taps, out=target)
    else:
        np.multiply(window, taps, out=product)
        target += product


def _depthwise_strips(first_task, last_task, x, taps, bias, strips, out):
    """Output channel ``c * k + j`` reads input channel ``c``: ``out`` seen as (N, C_in, k,
    Ho, Wo), each tap one multiply of a (C_in, 1, rows, Wo) view by (C_in, k, 1, 1) weights.
    ``taps`` is (kH, kW, C_in, k, 1, 1)."""
    in_channels, per_input = taps.shape[2:4]
    out_h, out_w = out.shape[2:]
    padded_buffer = strips.padded_buffer(in_channels)
    product_buffer = _scratch((in_channels, per_input, strips.rows, out_w))
    tap_indices = list(itertools.product(range(strips.kernel_h), range(strips.kernel_w)))
    for n, top, bottom in strips.each(first_task, last_task, out_h):
        rows = bottom - top
        block = strips.padded(x[n], top, bottom, padded_buffer)[:, None]
        target = out[n, :, top:bottom].reshape(in_channels, per_input, rows, out_w)
        product = _fit(product_buffer, target.shape)
        for index, (ky, kx) in enumerate(tap_indices):
            window = strips.window(block, ky, kx, rows, out_w)
            _accumulate(target, index, window, taps[ky, kx], product)
        if bias is not None:
            target += bias


def _separable_strips(first_task, last_task, x, column, row, bias, strips, out):
    """Depthwise rank-1 kernels: the column pass sums kH input rows into the middle of
    padded rows, their borders are filled, the row pass sums kW columns of them.
    ``column`` is (C_in, k, kH, 1, 1), ``row`` (C_in, k, kW, 1, 1)."""
    in_channels, per_input = column.shape[:2]
    out_h, out_w = out.shape[2:]
    columns = strips.columns
    sums_buffer = _scratch((in_channels, per_input, strips.rows, columns.padded_w))
    product_buffer = _scratch((in_channels, per_input, strips.rows,
                               max(columns.width, out_w)))
    for n, top, bottom in strips.each(first_task, last_task, out_h):
        rows = bottom - top
        block = strips.input_rows(x[n], top, bottom)[:, None]
        sums = _fit(sums_buffer, (in_channels, per_input, rows, columns.padded_w))
        middle = sums[..., columns.pad_left:columns.pad_left + columns.width]
        product = _fit(product_buffer, middle.shape)
        for ky in range(strips.kernel_h):
            window = block[..., _every(ky * strips.dilation_h, rows, strips.stride_h), :]
            _accumulate(middle, ky, window, column[:, :, ky], product)
        columns.fill_borders(sums)
        target = out[n, :, top:bottom].reshape(in_channels, per_input, rows, out_w)
        product = _fit(product_buffer, target.shape)
        for kx in range(strips.kernel_w):
            window = sums[..., _every(kx * strips.dilation_w, out_w, strips.stride_w)]
            _accumulate(target, kx, window, row[:, :, kx], product)
        if bias is not None:
            target += bias


def _weight_chunks(weight, groups, chunk):
    """Per group, [(taps [(ky, kx)], weights (C_out/groups, len(taps) * C_in/groups))]: the
    weights of ``chunk`` taps at a time, in the order ``_dense_strips`` stacks their views."""
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    group_out = out_channels // groups
    taps = list(itertools.product(range(kernel_h), range(kernel_w)))
    per_group = []
    for g in range(groups):
        by_tap = weight[g * group_out:(g + 1) * group_out].transpose(0, 2, 3, 1)
        by_tap = by_tap.reshape(group_out, kernel_h * kernel_w * group_in)
        per_group.append([(taps[start:start + chunk], np.ascontiguousarray(
            by_tap[:, start * group_in:(start + chunk) * group_in]))
            for start in range(0, len(taps), chunk)])
    return per_group


def _dense_strips(first_task, last_task, x, weight_chunks, bias, strips, out):
    """Per group and chunk of taps: the taps' (C_in/groups, rows, Wo) views stacked into
    (taps x C_in/groups, pixels), one matrix product with the chunk's weights."""
    groups = len(weight_chunks)
    in_channels = x.shape[1]
    group_in, group_out = in_channels // groups, out.shape[1] // groups
    out_h, out_w = out.shape[2:]
    chunk = len(weight_chunks[0][0][0])
    padded_buffer = strips.padded_buffer(in_channels)
    stack_buffer = _scratch((chunk, group_in, strips.rows, out_w))
    product_buffer = _scratch((group_out, strips.rows * out_w))
    for n, top, bottom in strips.each(first_task, last_task, out_h):
        rows = bottom - top
        block = strips.padded(x[n], top, bottom, padded_buffer)
        for g, chunks in enumerate(weight_chunks):
            inputs = block[g * group_in:(g + 1) * group_in]
            channels = slice(g * group_out, (g + 1) * group_out)
            target = out[n, channels, top:bottom].reshape(group_out, rows * out_w)
            for index, (taps, weights) in enumerate(chunks):
                stack = _fit(stack_buffer, (len(taps), group_in, rows, out_w))
                for slot, (ky, kx) in enumerate(taps):
                    stack[slot] = strips.window(inputs, ky, kx, rows, out_w)
                stacked = stack.reshape(-1, rows * out_w)
                product = target if index == 0 else _fit(product_buffer, target.shape)
                _stacked_matmul(weights, stacked, product)
                if index > 0:
                    target += product
            if bias is not None:
                target += bias[channels, None]


def _stacked_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a @ b`` as one NumPy call over a stack of column slices of ``b`` and ``out``,
    each product within ``BLAS_SERIAL_MULTIPLY_ADDS`` (OpenBLAS's own threads stay idle) and
    a multiple of 64 columns wide where that fits, plus one product for the rest. NumPy runs
    the stack's products in C: (16, 144) x (144, 8192) took 406 us in 64-column slices, 945 us
    in one Python call per 113 columns, as this path once did (and 812 us in 113-column
    slices stacked: OpenBLAS's kernels like widths in multiples of 64 here). The NumPy path's
    dense strips and the GEMM path share it."""
    depth, width = b.shape
    columns = max(1, BLAS_SERIAL_MULTIPLY_ADDS // a.size)
    if columns >= 64:
        columns -= columns % 64
    whole = width - width % columns
    if whole:
        np.matmul(a, b[:, :whole].reshape(depth, -1, columns).transpose(1, 0, 2),
                  out=out[:, :whole].reshape(a.shape[0], -1, columns).transpose(1, 0, 2))
    if whole < width:
        np.matmul(a, b[:, whole:], out=out[:, whole:])
