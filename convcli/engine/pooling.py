"""Max and average pooling in 1, 2 and 3 dimensions, with PyTorch's names and results.

Both are separable, so each runs one compiled pass per axis (``_pool_loops.pool_axis``),
outermost axis first: the passes over whole rows are vectorised and shrink the data before
the scalar pass along the rows. The padding is never materialised: a max ignores it (it is
-inf in PyTorch) and an average divides by PyTorch's count (``geometry.avg_pool_divisors``),
which for a box is the product of the per-axis counts.
"""

from __future__ import annotations

import numpy as np

from .. import geometry
from ..choices import POOL_MODES
from ..errors import UsageError, check_choice
from . import _runtime
from .api import _as_float32

__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d"]

LAYOUTS = {1: "(C, L) or (N, C, L)", 2: "(C, H, W) or (N, C, H, W)",
           3: "(C, D, H, W) or (N, C, D, H, W)"}
# The NumPy time per tap and pixel that ``_runtime.use_numpy`` assumed for every call before
# the convolutions' NumPy path was rewritten; pooling's twin (``pool_axis_numpy``) was not,
# so it keeps the figure. (It measures 2.5-4.8 ns per x.size * sum(kernel) on 512^2 and
# 2048^2 RGB, 3x3 stride 2: the figure is low for it.)
NUMPY_NS_PER_TAP = 0.5


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> np.ndarray:
    """``torch.nn.functional.max_pool1d`` on (C, L) or (N, C, L); float32 out."""
    return _max_pool(1, x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> np.ndarray:
    """The largest value in each window, as ``torch.nn.functional.max_pool2d``.

    ``x`` is (C, H, W) or (N, C, H, W). ``kernel_size``, ``stride`` (default: the kernel
    size), ``padding`` (at most half the kernel; the padding never wins) and ``dilation``
    are one int or an (H, W) pair. ``ceil_mode`` rounds the output size up, keeping only
    windows that start inside the input or the left padding. A NaN in a window makes its
    result NaN. Returns float32 with the dimensionality of ``x``.

    Examples
    --------
    >>> max_pool2d(np.arange(16.0).reshape(1, 4, 4), 2)
    array([[[ 5.,  7.],
            [13., 15.]]], dtype=float32)
    """
    return _max_pool(2, x, kernel_size, stride, padding, dilation, ceil_mode)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False) -> np.ndarray:
    """``torch.nn.functional.max_pool3d`` on (C, D, H, W) or (N, C, D, H, W); float32 out."""
    return _max_pool(3, x, kernel_size, stride, padding, dilation, ceil_mode)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True) -> np.ndarray:
    """``torch.nn.functional.avg_pool1d`` on (C, L) or (N, C, L); float32 out."""
    return _avg_pool(1, x, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None) -> np.ndarray:
    """The mean of each window, as ``torch.nn.functional.avg_pool2d``.

    Arguments as in ``max_pool2d`` (no dilation). The divisor is PyTorch's: the window's
    pixels inside the padded image (``count_include_pad=True``) or inside the image alone
    (False); with ``ceil_mode`` a last window reaching past the padding counts only the part
    that lies within it. ``divisor_override`` divides every sum by that number instead.
    Returns float32 with the dimensionality of ``x``.

    Examples
    --------
    >>> avg_pool2d(np.ones((1, 3, 3)), 2, padding=1)[0]
    array([[0.25, 0.5 ],
           [0.5 , 1.  ]], dtype=float32)
    """
    return _avg_pool(2, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None) -> np.ndarray:
    """``torch.nn.functional.avg_pool3d`` on (C, D, H, W) or (N, C, D, H, W); float32 out."""
    return _avg_pool(3, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override)


def pool_rows(x, mode, kernel_size, stride=None, padding=0, dilation=1, *, ceil_mode=False,
              count_include_pad=True, height, out_rows, first_row=0) -> np.ndarray:
    """The output rows ``out_rows`` = (start, stop) of ``max_pool2d`` (``mode`` 'max') or
    ``avg_pool2d`` ('avg', no dilation) on an image ``height`` rows high, the same numbers as
    those rows of the whole image's result.

    ``x`` (C, n, W) holds the image's rows [first_row, first_row + n), at least every row
    those outputs read (``geometry.pool_input_rows``). Used to pool an image in strips.
    """
    check_choice("mode", mode, POOL_MODES)
    rows = (height, *out_rows, first_row)
    if mode == "max":
        return _max_pool(2, x, kernel_size, stride, padding, dilation, ceil_mode, rows)
    if geometry.ntuple(dilation, 2, "dilation") != (1, 1):
        raise UsageError("average pooling has no dilation (as in PyTorch)")
    return _avg_pool(2, x, kernel_size, stride, padding, ceil_mode, count_include_pad, None, rows)


def _max_pool(axes, x, kernel_size, stride, padding, dilation, ceil_mode, rows=None):
    x, kernel, stride, padding = _arguments(axes, x, kernel_size, stride, padding)
    dilation = geometry.ntuple(dilation, axes, "dilation")
    out_shape = geometry.pool_output_shape(_input_sizes(x, axes, rows), kernel, stride=stride,
                                           padding=padding, dilation=dilation,
                                           ceil_mode=bool(ceil_mode))
    no_scale = np.ones(0, np.float32)
    out_shape, padding, scales = _rows_asked(out_shape, kernel, stride, padding, dilation,
                                             [no_scale] * axes, x.shape[-axes], rows)
    return _separable(x, out_shape, kernel, stride, padding, dilation, True, scales)


def _avg_pool(axes, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, rows=None):
    x, kernel, stride, padding = _arguments(axes, x, kernel_size, stride, padding)
    if axes == 3:                       # PyTorch's avg_pool3d (only) checks this, padding aside
        for axis, size, k in zip(geometry.AXIS_NAMES[3], x.shape[-3:], kernel):
            if size < k:
                raise UsageError(f"input {axis} {size} is smaller than the kernel ({k}); "
                                 f"avg_pool3d needs at least {k}, as in PyTorch")
    sizes = _input_sizes(x, axes, rows)
    out_shape = geometry.pool_output_shape(sizes, kernel, stride=stride,
                                           padding=padding, dilation=(1,) * axes,
                                           ceil_mode=bool(ceil_mode))
    if divisor_override is not None:
        integer = isinstance(divisor_override, (int, np.integer))
        if isinstance(divisor_override, bool) or not integer or divisor_override == 0:
            raise UsageError(f"divisor_override must be a non-zero integer or None; "
                             f"got {divisor_override!r}")
        scales = [np.ones(n, np.float32) for n in out_shape]
        scales[-1] /= divisor_override
    else:
        scales = [1.0 / np.array(geometry.avg_pool_divisors(
            size, k, s, p, bool(ceil_mode), bool(count_include_pad)), np.float64)
            for size, k, s, p in zip(sizes, kernel, stride, padding)]
    out_shape, padding, scales = _rows_asked(out_shape, kernel, stride, padding, (1,) * axes,
                                             [scale.astype(np.float32) for scale in scales],
                                             x.shape[-axes], rows)
    return _separable(x, out_shape, kernel, stride, padding, (1,) * axes, False, scales)


def _input_sizes(x, axes, rows) -> tuple[int, ...]:
    """The spatial sizes of the whole input: ``x``'s, or the image's height for ``rows``."""
    return tuple(x.shape[-axes:]) if rows is None else (rows[0],) + tuple(x.shape[-axes + 1:])


def _rows_asked(out_shape, kernel, stride, padding, dilation, scales, held, rows):
    """(output shape, padding, scales) for ``_separable``: the whole output's, or, for
    ``rows`` = (height, start, stop, first), those of output rows [start, stop) from the
    ``held`` rows of ``x``, image rows from ``first`` on. Window ``o`` of these outputs
    starts at image row ``(start + o)*S - P``, which is row ``o*S - (P + first - start*S)``
    of ``x``: that is the padding along the rows (below 0 when ``x`` starts before it).
    """
    if rows is None:
        return out_shape, padding, scales
    height, start, stop, first = rows
    needed = geometry.pool_input_rows(start, stop, height, kernel[0], stride[0], padding[0],
                                      dilation[0])
    if not (0 <= start < stop <= out_shape[0] and first <= needed[0]
            and needed[1] <= first + held <= height):
        raise ValueError(f"output rows [{start}, {stop}) of {out_shape[0]} read the input rows "
                         f"[{needed[0]}, {needed[1]}); given [{first}, {first + held}) of "
                         f"{height}")                                # a programming error
    return ((stop - start,) + tuple(out_shape[1:]),
            (padding[0] + first - start * stride[0],) + tuple(padding[1:]),
            [scales[0][start:stop]] + list(scales[1:]))


def _arguments(axes, x, kernel_size, stride, padding):
    """Checked float32 ``x`` and the kernel, stride (default: the kernel) and padding."""
    x = _as_float32(x, "x")
    if x.ndim not in (axes + 1, axes + 2) or min(x.shape, default=0) < 1:
        raise UsageError(f"x must be a non-empty {LAYOUTS[axes]} array for {axes}-D pooling; "
                         f"got shape {x.shape}")
    kernel = geometry.ntuple(kernel_size, axes, "kernel_size")
    stride = kernel if stride is None else geometry.ntuple(stride, axes, "stride")
    return x, kernel, stride, geometry.ntuple(padding, axes, "padding", minimum=0)


def _separable(x, out_shape, kernel, stride, padding, dilation, take_max, scales):
    """One pooling pass per spatial axis, outermost first: the compiled ``pool_axis``, or
    its NumPy twin when ``_runtime.use_numpy`` says so (the conv path's rule)."""
    use_numpy = _runtime.use_numpy(x.size * sum(kernel), NUMPY_NS_PER_TAP)
    if not use_numpy:
        from ._pool_loops import pool_axis
    axes = len(out_shape)
    lead = x.shape[:-axes]
    current = x.reshape((-1,) + x.shape[-axes:])
    for axis in range(axes):
        shape = current.shape
        outer = int(np.prod(shape[:axis + 1]))
        inner = int(np.prod(shape[axis + 2:]))
        out = np.empty((outer, out_shape[axis], inner), np.float32)
        arguments = (current.reshape(outer, shape[axis + 1], inner), out, kernel[axis],
                     stride[axis], padding[axis], dilation[axis], take_max, scales[axis])
        if use_numpy:
            pool_axis_numpy(*arguments)
        else:  # tasks: rows of ``outer`` when inner == 1, else (row, output) pairs
            _runtime.run_tasks(pool_axis, outer if inner == 1 else outer * out_shape[axis],
                               *arguments)
        current = out.reshape(shape[:axis + 1] + (out_shape[axis],) + shape[axis + 2:])
    return current.reshape(lead + out_shape)


def pool_axis_numpy(x, out, kernel, stride, padding, dilation, take_max, scale):
    """``_pool_loops.pool_axis`` in NumPy: one vectorised step per kernel tap, over every
    window it falls inside (same results: padding never wins, NaN wins)."""
    length, out_length = x.shape[1], out.shape[1]
    out[...] = -np.inf if take_max else 0.0
    starts = np.arange(out_length) * stride - padding
    for k in range(kernel):
        index = starts + k * dilation
        inside = (index >= 0) & (index < length)
        if not inside.any():
            continue
        taken, current = x[:, index[inside]], out[:, inside]
        if take_max:
            out[:, inside] = np.where((taken > current) | np.isnan(taken), taken, current)
        else:
            out[:, inside] = current + taken
    if not take_max:
        out *= scale[np.newaxis, :, np.newaxis]
