"""``convcli explain``: the output-size formulas with the real numbers put in.

Every number here comes from ``geometry`` (the functions the engine uses), so what
``explain`` predicts is what ``apply`` and ``convcli.conv2d`` produce. This module only
assembles the arithmetic into steps and notes, and renders them as text or a dict.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

from . import geometry
from .errors import FileFailure, UsageError
from .layers import (Layer, channel_plan, kernel_layout, layer_for_operation, layers_from_specs,
                     parse_layer)

__all__ = ["Layer", "Explanation", "explain_layer", "explain_stack", "parse_layer",
           "layers_from_specs", "render_text", "conv_channels"]

SYMBOLS = {"length": ("L", "P_left", "P_right"), "depth": ("Z", "P_front", "P_back"),
           "height": ("H", "P_top", "P_bottom"), "width": ("W", "P_left", "P_right")}
SIDES = {"length": ("left", "right"), "depth": ("front", "back"), "height": ("top", "bottom"),
         "width": ("left", "right")}


@dataclass
class AxisWork:
    """The arithmetic for one spatial axis, from formula to result."""

    axis: str
    formula: str
    steps: list[str]
    result: int


@dataclass
class Explanation:
    """What one layer (or a stack) does to a (C, *spatial) shape, and why.

    ``pads`` is the (before, after) padding per spatial axis; ``receptive_field`` and
    ``jump`` have one value per axis; ``groups``/``out_channels`` are what the layer runs with.
    """

    title: str
    input_shape: list[int]
    output_shape: list[int]
    pads: tuple[tuple[int, int], ...] = ()
    axes: list[AxisWork] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: int = 0
    macs: int = 0
    receptive_field: tuple[Fraction, ...] = ()
    jump: tuple[Fraction, ...] = ()
    im2col: dict | None = None
    layers: list["Explanation"] = field(default_factory=list)
    groups: int = 1
    batch: int = 1
    separable: dict | None = None
    dense: dict | None = None

    @property
    def padding(self) -> geometry.Padding | None:
        """The padding of an image layer as top/bottom/left/right (None for 1-D and 3-D)."""
        if len(self.pads) != 2:
            return None
        return geometry.Padding(*self.pads[0], *self.pads[1])

    def padding_dict(self) -> dict[str, int]:
        """``{"top", "bottom", "left", "right"}`` for an image; front/back for a volume's depth,
        left/right for a signal."""
        names = geometry.axis_names(len(self.pads)) if self.pads else ()
        return {side: pad for name, pads in zip(names, self.pads)
                for side, pad in zip(SIDES[name], pads)}

    def as_dict(self) -> dict:
        """Stable keys for ``--json``."""
        result = {
            "title": self.title, "input_shape": self.input_shape, "output_shape": self.output_shape,
            "padding": self.padding_dict(), "params": self.params, "macs": self.macs,
            "receptive_field": [_number(v) for v in self.receptive_field],
            "jump": [_number(v) for v in self.jump],
            "axes": {work.axis: {"formula": work.formula, "steps": work.steps, "result": work.result}
                     for work in self.axes},
            "notes": self.notes, "im2col": self.im2col, "batch": self.batch,
            "separable": self.separable, "fully_connected": self.dense,
        }
        if self.layers:
            result["layers"] = [layer.as_dict() for layer in self.layers]
        return result


def explain_layer(input_shape: tuple[int, ...], layer: Layer, *, what: str = "input",
                  previous: Explanation | None = None, batch: int = 1) -> Explanation:
    """Output shape of ``layer`` on a (C, *spatial) input, with the arithmetic and the pitfalls.

    ``previous`` is the layer before, in a stack: the receptive field and jump grow from it.
    ``batch`` counts the MACs and im2col columns of N inputs at once.
    """
    channels, *size = input_shape
    count = len(size)
    layer = layer.for_axes(count, what)
    start_field = previous.receptive_field if previous else (Fraction(1),) * count
    start_jump = previous.jump if previous else (Fraction(1),) * count
    if layer.kind not in ("conv", "tconv", "pool"):
        return _explain_elementwise(list(input_shape), layer, what, start_field, start_jump, batch)
    groups, out_channels = conv_channels(layer, channels, count, what)
    if layer.bias_values is not None and len(layer.bias_values) not in (1, out_channels):
        raise UsageError(f"{what}: bias has {len(layer.bias_values)} values; give 1 or one per "
                         f"output channel ({out_channels})")
    pads = _padding_for(layer, tuple(size))
    if layer.kind != "tconv":  # raises with the formula's numbers and the smallest valid input
        geometry.conv_output_shape(tuple(size), layer.kernel, pads, stride=layer.stride,
                                   dilation=layer.dilation, what=what)
    names = geometry.axis_names(count)
    axes = [_axis_work(layer, axis, size[i], pads[i], i) for i, axis in enumerate(names)]
    out_size = [work.result for work in axes]
    for work in axes:
        if work.result < 1:
            raise UsageError(f"{what} {work.axis}: the {layer.describe()} gives {work.result} "
                             f"pixels ({work.steps[-1].lstrip('= ')}); it must be at least 1")
    explanation = Explanation(title=layer.describe(), input_shape=list(input_shape),
                              output_shape=[out_channels, *out_size], pads=pads, axes=axes,
                              groups=groups, batch=batch)
    explanation.notes = _notes(layer, tuple(size), pads, out_size)
    _count_cost(explanation, layer)
    grown = [geometry.grow_receptive_field(start_field[i], start_jump[i], layer.kernel[i],
                                           layer.stride[i], layer.dilation[i],
                                           transposed=layer.kind == "tconv")
             for i in range(count)]
    explanation.receptive_field = tuple(g[0] for g in grown)
    explanation.jump = tuple(g[1] for g in grown)
    return explanation


def explain_stack(input_shape: tuple[int, ...], layers: list[Layer], *,
                  batch: int = 1) -> Explanation:
    """A stack of layers: each one's shape, receptive field, jump, parameters and MACs."""
    if not layers:
        raise UsageError("a stack needs at least one --layer")
    rows, shape = [], tuple(input_shape)
    for number, layer in enumerate(layers, 1):
        layer = layer.for_axes(len(shape) - 1, f"layer {number} ({layer.describe()})")
        row = explain_layer(shape, layer, what=f"layer {number} ({layer.describe()}): input",
                            previous=rows[-1] if rows else None, batch=batch)
        row.title = f"{number}: {row.title}"
        rows.append(row)
        shape = tuple(row.output_shape)
    return Explanation(title=f"stack of {len(layers)} layers", input_shape=list(input_shape),
                       output_shape=rows[-1].output_shape, pads=rows[0].pads,
                       params=sum(r.params for r in rows), macs=sum(r.macs for r in rows),
                       receptive_field=rows[-1].receptive_field, jump=rows[-1].jump, layers=rows,
                       batch=batch)


# --- one layer: channels, checks, padding, arithmetic -----------------------------------------

def conv_channels(layer: Layer, channels: int, axes: int, where: str) -> tuple[int, int]:
    """(groups, output channels) a window layer runs with on a ``channels``-channel input,
    from its kernel spec, its explicit weights, or ``c``/``g``; every mismatch is a
    UsageError that names the layer and the fix."""
    if layer.kind == "pool":
        if layer.pool_mode == "max" or layer.dilation == (1,) * axes:
            _check_pool_padding(layer)
            return channels, channels
        raise UsageError(f"{where}: average pooling has no dilation (as in PyTorch); drop d=")
    if layer.operation is not None:
        try:
            return channel_plan(layer.operation.kernels[0], channels, where, axes)
        except FileFailure as error:
            raise UsageError(str(error)) from None
    groups = layer.groups
    if layer.weights is not None:
        if kernel_layout(layer.weights.ndim, axes, where):
            return channels, channels                       # one kernel for every channel
        if layer.kind == "tconv":                           # (C_in, C_out/groups, ...)
            in_channels, per_group = layer.weights.shape[:2]
            if in_channels != channels or channels % groups:
                raise UsageError(f"{where}: the weights take {in_channels} input channels "
                                 f"(groups={groups}); this input has {channels}")
            return groups, per_group * groups
        return _full_channels(layer.weights.shape[:2], groups, channels, where)
    out_channels = layer.out_channels or channels
    if channels % groups or out_channels % groups:
        raise UsageError(f"{where}: groups={groups} must divide both input channels ({channels}) "
                         f"and output channels ({out_channels})")
    return groups, out_channels


def _full_channels(shape, groups: int, channels: int, where: str) -> tuple[int, int]:
    """Weights (C_out, C_in/groups, ...) on a ``channels``-channel input: (groups, C_out)."""
    out_channels, group_in = shape
    if out_channels % groups:
        raise UsageError(f"{where}: groups={groups} must divide the {out_channels} output channels")
    if group_in * groups != channels:
        raise UsageError(f"{where}: the weights expect {group_in * groups} input channels "
                         f"({group_in} per group x groups={groups}); this input has {channels}. "
                         "Chain the layers so each one's C_out is the next one's C_in")
    return groups, out_channels


def _check_pool_padding(layer: Layer) -> None:
    pads = (0,) * len(layer.kernel) if isinstance(layer.padding, str) else layer.padding
    geometry.check_pool_padding(layer.kernel, pads)


def _explain_elementwise(shape: list[int], layer: Layer, what: str, field_, jump,
                         batch: int) -> Explanation:
    """Layers that keep the spatial size: activations, bias, shuffle; and fc."""
    channels = shape[0]
    out_shape, params, macs = list(shape), 0, 0
    if layer.kind == "shuffle" and channels % layer.groups:
        raise UsageError(f"{what}: shuffle groups={layer.groups} must divide the {channels} "
                         "channels")
    if layer.kind == "bias" and len(layer.bias_values) not in (1, channels):
        raise UsageError(f"{what}: bias has {len(layer.bias_values)} values; give 1 or one per "
                         f"channel ({channels})")
    if layer.kind == "fc":
        features = math.prod(shape)
        out_shape = [layer.out_channels] + [1] * (len(shape) - 1)
        params = features * layer.out_channels + (layer.out_channels if layer.bias else 0)
        macs = batch * features * layer.out_channels
        field_ = tuple(f + (n - 1) * j for f, n, j in zip(field_, shape[1:], jump))  # all of it
    return Explanation(title=layer.describe(), input_shape=shape, output_shape=out_shape,
                       pads=((0, 0),) * (len(shape) - 1), params=params, macs=macs,
                       receptive_field=field_, jump=jump, batch=batch)


def _padding_for(layer: Layer, size: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    if layer.kind in ("pool", "tconv") and isinstance(layer.padding, str):
        if layer.padding.lower() != "valid":
            what = "pooling" if layer.kind == "pool" else "a transposed convolution"
            raise UsageError(f"{what} takes numeric padding or 'valid'; got {layer.padding!r}")
        return ((0, 0),) * len(size)
    if layer.kind == "tconv":
        for axis in range(len(size)):
            limit = max(layer.stride[axis], layer.dilation[axis])
            if layer.output_padding[axis] >= limit:
                raise UsageError(f"output padding {layer.output_padding[axis]} must be smaller than "
                                 f"the stride or the dilation (here < {limit})")
    return geometry.resolve_padding_nd(layer.padding, layer.kernel, stride=layer.stride,
                                       dilation=layer.dilation, size=size, strided_same=True)


def _axis_work(layer: Layer, axis: str, size: int, pads: tuple[int, int], index: int) -> AxisWork:
    """The formula, the numbers put in, each step, and the result for one axis."""
    k, s, d = layer.kernel[index], layer.stride[index], layer.dilation[index]
    before, after = pads
    name, before_name, after_name = SYMBOLS[axis]
    out = f"{name}_out"
    if before == after:
        pad_formula, pad_numbers = "2P", f"2*{before}"
    else:
        pad_formula, pad_numbers = f"{before_name} + {after_name}", f"{before} + {after}"
    if layer.kind == "tconv":
        op = layer.output_padding[index]
        result = geometry.transposed_output_size(size, k, s, before, d, op)
        formula = f"{out} = ({name} - 1)*S - 2P + D(K-1) + output_padding + 1"
        steps = [f"= ({size} - 1)*{s} - 2*{before} + {d}*({k}-1) + {op} + 1",
                 f"= {(size - 1) * s} - {2 * before} + {d * (k - 1)} + {op} + 1", f"= {result}"]
        return AxisWork(axis, formula, steps, result)
    numerator = size + before + after - d * (k - 1) - 1
    rounding = "ceil" if layer.kind == "pool" and layer.ceil_mode else "floor"
    formula = f"{out} = {rounding}(({name} + {pad_formula} - D(K-1) - 1) / S) + 1"
    steps = [f"= {rounding}(({size} + {pad_numbers} - {d}*({k}-1) - 1) / {s}) + 1",
             f"= {rounding}({numerator} / {s}) + 1"]
    quotient = -(-numerator // s) if rounding == "ceil" else numerator // s
    steps.append(f"= {quotient} + 1")
    if layer.kind == "pool":
        result = geometry.pool_output_size(size, k, s, before, d, layer.ceil_mode)
        if result != quotient + 1:
            steps.append(f"= {quotient} + 1 - 1   (the last window would start in the right "
                         "padding, so it is dropped)")
    else:
        result = geometry.conv_output_size(size, k, s, before, after, d)
    if steps[-1] != f"= {result}":
        steps.append(f"= {result}")
    return AxisWork(axis, formula, steps, result)


def _notes(layer: Layer, size: tuple[int, ...], pads: tuple[tuple[int, int], ...],
           out_size: list[int]) -> list[str]:
    """What users trip over: leftover pixels, what 'same' implied, asymmetric padding."""
    notes = []
    word = layer.padding.lower() if isinstance(layer.padding, str) else None
    for index, axis in enumerate(geometry.axis_names(len(size))):
        k, s, d = layer.kernel[index], layer.stride[index], layer.dilation[index]
        before, after = pads[index]
        end = SIDES[axis][1]
        unit = {"height": "row", "depth": "slice"}.get(axis, "column" if axis == "width" else "sample")
        if word == "same":
            note = (f"{axis}: 'same' pads {before + after} pixels, {before} before and {after} after, "
                    f"so the output is ceil({size[index]}/{s}) = {out_size[index]}")
            if after != before:
                note += f"; the odd pixel goes after ({end}), as in PyTorch and TensorFlow"
            if s > 1:
                note += ("; with stride > 1 this is TensorFlow's SAME rule "
                         "(PyTorch refuses padding='same' with a stride)")
            notes.append(note)
        if d > 1:
            notes.append(f"{axis}: dilation {d} spreads the {k} taps over D(K-1) + 1 = "
                         f"{d}*({k}-1) + 1 = {geometry.effective_kernel_size(k, d)} pixels")
        if layer.kind == "tconv":
            continue
        leftover = geometry.uncovered_size(size[index], k, s, before, after, d)
        if layer.kind == "pool" and layer.ceil_mode:
            leftover = 0
        if leftover:
            image_part = max(leftover - after, 0)
            unread = (f"the last {_count(image_part, 'image ' + unit)} at the {end} "
                      f"{'is' if image_part == 1 else 'are'} never read" if image_part
                      else f"only {_count(leftover, 'padding ' + unit)} at the {end} "
                           f"{'goes' if leftover == 1 else 'go'} unused")
            notes.append(f"{axis}: stride {s} does not divide {size[index]} + {before + after} - "
                         f"{geometry.effective_kernel_size(k, d)} = "
                         f"{size[index] + before + after - geometry.effective_kernel_size(k, d)} "
                         f"evenly: {unread}")
    return notes


def _count_cost(explanation: Explanation, layer: Layer) -> None:
    """Parameters and multiply-accumulates; for a convolution also its im2col matrices (and
    how many times they copy the input), the separable saving and the fully connected
    layer it stands in for."""
    if layer.kind == "pool":
        return
    batch, groups = explanation.batch, explanation.groups
    channels, *in_size = explanation.input_shape
    out_channels, *out_size = explanation.output_shape
    kernel_taps = math.prod(layer.kernel)
    bias = out_channels if layer.bias else 0
    if layer.kind == "tconv":
        explanation.params = channels * (out_channels // groups) * kernel_taps + bias
        explanation.macs = batch * math.prod(in_size) * channels * (out_channels // groups) * kernel_taps
        return
    taps = (channels // groups) * kernel_taps
    pixels = math.prod(out_size)
    explanation.params = out_channels * taps + bias
    explanation.macs = batch * out_channels * taps * pixels
    per_group, columns = out_channels // groups, batch * pixels
    explanation.im2col = {
        "groups": groups, "weight_matrix": [per_group, taps], "column_matrix": [taps, columns],
        "product": [per_group, columns],
        "reshaped": ([batch] if batch > 1 else []) + [out_channels, *out_size],
        "input_values": batch * channels * math.prod(in_size),
        "column_entries": groups * taps * columns}
    if len(layer.kernel) > 1 and min(layer.kernel) > 1:
        kernel = layer.operation.kernels[0] if layer.operation is not None else None
        explanation.separable = {
            "taps": kernel_taps, "separable_taps": sum(layer.kernel),
            "kernel_is_separable": kernel.is_separable if kernel is not None else None}
    inputs, outputs = channels * math.prod(in_size), out_channels * pixels
    explanation.dense = {"weights": inputs * outputs, "conv_weights": out_channels * taps}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _number(value: Fraction) -> float | int:
    return int(value) if value.denominator == 1 else float(value)


# --- text ------------------------------------------------------------------------------------

def _pair_text(values: tuple[Fraction, Fraction]) -> str:
    return "x".join(str(_number(v)) for v in values)


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _layout(explanation: Explanation) -> str:
    """``(C, H, W)``, ``(C, L)`` or ``(C, D, H, W)``: what the shapes' numbers are."""
    letters = {"length": "L", "depth": "D", "height": "H", "width": "W"}
    names = geometry.axis_names(len(explanation.input_shape) - 1)
    return "(C, " + ", ".join(letters[n] for n in names) + ")"


def render_text(explanation: Explanation) -> str:
    """Formula, numbers, steps and result per axis; then notes, the receptive field, cost,
    im2col sizes, the separable saving and the fully connected comparison."""
    if explanation.layers:
        return _render_stack(explanation)
    batch = [explanation.batch] if explanation.batch > 1 else []
    layout = _layout(explanation).replace("(C", "(N, C") if batch else _layout(explanation)
    lines = [f"{explanation.title}: {_shape(batch + explanation.input_shape)} -> "
             f"{_shape(batch + explanation.output_shape)}   {layout}", ""]
    for work in explanation.axes:
        lines.append(f"{work.axis}:")
        lines.append(f"  {work.formula}")
        indent = " " * (2 + work.formula.index("="))
        lines.extend(indent + step for step in work.steps)
        lines.append("")
    if explanation.axes:
        lines.append("padding: " + ", ".join(f"{side} {pad}" for side, pad
                                             in explanation.padding_dict().items()))
    lines.extend(f"note: {note}" for note in explanation.notes)
    if explanation.axes:
        lines.append(f"receptive field: {_pair_text(explanation.receptive_field)} input pixels per "
                     "output")
    if explanation.params or explanation.macs:
        per = f" (a batch of {explanation.batch})" if batch else ""
        lines.append(f"parameters: {explanation.params:,}   multiply-accumulates{per}: "
                     f"{explanation.macs:,}")
    if explanation.im2col:
        lines.extend(_im2col_lines(explanation.im2col))
    if explanation.separable:
        lines.append(_separable_line(explanation.separable, explanation.title))
    if explanation.dense:
        d = explanation.dense
        lines.append(f"fully connected: mapping {_shape(explanation.input_shape)} to "
                     f"{_shape(explanation.output_shape)} with a dense layer takes {d['weights']:,} "
                     f"weights; the convolution shares {d['conv_weights']:,} over every position")
    return "\n".join(lines)


def _im2col_lines(m: dict) -> list[str]:
    groups = f" per group (x{m['groups']})" if m["groups"] > 1 else ""
    return [f"im2col{groups}: weights {m['weight_matrix'][0]}x{m['weight_matrix'][1]} @ "
            f"columns {m['column_matrix'][0]}x{m['column_matrix'][1]} = "
            f"{m['product'][0]}x{m['product'][1]}, reshaped to {'x'.join(map(str, m['reshaped']))}",
            f"im2col copies: {m['input_values']:,} input values become {m['column_entries']:,} "
            f"column entries ({m['column_entries'] / m['input_values']:.2f}x)"]


def _separable_line(separable: dict, title: str) -> str:
    taps, split = separable["taps"], separable["separable_taps"]
    known = separable["kernel_is_separable"]
    which = {True: "this kernel is rank 1, so it", False: "this kernel is not rank 1; a rank-1 one",
             None: "a rank-1 (separable) kernel"}[known]
    return (f"separable: {which} runs as one pass per axis: {split} multiply-adds per output and "
            f"channel instead of {taps} ({taps / split:.1f}x fewer)")


def _render_stack(explanation: Explanation) -> str:
    headers = ("layer", f"output {_layout(explanation)}", "receptive field", "jump", "params", "MACs", "im2col")
    rows = []
    for row in explanation.layers:
        m = row.im2col
        matrices = (f"{m['weight_matrix'][0]}x{m['weight_matrix'][1]} @ "
                    f"{m['column_matrix'][0]}x{m['column_matrix'][1]}") if m else "-"
        rows.append((row.title, _shape(row.output_shape), _pair_text(row.receptive_field),
                     _pair_text(row.jump), f"{row.params:,}", f"{row.macs:,}", matrices))
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    batch = [explanation.batch] if explanation.batch > 1 else []
    lines = [f"input {_shape(batch + explanation.input_shape)} -> output "
             f"{_shape(batch + explanation.output_shape)}"
             + (f"   (a batch of {explanation.batch}: MACs and im2col columns count all of it)"
                if batch else ""), "",
             "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"total: {explanation.params:,} parameters, {explanation.macs:,} multiply-accumulates")
    for row in explanation.layers:
        lines.extend(f"note (layer {row.title}): {note}" for note in row.notes)
    return "\n".join(lines)


# --- from command-line options ---------------------------------------------------------------

def input_shape_for(image: Path | None, size: tuple[int, ...] | None, in_channels: int | None,
                    gray: bool, dims: int | None = None) -> tuple[int, ...]:
    """(C, *spatial) from an image's header (no pixel decode) or from ``--size``/``--dims``/
    ``--in-channels``: ``--size 224`` is a square image, ``--size 1000 --dims 1`` a signal."""
    if image is not None:
        if size is not None or in_channels is not None or dims is not None:
            raise UsageError("give an image or --size/--dims/--in-channels, not both")
        from .images import read_header

        return read_header(image, gray=gray)
    if size is None:
        raise UsageError("give an image, or --size H[,W] (with --in-channels C)")
    if dims is None:
        dims = len(size) if len(size) > 1 else 2
    if dims not in (1, 2, 3):
        raise UsageError(f"--dims must be 1 (signal), 2 (image) or 3 (volume); got {dims}")
    channels = 1 if in_channels is None else in_channels
    if channels < 1:
        raise UsageError(f"--in-channels must be >= 1; got {channels}")
    return (1 if gray else channels, *geometry.ntuple(size, dims, "--size"))


def layer_from_options(shape: tuple[int, ...], *, kernel: str, stride, padding, dilation, out_channels,
                       groups: int, transposed: bool, output_padding, pool: str | None,
                       ceil_mode: bool) -> Layer:
    """The one layer ``--kernel``/``--stride``/... describe.

    A kernel spec (``gaussian:sigma=2``, a YAML file) is explained exactly as ``apply`` runs
    it: its defaults, 'same' padding, depthwise on every channel unless it is 4-D.
    """
    if re.fullmatch(r"\s*[0-9]+\s*(,\s*[0-9]+\s*){0,2}", kernel) is None:
        return _layer_for_kernel_spec(shape, kernel, stride, padding, dilation, out_channels,
                                      groups, transposed, output_padding, pool)
    kernel_size = tuple(int(p) for p in kernel.split(","))
    if transposed and pool:
        raise UsageError("--transposed and --pool describe different layers; give one")
    kind = "pool" if pool else "tconv" if transposed else "conv"
    if output_padding is not None and kind != "tconv":
        raise UsageError("--output-padding belongs to --transposed")
    return Layer(kind=kind, kernel=kernel_size,
                 stride=stride or (kernel_size if kind == "pool" else (1,)),
                 padding=0 if padding is None else padding, dilation=dilation or (1,),
                 out_channels=out_channels, groups=groups,
                 output_padding=output_padding or (0,), pool_mode=pool or "max",
                 ceil_mode=ceil_mode)


def _layer_for_kernel_spec(shape, spec, stride, padding, dilation, out_channels, groups,
                           transposed, output_padding, pool) -> Layer:
    from .kernels import resolve

    given = [name for name, value in (("--out-channels", out_channels), ("--pool", pool),
                                      ("--output-padding", output_padding)) if value is not None]
    given += (["--groups"] if groups != 1 else []) + (["--transposed"] if transposed else [])
    if given:
        raise UsageError(f"{', '.join(given)} need a numeric --kernel; a kernel spec is explained "
                         "as convcli apply runs it")
    layer = layer_for_operation(resolve(spec), stride=stride, padding=padding, dilation=dilation)
    groups, out_channels = channel_plan(layer.operation.kernels[0], shape[0], Path(spec),
                                        len(shape) - 1)
    return replace(layer, out_channels=out_channels, groups=groups)
