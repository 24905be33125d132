"""A NumPy path for small jobs, so a short ``convcli apply`` never starts Numba.

On a 512x512 image the compiled loops take a millisecond or two, but importing Numba and
loading its cached machine code costs about 0.3 s per process. Here the image is padded
once with ``numpy.pad`` (the modes ``border_map`` follows), and every tap adds a scaled
strided view of it into the output: one vectorised NumPy operation per tap and channel
pair. Rank-1 depthwise kernels take a column pass and a row pass, as in the separable path.
"""

from __future__ import annotations

import numpy as np


def numpy_conv(x, weight, bias, factors, pads, mode, stride, dilation, groups, out):
    """Fill ``out`` (N, C_out, Ho, Wo) with ``x`` (N, C_in, H, W) cross-correlated with
    ``weight``; ``pads`` is ((top, bottom), (left, right)), ``mode`` a ``numpy.pad`` mode;
    ``factors`` (column (C_out, kH), row (C_out, kW)) or None."""
    out_h, out_w = out.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode=mode)
    out[:] = bias[None, :, None, None]
    if factors is not None:
        _separable(padded, factors, stride, dilation, out)
        return
    group_in, kernel_h, kernel_w = weight.shape[1:]
    group_out = out.shape[1] // groups
    for ky in range(kernel_h):
        for kx in range(kernel_w):
            window = _window(padded, ky * dilation[0], kx * dilation[1], stride, (out_h, out_w))
            for g in range(groups):
                inputs = window[:, g * group_in:(g + 1) * group_in]
                taps = weight[g * group_out:(g + 1) * group_out, :, ky, kx]
                for index in range(group_out):
                    for ci in range(group_in):
                        out[:, g * group_out + index] += taps[index, ci] * inputs[:, ci]


def _separable(padded, factors, stride, dilation, out):
    """Depthwise rank-1 kernels: sum kH shifted rows, then kW shifted columns of the sums."""
    column, row = factors
    per_input = out.shape[1] // padded.shape[1]
    out_h, out_w = out.shape[2:]
    full_w = padded.shape[3]
    for co in range(out.shape[1]):
        image = padded[:, co // per_input]
        summed = np.zeros((image.shape[0], out_h, full_w), np.float32)
        for ky, tap in enumerate(column[co]):
            summed += tap * image[:, _every(ky * dilation[0], stride[0], out_h)]
        for kx, tap in enumerate(row[co]):
            out[:, co] += tap * summed[:, :, _every(kx * dilation[1], stride[1], out_w)]


def _window(padded, top, left, stride, out_hw):
    """The view of ``padded`` that one tap reads for every output pixel."""
    return padded[:, :, _every(top, stride[0], out_hw[0]), _every(left, stride[1], out_hw[1])]


def _every(start: int, stride: int, count: int) -> slice:
    """The ``count`` padded positions one tap reads along an axis: start, start + stride, ..."""
    return slice(start, start + stride * (count - 1) + 1, stride)
