"""The built-in kernels and operations, with their parameters.

Every weight grid is written for cross-correlation (the orientation PyTorch and
OpenCV's filter2D use): ``sobel-x`` responds positively where the image gets brighter
to the right. Smoothing kernels sum to 1; derivative kernels sum to 0 and are never
normalised. ``build`` turns a name and its ``key=value`` strings into an Operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import UsageError
from .numerals import real_number, whole_number

__all__ = ["BUILTINS", "build", "size_label", "Builtin", "Parameter", "gaussian_taps", "rotations",
           "DEFAULT_MAX_KERNEL", "check_kernel_side"]

# Kernels with a side above this are refused unless --max-kernel allows them. 1025 taps is a
# Gaussian of sigma 170 (wider blurs are better done on a downscaled image); its weights are
# 8 MB as float64 and the FFT path runs it in seconds on a 4096^2 image. A side of 30001
# (gaussian:sigma=5000) would be 7 GB of weights before a single pixel is touched.
DEFAULT_MAX_KERNEL = 1025

# Derivative and smoothing taps of the classic 3x3 gradient operators (column x row).
DERIVATIVE = np.array([-1.0, 0.0, 1.0])
SMOOTHING = {"sobel": np.array([1.0, 2.0, 1.0]),          # Sobel & Feldman (1968)
             "scharr": np.array([3.0, 10.0, 3.0]),        # Scharr (2000): better rotation invariance
             "prewitt": np.array([1.0, 1.0, 1.0])}        # Prewitt (1970)
KIRSCH = np.array([[5.0, 5, 5], [-3, 0, -3], [-3, -3, -3]])  # Kirsch (1971), the north mask
# Robinson (1977), the 5-level north mask: its ring holds 1, 2, 1, 0, -1, -2, -1, 0 like Sobel's.
ROBINSON = np.array([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
COMPASS_BASES = {"sobel": np.outer(DERIVATIVE[::-1], SMOOTHING["sobel"]),
                 "prewitt": np.outer(DERIVATIVE[::-1], SMOOTHING["prewitt"]),
                 "scharr": np.outer(DERIVATIVE[::-1], SMOOTHING["scharr"]),
                 "kirsch": KIRSCH,
                 "robinson": ROBINSON}
# The 8 cells around the centre of a 3x3 grid, clockwise from the top-left corner.
RING = [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0)]


@dataclass(frozen=True)
class Parameter:
    """One ``key=value`` of a built-in: how to parse it, its default, and the rule it obeys."""

    parse: Callable[[str], object]
    default: object
    valid: Callable[[object], bool] = lambda value: True
    rule: str = ""


@dataclass(frozen=True)
class Builtin:
    """A named kernel or operation: ``make(**parameters)`` returns the kernel list parts."""

    make: Callable[..., list[tuple[str, np.ndarray, tuple | None]]]
    description: str
    kind: str = "kernel"
    combine: str = "single"
    parameters: dict[str, Parameter] = field(default_factory=dict)
    side: Callable[..., float] | None = None   # the largest side, from the parameters alone


# --- weight factories: each returns [(name, weights, factors or None), ...] ----------------

def _separable(name: str, column: np.ndarray, row: np.ndarray):
    return [(name, np.outer(column, row), (column, row))]


def gaussian_side(sigma: float, size: int | None = None) -> float:
    """``size``, else ``2*ceil(3 sigma) + 1``: the taps of a Gaussian (inf when sigma is huge)."""
    return size or 2 * math.ceil(min(3 * sigma, 2.0 ** 62)) + 1


def check_kernel_side(side: float, spec: str, max_kernel: int) -> None:
    """Refuse a kernel with a side above ``max_kernel`` (0: no limit) before its weights exist."""
    if max_kernel and side > max_kernel:
        raise UsageError(f"kernel {spec}: {side:,.0f} x {side:,.0f} taps is larger than --max-kernel "
                         f"{max_kernel} (the largest side); give --max-kernel {side:.0f} (0: no "
                         f"limit) if the machine has the memory: {_bytes(8 * side * side)} of "
                         "weights")


def _bytes(count: float) -> str:
    return f"{count / 1e9:,.0f} GB" if count >= 1e10 else f"{count / 1e6:,.0f} MB"


def gaussian_taps(sigma: float, size: int | None = None) -> np.ndarray:
    """Sampled Gaussian, ``2*ceil(3 sigma) + 1`` taps unless ``size`` is given, summing to 1."""
    size = int(gaussian_side(sigma, size))
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-x ** 2 / (2 * sigma ** 2))
    return taps / taps.sum()


def _gaussian_2d(sigma: float, size: int) -> np.ndarray:
    taps = gaussian_taps(sigma, size)
    return np.outer(taps, taps)


def _box(size: int):
    taps = np.full(size, 1.0 / size)
    return _separable(f"box:size={size}", taps, taps)


def _gaussian(sigma: float, size: int | None):
    taps = gaussian_taps(sigma, size)
    return _separable(f"gaussian:sigma={sigma:g}", taps, taps)


def _binomial(size: int):
    # int / int rounds exactly even where comb() exceeds float64 (size > 1030)
    taps = np.array([math.comb(size - 1, k) / 2 ** (size - 1) for k in range(size)])
    taps /= taps.sum()
    return _separable(f"binomial:size={size}", taps, taps)


def _gradient(operator: str, axis: str):
    smooth = SMOOTHING[operator]
    if axis == "x":
        return _separable(f"{operator}-x", smooth, DERIVATIVE)
    return _separable(f"{operator}-y", DERIVATIVE, smooth)


def _fixed(name: str, grid) -> Callable[[], list]:
    weights = np.array(grid, dtype=np.float64)
    return lambda: [(name, weights, None)]


def _laplacian(neighbors: int):
    if neighbors == 4:
        grid = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    else:
        grid = [[1, 1, 1], [1, -8, 1], [1, 1, 1]]
    return [(f"laplacian:neighbors={neighbors}", np.array(grid, dtype=np.float64), None)]


def _log(sigma: float, size: int | None):
    """Laplacian of a unit-sum Gaussian, shifted to sum exactly to 0 (negative centre)."""
    size = int(gaussian_side(sigma, size))
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    gaussian = np.exp(-r2 / (2 * sigma ** 2)) / (2 * math.pi * sigma ** 2)
    weights = gaussian * (r2 - 2 * sigma ** 2) / sigma ** 4
    return [(f"log:sigma={sigma:g}", weights - weights.mean(), None)]


def _dog(sigma1: float, sigma2: float):
    if sigma2 <= sigma1:
        raise UsageError(f"dog: sigma2 must be larger than sigma1; got sigma1={sigma1:g}, "
                         f"sigma2={sigma2:g}")
    size = int(gaussian_side(sigma2))
    return [(f"dog:sigma1={sigma1:g},sigma2={sigma2:g}",
             _gaussian_2d(sigma1, size) - _gaussian_2d(sigma2, size), None)]


def _motion(length: int, angle: float):
    """A line of ``length`` unit taps through the centre at ``angle`` degrees (counter-clockwise
    from the x axis), each tap spread bilinearly over its 4 neighbours, normalised to sum 1."""
    size = length if length % 2 else length + 1
    centre = (size - 1) / 2
    weights = np.zeros((size, size))
    theta = math.radians(angle)
    for t in np.arange(length) - (length - 1) / 2:
        x, y = centre + t * math.cos(theta), centre - t * math.sin(theta)
        x0, y0 = math.floor(x), math.floor(y)
        fx, fy = x - x0, y - y0
        for dy, dx, share in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                              (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
            if share > 1e-12:
                weights[min(y0 + dy, size - 1), min(x0 + dx, size - 1)] += share
    return [(f"motion:length={length},angle={angle:g}", weights / weights.sum(), None)]


def rotations(grid: np.ndarray, name: str):
    """The 3x3 ``grid`` turned in 8 steps of 45 degrees (its outer ring shifted one cell)."""
    values = [grid[cell] for cell in RING]
    kernels = []
    for step in range(8):
        rotated = grid.copy()
        for index, cell in enumerate(RING):
            rotated[cell] = values[(index - step) % 8]
        kernels.append((f"{name}-{45 * step}", rotated, None))
    return kernels


def _compass(base: str):
    return rotations(COMPASS_BASES[base], f"compass-{base}")


# --- the table -------------------------------------------------------------------------------

def _positive_int(default=None, minimum=1, odd=False):
    def valid(value):
        return value is None or (value >= minimum and (not odd or value % 2 == 1))
    rule = f"{'an odd ' if odd else 'a '}whole number >= {minimum}"
    return Parameter(whole_number, default, valid, rule)


def _positive_float(default):
    return Parameter(real_number, default, lambda value: value > 0 and math.isfinite(value), "> 0")


BUILTINS: dict[str, Builtin] = {
    "identity": Builtin(_fixed("identity", [[1.0]]), "Copies the image (1x1 kernel of 1)"),
    "box": Builtin(_box, "Mean of an N x N window (separable)",
                   parameters={"size": _positive_int(3)}, side=lambda size: size),
    "gaussian": Builtin(_gaussian, "Gaussian blur; size 2*ceil(3 sigma)+1 unless given (separable)",
                        parameters={"sigma": _positive_float(1.0),
                                    "size": _positive_int(None, odd=True)}, side=gaussian_side),
    "binomial": Builtin(_binomial, "Binomial (Pascal's triangle) blur, a Gaussian approximation",
                        parameters={"size": _positive_int(5)}, side=lambda size: size),
    "laplacian": Builtin(_laplacian, "Second derivative: 4- or 8-neighbour Laplacian (zero-sum)",
                         parameters={"neighbors": Parameter(whole_number, 4, lambda v: v in (4, 8), "4 or 8")}),
    "log": Builtin(_log, "Laplacian of Gaussian, zero-sum (blob and edge detector)",
                   parameters={"sigma": _positive_float(1.0), "size": _positive_int(None, odd=True)},
                   side=gaussian_side),
    "dog": Builtin(_dog, "Difference of Gaussians G(sigma1) - G(sigma2), sigma2 > sigma1",
                   parameters={"sigma1": _positive_float(1.0), "sigma2": _positive_float(1.6)},
                   side=lambda sigma1, sigma2: gaussian_side(sigma2)),
    "sharpen": Builtin(_fixed("sharpen", [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
                       "Sharpen: identity plus the negative 4-neighbour Laplacian"),
    "emboss": Builtin(_fixed("emboss", [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]),
                      "Emboss, lit from the top left"),
    "motion": Builtin(_motion, "Motion blur: a line of N taps at an angle (degrees)",
                      parameters={"length": _positive_int(9),
                                  "angle": Parameter(real_number, 0.0, math.isfinite,
                                                     "a finite number")},
                      side=lambda length, angle: length + 1 - length % 2),
    "roberts-x": Builtin(_fixed("roberts-x", [[1, 0], [0, -1]]), "Roberts cross, diagonal"),
    "roberts-y": Builtin(_fixed("roberts-y", [[0, 1], [-1, 0]]), "Roberts cross, anti-diagonal"),
}
for _operator in SMOOTHING:
    for _axis, _direction in (("x", "left to right"), ("y", "top to bottom")):
        BUILTINS[f"{_operator}-{_axis}"] = Builtin(
            (lambda o=_operator, a=_axis: _gradient(o, a)),
            f"{_operator.capitalize()} derivative {_direction} (separable)")
    BUILTINS[_operator] = Builtin(
        (lambda o=_operator: _gradient(o, "x") + _gradient(o, "y")),
        f"{_operator.capitalize()} gradient magnitude sqrt(gx^2 + gy^2)",
        kind="operation", combine="magnitude")
BUILTINS["kirsch"] = Builtin(lambda: rotations(KIRSCH, "kirsch"),
                             "Kirsch compass: maximum over 8 directions",
                             kind="operation", combine="max")
BUILTINS["compass"] = Builtin(
    _compass, "Compass operator: the base kernel in 8 directions, maximum response",
    kind="operation", combine="max",
    parameters={"base": Parameter(str.lower, "sobel", lambda v: v in COMPASS_BASES,
                                  "one of " + ", ".join(COMPASS_BASES))})


def size_label(name: str) -> str:
    """The default size for listings: ``"3x3"``, ``"7x7 at sigma=1"``, ``"8 x 3x3"``."""
    entry = BUILTINS[name]
    parts = entry.make(**{key: p.default for key, p in entry.parameters.items()})
    label = "x".join(map(str, parts[0][1].shape))
    if len(parts) > 1:
        label = f"{len(parts)} x {label}"
    defaults = [f"{key}={p.default:g}" if isinstance(p.default, float) else f"{key}={p.default}"
                for key, p in entry.parameters.items() if p.default is not None]
    return label + (f" at {','.join(defaults)}" if defaults else "")


def build(name: str, raw: dict[str, str], *, spec: str, max_kernel: int = DEFAULT_MAX_KERNEL):
    """The Operation for built-in ``name`` with ``raw`` parameter strings; a kernel with a side
    above ``max_kernel`` (0: no limit) is refused from its parameters, before it is built."""
    from .kernels import Kernel, Operation

    entry = BUILTINS[name]
    unknown = sorted(set(raw) - set(entry.parameters))
    if unknown:
        valid = ", ".join(list(entry.parameters) + ["dilation"])
        raise UsageError(f"{name}: unknown parameter {', '.join(unknown)}; valid: {valid}")
    values = {}
    for key, parameter in entry.parameters.items():
        if key not in raw:
            values[key] = parameter.default
            continue
        try:
            value = parameter.parse(raw[key])
        except ValueError:
            value = None
        if value is None or not parameter.valid(value):
            raise UsageError(f"{name}: {key} must be {parameter.rule}; got {raw[key]}")
        values[key] = value
    if entry.side is not None:
        check_kernel_side(entry.side(**values), spec, max_kernel)
    parts = entry.make(**values)
    kernels = tuple(Kernel(name=spec if len(parts) == 1 else part_name, weights=weights,
                           description=entry.description, factors=factors)
                    for part_name, weights, factors in parts)
    return Operation(spec, kernels, entry.combine, entry.description)
