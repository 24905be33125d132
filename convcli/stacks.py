"""Running layers on arrays: what ``convcli apply`` does with ``-k`` and ``--layer``.

``run_stack`` takes a (C, *spatial) array through a list of ``Layer``s. It first asks
``explain_stack`` for every layer's padding, channel plan and output shape (so the shapes
``explain`` prints are the shapes made here, and a bad stack stops before any work), then
makes one engine call per layer. ``filter_operation`` is how a named kernel runs, alone
(``-k``) or as a conv layer of a stack: 2-D kernels one channel at a time, responses
combined (gradient magnitude, compass maximum).

``run_layer`` also runs a layer of an image on some of its rows (``rows``): the output rows
asked for, from the input rows they read (``input_rows_read``), which ``convcli.strips``
chains through a stack.
"""

from __future__ import annotations

import functools

import math
import time

import numpy as np

from . import engine, geometry
from .engine import border_map, choose_path, convolve_nd
from .errors import FileFailure, UsageError
from .explain import Explanation, explain_stack
from .kernels import Kernel, Operation
from .layers import Layer, channel_plan, kernel_layout

__all__ = ["LayerRun", "run_stack", "run_layer", "filter_operation", "layer_weights",
           "layer_row_map", "input_rows_read", "engine_paths"]


class LayerRun(dict):
    """One layer's report entry: ``layer``, ``output_shape``, ``ms``, ``engine``, and
    ``compile_ms`` when the layer waited for Numba to compile (left out of ``ms``)."""


def run_stack(pixels: np.ndarray, layers: list[Layer], *, pad_mode: str, flip: bool = False,
              engine_path: str = "auto", path=None,
              on_stage=None) -> tuple[np.ndarray, Explanation, list[LayerRun]]:
    """(output, the stack's explanation, one report entry per layer) for ``pixels``.

    ``on_stage(number, title, maps)``, if given, sees every layer's output (``--save-stages``).

    A stack that does not fit this input (too small for a window, channels that do not
    chain) raises ``FileFailure`` naming the file and the layer, before any layer runs.
    """
    try:
        explanation = explain_stack(pixels.shape, layers)
    except UsageError as error:
        raise FileFailure(f"{path}: {error}") from None
    runs, x = [], pixels
    for layer, row in zip(layers, explanation.layers):
        layer = layer.for_axes(pixels.ndim - 1)
        started, compiled_before = time.perf_counter(), engine.compile_seconds()
        x, path_taken = run_layer(layer, row, x, pad_mode=pad_mode, flip=flip,
                                  engine_path=engine_path)
        compile_ms = round((engine.compile_seconds() - compiled_before) * 1e3, 3)
        if list(x.shape) != row.output_shape:           # a bug: explain and apply disagree
            raise AssertionError(f"layer {row.title} made {list(x.shape)}, explain says "
                                 f"{row.output_shape}")
        elapsed_ms = (time.perf_counter() - started) * 1e3
        runs.append(LayerRun(layer=row.title, output_shape=list(x.shape), engine=path_taken,
                             ms=round(max(elapsed_ms - compile_ms, 0.0), 3),
                             **({"compile_ms": compile_ms} if compile_ms else {})))
        if on_stage is not None:
            on_stage(len(runs), row.title, x)
    return x, explanation, runs


def run_layer(layer: Layer, row: Explanation, x: np.ndarray, *, pad_mode: str, flip: bool,
              engine_path="auto", rows=None) -> tuple[np.ndarray, str]:
    """One engine call: (the layer's output, the engine path or operation that ran).

    ``engine_path`` is one path, or one per kernel of a kernel spec (``engine_paths``).
    ``rows`` = (first, stop, held) asks an image layer for its output rows [first, stop)
    only, ``x`` holding only the input rows ``held`` (sorted; at least those the outputs
    read: ``input_rows_read``); the result is those rows of the whole layer's output.
    """
    axes = x.ndim - 1
    kind = layer.kind
    row_map = None
    if rows and kind == "conv":
        row_map = _held_row_map(layer, row, pad_mode, rows)
        if x.shape[1] == 0:      # these outputs read padding only: one row, never read
            x = np.zeros((x.shape[0], 1) + x.shape[2:], np.float32)
    if kind == "conv" and layer.operation is not None:
        maps, paths = filter_operation(x, layer.operation, pad_mode=layer.border_mode(pad_mode),
                                       flip=flip, stride=layer.stride, pads=row.pads,
                                       dilation=layer.dilation, engine_path=engine_path,
                                       row_map=row_map)
        if layer.bias_values is not None:              # conv:kernel=SPEC,bias=B
            maps += np.asarray(layer.bias_values, np.float32).reshape((-1,) + (1,) * axes)
        return maps, "+".join(dict.fromkeys(paths))
    if kind == "conv":
        weight, bias = _conv_weights(layer, row, flip)
        out, path = convolve_nd(x[np.newaxis], weight, bias, groups=row.groups,
                                stride=layer.stride, pads=row.pads, dilation=layer.dilation,
                                padding_mode=layer.border_mode(pad_mode), engine=engine_path,
                                row_map=row_map)
        return out[0], path
    if kind == "tconv":
        weight, bias = layer_weights(layer, x.shape[0], row.output_shape[0], row.groups)
        function = getattr(engine, f"conv_transpose{axes}d")
        return function(x, weight, bias, stride=layer.stride, padding=tuple(p[0] for p in row.pads),
                        output_padding=layer.output_padding, groups=row.groups,
                        dilation=layer.dilation), "tconv"
    if kind == "pool":
        padding = tuple(p[0] for p in row.pads)
        if rows:
            return _pool_held_rows(layer, row, x, rows), f"{layer.pool_mode}-pool"
        if layer.pool_mode == "max":
            return getattr(engine, f"max_pool{axes}d")(
                x, layer.kernel, layer.stride, padding, layer.dilation,
                ceil_mode=layer.ceil_mode), "max-pool"
        return getattr(engine, f"avg_pool{axes}d")(
            x, layer.kernel, layer.stride, padding, ceil_mode=layer.ceil_mode,
            count_include_pad=layer.count_include_pad), "avg-pool"
    if kind == "leaky-relu":
        return engine.leaky_relu(x, layer.negative_slope), kind
    if kind in ("relu", "sigmoid", "tanh"):
        return getattr(engine, kind)(x), kind
    if kind == "abs":
        return np.abs(x), kind
    if kind == "shuffle":
        return engine.channel_shuffle(x, layer.groups, spatial_dims=axes), kind
    if kind == "bias":
        values = np.asarray(layer.bias_values, np.float32).reshape((-1,) + (1,) * axes)
        return (x + values).astype(np.float32, copy=False), kind
    raise ValueError(f"layer kind {kind!r} cannot run")    # fc: refused by check_runnable


def _conv_weights(layer: Layer, row: Explanation, flip: bool):
    """(weight, bias) of a conv layer with weights, flipped for a true convolution."""
    weight, bias = layer_weights(layer, row.input_shape[0], row.output_shape[0], row.groups)
    if flip:
        axes = len(row.input_shape) - 1
        weight = np.ascontiguousarray(weight[(Ellipsis,) + (slice(None, None, -1),) * axes])
    return weight, bias


# --- a layer of an image on some of its rows (convcli.strips) ----------------------------------

def layer_row_map(layer: Layer, row: Explanation, pad_mode: str) -> np.ndarray | None:
    """For each padded input row of an image's conv or pool layer, the input row it reads
    (-1: padding; a pool never reads it); None for the layers that keep each row where it is.
    """
    height = row.input_shape[1]
    (before, after), kernel, stride, dilation = (row.pads[0], layer.kernel[0], layer.stride[0],
                                                 layer.dilation[0])
    if layer.kind == "conv":
        return _shared_border_map(height, before, after, layer.border_mode(pad_mode))
    if layer.kind == "pool":
        size = geometry.pool_padded_size(height, kernel, stride, before, dilation,
                                         layer.ceil_mode)
        return _shared_border_map(height, before, size - height - before, "zeros")
    if layer.kind in ("tconv", "fc"):
        raise ValueError(f"a {layer.kind} layer has no row map")     # a programming error
    return None


@functools.lru_cache(maxsize=32)
def _shared_border_map(height: int, before: int, after: int, mode: str) -> np.ndarray:
    """``border_map``, made once per geometry and read-only: each strip of an image asks for
    its layers' row maps, and one O(H) map per strip made planning a tall image O(H^2)."""
    row_map = border_map(height, (before, after), mode)
    row_map.flags.writeable = False
    return row_map


def input_rows_read(layer: Layer, row: Explanation, pad_mode: str,
                    outputs: np.ndarray) -> np.ndarray:
    """The input rows (sorted) that the output rows ``outputs`` of an image layer read."""
    row_map = layer_row_map(layer, row, pad_mode)
    if row_map is None:
        return outputs
    read = row_map[geometry.padded_positions(outputs, layer.kernel[0], layer.stride[0],
                                             layer.dilation[0])]
    return np.unique(read[read >= 0])


def _held_row_map(layer: Layer, row: Explanation, pad_mode: str, rows) -> np.ndarray:
    """The row map of output rows [first, stop) of a conv layer, into the rows ``held``.
    The padded rows between the taps (dilation, or a stride above the kernel's span) are
    read by none of these outputs: they map to -1, as they need not be held."""
    first, stop, held = rows
    kernel, stride, dilation = layer.kernel[0], layer.stride[0], layer.dilation[0]
    start, end = geometry.padded_span(first, stop, kernel, stride, dilation)
    read = geometry.padded_positions(np.arange(first, stop), kernel, stride, dilation) - start
    wanted = np.full(end - start, -1, np.int64)
    wanted[read] = layer_row_map(layer, row, pad_mode)[start + read]
    return np.where(wanted >= 0, _positions(held, wanted), -1)


def _pool_held_rows(layer: Layer, row: Explanation, x: np.ndarray, rows) -> np.ndarray:
    """Output rows [first, stop) of a pool layer from ``x``, the input rows ``held``: the
    rows its windows span, as one block (rows no window reads, between dilated taps, may be
    missing: zeros stand in for them)."""
    first, stop, held = rows
    height = row.input_shape[1]
    low, high = geometry.pool_input_rows(first, stop, height, layer.kernel[0], layer.stride[0],
                                         row.pads[0][0], layer.dilation[0])
    inside = held[(held >= low) & (held < high)]
    at = _positions(held, inside)
    if inside.size == high - low:                     # every row: a view of x
        block = x[:, at[0]:at[0] + inside.size]
    else:
        block = np.zeros((x.shape[0], high - low) + x.shape[2:], np.float32)
        block[:, inside - low] = x[:, at]
    return engine.pool_rows(block, layer.pool_mode, layer.kernel, layer.stride,
                            tuple(p[0] for p in row.pads), layer.dilation,
                            ceil_mode=layer.ceil_mode, count_include_pad=layer.count_include_pad,
                            height=height, out_rows=(first, stop), first_row=low)


def _positions(held: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where the rows ``wanted`` (-1 aside) sit in ``held``; each must be there."""
    at = np.minimum(np.searchsorted(held, wanted), max(held.size - 1, 0))
    missing = (wanted >= 0) & ((held[at] if held.size else -1) != wanted)
    if missing.any():
        raise ValueError(f"rows {wanted[missing][:5].tolist()} are needed but not held")
    return at


def engine_paths(layer: Layer, row: Explanation, *, flip: bool, engine_path: str):
    """The engine path each convolution of a conv layer takes on the layer's whole input
    (one for weights, one per kernel of a spec), decided once so that every strip of an
    image takes it; ``engine_path`` itself for the other layers."""
    if layer.kind != "conv":
        return engine_path
    channels, height, width = row.input_shape
    pads = geometry.Padding(*row.pads[0], *row.pads[1])
    if layer.operation is None:
        weight, _ = _conv_weights(layer, row, flip)
        return choose_path((1, channels, height, width), weight, stride=layer.stride,
                           padding=pads, dilation=layer.dilation, groups=row.groups,
                           engine=engine_path)
    part, arguments = _operation_parts(row.input_shape, layer.operation, flip, None)
    return tuple(choose_path((1, part, height, width), weight, stride=layer.stride,
                             padding=pads, dilation=layer.dilation, groups=groups,
                             factors=factors, engine=engine_path)
                 for weight, _, factors, groups in arguments)


def layer_weights(layer: Layer, channels: int, out_channels: int,
                  groups: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(float32 weight in the engine's layout, bias or None) of a conv/tconv layer.

    Depthwise weights (as many levels as the input has axes) become one kernel per channel;
    ``init=random`` draws PyTorch's default ``kaiming_uniform(a=sqrt(5))``: uniform in
    +-1/sqrt(fan_in), the bias too, from ``seed``.
    """
    kernel = tuple(layer.kernel)
    if layer.weights is not None:
        weight = np.asarray(layer.weights, np.float32)
        if kernel_layout(weight.ndim, len(kernel), "weights"):
            weight = np.broadcast_to(weight, (channels, 1) + weight.shape)
    else:                                           # init=random
        shape = ((channels, out_channels // groups) if layer.kind == "tconv"
                 else (out_channels, channels // groups)) + kernel
        bound = 1.0 / math.sqrt(shape[1] * math.prod(kernel))
        generator = np.random.default_rng(layer.seed)
        weight = generator.uniform(-bound, bound, shape).astype(np.float32)
        if layer.bias and layer.bias_values is None:
            bias = generator.uniform(-bound, bound, out_channels).astype(np.float32)
            return np.ascontiguousarray(weight), bias
    bias = None
    if layer.bias_values is not None:              # 1 or out_channels values (explain checks)
        bias = np.broadcast_to(np.asarray(layer.bias_values, np.float32), (out_channels,)).copy()
    return np.ascontiguousarray(weight, np.float32), bias


def filter_operation(pixels: np.ndarray, operation: Operation, *, pad_mode: str, flip: bool,
                     stride, pads, dilation, engine_path="auto", into_input: bool = False,
                     path=None, row_map=None) -> tuple[np.ndarray, list[str]]:
    """A named kernel's (C_out, *spatial_out) response (+ the operation's bias) and the
    engine paths that ran.

    Kernels with one level per axis act on each channel on its own, so the channels go
    through one at a time: besides the input and the result, only one channel's responses
    are in memory. With ``into_input``, a result of the input's size is stored over the
    channels already done. ``engine_path`` is one path for every kernel or one per kernel;
    ``row_map`` gives an image's padded rows explicitly (``engine.convolve``).
    """
    part_channels, arguments = _operation_parts(pixels.shape, operation, flip, path)
    parts = [pixels[c:c + part_channels] for c in range(0, pixels.shape[0], part_channels)]
    kernel_paths = ((engine_path,) * len(arguments) if isinstance(engine_path, str)
                    else engine_path)
    maps, paths = None, []
    for index, part in enumerate(parts):
        total = None
        for (weight, bias, factors, groups), kernel_path in zip(arguments, kernel_paths):
            response, taken = convolve_nd(part[np.newaxis], weight, bias, groups=groups,
                                          factors=factors, stride=stride, pads=pads,
                                          dilation=dilation, padding_mode=pad_mode,
                                          engine=kernel_path, row_map=row_map)
            total = _combine(total, response[0], operation.combine)
            paths.append(taken)
            del response
        if operation.combine == "magnitude":
            np.sqrt(total, out=total)
        if operation.bias:                            # apply --bias: after combining
            total += np.float32(operation.bias)
        if len(parts) == 1:
            return total, paths
        if maps is None:
            fits = into_input and total.shape[1:] == pixels.shape[1:] and pixels.flags.writeable
            maps = pixels if fits else np.empty((len(parts),) + total.shape[1:], np.float32)
        maps[index] = total[0]
    return maps, paths


def _operation_parts(shape, operation: Operation, flip: bool, path):
    """(channels per part, engine arguments per kernel): one channel at a time when every
    kernel has one level per axis (depthwise), else all channels at once."""
    axes = len(shape) - 1
    depthwise = all(kernel_layout(k.weights.ndim, axes, f"kernel {operation.name}")
                    for k in operation.kernels)
    part = 1 if depthwise else shape[0]
    return part, [_operation_weights(kernel, part, axes, flip, path)
                  for kernel in operation.kernels]          # the same for every part


def _operation_weights(kernel: Kernel, channels: int, axes: int, flip: bool, path):
    """Engine arguments (weight, bias, factors, groups) for a named ``kernel``."""
    groups, out_channels = channel_plan(kernel, channels, path, axes)
    flipped = (Ellipsis,) + (slice(None, None, -1),) * axes
    weights = kernel.weights[flipped] if flip else kernel.weights
    factors = None
    if groups == channels and weights.ndim == axes:          # one kernel for every channel
        weight = np.broadcast_to(weights, (channels, 1) + weights.shape)
        if kernel.factors is not None:
            column, row = (f[::-1] if flip else f for f in kernel.factors)
            factors = (np.broadcast_to(column, (channels, column.size)),
                       np.broadcast_to(row, (channels, row.size)))
    else:
        weight = weights
    bias = None
    if kernel.bias is not None:
        bias = np.broadcast_to(np.asarray(kernel.bias, np.float32), (out_channels,))
    return np.ascontiguousarray(weight, np.float32), bias, factors, groups


def _combine(total: np.ndarray | None, response: np.ndarray, combine: str) -> np.ndarray:
    """Fold one kernel's response into the operation's result, in place (one image in memory
    however many kernels): the response itself, the sum of squares (the caller takes the
    square root at the end: gradient magnitude), or the maximum (compass operators)."""
    if combine == "magnitude":
        np.multiply(response, response, out=response)
    elif combine not in ("single", "max"):
        raise ValueError(f"unknown combine rule {combine!r}")  # a programming error
    if total is None:
        return response
    if combine == "max":
        return np.maximum(total, response, out=total)
    if combine == "magnitude":
        return np.add(total, response, out=total)
    raise ValueError("a single-kernel operation got a second kernel")

