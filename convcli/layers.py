"""Layers and stacks: the one model that ``convcli explain`` describes and ``convcli apply`` runs.

A stack is a list of ``Layer``s. Each layer knows its hyper-parameters (for the geometry
that ``explain`` renders from ``geometry.py``) and, for ``apply``, where its weights come
from: a kernel spec (``kernel: gaussian:sigma=2``, run as ``apply -k`` runs it), explicit
weights (YAML), or ``init=random`` (PyTorch's default initialisation, seeded). Both commands
read the same parsed layers, so the shapes ``explain`` prints are the shapes ``apply`` makes.

Spellings: ``conv:k=3,s=2,p=1,c=16``, ``pool:k=2,mode=avg``, ``tconv:k=4,s=2,p=1,op=0``,
``relu``, ``leaky-relu:slope=0.1``, ``shuffle:g=2``, ``bias:value=0.1``, ``fc:c=10``; or a YAML
file with ``layers:``, a list of such strings or mappings with ``type:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from . import geometry
from .choices import POOL_MODES
from .errors import FileFailure, UsageError, check_choice
from .numerals import real_number, whole_number
from .yaml_files import read_yaml

__all__ = ["Layer", "Stack", "LAYER_KINDS", "WINDOW_KINDS", "ACTIVATIONS", "parse_layer",
           "layer_from_mapping", "load_layers", "layers_from_specs", "kernel_geometry",
           "layer_for_operation", "check_runnable",
           "channel_plan", "kernel_layout"]

WINDOW_KINDS = ("conv", "tconv", "pool")            # layers with a window and size arithmetic
_KINDS = {1: "a signal", 2: "an image", 3: "a volume"}   # inputs by their spatial axes
ACTIVATIONS = ("relu", "leaky-relu", "sigmoid", "tanh", "abs")
LAYER_KINDS = WINDOW_KINDS + ACTIVATIONS + ("shuffle", "bias", "fc")
INITS = ("random",)


@dataclass(frozen=True, eq=False)
class Layer:
    """One layer: its kind and hyper-parameters; spatial values are tuples, one per axis, or
    one value for every axis (``for_axes`` spreads them once the input is known).

    ``padding`` is a tuple or a word (same, valid, full); ``out_channels`` None keeps the
    channel count (for ``fc``: the number of outputs). ``weights``/``bias_values`` are explicit
    numbers (NumPy arrays or tuples), ``operation`` a resolved kernel spec, ``init`` 'random'.
    """

    kind: str
    kernel: tuple[int, ...] = (1,)
    stride: tuple[int, ...] = (1,)
    padding: geometry.PaddingSpec = 0
    dilation: tuple[int, ...] = (1,)
    out_channels: int | None = None
    groups: int = 1
    output_padding: tuple[int, ...] = (0,)
    pool_mode: str = "max"
    ceil_mode: bool = False
    count_include_pad: bool = True
    bias: bool = True
    bias_values: tuple[float, ...] | None = None
    weights: object = None
    operation: object = None
    init: str | None = None
    seed: int = 0
    pad_mode: str | None = None
    negative_slope: float = 0.01

    def describe(self) -> str:
        """``conv 3x3``, ``max-pool 2x2``, ``transposed conv 4x4``, ``relu``, ``shuffle 2``."""
        kernel = "x".join(map(str, self.kernel))
        if self.kind == "pool":
            return f"{self.pool_mode}-pool {kernel}"
        if self.kind in ("conv", "tconv"):
            name = "transposed conv" if self.kind == "tconv" else "conv"
            spec = f" {self.operation.name}" if self.operation is not None else ""
            return f"{name} {kernel}{spec}"
        if self.kind == "shuffle":
            return f"shuffle {self.groups}"
        if self.kind == "fc":
            return f"fc {self.out_channels}"
        if self.kind == "bias" and self.bias_values is not None and len(self.bias_values) == 1:
            return f"bias {self.bias_values[0]:g}"
        return self.kind

    def border_mode(self, default: str) -> str:
        """What this conv layer's padding holds: its own ``pad_mode``, else ``default`` (the
        run's ``--pad-mode``) for a kernel spec, as ``-k`` runs it, and zeros for weights, as
        PyTorch's layer."""
        return self.pad_mode or (default if self.operation is not None else "zeros")

    def for_axes(self, count: int, where: str = "layer") -> "Layer":
        """This layer with every spatial value spread to ``count`` axes (1, 2 or 3)."""
        if self.kind not in WINDOW_KINDS:
            return self
        values = {}
        for name in ("kernel", "stride", "dilation", "output_padding"):
            value = getattr(self, name)
            minimum = 0 if name == "output_padding" else 1
            if len(value) not in (1, count):
                raise UsageError(
                    f"{where}: {name} {'x'.join(map(str, value))} is for {_KINDS[len(value)]} "
                    f"({len(value)} axes) but this input is {_KINDS[count]} ({count}: "
                    f"{', '.join(geometry.axis_names(count))}); " + (
                        "use a kernel made for it, with one level of weights per axis (e.g. "
                        "smooth-1d for signals, box-3d for volumes)" if self.operation is not None
                        else f"give {name} as one number, or one per axis"))
            values[name] = geometry.ntuple(value, count, f"{where}: {name}", minimum=minimum)
        if not isinstance(self.padding, str):
            padding = self.padding if isinstance(self.padding, tuple) else (self.padding,)
            if len(padding) not in (1, count):
                raise UsageError(f"{where}: padding has {len(padding)} values but the input has "
                                 f"{count} spatial axes; give 1 or {count}")
            values["padding"] = geometry.ntuple(padding, count, f"{where}: padding", minimum=0)
        return replace(self, **values)


@dataclass(frozen=True)
class Stack:
    """What ``--layer`` names: layers run in order, one output; ``name`` fills ``{kernel}``."""

    name: str
    layers: tuple[Layer, ...]


# --- kernels and weights ------------------------------------------------------------------------

def kernel_layout(weights_ndim: int, axes: int, where: str) -> bool:
    """True when weights with ``weights_ndim`` levels are one kernel for every channel
    (depthwise: as many levels as the input has axes), False when they are C_out x C_in x
    kernel (two more). Anything else is a UsageError naming both valid nestings."""
    if weights_ndim == axes:
        return True
    if weights_ndim == axes + 2:
        return False
    names = " x ".join(geometry.axis_names(axes))
    raise UsageError(f"{where}: weights nested {weights_ndim} deep do not fit an input with {axes} "
                     f"spatial axes; give {axes} levels (one {names} kernel for every channel) or "
                     f"{axes + 2} (C_out x C_in/groups x {names})")


def kernel_geometry(kernel, stride, padding, dilation):
    """(stride, padding spec, dilation) for a named ``kernel``: the given values, else the
    kernel's, else an image filter's defaults (stride 1, 'same', dilation 1)."""
    stride = geometry.ntuple(stride, 2, "--stride") if stride else geometry.pair(kernel.stride,
                                                                                "stride")
    dilation = (geometry.ntuple(dilation, 2, "--dilation") if dilation
                else geometry.pair(kernel.dilation, "dilation"))
    if padding is None:
        padding = kernel.padding if kernel.padding is not None else "same"
    return stride, padding, dilation


def channel_plan(kernel, channels: int, path, axes: int = 2) -> tuple[int, int]:
    """(groups, output channels) of a named ``kernel`` on a ``channels``-channel input.

    A kernel with one level per axis (a 2-D matrix on an image) runs depthwise (groups = C:
    the same kernel on every channel); one with two more levels maps its C_in channels to
    C_out feature maps (groups = 1).
    """
    if kernel_layout(kernel.weights.ndim, axes, f"kernel {kernel.name}"):
        return channels, channels
    out_channels, in_channels = kernel.weights.shape[:2]
    if in_channels != channels:
        raise FileFailure(
            f"{path}: has {channels} channel(s) but kernel {kernel.name} expects {in_channels}"
            + ("; use --gray for a one-channel kernel" if in_channels == 1 else ""))
    return 1, out_channels


# --- specs ------------------------------------------------------------------------------------

LAYER_KEYS = {"k": "kernel", "s": "stride", "p": "padding", "d": "dilation", "c": "out_channels",
              "g": "groups", "op": "output_padding", "mode": "pool_mode", "ceil": "ceil_mode",
              "bias": "bias", "slope": "negative_slope", "value": "bias_values",
              "weights": "weights", "init": "init", "seed": "seed", "pad_mode": "pad_mode",
              "count_include_pad": "count_include_pad", "kernel": "kernel"}
LONG_NAMES = set(LAYER_KEYS.values())
BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_layer(text: str, where: str = "--layer") -> Layer:
    """``conv:k=3,s=1,p=1,c=16``, ``pool:k=2,s=2``, ``tconv:k=4,s=2,p=1,op=0``, ``relu`` -> Layer.

    Each number may be ``HxW`` (``k=3x5``) or ``DxHxW``; ``kernel=SPEC`` takes a kernel spec,
    whose own ``key=value`` parameters follow it (``conv:kernel=gaussian:sigma=2,size=9,s=2``).
    """
    kind, _, rest = text.strip().partition(":")
    values: dict[str, object] = {}
    last = None
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        key = key.strip()
        if equals and last in ("k", "kernel") and key not in LAYER_KEYS and key not in LONG_NAMES \
                and not _is_size(values[last]):
            values[last] = f"{values[last]},{item}"      # a parameter of the kernel spec
            continue
        if not equals:
            raise UsageError(f"{where} {text!r}: expected key=value, got {item!r}")
        _check_given(key, value, f"{where} {text!r}")
        values[key] = value.strip()
        last = key
    return layer_from_mapping(kind.strip(), values, f"{where} {text!r}")


def layer_from_mapping(kind: str, values: dict, where: str) -> Layer:
    """A Layer from short keys (k, s, p, d, c, g, op, mode, ceil, slope, value, ...) or long
    names; ``kernel`` is a size when it is a number and a kernel spec when it is text."""
    kind = kind.lower().replace("_", "-")
    check_choice(f"{where}: layer kind", kind, LAYER_KINDS)
    arguments: dict[str, object] = {}
    for key, value in values.items():
        _check_given(key, value, where)
        name = LAYER_KEYS.get(key, key)
        if name not in LONG_NAMES:
            raise UsageError(f"{where}: unknown key {key!r}; valid keys are "
                             f"{', '.join(sorted(LAYER_KEYS))}")
        if name in arguments:
            raise UsageError(f"{where}: {name} is given twice")
        arguments[name] = value
    return _build_layer(kind, arguments, where)


def _check_given(key: str, value, where: str) -> None:
    """``k=`` (or a YAML ``kernel:`` with nothing after it) names a key without a value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        example = "k=3, k=3x5 or k=gaussian:sigma=2" if key in ("k", "kernel") else f"{key}=2"
        raise UsageError(f"{where}: {key} has no value; give one (e.g. {example}) or leave "
                         f"{key} out")


def _build_layer(kind: str, raw: dict, where: str) -> Layer:
    arguments: dict[str, object] = {}
    spec = raw.pop("kernel", None)
    if spec is not None and not _is_size(spec):
        if kind != "conv":
            raise UsageError(f"{where}: kernel {spec!r}: a kernel spec belongs to conv layers; "
                             f"{kind} takes a size (k=3 or k=3x3)")
        arguments.update(_spec_defaults(str(spec), raw, where))
    elif spec is not None:
        arguments["kernel"] = _layer_value("kernel", spec, where)
    for name, value in raw.items():
        arguments[name] = _layer_value(name, value, where)
    allowed = _KEYS_BY_KIND[kind]
    extra = sorted(set(arguments) - allowed - {"operation"})
    if extra:
        raise UsageError(f"{where}: {kind} layers take {', '.join(sorted(allowed)) or 'no keys'}; "
                         f"got {', '.join(extra)}")
    if isinstance(arguments.get("bias"), tuple):            # conv: bias: [0.1, -0.2]
        arguments["bias_values"] = arguments.pop("bias")
    _check_weights(kind, arguments, where)
    if kind == "pool":
        arguments.setdefault("stride", arguments["kernel"])
    if kind == "shuffle" and "groups" not in arguments:
        raise UsageError(f"{where}: shuffle needs g=N, the number of channel groups")
    if kind == "bias" and "bias_values" not in arguments:
        raise UsageError(f"{where}: bias needs value=N (or a per-channel list in YAML)")
    if kind == "fc" and "out_channels" not in arguments:
        raise UsageError(f"{where}: fc needs c=N, the number of outputs")
    return Layer(kind=kind, **arguments)


def _check_weights(kind: str, arguments: dict, where: str) -> None:
    """A conv/tconv layer's kernel size follows from its weights or spec; ``k`` alone is
    enough for explain (apply then asks for weights)."""
    if kind not in ("conv", "tconv"):
        if kind == "pool" and "kernel" not in arguments:
            raise UsageError(f"{where}: k=N (the window size) is required")
        return
    weights = arguments.get("weights")
    if weights is not None:
        sizes = weights.shape[-_spatial_levels(weights, arguments):]
        if "kernel" in arguments and tuple(arguments["kernel"]) not in (sizes, sizes[:1] * len(sizes)):
            raise UsageError(f"{where}: k={'x'.join(map(str, arguments['kernel']))} but the weights "
                             f"are {'x'.join(map(str, sizes))}; drop k or make them agree")
        arguments["kernel"] = sizes
    if "kernel" not in arguments:
        raise UsageError(f"{where}: give k=N (the kernel size), kernel=SPEC (e.g. "
                         "kernel=gaussian:sigma=2) or weights (in a YAML stack file)")
    if sum(x is not None for x in (weights, arguments.get("operation"), arguments.get("init"))) > 1:
        raise UsageError(f"{where}: give one of weights, kernel=SPEC or init=random")


def _spatial_levels(weights, arguments: dict) -> int:
    """How many trailing levels of explicit weights are the kernel's (the rest are channels).

    Weights nested 1-3 deep are one kernel for every channel; 3-5 deep carry C_out x C_in.
    3 is ambiguous until the input is known (a 1-D C_out x C_in x K or a D x H x W kernel):
    taken as a 1-D layer with channels when ``c`` is not given, else decided by ``c``.
    """
    levels = weights.ndim
    if levels in (1, 2):
        return levels
    if levels in (4, 5):
        return levels - 2
    return 1 if arguments.get("out_channels") in (None, weights.shape[0]) else 3


_WINDOW_KEYS = {"kernel", "stride", "padding", "dilation"}
_KEYS_BY_KIND = {
    "conv": _WINDOW_KEYS | {"out_channels", "groups", "bias", "bias_values", "weights", "init",
                            "seed", "pad_mode"},
    "tconv": _WINDOW_KEYS | {"out_channels", "groups", "bias", "bias_values", "weights", "init",
                             "seed", "output_padding"},
    "pool": _WINDOW_KEYS | {"pool_mode", "ceil_mode", "count_include_pad"},
    "relu": set(), "sigmoid": set(), "tanh": set(), "abs": set(),
    "leaky-relu": {"negative_slope"}, "shuffle": {"groups"}, "bias": {"bias_values"},
    "fc": {"out_channels", "bias"},
}


def _is_size(value) -> bool:
    """A kernel size (3, "3", "3x5", [3, 5]) rather than a kernel spec."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, list, tuple)):
        return True
    return re.fullmatch(r"\s*[0-9]+(\s*[x,]\s*[0-9]+)*\s*", str(value)) is not None


def _spec_defaults(spec: str, raw: dict, where: str) -> dict:
    """A conv layer from a kernel spec runs as ``apply -k SPEC`` does: the kernel's stride,
    padding and dilation unless the layer gives them ('same' padding, reflect borders)."""
    from .kernels import resolve

    given = {name: _layer_value(name, raw.pop(name), where)
             for name in ("stride", "padding", "dilation") if name in raw}
    try:
        operation = resolve(spec)
    except UsageError as error:
        size = "" if ":" in spec else f"{spec!r} is no kernel size (k=3, k=3x5) and no kernel: "
        raise UsageError(f"{where}: {size}{error}") from None
    layer = layer_for_operation(operation, **given)
    return {name: getattr(layer, name) for name in
            ("operation", "kernel", "stride", "padding", "dilation", "bias")}


def layer_for_operation(operation, *, stride=None, padding=None, dilation=None) -> Layer:
    """The conv layer that ``-k SPEC`` is: the given geometry, else the kernel's, else an image
    filter's (stride 1, 'same' padding, dilation 1)."""
    first = operation.kernels[0]
    if first.weights.ndim in (2, 4):
        stride, padding, dilation = kernel_geometry(first, stride, padding, dilation)
        size = first.size
    else:                                     # a 1-D or 3-D kernel: its levels tell its axes
        size = first.weights.shape if first.weights.ndim < 3 else first.weights.shape[2:]
        padding = "same" if padding is None else padding
    return Layer(kind="conv", kernel=tuple(size), stride=tuple(stride or (1,)), padding=padding,
                 dilation=tuple(dilation or (1,)), operation=operation,
                 bias=first.bias is not None or bool(operation.bias))    # counted if it adds


def _layer_value(name: str, value, where: str):
    """One key's value, checked: numbers as tuples, words as words, weights as arrays."""
    text = str(value).strip().lower()
    if name == "pool_mode":
        check_choice(f"{where}: mode", text, POOL_MODES)
        return text
    if name == "pad_mode":
        from .engine import PADDING_MODES

        check_choice(f"{where}: pad_mode", text, tuple(PADDING_MODES))
        return text
    if name == "init":
        check_choice(f"{where}: init", text, INITS)
        return text
    if name in ("ceil_mode", "count_include_pad") or (name == "bias" and _is_boolean(value)):
        if isinstance(value, bool):
            return value
        if text not in BOOLEAN_WORDS:
            raise UsageError(f"{where}: {name} must be true or false; got {value!r}")
        return BOOLEAN_WORDS[text]
    if name in ("bias", "bias_values"):
        return _numbers(value, where, name)
    if name == "negative_slope":
        return _numbers(value, where, "slope", single=True)[0]
    if name == "weights":
        return _weights(value, where)
    if name == "padding" and text in geometry.PADDING_WORDS:
        return text
    parts = list(value) if isinstance(value, (list, tuple)) else re.split(r"[x,]", text)
    numbers_ = tuple(whole_number(n) for n in parts)         # ASCII digits: not 3.0, True, ³
    if not numbers_ or None in numbers_ or len(numbers_) > 3:
        raise UsageError(f"{where}: {name} must be a whole number, HxW or DxHxW; got {value!r}")
    if name in ("out_channels", "groups", "seed"):
        if len(numbers_) != 1 or (numbers_[0] < 1 and name != "seed"):
            raise UsageError(f"{where}: {name} must be a positive whole number; got {value!r}")
        return numbers_[0]
    minimum = 0 if name in ("padding", "output_padding") else 1
    if min(numbers_) < minimum:
        raise UsageError(f"{where}: {name} must be >= {minimum}; got {value!r}")
    return numbers_


def _is_boolean(value) -> bool:
    return isinstance(value, bool) or str(value).strip().lower() in ("true", "false", "yes", "no")


def _numbers(value, where: str, name: str, *, single: bool = False) -> tuple[float, ...]:
    """A number or a list of numbers (YAML) as a tuple of floats."""
    values = value if isinstance(value, (list, tuple)) else [value]
    result = []
    for item in values:
        if isinstance(item, bool):
            raise UsageError(f"{where}: {name} must be a number or a list of numbers; got {value!r}")
        number = float(item) if isinstance(item, (int, float)) else real_number(item)
        if number is None:
            raise UsageError(f"{where}: {name} must be a number or a list of numbers; "
                             f"got {value!r}")
        if number != number or number in (float("inf"), float("-inf")):
            raise UsageError(f"{where}: {name} must be finite; got {value!r}")
        result.append(number)
    if not result or (single and len(result) != 1):
        raise UsageError(f"{where}: {name} must be {'one number' if single else 'numbers'}; "
                         f"got {value!r}")
    return tuple(result)


def _weights(value, where: str):
    """Explicit weights: a rectangular nesting of finite numbers, 1 to 5 levels deep, read
    as the YAML kernel loader reads them."""
    from .kernels import numeric_array

    array = numeric_array(value, where, "weights")
    if array.ndim > 5:
        raise UsageError(f"{where}: weights must be nested 1 to 5 deep; got shape {array.shape}")
    array.flags.writeable = False
    return array


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
            values = {str(k): v for k, v in entry.items() if k != "type"}
            layers.append(layer_from_mapping(str(entry["type"]), values, where))
        else:
            raise UsageError(f"{where}: expected a spec like 'conv:k=3,c=16' or a mapping with type:")
    return layers


def layers_from_specs(specs: list[str]) -> list[Layer]:
    """``--layer`` values: specs like ``conv:k=3,c=16``, or YAML files of layers."""
    layers = []
    for spec in specs:
        if spec.strip().lower().endswith((".yaml", ".yml")):
            layers.extend(load_layers(Path(spec.strip())))
        else:
            layers.append(parse_layer(spec))
    return layers


def check_runnable(layers: list[Layer], where: str = "--layer") -> None:
    """``apply`` runs every layer, so each conv/tconv needs weights; ``fc`` only explains."""
    for number, layer in enumerate(layers, 1):
        if layer.kind == "fc":
            raise UsageError(f"{where} {number} ({layer.describe()}): fc layers are counted by "
                             "convcli explain; apply runs convolution stacks (use a 1x1 conv, "
                             "k=1, for a per-pixel fully connected layer)")
        if layer.kind in ("conv", "tconv") and layer.weights is None and layer.operation is None \
                and layer.init is None:
            raise UsageError(f"{where} {number} ({layer.describe()}): no weights to run with; give "
                             "kernel=SPEC (e.g. conv:kernel=sobel-x), weights in a YAML stack file, "
                             "or init=random[,seed=N] (PyTorch's default initialisation)")
