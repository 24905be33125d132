"""An image filtered in strips of rows: any range of output rows of a ``-k`` operation or a
``--layer`` stack, from only the input rows they read, with the numbers of the in-memory run.

Planned backwards: from the output rows asked for, each layer's input rows that they read
(``stacks.input_rows_read``: through the layer's row map, so reflect, circular and the
other border modes read the real image edges; circular makes the top strip read the
bottom rows), down to the image. Run forwards: each layer computes only the rows the next
one reads, from the rows it holds (``stacks.run_layer`` with ``rows``). Strips are whole
rows wide. Every convolution takes the engine path the whole image would take, decided
once per ``RowFilter`` (``stacks.engine_paths``), so a strip's numbers are the in-memory
run's: bitwise where each output row is computed on its own (the direct and separable
loops, NumPy's per-tap passes for depthwise and separable kernels), to float32 rounding
on the FFT path (its tiles fall elsewhere) and in the matrix products of the GEMM path and
of NumPy's for kernels that mix channels (BLAS sums in an order that depends on the
product's width).

Conv layers (weights or kernel specs, any stride, dilation, padding and border mode),
pooling, activations, bias and shuffle stream; transposed convolutions (and fc, which only
``explain`` counts) do not yet, nor signals or volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import fft_only_if_finite
from .errors import FileFailure, UsageError
from .explain import explain_stack
from .kernels import Operation
from .layers import Layer, Stack, layer_for_operation
from .stacks import engine_paths, input_rows_read, run_layer

__all__ = ["RowFilter", "Strip", "filter_rows", "strip_plan", "STREAMED_KINDS"]

STREAMED_KINDS = ("conv", "pool", "relu", "leaky-relu", "sigmoid", "tanh", "abs", "bias",
                  "shuffle")
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Strip:
    """One strip: its output rows [start, stop), the image rows it reads (sorted), and the
    most bytes of rows it holds at once (a layer's input and output rows; the engine's
    own scratch, a few rows per thread or the FFT tiles, comes on top)."""

    out_rows: tuple[int, int]
    input_rows: np.ndarray
    peak_bytes: int


class RowFilter:
    """A ``-k`` operation or a stack, prepared for images of one (C, H, W) shape, to run on
    any range of output rows.

    ``work`` is an ``Operation`` (with ``stride``/``padding``/``dilation`` as ``-k`` takes
    them), a ``Stack`` or a list of ``Layer``s; the other options are ``run_stack``'s. A
    stack that does not fit the shape raises as ``run_stack`` does; one with a layer that
    cannot stream yet raises ``UsageError``.
    """

    def __init__(self, shape: tuple[int, int, int], work, *, pad_mode: str = "zeros",
                 flip: bool = False, engine_path: str = "auto", stride=None, padding=None,
                 dilation=None, path=None):
        layers = _as_layers(work, stride, padding, dilation)
        if len(shape) != 3:
            raise UsageError(f"strips are rows of an image (C, H, W); got shape {tuple(shape)}")
        try:
            explanation = explain_stack(tuple(shape), layers)
        except UsageError as error:
            raise FileFailure(f"{path}: {error}") from None
        for number, layer in enumerate(layers, 1):
            if layer.kind not in STREAMED_KINDS:
                raise UsageError(f"layer {number} ({layer.describe()}) cannot be streamed in "
                                 f"strips yet; the layers that can: {', '.join(STREAMED_KINDS)}")
        self.shape = tuple(shape)
        self.layers = [layer.for_axes(2) for layer in layers]
        self.explanation = explanation
        self.output_shape = tuple(explanation.output_shape)
        self.pad_mode, self.flip, self.engine_path = pad_mode, flip, engine_path
        self._paths = None

    def rows_read(self, first: int, stop: int) -> list[np.ndarray]:
        """The rows each layer's input must hold for output rows [first, stop): the image
        rows first, the output rows last (one array more than layers)."""
        if not 0 <= first < stop <= self.output_shape[1]:
            raise ValueError(f"output rows [{first}, {stop}) are not within the "
                             f"{self.output_shape[1]} rows of the output")
        needed = [np.arange(first, stop)]
        for layer, row in zip(reversed(self.layers), reversed(self.explanation.layers)):
            needed.append(input_rows_read(layer, row, self.pad_mode, needed[-1]))
        return needed[::-1]

    def run(self, read_rows, first: int, stop: int) -> np.ndarray:
        """Output rows [first, stop), (C_out, stop - first, W_out) float32: the same rows as
        the in-memory run's. ``read_rows(rows)`` returns the image's rows ``rows`` (a sorted
        index array) as (C, len(rows), W); it is called once."""
        needed = self.rows_read(first, stop)
        x = np.asarray(read_rows(needed[0]), dtype=np.float32)    # the engine copies as needed
        expected = (self.shape[0], needed[0].size, self.shape[2])
        if x.shape != expected:
            raise ValueError(f"read_rows gave shape {x.shape} for {needed[0].size} rows; "
                             f"expected {expected}")
        self.decide_paths()
        for index, (layer, row) in enumerate(zip(self.layers, self.explanation.layers)):
            x = self._run_layer(index, layer, row, x, needed[index], needed[index + 1])
        return x

    def decide_paths(self) -> list:
        """The engine path of each layer's convolutions, decided once (on the first ``run``
        if not before): a copy of this filter made after it (a cluster's task) takes them."""
        if self._paths is None:
            self._paths = [engine_paths(layer, row, flip=self.flip, engine_path=self.engine_path)
                           for layer, row in zip(self.layers, self.explanation.layers)]
        return self._paths

    def strips(self, height: int) -> list[Strip]:
        """The strips of ``height`` output rows (the last may be lower): what each reads and
        holds, so a scheduler can choose the height from a memory budget."""
        return list(self.iter_strips(height))

    def iter_strips(self, height: int):
        """``strips``, planned one at a time as they are taken."""
        if height < 1:
            raise UsageError(f"a strip is at least 1 row high; got {height}")
        for first in range(0, self.output_shape[1], height):
            yield self.strip(first, height)

    def strip(self, first: int, height: int) -> Strip:
        """The strip of ``height`` output rows from ``first`` (fewer at the bottom)."""
        needed = self.rows_read(first, min(first + height, self.output_shape[1]))
        return Strip((first, first + needed[-1].size), needed[0], self._peak_bytes(needed))

    def _run_layer(self, index: int, layer: Layer, row, x: np.ndarray, held: np.ndarray,
                   wanted: np.ndarray) -> np.ndarray:
        """Layer ``index``'s output rows ``wanted`` from its input rows ``held`` (in ``x``):
        one engine call per run of consecutive rows (more than one where circular padding
        wraps, or a later layer's stride or dilation skips rows)."""
        paths = self._paths[index]
        if self.engine_path == "auto":
            paths = (fft_only_if_finite(paths, x) if isinstance(paths, str)
                     else tuple(fft_only_if_finite(p, x) for p in paths))
        options = dict(pad_mode=self.pad_mode, flip=self.flip, engine_path=paths)
        if wanted.size == 0:           # the next layer reads only its padding here
            return np.zeros((row.output_shape[0], 0, row.output_shape[2]), np.float32)
        if layer.kind not in ("conv", "pool"):
            return run_layer(layer, row, x, **options)[0]
        parts = [run_layer(layer, row, x, rows=(start, stop, held), **options)[0]
                 for start, stop in _runs(wanted)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def _peak_bytes(self, needed: list[np.ndarray]) -> int:
        """The most bytes of one layer's input and output rows for these rows."""
        return max(FLOAT_BYTES * (rows_in.size * row.input_shape[0] * row.input_shape[2]
                                  + rows_out.size * row.output_shape[0] * row.output_shape[2])
                   for rows_in, rows_out, row in zip(needed, needed[1:],
                                                     self.explanation.layers))


def filter_rows(read_rows, shape: tuple[int, int, int], work, out_rows: tuple[int, int],
                **options) -> np.ndarray:
    """Output rows ``out_rows`` = (start, stop) of ``work`` on an image of ``shape``, from
    the rows ``read_rows`` gives (see ``RowFilter``, whose options these are). For many
    strips of one image, make one ``RowFilter``: it decides the engine paths once."""
    return RowFilter(shape, work, **options).run(read_rows, *out_rows)


def strip_plan(shape: tuple[int, int, int], work, height: int, **options) -> list[Strip]:
    """The strips of ``height`` output rows of ``work`` on an image of ``shape``: the rows
    each reads and the bytes it holds at most (see ``RowFilter.strips``)."""
    return RowFilter(shape, work, **options).strips(height)


def _as_layers(work, stride, padding, dilation) -> list[Layer]:
    """``work`` as a list of layers: a ``-k`` operation is a one-layer stack."""
    if isinstance(work, Operation):
        return [layer_for_operation(work, stride=stride, padding=padding, dilation=dilation)]
    if any(value is not None for value in (stride, padding, dilation)):
        raise UsageError("stride, padding and dilation go with a -k operation; a stack's "
                         "layers carry their own")
    return list(work.layers if isinstance(work, Stack) else work)


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """The runs [start, stop) of consecutive values in the sorted array ``rows``."""
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.r_[0, breaks]
    stops = np.r_[breaks, rows.size]
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, stops)]
