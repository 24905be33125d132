"""geometry.py against brute-force counting of window positions, and torch where installed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convcli import geometry
from convcli.errors import UsageError

sizes = st.integers(1, 60)
kernels = st.integers(1, 9)
strides = st.integers(1, 5)
dilations = st.integers(1, 4)
pads = st.integers(0, 6)


def count_windows(size: int, kernel: int, stride: int, before: int, after: int, dilation: int) -> int:
    """Walk the window start along the padded axis and count where the whole window fits."""
    span = dilation * (kernel - 1) + 1
    return sum(1 for start in range(0, size + before + after, stride)
               if start + span <= size + before + after)


@settings(max_examples=400, deadline=None)
@given(sizes, kernels, strides, pads, pads, dilations)
def test_conv_output_size_counts_the_windows(size, kernel, stride, before, after, dilation):
    expected = count_windows(size, kernel, stride, before, after, dilation)
    got = geometry.conv_output_size(size, kernel, stride, before, after, dilation)
    assert max(got, 0) == expected


@settings(max_examples=300, deadline=None)
@given(sizes, kernels, strides, dilations)
def test_same_padding_gives_ceil_of_size_over_stride(size, kernel, stride, dilation):
    before, after = geometry.same_padding(size, kernel, stride, dilation)
    assert 0 <= after - before <= 1
    assert geometry.conv_output_size(size, kernel, stride, before, after, dilation) == -(-size // stride)


def test_same_padding_with_stride_one_is_torch_rule():
    assert geometry.same_padding(10, 4, 1, 1) == (1, 2)        # odd pixel after
    assert geometry.same_padding(10, 3, 1, 2) == (2, 2)


def test_resolve_padding_words_and_numbers():
    assert geometry.resolve_padding("valid", (3, 5)) == geometry.Padding(0, 0, 0, 0)
    assert geometry.resolve_padding("full", (3, 5), dilation_hw=(2, 1)) == geometry.Padding(4, 4, 4, 4)
    assert geometry.resolve_padding((1, 2), (3, 3)) == geometry.Padding(1, 1, 2, 2)
    assert geometry.resolve_padding("same", (4, 3)) == geometry.Padding(1, 2, 1, 1)
    with pytest.raises(UsageError, match="stride"):
        geometry.resolve_padding("same", (3, 3), stride_hw=(2, 2))
    tf_style = geometry.resolve_padding("same", (3, 3), stride_hw=(2, 2), size_hw=(10, 9),
                                        strided_same=True)
    assert tf_style == geometry.Padding(0, 1, 1, 1)
    with pytest.raises(UsageError, match="padding"):
        geometry.resolve_padding("lots", (3, 3))
    with pytest.raises(UsageError, match=">= 0"):
        geometry.resolve_padding(-1, (3, 3))


def test_too_small_input_error_shows_the_numbers_and_the_smallest_size():
    with pytest.raises(UsageError) as error:
        geometry.conv_output_hw((4, 20), (7, 3), geometry.Padding(1, 0, 0, 0), dilation_hw=(1, 1))
    message = str(error.value)
    assert "height 4" in message and "at least 6" in message and "= -1" in message


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), kernels, strides, st.integers(0, 4), dilations)
def test_anchor_positions_sit_at_the_kernel_centre(n_out, kernel, stride, before, dilation):
    anchors = geometry.anchor_positions(n_out, kernel, stride, before, dilation)
    for i, anchor in enumerate(anchors):
        window_start = i * stride - before
        assert anchor == window_start + dilation * ((kernel - 1) // 2)


def test_pair_rejects_bad_values():
    assert geometry.pair(3, "stride") == (3, 3)
    assert geometry.pair((2, 5), "stride") == (2, 5)
    for bad in (0, (1, 2, 3), 1.5, True, "2"):
        with pytest.raises(UsageError, match="stride"):
            geometry.pair(bad, "stride")


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 24), kernels, strides, st.integers(0, 3), dilations, st.integers(0, 4))
def test_transposed_output_size_matches_torch(size, kernel, stride, padding, dilation, extra):
    torch = pytest.importorskip("torch")
    output_padding = extra % max(stride, dilation)          # torch: must be < stride or dilation
    expected_size = geometry.transposed_output_size(size, kernel, stride, padding, dilation,
                                                    output_padding)
    if expected_size < 1:
        return
    layer = torch.nn.ConvTranspose2d(1, 1, kernel, stride, padding, output_padding,
                                     dilation=dilation, bias=False)
    assert layer(torch.ones(1, 1, size, size)).shape[-1] == expected_size


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), strides, st.integers(0, 3), st.integers(1, 3),
       st.booleans())
def test_pool_output_size_matches_torch(size, kernel, stride, padding, dilation, ceil_mode):
    torch = pytest.importorskip("torch")
    if padding > kernel // 2:                               # torch's own precondition
        return
    expected = geometry.pool_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    pool = torch.nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    try:
        got = pool(torch.ones(1, 1, size, size)).shape[-1]
    except RuntimeError:                                    # torch: output too small
        assert expected < 1
        return
    assert got == expected
