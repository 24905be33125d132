"""Running layers on arrays: what ``convcli apply`` does with ``-k`` and ``--layer``.

``run_stack`` takes a (C, *spatial) array through a list of ``Layer``s. It first asks
``explain_stack`` for every layer's padding, channel plan and output shape (so the shapes
``explain`` prints are the shapes made here, and a bad stack stops before any work), then
makes one engine call per layer. ``filter_operation`` is how a named kernel runs, alone
(``-k``) or as a conv layer of a stack: 2-D kernels one channel at a time, responses
combined (gradient magnitude, compass maximum).
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import engine
from .engine import convolve_nd
from .errors import FileFailure, UsageError
from .explain import Explanation, explain_stack
from .kernels import Kernel, Operation
from .layers import Layer, channel_plan, kernel_layout

__all__ = ["LayerRun", "run_stack", "filter_operation", "layer_weights"]


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
        x, path_taken = _run_layer(layer, row, x, pad_mode=pad_mode, flip=flip,
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


def _run_layer(layer: Layer, row: Explanation, x: np.ndarray, *, pad_mode: str, flip: bool,
               engine_path: str) -> tuple[np.ndarray, str]:
    """One engine call: (the layer's output, the engine path or operation that ran)."""
    axes = x.ndim - 1
    kind = layer.kind
    if kind == "conv" and layer.operation is not None:
        maps, paths = filter_operation(x, layer.operation, pad_mode=layer.pad_mode or pad_mode,
                                       flip=flip, stride=layer.stride, pads=row.pads,
                                       dilation=layer.dilation, engine_path=engine_path)
        if layer.bias_values is not None:              # conv:kernel=SPEC,bias=B
            maps += np.asarray(layer.bias_values, np.float32).reshape((-1,) + (1,) * axes)
        return maps, "+".join(dict.fromkeys(paths))
    if kind == "conv":
        weight, bias = layer_weights(layer, x.shape[0], row.output_shape[0], row.groups)
        if flip:
            weight = np.ascontiguousarray(weight[(Ellipsis,) + (slice(None, None, -1),) * axes])
        out, path = convolve_nd(x[np.newaxis], weight, bias, groups=row.groups,
                                stride=layer.stride, pads=row.pads, dilation=layer.dilation,
                                padding_mode=layer.pad_mode or "zeros", engine=engine_path)
        return out[0], path
    if kind == "tconv":
        weight, bias = layer_weights(layer, x.shape[0], row.output_shape[0], row.groups)
        function = getattr(engine, f"conv_transpose{axes}d")
        return function(x, weight, bias, stride=layer.stride, padding=tuple(p[0] for p in row.pads),
                        output_padding=layer.output_padding, groups=row.groups,
                        dilation=layer.dilation), "tconv"
    if kind == "pool":
        padding = tuple(p[0] for p in row.pads)
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
                     stride, pads, dilation, engine_path: str = "auto",
                     into_input: bool = False, path=None) -> tuple[np.ndarray, list[str]]:
    """A named kernel's (C_out, *spatial_out) response (+ the operation's bias) and the
    engine paths that ran.

    Kernels with one level per axis act on each channel on its own, so the channels go
    through one at a time: besides the input and the result, only one channel's responses
    are in memory. With ``into_input``, a result of the input's size is stored over the
    channels already done.
    """
    axes = pixels.ndim - 1
    depthwise = all(kernel_layout(k.weights.ndim, axes, f"kernel {operation.name}")
                    for k in operation.kernels)
    parts = [pixels[c:c + 1] for c in range(pixels.shape[0])] if depthwise else [pixels]
    arguments = [_operation_weights(kernel, parts[0].shape[0], axes, flip, path)
                 for kernel in operation.kernels]          # the same for every part
    maps, paths = None, []
    for index, part in enumerate(parts):
        total = None
        for weight, bias, factors, groups in arguments:
            response, taken = convolve_nd(part[np.newaxis], weight, bias, groups=groups,
                                          factors=factors, stride=stride, pads=pads,
                                          dilation=dilation, padding_mode=pad_mode,
                                          engine=engine_path)
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

