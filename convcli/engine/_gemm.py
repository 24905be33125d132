"""The GEMM path: im2col and one matrix product per block of output rows, through NumPy's
BLAS, for kernels that mix many channels (issue #16).

The output is cut into blocks of rows whose column matrix stays within ``BLOCK_BYTES``;
``_runtime.run_tasks`` shares the (image, block) tasks among threads (NumPy releases the
GIL in its copies and in BLAS). A block's input rows come through the row map and its
padded columns through the column map (``_numpy._Strips.padded``: no padded copy of the
image); each tap (ky, kx) is a strided view of them (stride and dilation), copied into its
rows of the column matrix ``cols`` (C_in/groups x kH x kW, rows x W_out). Per group,
``out_block = weight (C_out/groups, C_in/groups x kH x kW) @ cols`` goes straight into the
output's rows (a strided slice BLAS writes in place); a bias is one more column of the
weights, times a row of ones in ``cols``.

Unlike NumPy's dense strips (chunks of taps), each block's product is over all taps: K =
C_in/groups x kH x kW deep. Like them, it is cut into products of at most
``_numpy.BLAS_SERIAL_MULTIPLY_ADDS`` (``_numpy._stacked_matmul``), which OpenBLAS runs on the
calling thread: its own threads on top of ours were 3-10x slower (measured on 2048^2 3 -> 16 and
1024^2 16 -> 16, 2 of our threads or 1, blocks of 2 or 8 MB), and with OpenBLAS held to one
thread (``OPENBLAS_NUM_THREADS=1``) whole-block products ran no faster than the cut ones
(small products keep their columns and output in L1/L2: (16, 144) x (144, N) ran at 64 GFLOP/s
for N = 113, 34 for N = 16384). No compiled function: Numba's compile time is unchanged.
"""

from __future__ import annotations

import numpy as np

from ._numpy import FLOAT_BYTES, _columns, _stacked_matmul, _Strips
from ._runtime import run_tasks

# Bytes of one block's column matrix (C_in/groups x kH x kW x rows x W_out floats). From
# 64 KB to 4 MB ran alike on the busy 2-core machine (2 threads, medians of 9: 3 -> 16
# channels on 2048^2 139-149 ms, 16 -> 16 on 1024^2 128-138 ms for 1, 2 and 4 MB); 2 MB gives
# a 1024-wide 16-channel 3x3 block 3 rows, so its input rows (kH - 1 more) are read less often.
BLOCK_BYTES = 2 * 1024 * 1024


def gemm_conv(x, weight, bias, row_map, col_map, pad_left, stride_h, stride_w, dilation_h,
              dilation_w, groups, out):
    """The arguments and result of ``direct_conv``, by im2col and matrix products."""
    batch, out_channels, out_h, out_w = out.shape
    group_in, kernel_h, kernel_w = weight.shape[1:]
    depth = group_in * kernel_h * kernel_w
    rows = int(np.clip(BLOCK_BYTES // (FLOAT_BYTES * depth * out_w), 1, out_h))
    plan = _Strips(rows, -(-out_h // rows), stride_h, stride_w, dilation_h, dilation_w,
                   kernel_h, kernel_w, row_map, _columns(col_map, pad_left, x.shape[3]))
    group_out = out_channels // groups
    matrices = weight.reshape(groups, group_out, depth)          # (ci, ky, kx) like cols
    if bias.any():               # one more column, times a row of ones in the column matrix
        matrices = np.concatenate([matrices, bias.reshape(groups, group_out, 1)], axis=2)
    run_tasks(_gemm_blocks, batch * plan.count, x, np.ascontiguousarray(matrices), plan, out)


def _gemm_blocks(first_task, last_task, x, matrices, strips, out):
    """Per block of output rows and per group: gather the column matrix, one product. A
    bias is the matrices' last column, times the column matrix's last row: ones (adding it
    afterwards, a pass over the output, cost up to a fifth of the time)."""
    groups, group_out, depth = matrices.shape
    in_channels = x.shape[1]
    group_in = in_channels // groups
    out_h, out_w = out.shape[2:]
    kernel_w, taps = strips.kernel_w, strips.kernel_h * strips.kernel_w
    padded_buffer = strips.padded_buffer(in_channels)
    cols_buffer = np.ones((depth, strips.rows * out_w), np.float32)
    for n, top, bottom in strips.each(first_task, last_task, out_h):
        rows = bottom - top
        block = strips.padded(x[n], top, bottom, padded_buffer)
        cols = cols_buffer[:, :rows * out_w]
        by_tap = cols[:group_in * taps].reshape(group_in, strips.kernel_h, kernel_w, rows,
                                                out_w)
        for g in range(groups):
            by_tap[:] = _taps_view(block[g * group_in:(g + 1) * group_in], strips, rows,
                                   out_w)
            channels = slice(g * group_out, (g + 1) * group_out)
            target = out[n, channels, top:bottom].reshape(group_out, rows * out_w)
            _stacked_matmul(matrices[g], cols, target)


def _taps_view(inputs: np.ndarray, strips: _Strips, rows: int, out_w: int) -> np.ndarray:
    """A read-only (C, kH, kW, rows, W_out) view of ``inputs`` (C, padded rows, padded
    columns): what each tap reads, by stride and dilation, for one copy into ``cols``
    (a copy per tap: 16 -> 16 3x3 on 1024^2 67 ms against 56, 3 -> 16 on 2048^2 82 against
    71, medians of 9)."""
    channel, row, column = inputs.strides
    view = np.lib.stride_tricks.as_strided(
        inputs, (inputs.shape[0], strips.kernel_h, strips.kernel_w, rows, out_w),
        (channel, row * strips.dilation_h, column * strips.dilation_w, row * strips.stride_h,
         column * strips.stride_w), writeable=False)
    return view
