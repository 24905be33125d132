"""``convcli explain``: the output-size formulas with the real numbers put in.

Every number here comes from ``geometry`` (the functions the engine uses), so what
``explain`` predicts is what ``apply`` and ``convcli.conv2d`` produce. This module only
assembles the arithmetic into steps and notes, and renders them as text or a dict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from . import geometry
from .errors import UsageError, check_choice
from .yaml_files import read_yaml

__all__ = ["Layer", "Explanation", "explain_layer", "explain_stack", "parse_layer", "load_layers",
           "render_text", "LAYER_KINDS"]

LAYER_KINDS = ("conv", "tconv", "pool")
AXES = ("height", "width")
SYMBOLS = {"height": ("H", "P_top", "P_bottom"), "width": ("W", "P_left", "P_right")}


@dataclass(frozen=True)
class Layer:
    """One layer's hyper-parameters, each an (H, W) pair.

    ``kind`` is ``conv``, ``tconv`` (transposed convolution) or ``pool``;
    ``out_channels`` None keeps the channel count; ``padding`` is a pair or a word.
    """

    kind: str
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: geometry.PaddingSpec = 0
    dilation: tuple[int, int] = (1, 1)
    out_channels: int | None = None
    groups: int = 1
    output_padding: tuple[int, int] = (0, 0)
    pool_mode: str = "max"
    ceil_mode: bool = False
    bias: bool = True

    def describe(self) -> str:
        kernel = "x".join(map(str, self.kernel))
        if self.kind == "pool":
            return f"{self.pool_mode}-pool {kernel}"
        return f"{'transposed conv' if self.kind == 'tconv' else 'conv'} {kernel}"


@dataclass
class AxisWork:
    """The arithmetic for one spatial axis, from formula to result."""

    axis: str
    formula: str
    steps: list[str]
    result: int


@dataclass
class Explanation:
    """What one layer (or a stack) does to a (C, H, W) shape, and why."""

    title: str
    input_shape: list[int]
    output_shape: list[int]
    padding: geometry.Padding
    axes: list[AxisWork] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: int = 0
    macs: int = 0
    receptive_field: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))
    jump: tuple[Fraction, Fraction] = (Fraction(1), Fraction(1))
    im2col: dict | None = None
    layers: list["Explanation"] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Stable keys for ``--json``."""
        result = {
            "title": self.title, "input_shape": self.input_shape, "output_shape": self.output_shape,
            "padding": self.padding.as_dict(), "params": self.params, "macs": self.macs,
            "receptive_field": [_number(v) for v in self.receptive_field],
            "jump": [_number(v) for v in self.jump],
            "axes": {work.axis: {"formula": work.formula, "steps": work.steps, "result": work.result}
                     for work in self.axes},
            "notes": self.notes, "im2col": self.im2col,
        }
        if self.layers:
            result["layers"] = [layer.as_dict() for layer in self.layers]
        return result


def explain_layer(input_shape: tuple[int, int, int], layer: Layer, *, what: str = "input",
                  previous: Explanation | None = None) -> Explanation:
    """Output shape of ``layer`` on a (C, H, W) input, with the arithmetic and the pitfalls.

    ``previous`` is the layer before, in a stack: the receptive field and jump grow from it.
    """
    channels, height, width = input_shape
    _check_layer(layer, channels)
    padding = _padding_for(layer, (height, width))
    if layer.kind != "tconv":  # raises with the formula's numbers and the smallest valid input
        geometry.conv_output_hw((height, width), layer.kernel, padding, stride_hw=layer.stride,
                                dilation_hw=layer.dilation, what=what)
    axes = [_axis_work(layer, axis, (height, width)[i], padding, i) for i, axis in enumerate(AXES)]
    out_hw = [work.result for work in axes]
    for work in axes:
        if work.result < 1:
            raise UsageError(f"{what} {work.axis}: the {layer.describe()} gives {work.result} "
                             f"pixels ({work.steps[-1].lstrip('= ')}); it must be at least 1")
    out_channels = channels if layer.kind == "pool" else (layer.out_channels or channels)
    explanation = Explanation(title=layer.describe(), input_shape=[channels, height, width],
                              output_shape=[out_channels, *out_hw], padding=padding, axes=axes)
    explanation.notes = _notes(layer, (height, width), padding, out_hw)
    _count_cost(explanation, layer)
    start = previous or Explanation("", [], [], padding)
    grown = [geometry.grow_receptive_field(start.receptive_field[i], start.jump[i], layer.kernel[i],
                                           layer.stride[i], layer.dilation[i],
                                           transposed=layer.kind == "tconv")
             for i in range(2)]
    explanation.receptive_field = (grown[0][0], grown[1][0])
    explanation.jump = (grown[0][1], grown[1][1])
    return explanation


def explain_stack(input_shape: tuple[int, int, int], layers: list[Layer]) -> Explanation:
    """A stack of layers: each one's shape, receptive field, jump, parameters and MACs."""
    if not layers:
        raise UsageError("a stack needs at least one --layer")
    rows, shape = [], tuple(input_shape)
    for number, layer in enumerate(layers, 1):
        row = explain_layer(shape, layer, what=f"layer {number} ({layer.describe()}): input",
                            previous=rows[-1] if rows else None)
        row.title = f"{number}: {row.title}"
        rows.append(row)
        shape = tuple(row.output_shape)
    return Explanation(title=f"stack of {len(layers)} layers", input_shape=list(input_shape),
                       output_shape=rows[-1].output_shape, padding=rows[0].padding,
                       params=sum(r.params for r in rows), macs=sum(r.macs for r in rows),
                       receptive_field=rows[-1].receptive_field, jump=rows[-1].jump, layers=rows)


# --- one layer: checks, padding, arithmetic ---------------------------------------------------

def _check_layer(layer: Layer, channels: int) -> None:
    check_choice("layer kind", layer.kind, LAYER_KINDS)
    if layer.kind == "pool":
        if layer.pool_mode not in ("max", "avg"):
            raise UsageError(f"--pool must be max or avg; got {layer.pool_mode!r}")
        pads = geometry.pair(layer.padding, "padding", minimum=0) if not isinstance(
            layer.padding, str) else (0, 0)
        for axis, pad in enumerate(pads):
            if pad > layer.kernel[axis] // 2:
                raise UsageError(f"pool padding {pad} is more than half the kernel "
                                 f"{layer.kernel[axis]}; PyTorch allows at most {layer.kernel[axis] // 2}")
        return
    out_channels = layer.out_channels or channels
    if channels % layer.groups or out_channels % layer.groups:
        raise UsageError(f"groups={layer.groups} must divide both input channels ({channels}) and "
                         f"output channels ({out_channels})")
    if layer.kind == "tconv":
        if isinstance(layer.padding, str):
            raise UsageError("a transposed convolution takes numeric padding, not "
                             f"{layer.padding!r}")
        for axis in range(2):
            limit = max(layer.stride[axis], layer.dilation[axis])
            if layer.output_padding[axis] >= limit:
                raise UsageError(f"output padding {layer.output_padding[axis]} must be smaller than "
                                 f"the stride or the dilation (here < {limit})")


def _padding_for(layer: Layer, size_hw: tuple[int, int]) -> geometry.Padding:
    if layer.kind == "pool" and isinstance(layer.padding, str):
        if layer.padding.lower() != "valid":
            raise UsageError(f"pooling takes numeric padding or 'valid'; got {layer.padding!r}")
        return geometry.Padding(0, 0, 0, 0)
    return geometry.resolve_padding(layer.padding, layer.kernel, stride_hw=layer.stride,
                                    dilation_hw=layer.dilation, size_hw=size_hw, strided_same=True)


def _axis_work(layer: Layer, axis: str, size: int, padding: geometry.Padding, index: int) -> AxisWork:
    """The formula, the numbers put in, each step, and the result for one axis."""
    k, s, d = layer.kernel[index], layer.stride[index], layer.dilation[index]
    before, after = (padding.rows, padding.cols)[index]
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


def _notes(layer: Layer, size_hw: tuple[int, int], padding: geometry.Padding,
           out_hw: list[int]) -> list[str]:
    """What users trip over: leftover pixels, what 'same' implied, asymmetric padding."""
    notes = []
    word = layer.padding.lower() if isinstance(layer.padding, str) else None
    for index, axis in enumerate(AXES):
        k, s, d = layer.kernel[index], layer.stride[index], layer.dilation[index]
        before, after = (padding.rows, padding.cols)[index]
        side = ("rows", "bottom") if axis == "height" else ("columns", "right")
        if word == "same":
            note = (f"{axis}: 'same' pads {before + after} pixels, {before} before and {after} after, "
                    f"so the output is ceil({size_hw[index]}/{s}) = {out_hw[index]}")
            if after != before:
                note += f"; the odd pixel goes after ({side[1]}), as in PyTorch and TensorFlow"
            if s > 1:
                note += ("; with stride > 1 this is TensorFlow's SAME rule "
                         "(PyTorch refuses padding='same' with a stride)")
            notes.append(note)
        if layer.kind == "tconv":
            continue
        leftover = geometry.uncovered_size(size_hw[index], k, s, before, after, d)
        if layer.kind == "pool" and layer.ceil_mode:
            leftover = 0
        if leftover:
            image_part = max(leftover - after, 0)
            unit = side[0][:-1]  # "row" / "column"
            unread = (f"the last {_count(image_part, 'image ' + unit)} at the {side[1]} "
                      f"{'is' if image_part == 1 else 'are'} never read" if image_part
                      else f"only {_count(leftover, 'padding ' + unit)} at the {side[1]} "
                           f"{'goes' if leftover == 1 else 'go'} unused")
            notes.append(f"{axis}: stride {s} does not divide {size_hw[index]} + {before + after} - "
                         f"{geometry.effective_kernel_size(k, d)} = "
                         f"{size_hw[index] + before + after - geometry.effective_kernel_size(k, d)} "
                         f"evenly: {unread}")
    return notes


def _count_cost(explanation: Explanation, layer: Layer) -> None:
    """Parameters, multiply-accumulates and the im2col matrices of a convolution."""
    if layer.kind == "pool":
        return
    channels = explanation.input_shape[0]
    out_channels, out_h, out_w = explanation.output_shape
    taps = (channels // layer.groups) * layer.kernel[0] * layer.kernel[1]
    explanation.params = out_channels * taps + (out_channels if layer.bias else 0)
    if layer.kind == "tconv":
        in_pixels = explanation.input_shape[1] * explanation.input_shape[2]
        explanation.macs = in_pixels * out_channels * taps
        return
    explanation.macs = out_channels * taps * out_h * out_w
    per_group = out_channels // layer.groups
    explanation.im2col = {
        "groups": layer.groups, "weight_matrix": [per_group, taps], "column_matrix": [taps, out_h * out_w],
        "product": [per_group, out_h * out_w], "reshaped": [out_channels, out_h, out_w]}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _number(value: Fraction) -> float | int:
    return int(value) if value.denominator == 1 else float(value)


# --- layer specs -----------------------------------------------------------------------------

LAYER_KEYS = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation", "c": "out_channels",
              "g": "groups", "op": "output_padding", "mode": "pool_mode", "ceil": "ceil_mode",
              "bias": "bias"}


def parse_layer(text: str, where: str = "--layer") -> Layer:
    """``conv:k=3,s=1,p=1,c=16``, ``pool:k=2,s=2``, ``tconv:k=4,s=2,p=1,op=0`` -> Layer.

    Each number may be ``H,W`` written ``HxW`` (e.g. ``k=3x5``).
    """
    kind, _, rest = text.strip().partition(":")
    values = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"{where} {text!r}: expected key=value, got {item!r}")
        values[key.strip()] = value.strip()
    return layer_from_mapping(kind.strip(), values, f"{where} {text!r}")


def layer_from_mapping(kind: str, values: dict, where: str) -> Layer:
    """Build a Layer from short keys (k, s, p, d, c, g, op, mode, ceil, bias) or long names."""
    check_choice(f"{where}: layer kind", kind, LAYER_KINDS)
    long_names = set(LAYER_KEYS.values())
    arguments = {}
    for key, value in values.items():
        name = LAYER_KEYS.get(key, key)
        if name not in long_names:
            raise UsageError(f"{where}: unknown key {key!r}; valid keys are {', '.join(LAYER_KEYS)}")
        arguments[name] = _layer_value(name, value, where)
    if "kernel" not in arguments:
        raise UsageError(f"{where}: k=N (the kernel size) is required")
    if kind == "pool":
        arguments.setdefault("stride", arguments["kernel"])
    return Layer(kind=kind, **arguments)


def _layer_value(name: str, value, where: str):
    text = str(value).strip().lower()
    if name == "pool_mode":
        return text
    if name in ("ceil_mode", "bias"):
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise UsageError(f"{where}: {name} must be true or false; got {value!r}")
        return text in ("true", "1", "yes")
    if name == "padding" and text in geometry.PADDING_WORDS:
        return text
    numbers = re.split(r"[x,]", text) if not isinstance(value, (list, tuple)) else list(value)
    if not all(re.fullmatch(r"\d+", str(n).strip()) for n in numbers) or len(numbers) > 2:
        raise UsageError(f"{where}: {name} must be a whole number or HxW; got {value!r}")
    numbers = [int(n) for n in numbers]
    if name in ("out_channels", "groups"):
        if len(numbers) != 1 or numbers[0] < 1:
            raise UsageError(f"{where}: {name} must be a positive whole number; got {value!r}")
        return numbers[0]
    minimum = 0 if name in ("padding", "output_padding") else 1
    return geometry.pair(tuple(numbers) if len(numbers) == 2 else numbers[0], f"{where}: {name}",
                         minimum=minimum)


def load_layers(path: Path) -> list[Layer]:
    """A YAML file: ``layers:`` a list of specs (``conv:k=3,c=16``) or mappings with ``type:``."""
    document = read_yaml(path, "layers file")
    entries = document.get("layers") if isinstance(document, dict) else document
    if not isinstance(entries, list) or not entries:
        raise UsageError(f"{path}: expected 'layers:' with a list of layers")
    layers = []
    for number, entry in enumerate(entries, 1):
        where = f"{path}: layer {number}"
        if isinstance(entry, str):
            layers.append(parse_layer(entry, where))
        elif isinstance(entry, dict) and "type" in entry:
            values = {k: v for k, v in entry.items() if k != "type"}
            layers.append(layer_from_mapping(str(entry["type"]), values, where))
        else:
            raise UsageError(f"{where}: expected a spec like 'conv:k=3,c=16' or a mapping with type:")
    return layers


# --- text ------------------------------------------------------------------------------------

def _pair_text(values: tuple[Fraction, Fraction]) -> str:
    return "x".join(str(_number(v)) for v in values)


def _shape(shape: list[int]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def render_text(explanation: Explanation) -> str:
    """Formula, numbers, steps and result per axis; then notes, cost and im2col sizes."""
    if explanation.layers:
        return _render_stack(explanation)
    lines = [f"{explanation.title}: {_shape(explanation.input_shape)} -> "
             f"{_shape(explanation.output_shape)}   (C, H, W)", ""]
    for work in explanation.axes:
        lines.append(f"{work.axis}:")
        lines.append(f"  {work.formula}")
        indent = " " * (2 + work.formula.index("="))
        lines.extend(indent + step for step in work.steps)
        lines.append("")
    pad = explanation.padding
    lines.append(f"padding: top {pad.top}, bottom {pad.bottom}, left {pad.left}, right {pad.right}")
    lines.extend(f"note: {note}" for note in explanation.notes)
    if explanation.params:
        lines.append(f"parameters: {explanation.params:,}   multiply-accumulates: {explanation.macs:,}")
    if explanation.im2col:
        m = explanation.im2col
        groups = f" per group (x{m['groups']})" if m["groups"] > 1 else ""
        lines.append(f"im2col{groups}: weights {m['weight_matrix'][0]}x{m['weight_matrix'][1]} @ "
                     f"columns {m['column_matrix'][0]}x{m['column_matrix'][1]} = "
                     f"{m['product'][0]}x{m['product'][1]}, reshaped to "
                     f"{'x'.join(map(str, m['reshaped']))}")
    return "\n".join(lines)


def _render_stack(explanation: Explanation) -> str:
    headers = ("layer", "output (C, H, W)", "receptive field", "jump", "params", "MACs", "im2col")
    rows = []
    for row in explanation.layers:
        m = row.im2col
        matrices = (f"{m['weight_matrix'][0]}x{m['weight_matrix'][1]} @ "
                    f"{m['column_matrix'][0]}x{m['column_matrix'][1]}") if m else "-"
        rows.append((row.title, _shape(row.output_shape), _pair_text(row.receptive_field),
                     _pair_text(row.jump), f"{row.params:,}", f"{row.macs:,}", matrices))
    widths = [max(len(str(r[i])) for r in rows + [headers]) for i in range(len(headers))]
    lines = [f"input {_shape(explanation.input_shape)} -> output {_shape(explanation.output_shape)}", "",
             "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append(f"total: {explanation.params:,} parameters, {explanation.macs:,} multiply-accumulates")
    for row in explanation.layers:
        lines.extend(f"note (layer {row.title}): {note}" for note in row.notes)
    return "\n".join(lines)


# --- from command-line options ---------------------------------------------------------------

def input_shape_for(image: Path | None, size_hw: tuple[int, int] | None, in_channels: int | None,
                    gray: bool) -> tuple[int, int, int]:
    """(C, H, W) from an image's header (no pixel decode) or from ``--size``/``--in-channels``."""
    if image is not None:
        if size_hw is not None or in_channels is not None:
            raise UsageError("give an image or --size/--in-channels, not both")
        from .images import read_header

        return read_header(image, gray=gray)
    if size_hw is None:
        raise UsageError("give an image, or --size H[,W] (with --in-channels C)")
    channels = 1 if in_channels is None else in_channels
    if channels < 1:
        raise UsageError(f"--in-channels must be >= 1; got {channels}")
    return (1 if gray else channels, *size_hw)


def layer_from_options(channels: int, *, kernel: str, stride, padding, dilation, out_channels,
                       groups: int, transposed: bool, output_padding, pool: str | None,
                       ceil_mode: bool) -> Layer:
    """The one layer ``--kernel``/``--stride``/... describe.

    A kernel spec (``gaussian:sigma=2``, a YAML file) is explained exactly as ``apply`` runs
    it: its defaults, 'same' padding, depthwise on every channel unless it is 4-D.
    """
    if re.fullmatch(r"\s*\d+\s*(,\s*\d+\s*)?", kernel) is None:
        return _layer_for_kernel_spec(channels, kernel, stride, padding, dilation, out_channels,
                                      groups, transposed, output_padding, pool)
    sizes = [int(p) for p in kernel.split(",")]
    kernel_hw = geometry.pair(tuple(sizes) if len(sizes) == 2 else sizes[0], "--kernel")
    if transposed and pool:
        raise UsageError("--transposed and --pool describe different layers; give one")
    kind = "pool" if pool else "tconv" if transposed else "conv"
    if output_padding is not None and kind != "tconv":
        raise UsageError("--output-padding belongs to --transposed")
    return Layer(kind=kind, kernel=kernel_hw,
                 stride=stride or (kernel_hw if kind == "pool" else (1, 1)),
                 padding=0 if padding is None else padding, dilation=dilation or (1, 1),
                 out_channels=out_channels, groups=groups,
                 output_padding=output_padding or (0, 0), pool_mode=pool or "max",
                 ceil_mode=ceil_mode)


def _layer_for_kernel_spec(channels, spec, stride, padding, dilation, out_channels, groups,
                           transposed, output_padding, pool) -> Layer:
    from .kernels import resolve
    from .pipeline import ApplyOptions, channel_plan, kernel_geometry

    given = [name for name, value in (("--out-channels", out_channels), ("--pool", pool),
                                      ("--output-padding", output_padding)) if value is not None]
    given += (["--groups"] if groups != 1 else []) + (["--transposed"] if transposed else [])
    if given:
        raise UsageError(f"{', '.join(given)} need a numeric --kernel; a kernel spec is explained "
                         "as convcli apply runs it")
    kernel = resolve(spec).kernels[0]
    stride, padding, dilation = kernel_geometry(
        kernel, ApplyOptions(stride=stride, padding=padding, dilation=dilation))
    groups, out_channels = channel_plan(kernel, channels, Path(spec))
    return Layer(kind="conv", kernel=kernel.size, stride=stride, padding=padding, dilation=dilation,
                 out_channels=out_channels, groups=groups, bias=kernel.bias is not None)


def layers_from_specs(specs: list[str]) -> list[Layer]:
    """``--layer`` values: specs like ``conv:k=3,c=16``, or YAML files of layers."""
    layers = []
    for spec in specs:
        if spec.lower().endswith((".yaml", ".yml")):
            layers.extend(load_layers(Path(spec)))
        else:
            layers.append(parse_layer(spec))
    return layers
