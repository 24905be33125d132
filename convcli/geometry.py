"""Output sizes, padding and receptive fields: the one place this arithmetic lives.

The engine and ``convcli explain`` both call these functions, so the shape a
convolution produces and the shape ``explain`` predicts can never disagree.
All sizes are per spatial axis; the 2-D helpers apply them to (H, W).

The central formula, for an input of size ``H``, kernel ``K``, stride ``S``,
dilation ``D`` and padding ``P_before + P_after``::

    H_out = floor((H + P_before + P_after - D*(K - 1) - 1) / S) + 1
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from dataclasses import dataclass
from typing import Union

from .choices import PADDING_WORDS
from .errors import UsageError

__all__ = [
    "Padding",
    "PaddingSpec",
    "pair",
    "effective_kernel_size",
    "conv_output_size",
    "same_padding",
    "resolve_padding",
    "conv_output_hw",
    "smallest_valid_input",
    "anchor_positions",
    "transposed_output_size",
    "pool_output_size",
    "uncovered_size",
    "grow_receptive_field",
    "AXIS_NAMES",
    "axis_names",
    "ntuple",
    "resolve_padding_nd",
    "conv_output_shape",
    "transposed_output_shape",
    "TransposedPhase",
    "transposed_phases",
    "pool_output_shape",
    "check_pool_padding",
    "avg_pool_divisors",
    "padded_span",
    "padded_positions",
    "pool_padded_size",
    "pool_input_rows",
]

PaddingSpec = Union[int, tuple[int, int], str]
# Spatial axes by dimensionality: signals (C, L), images (C, H, W), volumes (C, D, H, W).
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


@dataclass(frozen=True)
class Padding:
    """Zero-or-more pixels added on each side of the image."""

    top: int
    bottom: int
    left: int
    right: int

    @property
    def rows(self) -> tuple[int, int]:
        return (self.top, self.bottom)

    @property
    def cols(self) -> tuple[int, int]:
        return (self.left, self.right)

    def is_symmetric(self) -> bool:
        return self.top == self.bottom and self.left == self.right

    def as_dict(self) -> dict[str, int]:
        return {"top": self.top, "bottom": self.bottom, "left": self.left, "right": self.right}


def pair(value: int | tuple[int, int] | list[int], name: str, *, minimum: int = 1) -> tuple[int, int]:
    """Return ``value`` as an (H, W) pair of ints, each at least ``minimum``."""
    if isinstance(value, (list, tuple)) and len(value) != 2:
        raise UsageError(f"{name} must be one integer or two (H, W); got {tuple(value)!r}")
    return ntuple(value, 2, name, minimum=minimum)


def ntuple(value, count: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (one integer, or ``count`` of them) as a tuple of ``count`` ints >= ``minimum``."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * count
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise UsageError(f"{name} must be one integer or {count} ({', '.join(axis_names(count))}); "
                         f"got {tuple(values)!r}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise UsageError(f"{name} must be an integer or {count} integers; got {value!r}")
        if int(v) < minimum:
            raise UsageError(f"{name} must be >= {minimum}; got {value!r}")
    return tuple(int(v) for v in values)


def axis_names(count: int) -> tuple[str, ...]:
    """("length",), ("height", "width") or ("depth", "height", "width")."""
    if count not in AXIS_NAMES:
        raise UsageError(f"inputs have 1 (signal), 2 (image) or 3 (volume) spatial axes; got {count}")
    return AXIS_NAMES[count]


def effective_kernel_size(kernel: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: ``D*(K-1) + 1`` input pixels."""
    return dilation * (kernel - 1) + 1


def conv_output_size(size: int, kernel: int, stride: int = 1, pad_before: int = 0,
                     pad_after: int = 0, dilation: int = 1) -> int:
    """``floor((H + P_before + P_after - D(K-1) - 1) / S) + 1``; may be < 1 (caller validates)."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Padding (before, after) that gives ``ceil(H / S)`` outputs.

    For stride 1 this is PyTorch's ``padding='same'``: ``D(K-1)`` in total, the odd pixel
    after. For stride > 1 it is TensorFlow's ``SAME`` rule, which PyTorch does not allow:
    total ``max((ceil(H/S) - 1)*S + D(K-1) + 1 - H, 0)``, split the same way.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + effective_kernel_size(kernel, dilation) - size, 0)
    return (total // 2, total - total // 2)


def resolve_padding(padding: PaddingSpec, kernel_hw: tuple[int, int], *,
                    stride_hw: tuple[int, int] = (1, 1), dilation_hw: tuple[int, int] = (1, 1),
                    size_hw: tuple[int, int] | None = None,
                    strided_same: bool = False) -> Padding:
    """Turn a padding spec into explicit per-side padding of an image (see
    ``resolve_padding_nd``)."""
    rows, cols = resolve_padding_nd(padding, kernel_hw, stride=stride_hw, dilation=dilation_hw,
                                    size=size_hw, strided_same=strided_same)
    return Padding(rows[0], rows[1], cols[0], cols[1])


def resolve_padding_nd(padding: PaddingSpec, kernel: tuple[int, ...], *,
                       stride: tuple[int, ...] | None = None,
                       dilation: tuple[int, ...] | None = None,
                       size: tuple[int, ...] | None = None,
                       strided_same: bool = False) -> tuple[tuple[int, int], ...]:
    """Explicit (before, after) padding per spatial axis.

    ``padding`` is an int, one int per axis, or ``'same'``, ``'valid'``, ``'full'``.
    ``'same'`` with stride > 1 follows TensorFlow's rule when ``strided_same`` is true
    (the CLI) and is an error otherwise (PyTorch's rule, used by ``convcli.conv2d``).
    """
    count = len(kernel)
    stride = stride or (1,) * count
    dilation = dilation or (1,) * count
    if isinstance(padding, str):
        word = padding.strip().lower()
        if word == "valid":
            return ((0, 0),) * count
        if word == "full":
            return tuple((d * (k - 1),) * 2 for k, d in zip(kernel, dilation))
        if word == "same":
            if max(stride) > 1 and not strided_same:
                raise UsageError(
                    f"padding='same' is not supported with stride {tuple(stride)} (PyTorch's rule); "
                    "use stride 1, or give the padding as numbers")
            if max(stride) > 1 and size is None:
                raise UsageError("padding='same' with stride > 1 needs the input size")
            return tuple(same_padding(size[i] if size else 1, kernel[i], stride[i], dilation[i])
                         for i in range(count))
        raise UsageError(f"padding must be an integer, a pair, or one of {', '.join(PADDING_WORDS)}; "
                         f"got {padding!r}")
    return tuple((p, p) for p in ntuple(padding, count, "padding", minimum=0))


def smallest_valid_input(kernel: int, pad_before: int = 0, pad_after: int = 0, dilation: int = 1) -> int:
    """Smallest input size that gives at least one output pixel (never below 1)."""
    return max(effective_kernel_size(kernel, dilation) - pad_before - pad_after, 1)


def conv_output_hw(size_hw: tuple[int, int], kernel_hw: tuple[int, int], padding: Padding, *,
                   stride_hw: tuple[int, int] = (1, 1), dilation_hw: tuple[int, int] = (1, 1),
                   what: str = "input") -> tuple[int, int]:
    """Output (H, W) of a convolution; raises ``UsageError`` with the numbers if either is < 1."""
    return conv_output_shape(size_hw, kernel_hw, (padding.rows, padding.cols), stride=stride_hw,
                             dilation=dilation_hw, what=what)


def conv_output_shape(size: tuple[int, ...], kernel: tuple[int, ...],
                      pads: tuple[tuple[int, int], ...], *, stride: tuple[int, ...] | None = None,
                      dilation: tuple[int, ...] | None = None, what: str = "input") -> tuple[int, ...]:
    """Output size per spatial axis of a convolution; raises ``UsageError`` with the numbers
    if any is < 1."""
    stride = stride or (1,) * len(size)
    dilation = dilation or (1,) * len(size)
    out = []
    for axis, name in enumerate(axis_names(len(size))):
        (before, after), n_in = pads[axis], size[axis]
        k, s, d = kernel[axis], stride[axis], dilation[axis]
        n = conv_output_size(n_in, k, s, before, after, d)
        if n < 1:
            raise _too_small(what, name, n_in, k, d, before, after,
                             f"floor(({n_in} + {before + after} - {d}*({k}-1) - 1)/{s}) + 1", n,
                             smallest_valid_input(k, before, after, d))
        out.append(n)
    return tuple(out)


def anchor_positions(n_out: int, kernel: int, stride: int = 1, pad_before: int = 0,
                     dilation: int = 1) -> list[int]:
    """Input index under each output's kernel anchor (its centre tap ``(K-1)//2``).

    ``i*S - P_before + D*((K-1)//2)``; may fall in the padding (below 0 or past the end).
    """
    offset = dilation * ((kernel - 1) // 2) - pad_before
    return [i * stride + offset for i in range(n_out)]


def transposed_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                           dilation: int = 1, output_padding: int = 0) -> int:
    """``(H - 1)S - 2P + D(K-1) + output_padding + 1`` (PyTorch's ConvTranspose2d)."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def pool_output_size(size: int, kernel: int, stride: int | None = None, padding: int = 0,
                     dilation: int = 1, ceil_mode: bool = False) -> int:
    """Pooling output size with PyTorch's rule: with ``ceil_mode`` the last window must
    start inside the input or the left padding, never in the right padding."""
    stride = kernel if stride is None else stride
    span = size + 2 * padding - effective_kernel_size(kernel, dilation)
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def uncovered_size(size: int, kernel: int, stride: int = 1, pad_before: int = 0, pad_after: int = 0,
                   dilation: int = 1) -> int:
    """Pixels at the end of the padded axis that no window reaches (stride leftovers)."""
    span = size + pad_before + pad_after - effective_kernel_size(kernel, dilation)
    return span % stride if span >= 0 else 0


def grow_receptive_field(field: Fraction, jump: Fraction, kernel: int, stride: int = 1,
                         dilation: int = 1, *, transposed: bool = False) -> tuple[Fraction, Fraction]:
    """(receptive field, jump) after one more layer, both in input pixels.

    ``jump`` is the distance in input pixels between neighbouring outputs: it multiplies by
    the stride (divides, for a transposed layer); the field grows by ``(D(K-1)) * jump``
    measured in the layer's input spacing (its output spacing, for a transposed layer).
    """
    new_jump = jump / stride if transposed else jump * stride
    step = new_jump if transposed else jump
    return field + (effective_kernel_size(kernel, dilation) - 1) * step, new_jump


# --- N-D layers: conv1d/conv3d, transposed convolution and pooling, per axis ------------------

def _too_small(what: str, axis: str, size: int, kernel: int, dilation: int, before: int,
               after: int, formula: str, result: int, smallest: int) -> UsageError:
    return UsageError(
        f"{what} {axis} {size} is too small for a kernel of {kernel} with dilation {dilation} "
        f"(spans {effective_kernel_size(kernel, dilation)}) and padding {before}+{after}: "
        f"{formula} = {result}; the {axis} must be at least {smallest}")


def transposed_output_shape(sizes: tuple[int, ...], kernel: tuple[int, ...], *,
                            stride: tuple[int, ...], padding: tuple[int, ...],
                            dilation: tuple[int, ...], output_padding: tuple[int, ...]
                            ) -> tuple[int, ...]:
    """Output size per axis of a transposed convolution, with PyTorch's checks:
    ``output_padding`` below ``max(stride, dilation)`` and at least one output per axis."""
    out = []
    for axis, size, k, s, p, d, extra in zip(axis_names(len(sizes)), sizes, kernel, stride,
                                             padding, dilation, output_padding):
        if extra >= max(s, d):
            raise UsageError(f"output_padding {extra} along the {axis} must be smaller than the "
                             f"stride ({s}) or the dilation ({d}), as in PyTorch")
        n = transposed_output_size(size, k, s, p, d, extra)
        if n < 1:
            raise UsageError(
                f"input {axis} {size} gives no output: ({size} - 1)*{s} - 2*{p} + {d}*({k}-1) + "
                f"{extra} + 1 = {n}; use padding at most "
                f"{((size - 1) * s + d * (k - 1) + extra) // 2}")
        out.append(n)
    return tuple(out)


@dataclass(frozen=True)
class TransposedPhase:
    """The outputs ``offset + m*S`` (m < ``count``) of a transposed convolution along one axis.

    Output ``offset + m*S`` is ``sum_j w[taps[j]] * x[first_input + m + j*step]``: a stride-1
    correlation with the kernel taps ``taps`` (in reading order) at dilation ``step``, so a
    transposed convolution is S such correlations per axis with no zeros inserted. ``taps`` is
    empty when no kernel tap lands on these outputs (they get the bias only).
    """

    offset: int
    count: int
    taps: tuple[int, ...]
    first_input: int
    step: int

    @property
    def last_input(self) -> int:
        """The last input index the phase reads (may lie outside the input: a zero)."""
        return self.first_input + self.count - 1 + (len(self.taps) - 1) * self.step


def transposed_phases(size: int, kernel: int, stride: int = 1, padding: int = 0,
                      dilation: int = 1, output_padding: int = 0) -> list[TransposedPhase]:
    """Split a transposed convolution's outputs along one axis by ``offset = output % S``.

    Input ``i`` and tap ``k`` land on output ``i*S - P + k*D``, so output ``o`` reads
    ``i = (o + P - k*D) / S`` for the taps where that is an integer; within one phase those
    taps are every ``S/gcd(S, D)``-th and their inputs are ``D/gcd(S, D)`` apart.
    """
    out = transposed_output_size(size, kernel, stride, padding, dilation, output_padding)
    step = dilation // math.gcd(stride, dilation)
    phases = []
    for offset in range(min(stride, out)):
        taps = tuple(k for k in reversed(range(kernel))
                     if (offset + padding - k * dilation) % stride == 0)
        first = (offset + padding - taps[0] * dilation) // stride if taps else 0
        phases.append(TransposedPhase(offset, -(-(out - offset) // stride), taps, first, step))
    return phases


def check_pool_padding(kernel: tuple[int, ...], padding: tuple[int, ...]) -> None:
    """PyTorch's rule for pooling: padding at most half the kernel on every axis."""
    for axis, k, p in zip(axis_names(len(kernel)), kernel, padding):
        if p > k // 2:
            raise UsageError(f"padding {p} along the {axis} must be at most half the kernel "
                             f"size {k} (at most {k // 2}), as in PyTorch")


def pool_output_shape(sizes: tuple[int, ...], kernel: tuple[int, ...], *,
                      stride: tuple[int, ...], padding: tuple[int, ...],
                      dilation: tuple[int, ...], ceil_mode: bool = False) -> tuple[int, ...]:
    """Output size per axis of a pooling layer, with PyTorch's checks: padding at most half
    the kernel, and at least one output per axis."""
    check_pool_padding(kernel, padding)
    out = []
    for axis, size, k, s, p, d in zip(axis_names(len(sizes)), sizes, kernel, stride, padding,
                                      dilation):
        n = pool_output_size(size, k, s, p, d, ceil_mode)
        if n < 1:
            raise _too_small("input", axis, size, k, d, p, p,
                             f"{'ceil' if ceil_mode else 'floor'}(({size} + {2 * p} - {d}*({k}-1) "
                             f"- 1)/{s}) + 1", n, smallest_valid_input(k, p, p, d))
        out.append(n)
    return tuple(out)


def avg_pool_divisors(size: int, kernel: int, stride: int, padding: int = 0,
                      ceil_mode: bool = False, count_include_pad: bool = True) -> list[int]:
    """Per output along one axis, the pixels its window counts (PyTorch's rule): the window
    clipped to the padded axis with ``count_include_pad``, else to the input. The divisor of
    an N-D average pool is the product of its axes' divisors."""
    divisors = []
    for o in range(pool_output_size(size, kernel, stride, padding, 1, ceil_mode)):
        start = o * stride - padding
        end = min(start + kernel, size + padding)
        divisors.append(end - start if count_include_pad else min(end, size) - max(start, 0))
    return divisors


# --- strips: the padded positions a range of outputs reads (``convcli.strips``) ----------------

def padded_span(first_out: int, stop_out: int, kernel: int, stride: int = 1,
                dilation: int = 1) -> tuple[int, int]:
    """The positions [start, stop) of the padded axis that outputs [first_out, stop_out) read:
    ``first_out*S`` to ``(stop_out - 1)*S + D(K-1) + 1``."""
    return first_out * stride, (stop_out - 1) * stride + effective_kernel_size(kernel, dilation)


def padded_positions(outputs, kernel: int, stride: int = 1, dilation: int = 1):
    """The positions of the padded axis that the outputs ``outputs`` (an array of indices)
    read, ``o*S + k*D`` for every tap k < K: a sorted NumPy array without repeats."""
    import numpy as np      # here, not at the top: ``convcli --help`` imports no NumPy

    taps = np.arange(kernel, dtype=np.int64) * dilation
    return np.unique((np.asarray(outputs, np.int64)[:, None] * stride + taps).ravel())


def pool_padded_size(size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Length of the padded axis a pooling layer's windows span: ``size + 2P``, or more when
    ``ceil_mode`` lets the last window run past the padding (those taps read nothing)."""
    out = pool_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    return max(size + 2 * padding, (out - 1) * stride + effective_kernel_size(kernel, dilation))


def pool_input_rows(first_out: int, stop_out: int, size: int, kernel: int, stride: int,
                    padding: int = 0, dilation: int = 1) -> tuple[int, int]:
    """The input rows [first, stop) that pooling outputs [first_out, stop_out) read (their
    windows clipped to the input: the padding is never read)."""
    start, stop = padded_span(first_out, stop_out, kernel, stride, dilation)
    return max(start - padding, 0), min(stop - padding, size)
