"""convcli.strips: an image filtered in strips of rows gives the in-memory run's numbers and
reads only the rows it needs, for -k operations and stacks, every border mode and path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from convcli import geometry
from convcli.errors import ConvcliError, UsageError
from convcli.kernels import resolve
from convcli.layers import kernel_geometry, layers_from_specs
from convcli.stacks import filter_operation, run_stack
from convcli.strips import RowFilter, filter_rows, strip_plan
from reference import source_index

MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)
# -k operations from the kernel library: separable (sobel, gaussian, box), not (laplacian,
# kirsch's eight compass kernels, log), and sepia, a 3 -> 3 channel mix (a dense path).
OPERATIONS = ("sobel", "gaussian:sigma=1", "laplacian", "box:size=3", "box:size=4", "kirsch",
              "sobel-x", "log:sigma=0.7", "sepia")
SEPARABLE = ("sobel", "gaussian:sigma=1", "box:size=3", "box:size=4", "sobel-x")


class RowReader:
    """``read_rows`` over an image in memory that keeps every request."""

    def __init__(self, image: np.ndarray):
        self.image = image
        self.requests: list[np.ndarray] = []

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        assert rows.ndim == 1 and np.all(np.diff(rows) > 0), rows   # sorted, each row once
        self.requests.append(rows.copy())
        return self.image[:, rows]


def in_strips(row_filter: RowFilter, image: np.ndarray, height: int):
    """(the strips' outputs end to end, the rows each strip read)."""
    reader = RowReader(image)
    parts = []
    for strip in row_filter.strips(height):
        before = len(reader.requests)
        parts.append(row_filter.run(reader, *strip.out_rows))
        assert len(reader.requests) == before + 1                  # one read per strip
        assert np.array_equal(reader.requests[-1], strip.input_rows)  # the plan's rows
    return np.concatenate(parts, axis=1), reader.requests


def an_image(draw, channels: int) -> np.ndarray:
    """A random image up to 48 x 12, as small as 1 x 1, with no zeros."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (channels, draw(st.integers(1, 48)), draw(st.integers(1, 12)))
    return (rng.standard_normal(shape) + 0.5).astype(np.float32)


def strip_heights(rows: int):
    """Strip heights for an output ``rows`` high: often a few rows (many strips), up to all."""
    return st.one_of(st.integers(1, min(rows, 3)), st.integers(1, rows))


def assert_same_numbers(got: np.ndarray, expected: np.ndarray, exact: bool) -> None:
    """Bitwise where each output row is computed on its own (NaNs in the same places),
    else to float32 rounding: the FFT path tiles a strip unlike the whole image, and a
    matrix product (the GEMM path, the NumPy path's dense kernels) sums in an order that
    depends on its width."""
    assert got.shape == expected.shape and got.dtype == np.float32
    if exact:
        assert np.array_equal(got, expected, equal_nan=True), np.nanmax(np.abs(got - expected))
    else:
        scale = max(float(np.nanmax(np.abs(expected), initial=0.0)), 1.0)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)


def bitwise(paths: list[str], dense: bool) -> bool:
    """Do the engine paths a run took compute each output row on its own?"""
    taken = set("+".join(paths).split("+"))
    return not taken & {"fft", "gemm"} and not (dense and "numpy" in taken)


@st.composite
def operation_cases(draw):
    name = draw(st.sampled_from(OPERATIONS))
    engines = (("auto", "direct", "numpy", "fft", "gemm")
               + (("separable",) if name in SEPARABLE else ()))
    padding = draw(st.sampled_from(["same", "valid", "numbers"]))
    return dict(
        operation=resolve(name), image=an_image(draw, 3 if name == "sepia" else
                                                draw(st.integers(1, 3))),
        stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        dilation=(draw(st.integers(1, 3)), draw(st.integers(1, 2))),
        padding=(draw(st.integers(0, 3)), draw(st.integers(0, 3))) if padding == "numbers"
        else padding,
        pad_mode=draw(st.sampled_from(MODES)), flip=draw(st.booleans()),
        engine=draw(st.sampled_from(engines)),
        height=draw(st.one_of(st.integers(1, 3), st.integers(1, 40))))


@SETTINGS
@given(operation_cases())
def test_an_operation_in_strips_equals_the_whole_image(case):
    """-k in strips = ``filter_operation`` on the whole image, with the padding the pipeline
    resolves for it."""
    image, operation = case["image"], case["operation"]
    first = operation.kernels[0]
    stride, spec, dilation = kernel_geometry(first, case["stride"], case["padding"],
                                             case["dilation"])
    padding = geometry.resolve_padding(spec, first.size, stride_hw=stride, dilation_hw=dilation,
                                       size_hw=image.shape[1:], strided_same=True)
    try:
        row_filter = RowFilter(image.shape, operation, pad_mode=case["pad_mode"],
                               flip=case["flip"], engine_path=case["engine"],
                               stride=stride, padding=spec, dilation=dilation)
    except ConvcliError:
        assume(False)                                  # the image is too small for the kernel
    expected, paths = filter_operation(image, operation, pad_mode=case["pad_mode"],
                                       flip=case["flip"], stride=stride,
                                       pads=(padding.rows, padding.cols), dilation=dilation,
                                       engine_path=case["engine"])
    got, _ = in_strips(row_filter, image, min(case["height"], expected.shape[1]))
    assert_same_numbers(got, expected, bitwise(paths, dense=operation.name == "sepia"))


CONV_SPECS = st.builds(
    "conv:k={}x{},s={},d={},p={},c={},g={},init=random,seed={},pad_mode={}".format,
    st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
    st.sampled_from(["0", "1", "2", "1x0", "same", "valid"]), st.sampled_from([1, 2, 4]),
    st.sampled_from([1, 2]), st.integers(0, 99), st.sampled_from(MODES))
KERNEL_SPECS = st.builds("conv:kernel={},s={},d={},p={}".format,
                         st.sampled_from(["sobel", "gaussian:sigma=0.6", "laplacian", "box"]),
                         st.integers(1, 2), st.integers(1, 3), st.sampled_from(["same", "1"]))


@st.composite
def pool_specs(draw):
    """Max (with dilation) or average pooling, padding at most half the kernel."""
    kernel = draw(st.integers(1, 3))
    common = (f"pool:k={kernel},s={draw(st.integers(1, 3))},p={draw(st.integers(0, kernel // 2))},"
              f"ceil={draw(st.booleans())}")
    if draw(st.booleans()):
        return f"{common},mode=max,d={draw(st.integers(1, 2))}"
    return f"{common},mode=avg,count_include_pad={draw(st.booleans())}"


POOL_SPECS = pool_specs()
POINTWISE_SPECS = st.sampled_from(["relu", "leaky-relu:slope=0.2", "sigmoid", "tanh", "abs",
                                   "bias:value=0.3", "shuffle:g=2"])


@SETTINGS
@given(data=st.data())
def test_a_stack_in_strips_equals_run_stack(data):
    """Random stacks of conv (weights and kernel specs), pool and pointwise layers, every
    border mode, stride, dilation and padding: strips end to end = ``run_stack``."""
    specs = data.draw(st.lists(st.one_of(CONV_SPECS, KERNEL_SPECS, POOL_SPECS, POINTWISE_SPECS),
                               min_size=1, max_size=4))
    image = an_image(data.draw, data.draw(st.sampled_from([1, 2, 4])))
    pad_mode, flip = data.draw(st.sampled_from(MODES)), data.draw(st.booleans())
    engine = data.draw(st.sampled_from(["auto", "direct", "numpy", "fft", "gemm"]))
    layers = layers_from_specs(specs)
    try:
        row_filter = RowFilter(image.shape, layers, pad_mode=pad_mode, flip=flip,
                               engine_path=engine)
    except ConvcliError:
        assume(False)                          # too small, or channels that do not chain
    expected, explanation, runs = run_stack(image, layers, pad_mode=pad_mode, flip=flip,
                                            engine_path=engine)
    dense = any(row.input_shape[0] // row.groups > 1 for row, layer in
                zip(explanation.layers, layers) if layer.kind == "conv")
    got, _ = in_strips(row_filter, image, data.draw(strip_heights(expected.shape[1])))
    assert_same_numbers(got, expected, bitwise([run["engine"] for run in runs], dense))


def rows_needed(layers, explanation, pad_mode: str, outputs) -> list[int]:
    """The image rows that the output rows ``outputs`` depend on, followed down the stack
    tap by tap with the reference's border rule (``source_index``, not the engine's maps)."""
    rows = set(outputs)
    for layer, row in zip(reversed(layers), reversed(explanation.layers)):
        layer, height, top = layer.for_axes(2), row.input_shape[1], row.pads[0][0]
        if layer.kind not in ("conv", "pool"):
            continue
        taps = {o * layer.stride[0] - top + k * layer.dilation[0]
                for o in rows for k in range(layer.kernel[0])}
        if layer.kind == "pool":                       # the padding is never read
            rows = {i for i in taps if 0 <= i < height}
        else:
            mode = layer.border_mode(pad_mode)
            rows = {int(source_index(i, height, mode)) for i in taps} - {-1}
    return sorted(rows)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_each_strip_reads_only_the_rows_its_outputs_need(data):
    """A strip reads exactly the image rows its outputs depend on (circular padding: the
    other edge's rows too); without circular padding that is at most (h - 1) x jump +
    receptive field rows for a strip of h output rows."""
    specs = data.draw(st.lists(st.one_of(CONV_SPECS, KERNEL_SPECS, POOL_SPECS,
                                         POINTWISE_SPECS), min_size=1, max_size=3))
    image = an_image(data.draw, 2)
    pad_mode = data.draw(st.sampled_from(MODES))
    layers = layers_from_specs(specs)
    try:
        row_filter = RowFilter(image.shape, layers, pad_mode=pad_mode, engine_path="direct")
    except ConvcliError:
        assume(False)
    explanation = row_filter.explanation
    field, jump = explanation.receptive_field[0], explanation.jump[0]
    height = data.draw(strip_heights(row_filter.output_shape[1]))
    _, requests = in_strips(row_filter, image, height)
    wraps = any(layer.kind == "conv" and layer.border_mode(pad_mode) == "circular"
                for layer in row_filter.layers)
    for strip, rows in zip(row_filter.strips(height), requests):
        assert rows.tolist() == rows_needed(layers, explanation, pad_mode,
                                            range(*strip.out_rows))
        if not wraps:
            assert rows.size <= min(image.shape[1], (height - 1) * jump + field)


@pytest.mark.parametrize("mode", MODES)
def test_a_single_conv_strip_reads_exactly_the_rows_it_uses(rng, mode):
    """Every row a strip reads changes its output when changed: no row is read for nothing
    (dilation 2 and stride 2 leave gaps between the rows read)."""
    image = (rng.standard_normal((1, 23, 5)) + 0.5).astype(np.float32)
    layers = layers_from_specs([f"conv:k=3,s=2,d=2,p=3,init=random,seed=1,pad_mode={mode}"])
    row_filter = RowFilter(image.shape, layers, engine_path="direct")
    for strip in row_filter.strips(2):
        reference = row_filter.run(lambda rows: image[:, rows], *strip.out_rows)
        for row in strip.input_rows:
            changed = image.copy()
            changed[:, row] += 1.0
            output = row_filter.run(lambda rows: changed[:, rows], *strip.out_rows)
            assert not np.array_equal(output, reference), (mode, strip.out_rows, row)


def test_circular_padding_makes_the_top_strip_read_the_bottom_rows(rng):
    image = (rng.standard_normal((1, 50, 6)) + 0.5).astype(np.float32)
    layers = layers_from_specs(["conv:k=3,p=1,init=random,pad_mode=circular",
                                "conv:k=5,p=2,init=random,pad_mode=circular"])
    strips = strip_plan(image.shape, layers, 4)
    assert strips[0].input_rows.tolist() == [0, 1, 2, 3, 4, 5, 6, 47, 48, 49]
    assert strips[-1].input_rows.tolist() == [0, 1, 2] + list(range(45, 50))
    assert strips[5].input_rows.tolist() == list(range(17, 27))     # inside: no wrap
    expected, _, _ = run_stack(image, layers, pad_mode="zeros", engine_path="direct")
    got, _ = in_strips(RowFilter(image.shape, layers, engine_path="direct"), image, 4)
    assert np.array_equal(got, expected)


def test_auto_keeps_fft_off_the_strips_that_hold_a_nan(rng):
    """``auto`` picks the FFT path for the whole image once; a strip whose rows hold a NaN
    takes the direct path instead, so the NaN reaches only the windows that cover it, as in
    the in-memory run (which takes the direct path everywhere)."""
    image = (rng.standard_normal((1, 300, 300)) + 0.5).astype(np.float32)
    image[0, 150, 40] = np.nan
    operation = resolve("log:sigma=10")                     # 61 x 61, not separable
    clean, paths = filter_operation(np.nan_to_num(image), operation, pad_mode="reflect",
                                    flip=False, stride=(1, 1), pads=((30, 30), (30, 30)),
                                    dilation=(1, 1))
    assert paths == ["fft"]
    expected, paths = filter_operation(image, operation, pad_mode="reflect", flip=False,
                                       stride=(1, 1), pads=((30, 30), (30, 30)),
                                       dilation=(1, 1))
    assert paths == ["direct"]
    got, _ = in_strips(RowFilter(image.shape, operation, pad_mode="reflect"), image, 64)
    assert np.array_equal(np.isnan(got), np.isnan(expected))
    assert np.isnan(got).sum() == 61 * 61
    assert_same_numbers(got, expected, exact=False)


def test_strip_plan_covers_the_output_and_counts_the_rows_held(rng):
    layers = layers_from_specs(["conv:k=3,c=8,s=2,p=1,init=random", "relu",
                                "pool:k=2", "conv:k=3,c=2,p=1,init=random"])
    shape = (3, 101, 64)
    row_filter = RowFilter(shape, layers)
    assert row_filter.output_shape == (2, 25, 16)
    strips = row_filter.strips(7)
    assert [s.out_rows for s in strips] == [(0, 7), (7, 14), (14, 21), (21, 25)]
    # The first strip: its 7 rows read 8 pooled rows, made of 16 rows of the first conv,
    # which read image rows 0..31 (row -1 is padding).
    assert strips[0].input_rows.tolist() == list(range(32))
    # At most: the first conv's 16 rows x 8 channels x 32 beside its 32 rows x 3 x 64.
    assert strips[0].peak_bytes == 4 * (32 * 3 * 64 + 16 * 8 * 32)
    # One strip: the pool leaves the first conv's last row (50) unused, so the image's last
    # row is never read.
    one = strip_plan(shape, layers, 25)
    assert len(one) == 1 and one[0].input_rows.tolist() == list(range(100))


def test_filter_rows_gives_any_range_of_rows(rng):
    image = (rng.standard_normal((3, 33, 17)) + 0.5).astype(np.float32)
    operation = resolve("sobel")
    expected, _ = filter_operation(image, operation, pad_mode="symmetric", flip=False,
                                   stride=(1, 1), pads=((1, 1), (1, 1)), dilation=(1, 1),
                                   engine_path="direct")
    got = filter_rows(lambda rows: image[:, rows], image.shape, operation, (9, 20),
                      pad_mode="symmetric", engine_path="direct")
    assert np.array_equal(got, expected[:, 9:20])


@pytest.mark.parametrize("specs, phrase", [
    (["tconv:k=2,s=2,init=random"], "cannot be streamed in strips yet"),
    (["conv:k=3,init=random", "fc:c=10"], "cannot be streamed in strips yet"),
])
def test_layers_that_cannot_stream_say_so(specs, phrase):
    with pytest.raises(UsageError, match=phrase):
        RowFilter((1, 16, 16), layers_from_specs(specs))


def test_strips_are_rows_of_images():
    with pytest.raises(UsageError, match=r"strips are rows of an image \(C, H, W\)"):
        RowFilter((1, 8, 8, 8), layers_from_specs(["conv:k=3,init=random"]))
