"""Kernels: the model, the ``NAME:key=value`` spec parser, the YAML loader and the listing.

A ``Kernel`` is data: float64 weights in cross-correlation orientation, optional separable
factors, bias and default geometry. An ``Operation`` is what ``-k`` names: one kernel, or
several whose responses are combined (gradient magnitude, compass maximum). Built-ins
(``builtin_kernels.py``) and YAML files produce the same objects.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import numbers
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import builtin_kernels, geometry
from .engine import rank_one_factors
from .errors import UsageError
from .builtin_kernels import DEFAULT_MAX_KERNEL, check_kernel_side
from .numerals import REAL, whole_number
from .yaml_files import DEFAULT_MAX_YAML_BYTES, parse_yaml, read_yaml

__all__ = ["Kernel", "Operation", "KernelInfo", "resolve", "parse_spec", "format_spec", "load_yaml",
           "kernel_from_mapping", "inline_kernel", "list_kernels", "render_kernel", "library_folder",
           "COMBINE_RULES"]

COMBINE_RULES = ("single", "magnitude", "max")
YAML_SUFFIXES = (".yaml", ".yml")
YAML_KEYS = ("name", "description", "weights", "separable", "scale", "normalize", "bias",
             "stride", "padding", "dilation")
FLOAT32_MAX = float(np.finfo(np.float32).max)     # the engine computes in float32


@dataclass(frozen=True, eq=False)
class Kernel:
    """Weights (kH, kW) or (C_out, C_in, kH, kW), float64, read-only, cross-correlation order."""

    name: str
    weights: np.ndarray
    description: str = ""
    factors: tuple[np.ndarray, np.ndarray] | None = None
    bias: float | tuple[float, ...] | None = None
    stride: int | tuple[int, int] = 1
    padding: object = None
    dilation: int | tuple[int, int] = 1
    source: str = "built-in"

    def __post_init__(self) -> None:
        weights = np.array(self.weights, dtype=np.float64)
        if not 1 <= weights.ndim <= 5 or weights.size == 0:
            raise UsageError(f"{self.name}: weights must be a non-empty nesting 1 to 5 deep (a "
                             f"kernel, or C_out x C_in x kernel); got shape {weights.shape}")
        if not np.all(np.isfinite(weights)) or np.abs(weights).max() > FLOAT32_MAX:
            raise UsageError(f"{self.name}: weights must be finite numbers within float32's range "
                             f"(|w| <= {FLOAT32_MAX:.3g}); got {_first_bad(weights):g}")
        weights.flags.writeable = False
        object.__setattr__(self, "weights", weights)
        if self.factors is not None:
            column, row = (np.array(f, dtype=np.float64).ravel() for f in self.factors)
            if weights.ndim != 2 or not np.allclose(np.outer(column, row), weights,
                                                    rtol=1e-9, atol=1e-12):
                raise UsageError(f"{self.name}: separable factors ({column.size} x {row.size}) "
                                 f"do not multiply out to the {weights.shape} weights")
            column.flags.writeable = row.flags.writeable = False
            object.__setattr__(self, "factors", (column, row))

    @property
    def shape(self) -> tuple[int, ...]:
        return self.weights.shape

    @property
    def size(self) -> tuple[int, int]:
        """(kH, kW)."""
        return self.weights.shape[-2:]

    @property
    def in_channels(self) -> int | None:
        return self.weights.shape[1] if self.weights.ndim == 4 else None

    @property
    def out_channels(self) -> int | None:
        return self.weights.shape[0] if self.weights.ndim == 4 else None

    @property
    def total(self) -> float:
        return float(self.weights.sum())

    @property
    def is_zero_sum(self) -> bool:
        return abs(self.total) < 1e-9 * max(1.0, float(np.abs(self.weights).sum()))

    @property
    def is_separable(self) -> bool:
        """A 2-D kernel that is an outer product of a column and a row (by the engine's own
        rank-1 test, so ``kernels show`` and the engine's choice of path agree)."""
        if self.weights.ndim != 2:
            return False
        return self.factors is not None or rank_one_factors(self.weights[None, None]) is not None

    def with_defaults(self, **defaults) -> "Kernel":
        """A copy with new default geometry (``dilation=``, ``stride=``, ``padding=``)."""
        values = {name: getattr(self, name) for name in self.__dataclass_fields__}
        values.update(defaults)
        return Kernel(**values)

    def scaled(self, scale: float) -> "Kernel":
        """The weights (and the column factor) multiplied by ``scale``; the bias unchanged."""
        if scale == 1.0:
            return self
        factors = None if self.factors is None else (self.factors[0] * scale, self.factors[1])
        return replace(self, weights=self.weights * scale, factors=factors)


@dataclass(frozen=True)
class Operation:
    """What one ``-k`` names: kernels and how their responses combine into one output."""

    name: str
    kernels: tuple[Kernel, ...]
    combine: str = "single"
    description: str = ""
    bias: float = 0.0           # added to the combined response (apply --bias)

    def __post_init__(self) -> None:
        if self.combine not in COMBINE_RULES:
            raise ValueError(f"combine must be one of {COMBINE_RULES}; got {self.combine!r}")
        if not math.isfinite(self.bias):
            raise UsageError(f"{self.name}: bias must be a finite number; got {self.bias}")

    def scaled(self, scale: float = 1.0, bias: float = 0.0) -> "Operation":
        """This operation with every kernel's weights multiplied by ``scale`` and ``bias``
        added to its final response, after the responses are combined (``sqrt(gx² + gy²) +
        bias``): ``apply --scale/--bias``, OpenCV filter2D's ``kernel * scale`` and ``delta``,
        ImageMagick's ``-bias``."""
        if scale == 1.0 and bias == 0.0:
            return self
        return replace(self, kernels=tuple(k.scaled(scale) for k in self.kernels),
                       bias=self.bias + bias)


@dataclass(frozen=True)
class KernelInfo:
    """One row of ``convcli kernels list``."""

    name: str
    size: str
    kind: str
    description: str


# --- specs -----------------------------------------------------------------------------------

def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"gaussian:sigma=2,size=9"`` -> ``("gaussian", {"sigma": "2", "size": "9"})``.

    The name is lower-cased; a YAML path (``k.yaml`` or ``k.yaml:dilation=2``) keeps its case.
    """
    text = spec.strip()
    if text.lower().endswith(YAML_SUFFIXES):
        return text, {}
    head, colon, rest = text.rpartition(":")
    if not (colon and head.lower().endswith(YAML_SUFFIXES)):
        head, _, rest = text.partition(":")
        head = head.strip().lower()
    if not head.strip():
        raise UsageError(f"kernel {spec!r}: the name is missing (see convcli kernels list)")
    return head.strip(), _parse_parameters(rest, spec)


def _parse_parameters(text: str, spec: str) -> dict[str, str]:
    parameters: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals or not key or not value:
            raise UsageError(f"kernel {spec!r}: parameters are key=value separated by commas; "
                             f"got {item!r}")
        if key in parameters:
            raise UsageError(f"kernel {spec!r}: {key} is given twice")
        parameters[key] = value
    return parameters


def format_spec(name: str, parameters: dict[str, object] | None = None) -> str:
    """The inverse of ``parse_spec``: ``("box", {"size": 5})`` -> ``"box:size=5"``."""
    items = ",".join(f"{key}={value}" for key, value in (parameters or {}).items())
    return f"{name}:{items}" if items else name


def resolve(spec: str, *, max_kernel: int = DEFAULT_MAX_KERNEL,
            max_yaml_bytes: int = DEFAULT_MAX_YAML_BYTES) -> Operation:
    """The Operation a ``-k`` value names: a built-in, a library kernel, a YAML file, or an
    inline kernel (``[[0,-1,0],[-1,5,-1],[0,-1,0]]``, ``3x3: 0,-1,0 -1,5,-1 0,-1,0``).

    A kernel with a side above ``max_kernel`` and a YAML file above ``max_yaml_bytes`` are
    refused (0: no limit); a built-in is refused from its parameters, before it is built."""
    text = str(spec).strip()
    inline = inline_kernel(text)
    if inline is not None:
        check_kernel_side(max(inline.size), text, max_kernel)
        return Operation(inline.name, (inline,), "single", inline.description)
    name, parameters = parse_spec(text)
    dilation = parameters.pop("dilation", None)
    if name in builtin_kernels.BUILTINS:
        operation = builtin_kernels.build(name, parameters, spec=text, max_kernel=max_kernel)
    else:
        path, label = _yaml_source(name, text)
        if parameters:
            raise UsageError(f"{name}: a YAML kernel takes only dilation=D; got "
                             f"{', '.join(parameters)}")
        operation = load_yaml(path, max_kernel=max_kernel, max_yaml_bytes=max_yaml_bytes)
        if label is not None:
            operation = Operation(label, operation.kernels, operation.combine, operation.description)
    if dilation is not None:
        value = _dilation_value(name, dilation)
        label = operation.name if "dilation=" in operation.name else (
            f"{operation.name}:dilation={value}")                # kept in {kernel} of file names
        operation = Operation(label, tuple(k.with_defaults(dilation=value)
                                                    for k in operation.kernels),
                              operation.combine, operation.description)
    return operation


def _yaml_source(name: str, text: str) -> tuple[Path, str | None]:
    """(file, operation name or None for the file's own) for a non-built-in ``name``."""
    if name.lower().endswith(YAML_SUFFIXES):
        return Path(name), None
    library = _library_path(name)
    if library is not None:
        return library, text
    if _is_file(text):
        return Path(text), None
    known = list(builtin_kernels.BUILTINS) + list(_library())
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UsageError(f"unknown kernel {name!r}{hint} (convcli kernels list shows all)")


def _is_file(text: str) -> bool:
    """``text`` names an existing file (False, not an OSError, for a name too long to be one)."""
    try:
        return Path(text).is_file()
    except OSError:
        return False


def _dilation_value(name: str, text: str) -> int:
    value = whole_number(text)
    if value is None or value < 1:
        raise UsageError(f"{name}: dilation must be a whole number >= 1; got {text}")
    return value


# --- inline kernels --------------------------------------------------------------------------

INLINE_FORMS = ("a nested list such as [[0,-1,0],[-1,5,-1],[0,-1,0]], or ImageMagick's 'WxH: values' "
                "such as '3x3: 0,-1,0 -1,5,-1 0,-1,0'")
# ImageMagick's "WxH[+X+Y][@><]: values" (MagickCore AcquireKernelInfo); W alone means W x W.
IMAGEMAGICK_KERNEL = re.compile(r"([0-9]+)(?:[xX]([0-9]+))?([+-][0-9]+[+-][0-9]+)?([@<>]*)\s*:(.*)",
                                re.DOTALL)
NUMBER = REAL                       # what strtod reads (ASCII digits only)
NOT_IN_KERNEL = ("nan", "-")        # ImageMagick: "not part of the kernel" (a weight of 0 here)
SEPARATORS = re.compile(r"[\s,]+")


def inline_kernel(spec: str) -> Kernel | None:
    """The Kernel an inline ``-k`` value writes out, or None when ``spec`` is not inline.

    Two spellings: a nested list (YAML or JSON; 1 to 5 levels, checked as a YAML file's
    ``weights``), and ImageMagick's kernel string ``WxH: v,v,...`` (W columns x H rows, values
    row by row, separated by commas and/or spaces; ``W:`` is W x W; the centre origin
    ``+X+Y`` is accepted, others are refused; ``nan`` or ``-``, ImageMagick's "not part of the
    kernel", is a weight of 0, which is what leaving a tap out of a convolution means). The
    old ImageMagick list without ``WxH:`` works for odd square counts (9, 25, ...).

    The kernel is named ``inline-{shape}-{hash}`` (``inline-3x3-5e1f0a``): file-name safe for
    ``{kernel}`` in output names, the same for the same weights, different for others.
    """
    text = spec.strip()
    if text.lower().endswith(YAML_SUFFIXES) and not text.startswith("["):
        return None
    if text.startswith("["):
        weights = _inline_list(text, spec)
    elif match := IMAGEMAGICK_KERNEL.fullmatch(text):
        weights = _imagemagick_kernel(match, spec)
    elif text and all(NUMBER.fullmatch(t) or t.lower() in NOT_IN_KERNEL
                      for t in SEPARATORS.split(text) if t):
        weights = _imagemagick_list(text, spec)
    else:
        return None
    digest = hashlib.sha1(repr(weights.shape).encode() + weights.tobytes()).hexdigest()[:6]
    return Kernel(name=f"inline-{'x'.join(map(str, weights.shape))}-{digest}", weights=weights,
                  description=f"inline kernel {text}", source="inline")


def _inline_list(text: str, spec: str) -> np.ndarray:
    where = f"kernel {spec!r}"
    try:
        value = parse_yaml(text, where, lines=False)
    except UsageError as error:
        raise UsageError(f"{error}; an inline kernel is {INLINE_FORMS}") from None
    return _weights(value, where)


def _imagemagick_kernel(match: re.Match, spec: str) -> np.ndarray:
    """``WxH[+X+Y]: values`` -> (H, W) weights."""
    width, height, origin, flags, body = match.groups()
    width, height = int(width), int(height or width)
    where = f"kernel {spec!r}"
    if width < 1 or height < 1:
        raise UsageError(f"{where}: width and height must be >= 1; got {width}x{height}")
    if flags:
        raise UsageError(f"{where}: ImageMagick's rotated kernel lists ({flags}) are not supported; "
                         "give each rotation its own -k")
    if ";" in body:
        raise UsageError(f"{where}: one kernel per -k; give each kernel of the list its own -k")
    centre = ((width - 1) // 2, (height - 1) // 2)
    if origin and tuple(int(n) for n in re.findall(r"[+-][0-9]+", origin)) != centre:
        raise UsageError(f"{where}: the origin {origin} is not supported; convcli anchors a "
                         f"{width}x{height} kernel at +{centre[0]}+{centre[1]} (drop the origin, "
                         "or pad the weights with zeros to move it)")
    values = _imagemagick_values(body, spec)
    if len(values) != width * height:
        raise UsageError(f"{where}: {width}x{height} (width x height) needs {width * height} values; "
                         f"got {len(values)}")
    return _weights(np.reshape(values, (height, width)).tolist(), where)


def _imagemagick_list(text: str, spec: str) -> np.ndarray:
    """ImageMagick's old style: an odd square count of values, no size."""
    values = _imagemagick_values(text, spec)
    side = math.isqrt(len(values))
    if side * side != len(values) or side % 2 == 0 or side < 3:
        raise UsageError(f"kernel {spec!r}: {len(values)} number(s) and no size; an inline kernel "
                         f"is {INLINE_FORMS} (without WxH: 9, 25, 49, ... values)")
    return _weights(np.reshape(values, (side, side)).tolist(), f"kernel {spec!r}")


def _imagemagick_values(body: str, spec: str) -> list[float]:
    values = []
    for token in filter(None, SEPARATORS.split(body.strip())):
        if token.lower() in NOT_IN_KERNEL:
            values.append(0.0)
        elif NUMBER.fullmatch(token):
            values.append(float(token))
        else:
            raise UsageError(f"kernel {spec!r}: {token!r} is not a number; the values are numbers "
                             "separated by commas and/or spaces (nan or - for no weight)")
    return values


# --- the YAML library ------------------------------------------------------------------------

def library_folder() -> Path | None:
    """The shipped YAML library: inside the installed package, else the checkout's ``kernels/``."""
    here = Path(__file__).resolve().parent
    for folder in (here / "kernel_library", here.parent / "kernels"):
        if folder.is_dir():
            return folder
    return None


def _library() -> dict[str, Path]:
    """Library kernel name (the file stem) -> path."""
    folder = library_folder()
    if folder is None:
        return {}
    return {path.stem.lower(): path for path in sorted(folder.iterdir())
            if path.suffix.lower() in YAML_SUFFIXES}


def _library_path(name: str) -> Path | None:
    """The library file called ``name``: by its file stem, else by its ``name:`` field."""
    files = _library()
    if name in files:
        return files[name]
    for path in files.values():
        try:
            document = read_yaml(path, "kernel file")
        except UsageError:
            continue
        if isinstance(document, dict) and str(document.get("name", "")).lower() == name:
            return path
    return None


def load_yaml(path: Path, *, max_kernel: int = DEFAULT_MAX_KERNEL,
              max_yaml_bytes: int = DEFAULT_MAX_YAML_BYTES) -> Operation:
    """Load a YAML kernel file; every problem is a UsageError that starts with the path."""
    document = read_yaml(path, "kernel file", max_bytes=max_yaml_bytes)
    kernel = kernel_from_mapping(document, str(path), default_name=path.stem,
                                 max_kernel=max_kernel)
    return Operation(kernel.name, (kernel,), "single", kernel.description)


def kernel_from_mapping(document, where: str, *, default_name: str,
                        max_kernel: int = DEFAULT_MAX_KERNEL) -> Kernel:
    """A Kernel from a parsed YAML mapping (see kernels/README.md for the format); a side
    above ``max_kernel`` (0: no limit) is refused, a separable one before it is multiplied out."""
    if not isinstance(document, dict):
        raise UsageError(f"{where}: expected a mapping with 'weights' or 'separable'")
    unknown = sorted(set(map(str, document)) - set(YAML_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys are "
                         f"{', '.join(YAML_KEYS)}")
    if ("weights" in document) == ("separable" in document):
        raise UsageError(f"{where}: give exactly one of 'weights' or 'separable'")
    factors = None
    if "weights" in document:
        weights = _weights(document["weights"], where)
        check_kernel_side(max(weights.shape[-2:]), where, max_kernel)
    else:
        separable = document["separable"]
        if not isinstance(separable, dict) or set(separable) != {"column", "row"}:
            raise UsageError(f"{where}: separable needs exactly 'column' and 'row' lists")
        column = numeric_array(separable["column"], where, "separable.column")
        row = numeric_array(separable["row"], where, "separable.row")
        if column.ndim != 1 or row.ndim != 1:
            raise UsageError(f"{where}: separable column and row must be flat lists of numbers")
        check_kernel_side(max(column.size, row.size), where, max_kernel)
        factors, weights = (column, row), np.outer(column, row)
    scale = _scale(document, weights, where)
    name = str(document.get("name", default_name))
    return Kernel(name=name, weights=weights, description=str(document.get("description", "")),
                  factors=factors, bias=_bias(document.get("bias"), weights, where),
                  stride=_geometry_pair(document, "stride", where),
                  padding=_padding(document.get("padding"), where),
                  dilation=_geometry_pair(document, "dilation", where), source=where).scaled(scale)


def _weights(value, where: str) -> np.ndarray:
    """Kernel weights as YAML files and inline kernels give them: ``numeric_array``, 1 to 5
    levels deep."""
    weights = numeric_array(value, where, "weights")
    if weights.ndim > 5:
        raise UsageError(f"{where}: weights must be nested 1 to 5 deep: a 1-D, 2-D or 3-D kernel, "
                         f"or C_out x C_in x kernel; got {weights.ndim} levels of lists")
    return weights


def _geometry_pair(document: dict, key: str, where: str) -> tuple[int, int]:
    value = document.get(key, 1)
    return geometry.pair(tuple(value) if isinstance(value, list) else value, f"{where}: {key}")


def _padding(value, where: str):
    if value is None or (isinstance(value, str) and value.lower() in geometry.PADDING_WORDS):
        return value.lower() if isinstance(value, str) else None
    if isinstance(value, str):
        raise UsageError(f"{where}: padding must be {', '.join(geometry.PADDING_WORDS)}, N or [H, W]; "
                         f"got {value!r}")
    return geometry.pair(tuple(value) if isinstance(value, list) else value, f"{where}: padding",
                         minimum=0)


def numeric_array(value, where: str, key: str) -> np.ndarray:
    """A YAML list (nested any depth) of finite numbers as a float64 array; a UsageError
    naming ``where`` and ``key`` otherwise."""
    if not isinstance(value, list) or not value:
        raise UsageError(f"{where}: {key} must be a non-empty list")
    for item in _flatten(value):
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise UsageError(f"{where}: {key} must hold only numbers; got {item!r}")
    try:
        array = np.array(value, dtype=np.float64)
    except ValueError:
        raise UsageError(f"{where}: {key} must be a rectangular nesting of numbers "
                         "(every row the same length)") from None
    except OverflowError:          # an integer written out with more than 308 digits
        raise UsageError(f"{where}: {key} must hold finite numbers within float32's range "
                         f"(|x| <= {FLOAT32_MAX:.3g}); got an integer too large for a float") from None
    if array.size == 0:
        raise UsageError(f"{where}: {key} has no numbers in it")
    if not np.all(np.isfinite(array)) or np.abs(array).max() > FLOAT32_MAX:
        raise UsageError(f"{where}: {key} must hold finite numbers within float32's range "
                         f"(|x| <= {FLOAT32_MAX:.3g}, no inf or nan); got {_first_bad(array):g}")
    return array


def _first_bad(array: np.ndarray) -> float:
    """The first value that is not finite or beyond float32's range."""
    return float(array[~(np.abs(array) <= FLOAT32_MAX)].flat[0])


def _flatten(value):
    for item in value:
        if isinstance(item, list):
            yield from _flatten(item)
        else:
            yield item


def _scale(document: dict, weights: np.ndarray, where: str) -> float:
    normalize = document.get("normalize", False)
    if not isinstance(normalize, bool):
        raise UsageError(f"{where}: normalize must be true or false; got {normalize!r}")
    if "scale" in document and normalize:
        raise UsageError(f"{where}: give scale or normalize, not both")
    if normalize:
        total = weights.sum()
        if abs(total) < 1e-12 * max(1.0, np.abs(weights).sum()):
            raise UsageError(f"{where}: normalize: true divides by the sum, but the weights sum to 0 "
                             "(a zero-sum kernel such as an edge detector); use scale instead")
        return 1.0 / float(total)
    return _finite(document.get("scale", 1.0), where, "scale must be a number")


def _bias(bias, weights: np.ndarray, where: str):
    if bias is None:
        return None
    values = bias if isinstance(bias, list) else [bias]
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        raise UsageError(f"{where}: bias must be a number or a list of numbers; got {bias!r}")
    channels = weights.shape[0] if weights.ndim >= 3 else 1
    if isinstance(bias, list) and len(values) not in (1, channels):
        raise UsageError(f"{where}: bias has {len(values)} values but the kernel makes "
                         f"{channels} output channel(s)")
    rule = "bias must be a number or a list of numbers"
    return tuple(_finite(v, where, rule) for v in values) if isinstance(bias, list) else (
        _finite(bias, where, rule))


def _finite(value, where: str, rule: str) -> float:
    """``value`` as a finite float within float32's range; a UsageError saying ``rule``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UsageError(f"{where}: {rule}; got {value!r}")
    try:
        number, shown = float(value), None
    except OverflowError:           # an integer with more than 308 digits
        number, shown = math.inf, "an integer too large for a float"
    if not abs(number) <= FLOAT32_MAX:
        raise UsageError(f"{where}: {rule} within float32's range (|x| <= {FLOAT32_MAX:.3g}, no inf "
                         f"or nan); got {shown or f'{number:g}'}")
    return number


# --- listing and showing ---------------------------------------------------------------------

def list_kernels() -> list[KernelInfo]:
    """Every built-in kernel and operation, then the YAML library."""
    infos = [KernelInfo(name, builtin_kernels.size_label(name), entry.kind, entry.description)
             for name, entry in builtin_kernels.BUILTINS.items()]
    for name, path in _library().items():
        try:
            kernel = load_yaml(path).kernels[0]
        except UsageError as error:
            infos.append(KernelInfo(name, "?", "library", f"(broken: {error})"))
            continue
        infos.append(KernelInfo(name, "x".join(map(str, kernel.shape)), "library",
                                kernel.description.strip().splitlines()[0] if kernel.description else ""))
    return infos


def render_kernel(operation: Operation) -> str:
    """The matrix of every kernel with its sum and whether it separates (like showKernel)."""
    several = len(operation.kernels) > 1
    lines = []
    if several:
        lines.append(f"{operation.name}: {len(operation.kernels)} kernels, responses combined by "
                     f"{'sqrt(sum of squares)' if operation.combine == 'magnitude' else 'maximum'}")
        lines.append(f"  {operation.description}")
    for kernel in operation.kernels:
        shape = "x".join(map(str, kernel.shape))
        separable = "yes" if kernel.is_separable else "no"
        total = 0.0 if kernel.is_zero_sum else kernel.total
        details = [f"sum {_format(total)}", f"separable: {separable}"]
        if kernel.dilation not in (1, (1, 1)):
            details.append(f"dilation {kernel.dilation}")
        if kernel.bias is not None:
            details.append(f"bias {kernel.bias}")
        lines.append(f"{kernel.name} ({shape}): " + ", ".join(details))
        if kernel.description and not several:
            lines.append(f"  {kernel.description}")
        if kernel.weights.ndim <= 2:
            lines.extend(_matrix_lines(np.atleast_2d(kernel.weights)))
        else:
            labels = ("out", "in", "z") if kernel.weights.ndim == 5 else (
                ("out", "in") if kernel.weights.ndim == 4 else ("index",))
            for index in np.ndindex(*kernel.weights.shape[:-2]):
                lines.append("  [" + ", ".join(f"{name} {i}" for name, i in zip(labels, index)) + "]")
                lines.extend(_matrix_lines(kernel.weights[index]))
        if kernel.factors is not None:
            lines.append("  column: " + " ".join(_format(v) for v in kernel.factors[0]))
            lines.append("  row:    " + " ".join(_format(v) for v in kernel.factors[1]))
    return "\n".join(lines)


def _matrix_lines(matrix: np.ndarray) -> list[str]:
    cells = [[_format(v) for v in row] for row in matrix]
    width = max(len(c) for row in cells for c in row)
    return ["  " + " ".join(c.rjust(width) for c in row) for row in cells]


def _format(value: float) -> str:
    """Integers without decimals, others with 4 significant digits."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.4g}"

