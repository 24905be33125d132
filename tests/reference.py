"""A slow, obviously correct float64 convolution to check every engine path against.

Border modes are written as index maps (where does padded pixel ``i`` come from?)
rather than with ``np.pad``, so the reference does not share the engine's padding code.
"""

from __future__ import annotations

import itertools

import numpy as np


def source_index(i: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Input index for padded positions ``i`` (may be < 0 or >= size); -1 means "zero"."""
    i = np.asarray(i)
    if mode == "zeros":
        return np.where((i >= 0) & (i < size), i, -1)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return np.mod(i, size)
    if mode == "reflect":                      # d c b | a b c d | c b a  (edge not repeated)
        if size == 1:
            return np.zeros_like(i)
        m = np.mod(i, 2 * size - 2)
        return np.where(m < size, m, 2 * size - 2 - m)
    if mode == "symmetric":                    # c b a | a b c d | d c b  (edge repeated)
        m = np.mod(i, 2 * size)
        return np.where(m < size, m, 2 * size - 1 - m)
    raise ValueError(mode)


def reference_conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                     groups=1, mode="zeros") -> np.ndarray:
    """Cross-correlation of ``x`` (N, C, H, W) with ``weight`` (C_out, C_in/groups, kH, kW).

    ``padding`` is (top, bottom, left, right); the result is float64.
    """
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    n, channels, height, width = x.shape
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    top, bottom, left, right = padding
    out_h = (height + top + bottom - dilation[0] * (kernel_h - 1) - 1) // stride[0] + 1
    out_w = (width + left + right - dilation[1] * (kernel_w - 1) - 1) // stride[1] + 1
    # Pad with one zero column/row at the end so that index -1 reads a zero.
    padded_source = np.zeros((n, channels, height + 1, width + 1))
    padded_source[:, :, :height, :width] = x
    group_out = out_channels // groups
    out = np.zeros((n, out_channels, out_h, out_w))
    for co in range(out_channels):
        for ci in range(group_in):
            channel = (co // group_out) * group_in + ci
            for ky in range(kernel_h):
                rows = source_index(np.arange(out_h) * stride[0] + ky * dilation[0] - top, height, mode)
                for kx in range(kernel_w):
                    cols = source_index(np.arange(out_w) * stride[1] + kx * dilation[1] - left,
                                        width, mode)
                    window = padded_source[:, channel][:, rows][:, :, cols]
                    out[:, co] += weight[co, ci, ky, kx] * window
        if bias is not None:
            out[:, co] += bias[co]
    return out


def reference_conv_nd(x, weight, bias=None, stride=None, pads=None, dilation=None, groups=1,
                      mode="zeros") -> np.ndarray:
    """Cross-correlation of ``x`` (N, C, *spatial) with ``weight`` (C_out, C_in/groups, *k)
    for any number of axes, tap by tap; ``pads`` is (before, after) per axis. float64."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    axes = x.ndim - 2
    stride = stride or (1,) * axes
    dilation = dilation or (1,) * axes
    pads = pads or ((0, 0),) * axes
    sizes, kernel = x.shape[2:], weight.shape[2:]
    out_sizes = [(sizes[a] + sum(pads[a]) - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
                 for a in range(axes)]
    # One zero appended to every spatial axis, so that source index -1 reads a zero.
    source = np.zeros(x.shape[:2] + tuple(s + 1 for s in sizes))
    source[(slice(None), slice(None)) + tuple(slice(0, s) for s in sizes)] = x
    out_channels, group_in = weight.shape[:2]
    group_out = out_channels // groups
    out = np.zeros((x.shape[0], out_channels) + tuple(out_sizes))
    for taps in itertools.product(*(range(k) for k in kernel)):
        index = np.ix_(*(source_index(np.arange(out_sizes[a]) * stride[a] + taps[a] * dilation[a]
                                      - pads[a][0], sizes[a], mode) for a in range(axes)))
        for co in range(out_channels):
            for ci in range(group_in):
                channel = (co // group_out) * group_in + ci
                out[:, co] += weight[(co, ci) + taps] * source[:, channel][(slice(None),) + index]
    if bias is not None:
        out += np.asarray(bias, np.float64).reshape((-1,) + (1,) * axes)
    return out


def reference_conv_transpose(x, weight, bias=None, stride=None, padding=None,
                             output_padding=None, groups=1, dilation=None) -> np.ndarray:
    """Transposed convolution as a scatter: every input pixel adds ``x[i] * weight[ci, co]``
    to the outputs from ``i*stride - padding``, taps ``dilation`` apart. ``weight`` is
    (C_in, C_out/groups, *k) as in torch; float64. Shares nothing with a gather."""
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    axes = x.ndim - 2
    stride, padding = stride or (1,) * axes, padding or (0,) * axes
    output_padding, dilation = output_padding or (0,) * axes, dilation or (1,) * axes
    sizes, kernel = x.shape[2:], weight.shape[2:]
    out_sizes = [(sizes[a] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (kernel[a] - 1)
                 + output_padding[a] + 1 for a in range(axes)]
    in_channels, group_out = weight.shape[:2]
    group_in = in_channels // groups
    # Scatter into an uncropped canvas, then cut ``padding`` off the front of every axis.
    canvas_sizes = [max((sizes[a] - 1) * stride[a] + dilation[a] * (kernel[a] - 1) + 1,
                        padding[a] + out_sizes[a]) for a in range(axes)]
    canvas = np.zeros((x.shape[0], group_out * groups) + tuple(canvas_sizes))
    for n in range(x.shape[0]):
        for ci in range(in_channels):
            g = ci // group_in
            for position in itertools.product(*(range(s) for s in sizes)):
                value = x[(n, ci) + position]
                for taps in itertools.product(*(range(k) for k in kernel)):
                    target = tuple(position[a] * stride[a] + taps[a] * dilation[a]
                                   for a in range(axes))
                    for co in range(group_out):
                        canvas[(n, g * group_out + co) + target] += value * weight[(ci, co) + taps]
    out = canvas[(slice(None), slice(None))
                 + tuple(slice(padding[a], padding[a] + out_sizes[a]) for a in range(axes))]
    if bias is not None:
        out = out + np.asarray(bias, np.float64).reshape((-1,) + (1,) * axes)
    return out


def reference_pool(x, kind, kernel, stride, padding, dilation=None, ceil_mode=False,
                   count_include_pad=True, divisor_override=None) -> np.ndarray:
    """Max or average pooling of ``x`` (N, C, *spatial) window by window, with torch's rules
    written out: output count (ceil_mode drops a last window starting in the right padding),
    max over the taps inside the input (NaN wins, -inf if none), and the average divisor of
    ``AvgPool2d``'s CPU kernel (window clipped to the padded input, or to the input). float64."""
    x = np.asarray(x, np.float64)
    axes = x.ndim - 2
    dilation = dilation or (1,) * axes
    sizes = x.shape[2:]
    counts = []
    for a in range(axes):
        span = sizes[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1
        count = (-(-span // stride[a]) if ceil_mode else span // stride[a]) + 1
        if ceil_mode and (count - 1) * stride[a] >= sizes[a] + padding[a]:
            count -= 1
        counts.append(count)
    out = np.zeros(x.shape[:2] + tuple(counts))
    for position in itertools.product(*(range(c) for c in counts)):
        starts = [position[a] * stride[a] - padding[a] for a in range(axes)]
        taps = [[starts[a] + k * dilation[a] for k in range(kernel[a])
                 if 0 <= starts[a] + k * dilation[a] < sizes[a]] for a in range(axes)]
        window = x[(slice(None), slice(None)) + np.ix_(*taps)].reshape(x.shape[:2] + (-1,))
        if kind == "max":
            value = (np.full(x.shape[:2], -np.inf) if window.shape[-1] == 0
                     else np.where(np.isnan(window).any(-1), np.nan, window.max(-1, initial=-np.inf)))
        else:
            divisor = 1
            for a in range(axes):
                end = min(starts[a] + kernel[a], sizes[a] + padding[a])
                divisor *= (end - starts[a] if count_include_pad
                            else min(end, sizes[a]) - max(starts[a], 0))
            value = window.sum(-1) / (divisor_override or divisor)
        out[(slice(None), slice(None)) + position] = value
    return out
