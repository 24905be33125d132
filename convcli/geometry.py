"""Output sizes, padding and receptive fields: the one place this arithmetic lives.

The engine and ``convcli explain`` both call these functions, so the shape a
convolution produces and the shape ``explain`` predicts can never disagree.
All sizes are per spatial axis; the 2-D helpers apply them to (H, W).

The central formula, for an input of size ``H``, kernel ``K``, stride ``S``,
dilation ``D`` and padding ``P_before + P_after``::

    H_out = floor((H + P_before + P_after - D*(K - 1) - 1) / S) + 1
"""

from __future__ import annotations

import numbers
from fractions import Fraction
from dataclasses import dataclass
from typing import Union

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
]

PaddingSpec = Union[int, tuple[int, int], str]
PADDING_WORDS = ("same", "valid", "full")


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
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise UsageError(f"{name} must be one integer or two (H, W); got {tuple(value)!r}")
        values = tuple(value)
    else:
        values = (value, value)
    checked = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise UsageError(f"{name} must be an integer or a pair of integers; got {value!r}")
        if int(v) < minimum:
            raise UsageError(f"{name} must be >= {minimum}; got {value!r}")
        checked.append(int(v))
    return (checked[0], checked[1])


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
    """Turn a padding spec into explicit per-side padding.

    ``padding`` is an int, an (H, W) pair, or ``'same'``, ``'valid'``, ``'full'``.
    ``'same'`` with stride > 1 follows TensorFlow's rule when ``strided_same`` is true
    (the CLI) and is an error otherwise (PyTorch's rule, used by ``convcli.conv2d``).
    """
    if isinstance(padding, str):
        word = padding.strip().lower()
        if word == "valid":
            return Padding(0, 0, 0, 0)
        if word == "full":
            ph, pw = (dilation_hw[i] * (kernel_hw[i] - 1) for i in range(2))
            return Padding(ph, ph, pw, pw)
        if word == "same":
            if max(stride_hw) > 1 and not strided_same:
                raise UsageError(
                    f"padding='same' is not supported with stride {stride_hw} (PyTorch's rule); "
                    "use stride 1, or give the padding as numbers")
            if max(stride_hw) > 1 and size_hw is None:
                raise UsageError("padding='same' with stride > 1 needs the input size")
            rows, cols = (
                same_padding(size_hw[i] if size_hw else 1, kernel_hw[i], stride_hw[i], dilation_hw[i])
                for i in range(2))
            return Padding(rows[0], rows[1], cols[0], cols[1])
        raise UsageError(f"padding must be an integer, a pair, or one of {', '.join(PADDING_WORDS)}; "
                         f"got {padding!r}")
    ph, pw = pair(padding, "padding", minimum=0)
    return Padding(ph, ph, pw, pw)


def smallest_valid_input(kernel: int, pad_before: int = 0, pad_after: int = 0, dilation: int = 1) -> int:
    """Smallest input size that gives at least one output pixel (never below 1)."""
    return max(effective_kernel_size(kernel, dilation) - pad_before - pad_after, 1)


def conv_output_hw(size_hw: tuple[int, int], kernel_hw: tuple[int, int], padding: Padding, *,
                   stride_hw: tuple[int, int] = (1, 1), dilation_hw: tuple[int, int] = (1, 1),
                   what: str = "input") -> tuple[int, int]:
    """Output (H, W) of a convolution; raises ``UsageError`` with the numbers if either is < 1."""
    out = []
    for axis, name in enumerate(("height", "width")):
        before, after = (padding.rows, padding.cols)[axis]
        size, k, s, d = size_hw[axis], kernel_hw[axis], stride_hw[axis], dilation_hw[axis]
        n = conv_output_size(size, k, s, before, after, d)
        if n < 1:
            raise UsageError(
                f"{what} {name} {size} is too small for a kernel of {k} with dilation {d} "
                f"(spans {effective_kernel_size(k, d)}) and padding {before}+{after}: "
                f"floor(({size} + {before + after} - {d}*({k}-1) - 1)/{s}) + 1 = {n}; "
                f"the {name} must be at least {smallest_valid_input(k, before, after, d)}")
        out.append(n)
    return (out[0], out[1])


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
