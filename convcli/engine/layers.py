"""conv1d, conv3d and the transposed convolutions, all run by ``convolve`` (the 2-D engine).

* ``conv1d`` is ``conv2d`` on an image one row high: exact, and every 2-D path serves it.
* ``conv3d`` folds the depth axis into the channels: for output plane ``od`` the kD input
  planes its kernel reads (through ``border_map``, so every padding mode works in depth too)
  are stacked as channels, group-major, and the (C_out, C_in/g, kD, kH, kW) weight becomes
  (C_out, kD*C_in/g, kH, kW) in the same order. The N*D_out stacks, padded in H and W, are
  laid side by side in long rows (a mosaic), and one ``convolve`` call does the whole
  volume, by the direct, separable or FFT path.
* A transposed convolution is split into output phases (``geometry.transposed_phases``):
  along each axis the outputs ``o = r, r+S, r+2S, ...`` read the input through only the
  kernel taps with ``(r + P - k*D) % S == 0``, as a stride-1 correlation. So S^d stride-1
  convolutions with sub-kernels do exactly the real work; inserting S-1 zeros between
  inputs and correlating with the whole kernel would do S^d times as much.
"""

from __future__ import annotations

import itertools

import numpy as np

from .. import geometry
from ..errors import UsageError
from .api import _as_float32, border_map, check_bias, check_groups, check_weight, convolve

__all__ = ["conv1d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "convolve_nd"]

# conv3d lays its (padded) planes side by side in rows about this wide: the direct loops
# vectorise long rows, and on 64-wide planes a row's tail that runs scalar is half of it
# (8 -> 8 channels 3x3x3 on 64^3: 2.4x the time of the same work on 512-wide rows).
MOSAIC_WIDTH = 1024
SHAPES = {1: ("(C, L)", "(N, C, L)", "(C_out, C_in/groups, kL)"),
          2: ("(C, H, W)", "(N, C, H, W)", "(C_out, C_in/groups, kH, kW)"),
          3: ("(C, D, H, W)", "(N, C, D, H, W)", "(C_out, C_in/groups, kD, kH, kW)")}


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, flip=False, engine="auto") -> np.ndarray:
    """1-D cross-correlation with the arguments and results of ``torch.nn.functional.conv1d``.

    ``x`` is (C, L) or (N, C, L); ``weight`` (C_out, C_in/groups, kL); the other arguments
    are ``conv2d``'s (``padding``: an int, ``'same'`` or ``'valid'``). Returns float32 with
    the dimensionality of ``x``.

    Examples
    --------
    >>> conv1d(np.arange(5.0)[None], np.ones((1, 1, 3)), padding=1)
    array([[1., 3., 6., 9., 7.]], dtype=float32)
    """
    return _convolution(1, x, weight, bias, stride, padding, dilation, groups, padding_mode,
                        flip, engine)


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, flip=False, engine="auto") -> np.ndarray:
    """3-D cross-correlation with the arguments and results of ``torch.nn.functional.conv3d``.

    ``x`` is (C, D, H, W) or (N, C, D, H, W); ``weight`` (C_out, C_in/groups, kD, kH, kW);
    ``stride``, ``padding`` and ``dilation`` one int or three (D, H, W); ``padding`` may also
    be ``'same'`` (stride 1) or ``'valid'``. ``padding_mode`` and ``flip`` as in ``conv2d``
    (``flip`` reverses all three kernel axes); ``engine`` picks the 2-D path the folded
    volume takes. Returns float32 with the dimensionality of ``x``.
    """
    return _convolution(3, x, weight, bias, stride, padding, dilation, groups, padding_mode,
                        flip, engine)


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> np.ndarray:
    """``torch.nn.functional.conv_transpose1d`` on NumPy arrays: ``x`` (C, L) or (N, C, L),
    ``weight`` (C_in, C_out/groups, kL). Returns float32 with the dimensionality of ``x``."""
    return _transposed(1, x, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> np.ndarray:
    """``torch.nn.functional.conv_transpose2d`` on NumPy arrays (the gradient of ``conv2d``
    with respect to its input; "deconvolution").

    ``x`` is (C, H, W) or (N, C, H, W); ``weight`` (C_in, C_out/groups, kH, kW) as in torch;
    ``bias`` (C_out,) or None. Input pixel ``i`` spreads ``x[i] * weight`` onto the outputs
    from ``i*stride - padding``, taps ``dilation`` apart; the output is
    ``(H - 1)*stride - 2*padding + dilation*(kH - 1) + output_padding + 1`` high (and so
    wide), where ``output_padding`` (< max(stride, dilation)) picks among the sizes a strided
    ``conv2d`` maps to the same input size. Returns float32 with the dimensionality of ``x``.

    Examples
    --------
    >>> conv_transpose2d(np.ones((1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2)[0]
    array([[1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.]], dtype=float32)
    """
    return _transposed(2, x, weight, bias, stride, padding, output_padding, groups, dilation)


def conv_transpose3d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1) -> np.ndarray:
    """``torch.nn.functional.conv_transpose3d`` on NumPy arrays: ``x`` (C, D, H, W) or
    (N, C, D, H, W), ``weight`` (C_in, C_out/groups, kD, kH, kW). Returns float32 with the
    dimensionality of ``x``."""
    return _transposed(3, x, weight, bias, stride, padding, output_padding, groups, dilation)


def _batched(axes: int, x, what: str) -> tuple[np.ndarray, bool]:
    """``x`` as float32 (N, C, *spatial), and whether it came without the batch axis."""
    x = _as_float32(x, "x")
    if x.ndim not in (axes + 1, axes + 2):
        single, batch = SHAPES[axes][:2]
        raise UsageError(f"x must be {single} or {batch} for {what}; got shape {x.shape}")
    return (x[np.newaxis], True) if x.ndim == axes + 1 else (x, False)


def _weight(axes: int, weight, layout: str) -> np.ndarray:
    weight = _as_float32(weight, "weight")
    if weight.ndim != axes + 2:
        raise UsageError(f"weight must be {axes + 2}-D {layout}; got shape {weight.shape}")
    return weight


def _convolution(axes, x, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                 engine) -> np.ndarray:
    """conv1d and conv3d: parse torch-style arguments, check them, run ``convolve_nd``."""
    weight = _weight(axes, weight, SHAPES[axes][2])
    if flip:
        weight = np.ascontiguousarray(weight[(Ellipsis,) + (slice(None, None, -1),) * axes])
    stride = geometry.ntuple(stride, axes, "stride")
    dilation = geometry.ntuple(dilation, axes, "dilation")
    pads = geometry.resolve_padding_nd(padding, weight.shape[2:], stride=stride,
                                         dilation=dilation)
    x, single = _batched(axes, x, f"conv{axes}d")
    bias = check_weight(x.shape[1], weight.shape, bias, groups)
    border_map(1, (0, 0), padding_mode)                              # checks the mode's name
    geometry.conv_output_shape(x.shape[2:], weight.shape[2:], pads, stride=stride,
                               dilation=dilation)
    out, _ = convolve_nd(x, weight, bias, stride=stride, pads=pads, dilation=dilation,
                         groups=groups, padding_mode=padding_mode, engine=engine)
    return out[0] if single else out


def convolve_nd(x, weight, bias, *, stride, pads, dilation, groups=1, padding_mode="zeros",
                engine="auto", factors=None, row_map=None) -> tuple[np.ndarray, str]:
    """(output, engine path) of ``x`` (N, C, *spatial) with 1 to 3 spatial axes, checked
    arguments and explicit ``pads``, (before, after) per axis, through ``convolve``.
    ``factors`` (the separable column and row of a 2-D depthwise kernel) and ``row_map``
    (explicit padded rows of an image) go to ``convolve``."""
    axes = x.ndim - 2
    if row_map is not None and axes != 2:
        raise ValueError("row_map is for images (N, C, H, W)")      # a programming error
    if axes == 1:
        out, path = convolve(x[:, :, np.newaxis], weight[:, :, np.newaxis], bias,
                             stride=(1, stride[0]), padding=geometry.Padding(0, 0, *pads[0]),
                             dilation=(1, dilation[0]), groups=groups, padding_mode=padding_mode,
                             engine=engine)
        return out[:, :, 0], path
    if axes == 2:
        return convolve(x, weight, bias, stride=tuple(stride),
                        padding=geometry.Padding(*pads[0], *pads[1]), dilation=tuple(dilation),
                        groups=groups, padding_mode=padding_mode, factors=factors, engine=engine,
                        row_map=row_map)
    return _depth_folded(x, weight, bias, stride, pads, dilation, groups, padding_mode, engine)


def _depth_folded(x, weight, bias, stride, pads, dilation, groups, padding_mode, engine):
    """conv3d as one 2-D convolution over the stacks of the input planes each output plane
    reads (see the module docstring), laid side by side in rows of about ``MOSAIC_WIDTH``."""
    batch, channels, depth = x.shape[:3]
    out_channels, group_in, kernel_d = weight.shape[:3]
    out_dhw = geometry.conv_output_shape(x.shape[2:], weight.shape[2:], pads, stride=stride,
                                         dilation=dilation)
    depth_map, row_map, col_map = (border_map(size, pad, padding_mode)
                                   for size, pad in zip(x.shape[2:], pads))
    planes = depth_map[np.arange(out_dhw[0])[:, None] * stride[0]
                       + np.arange(kernel_d)[None, :] * dilation[0]]      # (D_out, kD); -1: zero
    padded = _gathered(_gathered(x, row_map, 3), col_map, 4)              # (N, C, D, Hp, Wp)
    # Each plane's slot is a whole number of strides wide, so its outputs start on a column.
    slot = -(-col_map.size // stride[2]) * stride[2]
    slots, tiles = _mosaic_layout(batch * out_dhw[0], slot)
    mosaic = np.zeros((tiles, groups, kernel_d, group_in, row_map.size, slots * slot), np.float32)
    grouped = padded.reshape(batch, groups, group_in, depth, row_map.size, col_map.size)
    for (n, od), kd in itertools.product(np.ndindex(batch, out_dhw[0]), range(kernel_d)):
        tile, place = divmod(n * out_dhw[0] + od, slots)
        if planes[od, kd] >= 0:
            mosaic[tile, :, kd, :, :, place * slot:place * slot + col_map.size] = \
                grouped[n, :, :, planes[od, kd]]
    folded = weight.transpose(0, 2, 1, 3, 4).reshape(out_channels, kernel_d * group_in,
                                                     *weight.shape[3:])
    result, path = convolve(mosaic.reshape(tiles, channels * kernel_d, row_map.size, slots * slot),
                            folded, bias, stride=stride[1:], dilation=dilation[1:], groups=groups,
                            engine=engine)
    out = np.empty((batch, out_channels) + out_dhw, np.float32)
    step = slot // stride[2]
    for n, od in np.ndindex(batch, out_dhw[0]):
        tile, place = divmod(n * out_dhw[0] + od, slots)
        out[n, :, od] = result[tile, :, :, place * step:place * step + out_dhw[2]]
    return out, path


def _gathered(x: np.ndarray, index_map: np.ndarray, axis: int) -> np.ndarray:
    """``x`` padded along ``axis`` by a ``border_map`` (-1: zero)."""
    if index_map.size == x.shape[axis] and (index_map == np.arange(x.shape[axis])).all():
        return x
    out = np.take(x, np.maximum(index_map, 0), axis=axis)
    out[(slice(None),) * axis + (index_map < 0,)] = 0.0
    return out


def _mosaic_layout(planes: int, slot: int) -> tuple[int, int]:
    """(planes per mosaic row, mosaic rows) for ``planes`` slots ``slot`` columns wide: rows of
    about ``MOSAIC_WIDTH`` columns, filled as evenly as the count allows."""
    most = max(1, min(planes, MOSAIC_WIDTH // slot))
    tiles = -(-planes // most)
    return -(-planes // tiles), tiles


def _transposed(axes, x, weight, bias, stride, padding, output_padding, groups, dilation):
    """conv_transpose{1,2,3}d: check torch's rules, then one stride-1 convolution per output
    phase (``geometry.transposed_phases``), each written into its strided slice."""
    layout = "(C_in, C_out/groups, " + ", ".join(f"k{a[0].upper()}" for a in
                                                  geometry.AXIS_NAMES[axes]) + ")"
    weight = _weight(axes, weight, layout)
    stride = geometry.ntuple(stride, axes, "stride")
    dilation = geometry.ntuple(dilation, axes, "dilation")
    if isinstance(padding, str):
        raise UsageError(f"padding must be an integer or {axes} integers for a transposed "
                         f"convolution (as in PyTorch); got {padding!r}")
    padding = geometry.ntuple(padding, axes, "padding", minimum=0)
    output_padding = geometry.ntuple(output_padding, axes, "output_padding", minimum=0)
    x, single = _batched(axes, x, f"conv_transpose{axes}d")
    check_groups(groups)
    in_channels, group_out = weight.shape[:2]
    if min(weight.shape) < 1:
        raise UsageError(f"weight has an empty dimension: shape {weight.shape}")
    if in_channels % groups:
        raise UsageError(f"groups={groups} must divide the input channels ({in_channels}) of "
                         f"weight {weight.shape}")
    if x.shape[1] != in_channels:
        raise UsageError(f"weight {weight.shape} expects {in_channels} input channels "
                         f"(C_in first, as in PyTorch); x has {x.shape[1]}")
    out_channels = group_out * groups
    bias = check_bias(bias, out_channels)
    kernel, sizes = weight.shape[2:], x.shape[2:]
    out_shape = geometry.transposed_output_shape(sizes, kernel, stride=stride, padding=padding,
                                                 dilation=dilation, output_padding=output_padding)
    # (C_in, C_out/g, *k) -> (C_out, C_in/g, *k): the weight of the equivalent convolution.
    as_conv = weight.reshape(groups, in_channels // groups, group_out, *kernel).swapaxes(1, 2)
    as_conv = as_conv.reshape(out_channels, in_channels // groups, *kernel)
    out = np.empty((x.shape[0], out_channels) + out_shape, np.float32)
    per_axis = [geometry.transposed_phases(*args) for args in
                zip(sizes, kernel, stride, padding, dilation, output_padding)]
    for phases in itertools.product(*per_axis):
        target = out[(slice(None), slice(None))
                     + tuple(slice(p.offset, None, s) for p, s in zip(phases, stride))]
        window = _phase_window(phases, sizes)
        if window is None:            # no tap lands here, or every one reads padding
            target[...] = bias.reshape((-1,) + (1,) * axes)
            continue
        crop, pads = window
        taps = np.ix_(*(p.taps for p in phases))
        target[...] = convolve_nd(x[(slice(None), slice(None)) + crop],
                                  np.ascontiguousarray(as_conv[(slice(None), slice(None)) + taps]),
                                  bias, stride=(1,) * axes, pads=pads,
                                  dilation=tuple(p.step for p in phases), groups=groups)[0]
    return out[0] if single else out


def _phase_window(phases, sizes):
    """(the input slice per axis a phase reads, the zero padding around it), or None when
    the phase reads no input pixel."""
    crop, pads = [], []
    for phase, size in zip(phases, sizes):
        if not phase.taps:
            return None
        first, last = max(phase.first_input, 0), min(phase.last_input, size - 1)
        if first > last:
            return None
        crop.append(slice(first, last + 1))
        pads.append((first - phase.first_input, phase.last_input - last))
    return tuple(crop), tuple(pads)
