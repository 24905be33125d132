"""The GEMM path: im2col and matrix products through NumPy's BLAS, for kernels that mix many
channels (issue #16).

The output is cut into blocks of rows whose column matrix stays within ``BLOCK_BYTES``;
``_runtime.run_tasks`` shares the (image, block) tasks among threads (NumPy releases the
GIL in its copies and in BLAS). A block's input rows come through the row map (a view of the
image away from the top and bottom borders) and are never padded whole: each tap column kx
is a strided view of them (stride and dilation), its padded columns looked up in the column
map (``_Shift``: the few border columns by index, zeros as zeros). Copying from the rows, not
from a padded copy of the block as this path once did, took 3 -> 16 3x3 on 2048^2 from 197 to
133 ms of CPU on one thread (medians of 11, interleaved; 16 -> 16 on 1024^2 109 to 104).

Two ways to build the products, per group:

- im2col (``_gemm_blocks``): the column matrix ``cols`` (C_in/groups x kH x kW, rows x
  W_out), one copy per tap column kx over all (ci, ky), then ``out_block = weight (C_out/
  groups, C_in/groups x kH x kW) @ cols`` straight into the output's rows (a strided slice BLAS
  writes in place); a bias is one more column of the weights, times a row of ones in ``cols``.
- shifted copies (``_shifted_blocks``, stride 1 in rows and C_in/groups x kW >=
  ``SHIFTED_MIN_DEPTH``): each tap column's (C_in/groups, rows + dH x (kH - 1), W_out) input is
  copied once; tap row ky's column matrix is a view of those copies ky x dH rows down, so the
  block is kH products of depth C_in/groups x kW, summed: a third of the copies for 3x3.

Each product is cut into products of at most ``_numpy.BLAS_SERIAL_MULTIPLY_ADDS``
(``_numpy._stacked_matmul``), which OpenBLAS runs on the calling thread: its own threads on top
of ours were 3-10x slower (measured on 2048^2 3 -> 16 and 1024^2 16 -> 16, 2 of our threads or
1, blocks of 2 or 8 MB), and with OpenBLAS held to one thread (``OPENBLAS_NUM_THREADS=1``)
whole-block products ran no faster than the cut ones (small products keep their columns and
output in L1/L2: (16, 144) x (144, N) ran at 64 GFLOP/s for N = 113, 34 for N = 16384). No
compiled function: Numba's compile time is unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._numpy import FLOAT_BYTES, _columns, _every, _fit, _scratch, _stacked_matmul, _Strips
from ._runtime import run_tasks

# Bytes of one block's column matrix (C_in/groups x kH x kW x rows x W_out floats). From
# 64 KB to 4 MB ran alike on the busy 2-core machine (2 threads, medians of 9: 3 -> 16
# channels on 2048^2 139-149 ms, 16 -> 16 on 1024^2 128-138 ms for 1, 2 and 4 MB); 2 MB gives
# a 1024-wide 16-channel 3x3 block 3 rows, so its input rows (kH - 1 more) are read less often.
# (The shifted copies, C_in/groups x kW x (rows + dH x (kH - 1)) x W_out floats, fill it too.)
# Measured again with both (one thread, CPU medians of 9, output already touched): 2 MB still
# fastest, 3 -> 16 98 ms against 107 at 1 MB, 113 at 4 MB, 134 at 512 KB; 16 -> 16 92 against
# 113, 100, 153.
BLOCK_BYTES = 2 * 1024 * 1024
# C_in/groups x kW from which a stride-1 (in rows) call takes the shifted copies
# (``_shifted_blocks``): kW copies of the block instead of kH x kW, and kH products of that
# depth, summed. CPU time on one thread against im2col (3x3 on 1024^2 to 16 channels, medians
# of 11, interleaved): 16 inputs (depth 48) 101 against 104 ms, 8 (24) 65.5 against 67, 4 (12)
# 43 against 36, 3 on 2048^2 (9) 154 against 133: shallow products are bound by their output,
# which the sum writes kH times.
SHIFTED_MIN_DEPTH = 24


def gemm_conv(x, weight, bias, row_map, col_map, pad_left, stride_h, stride_w, dilation_h,
              dilation_w, groups, out):
    """The arguments and result of ``direct_conv``, by matrix products (shifted copies or
    im2col; see the module's docstring)."""
    batch, out_channels, out_h, out_w = out.shape
    group_in, kernel_h, kernel_w = weight.shape[1:]
    depth = group_in * kernel_h * kernel_w
    rows = int(np.clip(BLOCK_BYTES // (FLOAT_BYTES * depth * out_w), 1, out_h))
    plan = _Strips(rows, -(-out_h // rows), stride_h, stride_w, dilation_h, dilation_w,
                   kernel_h, kernel_w, row_map, _columns(col_map, pad_left, x.shape[3]))
    group_out = out_channels // groups
    shifts = [_shift(col_map, pad_left, x.shape[3], kx * dilation_w, stride_w, out_w)
              for kx in range(kernel_w)]
    if stride_h == 1 and group_in * kernel_w >= SHIFTED_MIN_DEPTH:
        span = dilation_h * (kernel_h - 1)
        rows = int(np.clip(BLOCK_BYTES // (FLOAT_BYTES * group_in * kernel_w * out_w) - span,
                           1, out_h))
        plan = plan._replace(rows=rows, count=-(-out_h // rows))
        run_tasks(_shifted_blocks, batch * plan.count, x, _shifted_matrices(weight, bias, groups),
                  shifts, plan, out)
        return
    matrices = weight.reshape(groups, group_out, depth)          # (ci, ky, kx) like cols
    if bias.any():               # one more column, times a row of ones in the column matrix
        matrices = np.concatenate([matrices, bias.reshape(groups, group_out, 1)], axis=2)
    run_tasks(_gemm_blocks, batch * plan.count, x, np.ascontiguousarray(matrices), shifts,
              plan, out)


def _gemm_blocks(first_task, last_task, x, matrices, shifts, strips, out):
    """Per block of output rows and per group: gather the column matrix, one copy per tap
    column kx (each a (C_in/groups, kH, rows, W) view of the input rows), one product. A
    bias is the matrices' last column, times the column matrix's last row: ones (adding it
    afterwards, a pass over the output, cost up to a fifth of the time)."""
    groups, group_out, depth = matrices.shape
    in_channels = x.shape[1]
    group_in = in_channels // groups
    out_h, out_w = out.shape[2:]
    kernel_h, kernel_w = strips.kernel_h, strips.kernel_w
    cols_buffer = np.ones((depth, strips.rows * out_w), np.float32)
    for n, top, bottom in strips.each(first_task, last_task, out_h):
        rows = bottom - top
        block = strips.input_rows(x[n], top, bottom)      # a view, or a copy at the borders
        cols = cols_buffer[:, :rows * out_w]
        by_tap = cols[:group_in * kernel_h * kernel_w].reshape(group_in, kernel_h, kernel_w,
                                                               rows, out_w)
        for g in range(groups):
            inputs = block[g * group_in:(g + 1) * group_in]
            channel, row, column = inputs.strides
            by_row = np.lib.stride_tricks.as_strided(
                inputs, (group_in, kernel_h, rows, inputs.shape[2]),
                (channel, row * strips.dilation_h, row * strips.stride_h, column),
                writeable=False)
            for kx, shift in enumerate(shifts):
                _copy_columns(by_tap[:, :, kx], by_row, shift, strips.stride_w)
            channels = slice(g * group_out, (g + 1) * group_out)
            target = out[n, channels, top:bottom].reshape(group_out, rows * out_w)
            _stacked_matmul(matrices[g], cols, target)


def _copy_columns(columns, inputs, shift, stride_w):
    """``columns`` (..., W_out) = what one tap column reads of ``inputs`` (..., W)."""
    columns[..., shift.first:shift.last] = inputs[..., _every(
        shift.start, shift.last - shift.first, stride_w)]
    if shift.positions.size:
        columns[..., shift.positions] = inputs[..., shift.sources]
    if shift.zeros.size:
        columns[..., shift.zeros] = 0.0


def _shifted_matrices(weight: np.ndarray, bias: np.ndarray, groups: int) -> np.ndarray:
    """(groups, kH, C_out/groups, kW x C_in/groups + 1): per group and row of taps ky, the
    weights in the order of ``_shifted_blocks``' copies (kx, ci); the last column is the bias
    for ky = 0 and zero for the others (it is used only when the bias is not zero)."""
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    group_out = out_channels // groups
    by_row = weight.reshape(groups, group_out, group_in, kernel_h, kernel_w)
    by_row = by_row.transpose(0, 3, 1, 4, 2).reshape(groups, kernel_h, group_out,
                                                     kernel_w * group_in)
    matrices = np.zeros(by_row.shape[:3] + (by_row.shape[3] + 1,), np.float32)
    matrices[..., :-1] = by_row
    matrices[:, 0, :, -1] = bias.reshape(groups, group_out)
    return matrices


class _Shift(NamedTuple):
    """Where the ``out_w`` columns one tap column reads come from: outputs [first, last)
    read the image's columns from ``start`` on, by the stride; ``positions`` read the image
    at ``sources`` (the border map's padding), ``zeros`` are zero."""
    first: int
    last: int
    start: int
    positions: np.ndarray
    sources: np.ndarray
    zeros: np.ndarray


def _shift(col_map, pad_left, width, offset, stride_w, out_w) -> _Shift:
    """The columns that outputs read at padded column ``offset + stride_w x output``."""
    padded = offset + stride_w * np.arange(out_w)
    first = int(np.clip(-(-(pad_left - offset) // stride_w), 0, out_w))
    last = int(np.clip(-(-(pad_left + width - offset) // stride_w), first, out_w))
    rest = np.r_[0:first, last:out_w]
    sources = col_map[padded[rest]]
    return _Shift(first, last, offset + stride_w * first - pad_left, rest[sources >= 0],
                  sources[sources >= 0], rest[sources < 0])


def _shifted_blocks(first_task, last_task, x, matrices, shifts, strips, out):
    """Stride 1 in rows: per block and group, each column offset kx of the input rows (C_in/
    groups, rows + dH x (kH - 1), W_out) is copied once, into ``shifted`` (kx, ci, row,
    column); tap row ky's column matrix is then a view of it, ``ky x dH`` rows down (the rows
    follow each other), and the output block is the sum of kH products. A bias is one more
    row of ``shifted``, ones, under ky = 0's product; it is left out when the bias is zero."""
    groups, kernel_h, group_out, depth = matrices.shape
    depth -= 1
    with_bias = bool(matrices[:, 0, :, -1].any())
    in_channels = x.shape[1]
    group_in = in_channels // groups
    out_h, out_w = out.shape[2:]
    kernel_w, stride_w = strips.kernel_w, strips.stride_w
    span = strips.dilation_h * (kernel_h - 1)
    shifted_buffer = _scratch((depth + 1, strips.rows + span, out_w))
    product_buffer = _scratch((group_out, strips.rows * out_w))
    for n, top, bottom in strips.each(first_task, last_task, out_h):
        rows = bottom - top
        width = rows * out_w
        block = strips.input_rows(x[n], top, bottom)      # a view, or a copy at the borders
        flat = _fit(shifted_buffer, (depth + 1, (rows + span) * out_w))
        shifted = flat[:depth].reshape(kernel_w, group_in, rows + span, out_w)
        if with_bias:
            flat[depth, :width] = 1.0
        for g in range(groups):
            inputs = block[g * group_in:(g + 1) * group_in]
            for kx, shift in enumerate(shifts):
                _copy_columns(shifted[kx], inputs, shift, stride_w)
            channels = slice(g * group_out, (g + 1) * group_out)
            target = out[n, channels, top:bottom].reshape(group_out, width)
            first = (flat[:, :width], matrices[g, 0]) if with_bias else \
                (flat[:depth, :width], matrices[g, 0, :, :depth])
            _stacked_matmul(first[1], first[0], target)
            product = _fit(product_buffer, target.shape)
            for ky in range(1, kernel_h):
                offset = ky * strips.dilation_h * out_w
                _stacked_matmul(matrices[g, ky, :, :depth], flat[:depth, offset:offset + width],
                                product)
                target += product

