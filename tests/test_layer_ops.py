"""The layer operations beside conv2d (issue #11) against float64 references and torch.

conv1d/conv3d against a tap-by-tap N-D correlation, transposed convolutions against a
scatter of every input pixel, pooling against explicit windows with torch's divisor rule;
then torch itself on random configurations, known answers, and the usage errors.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import convcli
from convcli import UsageError, geometry
from reference import reference_conv_nd, reference_conv_transpose, reference_pool

MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
TORCH_MODES = ("zeros", "reflect", "replicate", "circular")
RELATIVE_TOLERANCE = 1e-5
SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
CONV = {1: convcli.conv1d, 2: convcli.conv2d, 3: convcli.conv3d}
TRANSPOSED = {1: convcli.conv_transpose1d, 2: convcli.conv_transpose2d,
              3: convcli.conv_transpose3d}


def assert_close(result, expected, magnitude):
    """Within 1e-5 of the float64 result, relative to ``magnitude`` (the sum of |terms|, or
    the output's scale): a float32 bound."""
    assert result.dtype == np.float32 and result.shape == expected.shape
    error = np.abs(result - expected) / np.maximum(magnitude, 1.0)
    assert error.max(initial=0.0) <= RELATIVE_TOLERANCE, error.max()


def axis_values(draw, axes, low, high):
    return tuple(draw(st.integers(low, high)) for _ in range(axes))


@st.composite
def convolutions(draw, axes, transposed=False):
    """Random shapes, groups, stride, padding, dilation (and output_padding, border mode)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    groups = draw(st.integers(1, 2))
    in_channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    largest = {1: 5, 2: 4, 3: 3}[axes]
    kernel = axis_values(draw, axes, 1, largest)
    stride = axis_values(draw, axes, 1, 3)
    dilation = axis_values(draw, axes, 1, 2)
    padding = axis_values(draw, axes, 0, 2)
    if transposed:
        weight_shape = (in_channels, out_channels // groups) + kernel
        sizes = axis_values(draw, axes, 1, {1: 7, 2: 5, 3: 3}[axes])
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
        assume(min(geometry.transposed_output_size(*args) for args in
                   zip(sizes, kernel, stride, padding, dilation, output_padding)) >= 1)
        extra = dict(output_padding=output_padding, mode="zeros")
    else:
        weight_shape = (out_channels, in_channels // groups) + kernel
        sizes = tuple(max(d * (k - 1) + 1 - 2 * p, 1) + draw(st.integers(0, 6))
                      for k, d, p in zip(kernel, dilation, padding))
        extra = dict(output_padding=None, mode=draw(st.sampled_from(MODES)))
    x = rng.standard_normal((draw(st.integers(1, 2)), in_channels) + sizes).astype(np.float32)
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    bias = rng.standard_normal(out_channels).astype(np.float32) if draw(st.booleans()) else None
    return dict(x=x, weight=weight, bias=bias, stride=stride, padding=padding,
                dilation=dilation, groups=groups, **extra)


def conv_reference(p, pads=None):
    pads = pads or tuple((q, q) for q in p["padding"])
    args = dict(stride=p["stride"], pads=pads, dilation=p["dilation"], groups=p["groups"],
                mode=p["mode"])
    magnitude = reference_conv_nd(np.abs(p["x"]), np.abs(p["weight"]),
                                  None if p["bias"] is None else np.abs(p["bias"]), **args)
    return reference_conv_nd(p["x"], p["weight"], p["bias"], **args), magnitude


def transposed_reference(p):
    args = dict(stride=p["stride"], padding=p["padding"], output_padding=p["output_padding"],
                groups=p["groups"], dilation=p["dilation"])
    magnitude = reference_conv_transpose(np.abs(p["x"]), np.abs(p["weight"]),
                                         None if p["bias"] is None else np.abs(p["bias"]), **args)
    return reference_conv_transpose(p["x"], p["weight"], p["bias"], **args), magnitude


# --- conv1d and conv3d ------------------------------------------------------------------------

@pytest.mark.parametrize("axes, engine", [(1, "auto"), (1, "direct"), (3, "auto"), (3, "direct"),
                                          (3, "fft"), (3, "numpy")])
@SETTINGS
@given(data=st.data())
def test_conv_nd_matches_reference(axes, engine, data):
    p = data.draw(convolutions(axes))
    result = CONV[axes](p["x"], p["weight"], p["bias"], p["stride"], p["padding"], p["dilation"],
                        p["groups"], p["mode"], engine=engine)
    assert_close(result, *conv_reference(p))


@pytest.mark.parametrize("axes", [1, 3])
@settings(max_examples=15, deadline=None, derandomize=True)
@given(data=st.data())
def test_same_padding_and_flip(axes, data):
    p = data.draw(convolutions(axes))
    flipped = np.ascontiguousarray(p["weight"][(Ellipsis,) + (slice(None, None, -1),) * axes])
    result = CONV[axes](p["x"], flipped, p["bias"], padding="same", dilation=p["dilation"],
                        groups=p["groups"], padding_mode=p["mode"], flip=True)
    pads = tuple(geometry.same_padding(1, k, 1, d) for k, d in zip(p["weight"].shape[2:],
                                                                  p["dilation"]))
    assert_close(result, *conv_reference(dict(p, stride=(1,) * axes), pads))
    assert result.shape[2:] == p["x"].shape[2:]


def test_conv3d_on_planes_wider_than_a_mosaic_row_and_single_volumes(rng):
    """One plane per row (wide planes), and a (C, D, H, W) volume without the batch axis."""
    x = rng.standard_normal((2, 3, 4, 1100)).astype(np.float32)      # (C, D, H, W)
    weight = rng.standard_normal((2, 2, 2, 3, 3)).astype(np.float32)
    result = convcli.conv3d(x, weight, stride=(1, 1, 2), padding=(1, 0, 1),
                            padding_mode="reflect")
    p = dict(x=x[None], weight=weight, bias=None, stride=(1, 1, 2), dilation=(1, 1, 1),
             groups=1, mode="reflect")
    expected, magnitude = conv_reference(p, ((1, 1), (0, 0), (1, 1)))
    assert_close(result, expected[0], magnitude[0])


@pytest.mark.parametrize("axes", [1, 3])
@SETTINGS
@given(data=st.data(), padding_kind=st.sampled_from(["numbers", "same", "valid"]))
def test_conv_nd_matches_torch(axes, data, padding_kind):
    torch = pytest.importorskip("torch")
    p = data.draw(convolutions(axes))
    mode = p["mode"] if p["mode"] in TORCH_MODES else "zeros"
    padding = p["padding"] if padding_kind == "numbers" else padding_kind
    stride = (1,) * axes if padding_kind == "same" else p["stride"]
    sizes = p["x"].shape[2:]
    if padding_kind == "valid":
        assume(all(s >= d * (k - 1) + 1 for s, k, d in zip(sizes, p["weight"].shape[2:],
                                                           p["dilation"])))
    layer = {1: torch.nn.Conv1d, 3: torch.nn.Conv3d}[axes](
        p["x"].shape[1], p["weight"].shape[0], p["weight"].shape[2:], stride, padding,
        p["dilation"], p["groups"], bias=p["bias"] is not None, padding_mode=mode)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")               # torch: 'same' with an even kernel
        layer.weight[:] = torch.from_numpy(p["weight"])
        if p["bias"] is not None:
            layer.bias[:] = torch.from_numpy(p["bias"])
        try:
            expected = layer(torch.from_numpy(p["x"])).numpy()
        except RuntimeError:                          # torch: reflect padding >= size
            assume(False)
    result = CONV[axes](p["x"], p["weight"], p["bias"], stride, padding, p["dilation"],
                        p["groups"], mode)
    assert result.shape == expected.shape
    scale = np.abs(expected).max(initial=1.0)
    np.testing.assert_allclose(result, expected, rtol=0, atol=RELATIVE_TOLERANCE * scale * 4)


# --- transposed convolution -------------------------------------------------------------------

@pytest.mark.parametrize("axes", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_conv_transpose_matches_scatter_reference(axes, data):
    p = data.draw(convolutions(axes, transposed=True))
    result = TRANSPOSED[axes](p["x"], p["weight"], p["bias"], p["stride"], p["padding"],
                              p["output_padding"], p["groups"], p["dilation"])
    assert_close(result, *transposed_reference(p))
    single = TRANSPOSED[axes](p["x"][0], p["weight"], p["bias"], p["stride"], p["padding"],
                              p["output_padding"], p["groups"], p["dilation"])
    np.testing.assert_array_equal(single, result[0])


@pytest.mark.parametrize("axes", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_conv_transpose_matches_torch(axes, data):
    torch = pytest.importorskip("torch")
    p = data.draw(convolutions(axes, transposed=True))
    function = getattr(torch.nn.functional, f"conv_transpose{axes}d")
    expected = function(torch.from_numpy(p["x"]), torch.from_numpy(p["weight"]),
                        None if p["bias"] is None else torch.from_numpy(p["bias"]), p["stride"],
                        p["padding"], p["output_padding"], p["groups"], p["dilation"]).numpy()
    result = TRANSPOSED[axes](p["x"], p["weight"], p["bias"], p["stride"], p["padding"],
                              p["output_padding"], p["groups"], p["dilation"])
    assert result.shape == expected.shape
    scale = np.abs(expected).max(initial=1.0)
    np.testing.assert_allclose(result, expected, rtol=0, atol=RELATIVE_TOLERANCE * scale * 4)


def test_conv_transpose_undoes_the_shape_of_a_strided_conv(rng):
    """The usual decoder step: 4x4, stride 2, padding 1 doubles the size; output_padding
    picks the odd size a stride-2 conv2d also maps to the same input."""
    x = rng.standard_normal((3, 5, 6)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 4, 4)).astype(np.float32)
    assert convcli.conv_transpose2d(x, weight, stride=2, padding=1).shape == (2, 10, 12)
    assert convcli.conv_transpose2d(x, weight, stride=2, padding=1,
                                    output_padding=1).shape == (2, 11, 13)


def test_conv_transpose_known_answer():
    """Each input pixel stamps the kernel, stride apart; overlaps add."""
    result = convcli.conv_transpose1d(np.array([[1.0, 10.0]]), np.array([[[1.0, 2.0, 3.0]]]),
                                      stride=2)
    np.testing.assert_array_equal(result, [[1, 2, 13, 20, 30]])
    cropped = convcli.conv_transpose1d(np.array([[1.0, 10.0]]), np.array([[[1.0, 2.0, 3.0]]]),
                                       np.array([0.5]), stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(cropped, [[2.5, 13.5, 20.5, 30.5]])


# --- pooling ----------------------------------------------------------------------------------

@st.composite
def poolings(draw, axes, kind):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kernel = axis_values(draw, axes, 1, 4)
    stride = axis_values(draw, axes, 1, 3)
    dilation = axis_values(draw, axes, 1, 2) if kind == "max" else (1,) * axes
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    ceil_mode = draw(st.booleans())
    low = 1 if not (kind == "avg" and axes == 3) else max(kernel)   # torch's avg_pool3d rule
    sizes = tuple(max(d * (k - 1) + 1 - 2 * p, low) + draw(st.integers(0, 5))
                  for k, d, p in zip(kernel, dilation, padding))
    x = rng.standard_normal((draw(st.integers(1, 2)), draw(st.integers(1, 3))) + sizes)
    if kind == "max" and draw(st.booleans()):
        x.flat[rng.integers(x.size)] = np.nan
    return dict(x=x.astype(np.float32), kernel=kernel, stride=stride, padding=padding,
                dilation=dilation, ceil_mode=ceil_mode, count_include_pad=draw(st.booleans()))


def run_pool(kind, axes, p):
    function = getattr(convcli, f"{kind}_pool{axes}d")
    if kind == "max":
        return function(p["x"], p["kernel"], p["stride"], p["padding"], p["dilation"],
                        p["ceil_mode"])
    return function(p["x"], p["kernel"], p["stride"], p["padding"], p["ceil_mode"],
                    p["count_include_pad"])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("axes", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_pooling_matches_reference(kind, axes, data):
    p = data.draw(poolings(axes, kind))
    expected = reference_pool(p["x"], kind, p["kernel"], p["stride"], p["padding"],
                              p["dilation"], p["ceil_mode"], p["count_include_pad"])
    result = run_pool(kind, axes, p)
    if kind == "max":                                     # a max is exact, NaN and -inf too
        np.testing.assert_array_equal(result, expected.astype(np.float32))
    else:
        assert_close(result, expected, np.abs(p["x"]).max())
    np.testing.assert_array_equal(run_pool(kind, axes, dict(p, x=p["x"][0])), result[0])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("axes", [1, 2, 3])
@SETTINGS
@given(data=st.data())
def test_pooling_matches_torch(kind, axes, data):
    torch = pytest.importorskip("torch")
    p = data.draw(poolings(axes, kind))
    function = getattr(torch.nn.functional, f"{kind}_pool{axes}d")
    x = torch.from_numpy(p["x"])
    common = (p["kernel"], p["stride"], p["padding"])
    try:
        expected = (function(x, *common, p["dilation"], p["ceil_mode"]) if kind == "max" else
                    function(x, *common, p["ceil_mode"], p["count_include_pad"])).numpy()
    except RuntimeError:                                  # torch: no output
        with pytest.raises(UsageError):
            run_pool(kind, axes, p)
        return
    result = run_pool(kind, axes, p)
    if kind == "max":
        np.testing.assert_array_equal(result, expected)
    else:
        np.testing.assert_allclose(result, expected, rtol=0, atol=RELATIVE_TOLERANCE * 4)


def test_avg_pool_divisor_override_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 7, 6, 5)).astype(np.float32)
    expected = torch.nn.functional.avg_pool3d(torch.from_numpy(x), 3, 2, 1, True, True, 5)
    np.testing.assert_allclose(convcli.avg_pool3d(x, 3, 2, 1, True, True, 5), expected.numpy(),
                               rtol=1e-5, atol=1e-6)
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x[0]), 2, divisor_override=3)
    np.testing.assert_allclose(convcli.avg_pool2d(x[0], 2, divisor_override=3), expected.numpy(),
                               rtol=1e-5, atol=1e-6)


def test_max_pool_of_a_ramp_and_avg_pool_divisors():
    ramp = np.arange(20, dtype=np.float32).reshape(1, 4, 5)       # row-major ramp
    np.testing.assert_array_equal(convcli.max_pool2d(ramp, 2), [[[6, 8], [16, 18]]])
    np.testing.assert_array_equal(convcli.max_pool2d(ramp, 2, ceil_mode=True),
                                  [[[6, 8, 9], [16, 18, 19]]])
    np.testing.assert_array_equal(convcli.max_pool1d(-ramp[0], 3, 1, 1)[0], [0, 0, -1, -2, -3])
    ones = np.ones((1, 1, 3), np.float32)
    np.testing.assert_allclose(convcli.avg_pool1d(ones, 2, padding=1)[0, 0], [0.5, 1.0])
    np.testing.assert_allclose(convcli.avg_pool1d(ones, 2, padding=1, count_include_pad=False)[0, 0],
                               [1.0, 1.0])


def test_max_pool_nan_wins_and_padding_never_does():
    x = -np.ones((1, 1, 6), np.float32) * np.arange(1, 7)
    x[0, 0, 4] = np.nan
    np.testing.assert_array_equal(convcli.max_pool1d(x, 2, padding=1)[0, 0], [-1, -2, np.nan, -6])


# --- activations and channel_shuffle ----------------------------------------------------------

@pytest.mark.parametrize("take_max", [True, False])
def test_numpy_pooling_pass_equals_the_compiled_one(rng, take_max):
    """A cold small call pools in NumPy (no Numba start); it must give the compiled pass's
    numbers, NaN included."""
    from convcli.engine._pool_loops import pool_axis
    from convcli.engine._runtime import run_tasks
    from convcli.engine.pooling import pool_axis_numpy

    for inner in (1, 7):
        x = rng.standard_normal((3, 29, inner)).astype(np.float32)
        x[1, 5, 0] = np.nan
        for kernel, stride, padding, dilation in ((3, 2, 1, 1), (2, 1, 0, 3), (5, 3, 2, 1)):
            size = geometry.pool_output_size(29, kernel, stride, padding, dilation, True)
            scale = rng.random(size).astype(np.float32)
            compiled, numpy_pass = (np.empty((3, size, inner), np.float32) for _ in range(2))
            tasks = 3 if inner == 1 else 3 * size              # shared among threads
            run_tasks(pool_axis, tasks, x, compiled, kernel, stride, padding, dilation, take_max,
                      scale)
            pool_axis_numpy(x, numpy_pass, kernel, stride, padding, dilation, take_max, scale)
            np.testing.assert_allclose(numpy_pass, compiled, rtol=1e-6, atol=1e-6)


def test_relu_and_leaky_relu_known_answers():
    np.testing.assert_array_equal(convcli.relu(np.array([5.1, -3.0, 0.0])),
                                  np.array([5.1, 0.0, 0.0], np.float32))
    np.testing.assert_allclose(convcli.leaky_relu([5.1, -3.0]), [5.1, -0.03], rtol=1e-6)
    np.testing.assert_allclose(convcli.leaky_relu([-2.0], 0.2), [-0.4], rtol=1e-6)
    assert np.isnan(convcli.relu([np.nan]))[0]


def test_sigmoid_is_stable_for_large_values():
    x = np.array([-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4, np.inf, -np.inf], np.float32)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise"):
        warnings.simplefilter("error")
        result = convcli.sigmoid(x)
    expected = 1.0 / (1.0 + np.exp(-x.astype(np.float64).clip(-700, 700)))
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-30)
    assert result.dtype == np.float32 and result[0] >= 0 and result[-3] == 1.0


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activations_match_torch_on_any_shape(rng, name):
    torch = pytest.importorskip("torch")
    for shape in [(7,), (2, 3, 4), (1, 2, 3, 4, 5)]:
        x = (rng.standard_normal(shape) * 10).astype(np.float64)
        expected = getattr(torch.nn.functional, name)(torch.from_numpy(x.astype(np.float32)))
        result = getattr(convcli, name)(x)
        assert result.dtype == np.float32 and result.shape == shape
        np.testing.assert_allclose(result, expected.numpy(), rtol=2e-6, atol=1e-7)


def test_channel_shuffle_of_arange():
    x = np.arange(6, dtype=np.float32).reshape(6, 1, 1)
    np.testing.assert_array_equal(convcli.channel_shuffle(x, 2).ravel(), [0, 3, 1, 4, 2, 5])
    np.testing.assert_array_equal(convcli.channel_shuffle(x, 3).ravel(), [0, 2, 4, 1, 3, 5])
    signal = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(convcli.channel_shuffle(signal, 2, spatial_dims=1),
                                  [[0, 1], [4, 5], [2, 3], [6, 7]])


@pytest.mark.parametrize("shape, groups", [((2, 6, 3, 4), 3), ((1, 8, 5), 4), ((2, 4, 2, 2, 3), 2)])
def test_channel_shuffle_matches_torch(rng, shape, groups):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(np.float32)
    expected = torch.nn.functional.channel_shuffle(torch.from_numpy(x), groups).numpy()
    result = convcli.channel_shuffle(x, groups, spatial_dims=len(shape) - 2)
    np.testing.assert_array_equal(result, expected)


# --- geometry of the phases -------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(1, 4), st.integers(0, 3),
       st.integers(1, 3), st.integers(0, 3))
def test_transposed_phases_cover_every_tap_once(size, kernel, stride, padding, dilation, extra):
    """Every (input, tap) pair that lands on an output is read by exactly one phase."""
    extra %= max(stride, dilation)
    out = geometry.transposed_output_size(size, kernel, stride, padding, dilation, extra)
    assume(out >= 1)
    landed = sorted((i, k) for i in range(size) for k in range(kernel)
                    if 0 <= i * stride - padding + k * dilation < out)
    read = []
    for phase in geometry.transposed_phases(size, kernel, stride, padding, dilation, extra):
        for m in range(phase.count):
            o = phase.offset + m * stride
            assert o < out
            for j, k in enumerate(phase.taps):
                i = phase.first_input + m + j * phase.step
                assert i * stride - padding + k * dilation == o
                if 0 <= i < size:
                    read.append((i, k))
    assert sorted(read) == landed


# --- usage errors -----------------------------------------------------------------------------

def _x(*shape):
    return np.ones(shape, np.float32)


@pytest.mark.parametrize("call, phrases", [
    (lambda: convcli.conv_transpose2d(_x(8, 5, 5), _x(8, 4, 3, 3), groups=3),
     ["groups=3", "divide", "(8)"]),
    (lambda: convcli.conv_transpose2d(_x(6, 5, 5), _x(8, 4, 3, 3)),
     ["expects 8 input channels", "x has 6"]),
    (lambda: convcli.conv_transpose2d(_x(1, 5, 5), _x(1, 1, 3, 3), stride=2, output_padding=2),
     ["output_padding 2", "smaller than the stride (2) or the dilation (1)"]),
    (lambda: convcli.conv_transpose2d(_x(1, 2, 2), _x(1, 1, 2, 2), padding=3),
     ["gives no output", "padding at most 1"]),
    (lambda: convcli.conv_transpose2d(_x(1, 5, 5), _x(1, 1, 3, 3), padding="same"),
     ["padding", "integer"]),
    (lambda: convcli.conv_transpose2d(_x(1, 5, 5), _x(1, 1, 3)), ["4-D", "(C_in, C_out/groups"]),
    (lambda: convcli.conv_transpose1d(_x(5, 5, 5, 5), _x(5, 1, 3)), ["(C, L) or (N, C, L)"]),
    (lambda: convcli.conv_transpose3d(_x(2, 3, 3, 3), _x(2, 1, 2, 2, 2), np.ones(3)),
     ["bias", "(1,)"]),
    (lambda: convcli.conv3d(_x(8, 4, 4, 4), _x(4, 8, 3, 3, 3), groups=3),
     ["groups=3", "divide both input channels (8) and output channels (4)"]),
    (lambda: convcli.conv3d(_x(1, 2, 9, 9), _x(1, 1, 3, 3, 3)),
     ["depth 2 is too small", "at least 3"]),
    (lambda: convcli.conv3d(_x(1, 5, 5, 5), _x(1, 1, 3, 3, 3), stride=2, padding="same"),
     ["same", "stride"]),
    (lambda: convcli.conv3d(_x(1, 5, 5, 5), _x(1, 1, 3, 3, 3), stride=(1, 2)),
     ["stride", "3 (depth, height, width)"]),
    (lambda: convcli.conv3d(_x(1, 5, 5, 5), _x(1, 1, 3, 3, 3), padding_mode="mirror"),
     ["padding_mode", "reflect"]),
    (lambda: convcli.conv3d(_x(5, 5, 5), _x(1, 1, 3, 3, 3)), ["(C, D, H, W) or (N, C, D, H, W)"]),
    (lambda: convcli.conv1d(_x(2, 4), _x(1, 2, 5)), ["length 4 is too small", "at least 5"]),
    (lambda: convcli.conv1d(_x(2, 9), _x(1, 2, 5, 5)), ["3-D", "(C_out, C_in/groups, kL)"]),
    (lambda: convcli.max_pool2d(_x(1, 6, 6), 3, padding=2),
     ["padding 2", "at most half the kernel size 3 (at most 1)"]),
    (lambda: convcli.max_pool2d(_x(1, 2, 2), 3), ["height 2 is too small", "at least 3"]),
    (lambda: convcli.max_pool2d(_x(6, 6), 2), ["(C, H, W) or (N, C, H, W)"]),
    (lambda: convcli.max_pool1d(_x(1, 6), 2, stride=0), ["stride", ">= 1"]),
    (lambda: convcli.avg_pool2d(_x(1, 6, 6), (2, 2, 2)), ["kernel_size", "2 (height, width)"]),
    (lambda: convcli.avg_pool3d(_x(1, 2, 6, 6), 3, padding=1),
     ["depth 2 is smaller than the kernel (3)", "at least 3"]),
    (lambda: convcli.avg_pool2d(_x(1, 6, 6), 2, divisor_override=0), ["divisor_override", "non-zero"]),
    (lambda: convcli.channel_shuffle(_x(6, 2, 2), 4), ["groups=4", "divide the channels (6)"]),
    (lambda: convcli.channel_shuffle(_x(6, 2), 2), ["spatial_dims=2", "(C, ...)"]),
    (lambda: convcli.relu(np.array(["a"])), ["real numbers"]),
])
def test_bad_arguments_raise_clear_errors(call, phrases):
    with pytest.raises(UsageError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for phrase in phrases:
        assert phrase in message, message


def test_importing_convcli_loads_neither_numpy_nor_numba():
    code = ("import sys, convcli\n"
            "names = [n for n in convcli.__all__ if n[0].islower() and n != '__version__']\n"
            "heavy = [m for m in ('numpy', 'numba') if m in sys.modules]\n"
            "print(heavy or 'CLEAN', len(names))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split() == ["CLEAN", "17"], result.stdout + result.stderr


def test_every_public_name_is_the_engines():
    import convcli.engine

    for name in convcli.ENGINE_FUNCTIONS:
        assert getattr(convcli, name) is getattr(convcli.engine, name)
        assert name in convcli.__all__ and name in convcli.engine.__all__
