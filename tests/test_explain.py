"""`convcli explain` predicts exactly the shapes the engine (and torch) produce."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from convcli import UsageError, conv2d, geometry
from conftest import run_cli as run
from convcli.explain import Layer, explain_layer, explain_stack, parse_layer, render_text

MANY = settings(max_examples=1000, deadline=None, derandomize=True)
SOME = settings(max_examples=200, deadline=None, derandomize=True)




@st.composite
def conv_layers(draw):
    groups = draw(st.integers(1, 3))
    channels = groups * draw(st.integers(1, 2))
    layer = Layer("conv", kernel=(draw(st.integers(1, 6)), draw(st.integers(1, 6))),
                  stride=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
                  padding=(draw(st.integers(0, 4)), draw(st.integers(0, 4))),
                  dilation=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                  out_channels=groups * draw(st.integers(1, 2)), groups=groups)
    size = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    return (channels, *size), layer


def fits(shape, layer):
    return all(geometry.conv_output_size(shape[1 + i], layer.kernel[i], layer.stride[i],
                                         layer.padding[i], layer.padding[i], layer.dilation[i]) >= 1
               for i in range(2))


@SOME
@given(conv_layers(), st.integers(0, 2**32 - 1))
def test_prediction_equals_the_engines_output_shape(case, seed):
    shape, layer = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    weight = rng.standard_normal((layer.out_channels, shape[0] // layer.groups) + layer.kernel)
    arguments = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation,
                     groups=layer.groups)
    if not fits(shape, layer):                    # both refuse, with the same numbers
        with pytest.raises(UsageError) as engine_error:
            conv2d(x, weight, **arguments)
        with pytest.raises(UsageError) as explain_error:
            explain_layer(shape, layer)
        assert str(engine_error.value).split(": ", 1)[1] == str(explain_error.value).split(": ", 1)[1]
        return
    assert explain_layer(shape, layer).output_shape == list(conv2d(x, weight, **arguments).shape)


@MANY
@given(conv_layers())
def test_prediction_equals_torch(case):
    torch = pytest.importorskip("torch")
    shape, layer = case
    assume(fits(shape, layer))
    layer_module = torch.nn.Conv2d(shape[0], layer.out_channels, layer.kernel, stride=layer.stride,
                                   padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    with torch.no_grad():
        got = layer_module(torch.zeros((1,) + shape)).shape[1:]
    assert explain_layer(shape, layer).output_shape == list(got)


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@SOME
@given(st.integers(1, 30), st.integers(1, 30), st.integers(1, 6), st.integers(1, 6),
       st.integers(1, 3), st.integers(1, 3))
def test_same_padding_is_torchs_split(height, width, kh, kw, dh, dw):
    """Our explicit 'same' padding, then a valid convolution, equals torch's padding='same'."""
    torch = pytest.importorskip("torch")
    explained = explain_layer((1, height, width), Layer("conv", kernel=(kh, kw), padding="same",
                                                        dilation=(dh, dw)))
    assert explained.output_shape == [1, height, width]
    pad = explained.padding
    image, weight = torch.rand(1, 1, height, width), torch.rand(1, 1, kh, kw)
    ours = torch.nn.functional.conv2d(
        torch.nn.functional.pad(image, (pad.left, pad.right, pad.top, pad.bottom)), weight,
        dilation=(dh, dw))
    theirs = torch.nn.functional.conv2d(image, weight, padding="same", dilation=(dh, dw))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


@MANY
@given(st.integers(1, 20), st.integers(1, 5), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3),
       st.integers(0, 3), st.integers(1, 3))
def test_transposed_prediction_equals_torch(size, kernel, stride, padding, dilation, output_padding,
                                            channels):
    torch = pytest.importorskip("torch")
    assume(output_padding < max(stride, dilation))
    layer = Layer("tconv", kernel=(kernel, kernel), stride=(stride, stride), padding=padding,
                  dilation=(dilation, dilation), output_padding=(output_padding, output_padding),
                  out_channels=channels)
    expected_size = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if expected_size < 1:
        with pytest.raises(UsageError, match="at least 1"):
            explain_layer((2, size, size), layer)
        return
    module = torch.nn.ConvTranspose2d(2, channels, kernel, stride=stride, padding=padding,
                                      output_padding=output_padding, dilation=dilation)
    with torch.no_grad():
        got = module(torch.zeros(1, 2, size, size)).shape[1:]
    assert explain_layer((2, size, size), layer).output_shape == list(got)


@MANY
@given(st.integers(1, 25), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2), st.integers(1, 3),
       st.booleans(), st.sampled_from(["max", "avg"]))
def test_pool_prediction_equals_torch(size, kernel, stride, padding, dilation, ceil_mode, mode):
    torch = pytest.importorskip("torch")
    dilation = 1 if mode == "avg" else dilation            # torch's avg_pool2d has no dilation
    assume(padding <= kernel // 2 and size + 2 * padding >= dilation * (kernel - 1) + 1)
    layer = Layer("pool", kernel=(kernel, kernel), stride=(stride, stride), padding=padding,
                  dilation=(dilation, dilation), pool_mode=mode, ceil_mode=ceil_mode)
    x = torch.zeros(1, 2, size, size)
    if mode == "max":
        got = torch.nn.functional.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    else:
        got = torch.nn.functional.avg_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    assert explain_layer((2, size, size), layer).output_shape == list(got.shape[1:])


def receptive_field_by_walking(layers: list[Layer]) -> int:
    """Input pixels that reach output 0 along one axis, found by expanding index sets."""
    reached = {0}
    for layer in reversed(layers):
        k, s, d = layer.kernel[0], layer.stride[0], layer.dilation[0]
        reached = {o * s + t * d for o in reached for t in range(k)}
    return max(reached) - min(reached) + 1


@MANY
@given(st.lists(st.tuples(st.sampled_from(["conv", "pool"]), st.integers(1, 5), st.integers(1, 3),
                          st.integers(1, 3)), min_size=1, max_size=5))
def test_stack_receptive_field_and_jump(specs):
    layers = [Layer(kind, kernel=(k, k), stride=(s, s), dilation=(d, d), padding=k // 2)
              for kind, k, s, d in specs]
    try:
        stack = explain_stack((1, 400, 400), layers)
    except UsageError:
        assume(False)
    assert stack.as_dict()["receptive_field"][0] == receptive_field_by_walking(layers)
    assert stack.as_dict()["jump"][0] == int(np.prod([s for _, _, s, _ in specs]))


def test_worked_example_text(capsys):
    code, out, _ = run(["explain", "--size", "224", "--kernel", "3", "--stride", "2", "--padding", "1",
                        "--in-channels", "3", "--out-channels", "16"], capsys)
    assert code == 0
    assert "H_out = floor((H + 2P - D(K-1) - 1) / S) + 1" in out
    assert "= floor((224 + 2*1 - 1*(3-1) - 1) / 2) + 1" in out
    assert "= floor(223 / 2) + 1" in out and "= 111 + 1" in out
    assert "(3, 224, 224) -> (16, 112, 112)" in out
    assert "parameters: 448" in out


def test_im2col_classic_example(capsys):
    code, out, _ = run(["explain", "--size", "10", "--kernel", "3", "--in-channels", "3", "--json"],
                       capsys)
    assert code == 0
    result = json.loads(out)
    assert result["output_shape"] == [3, 8, 8]
    code, out, _ = run(["explain", "--size", "10", "--kernel", "3", "--in-channels", "3",
                        "--out-channels", "1"], capsys)
    assert "weights 1x27 @ columns 27x64 = 1x64, reshaped to 1x8x8" in out


def test_leftover_and_same_notes():
    layer = parse_layer("conv:k=3,s=2")
    text = render_text(explain_layer((1, 10, 9), layer))
    assert "the last 1 image row at the bottom is never read" in text       # (10 - 3) % 2 = 1
    same = render_text(explain_layer((1, 10, 10), parse_layer("conv:k=4,s=2,p=same")))
    assert "TensorFlow's SAME rule" in same and "1 before and 1 after" in same
    even = render_text(explain_layer((1, 10, 10), parse_layer("conv:k=4,p=same")))
    assert "1 before and 2 after" in even and "odd pixel goes after" in even


def test_stack_json_has_layer_keys(capsys, tmp_path):
    layers = tmp_path / "net.yaml"
    layers.write_text("layers:\n  - conv:k=3,p=1,c=16\n  - {type: pool, k: 2}\n")
    code, out, err = run(["explain", "--size", "32", "--in-channels", "3", "--layer", layers,
                          "--layer", "conv:k=3,c=8", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["input_shape"] == [3, 32, 32] and result["output_shape"] == [8, 14, 14]
    assert [row["output_shape"] for row in result["layers"]] == [[16, 32, 32], [16, 16, 16], [8, 14, 14]]
    for row in result["layers"]:
        assert set(row) >= {"output_shape", "receptive_field", "jump", "params", "macs", "padding"}
    assert result["layers"][0]["params"] == 16 * 27 + 16
    assert result["layers"][2]["receptive_field"] == [8, 8]


def test_explain_of_an_image_agrees_with_apply(tmp_path, rng, capsys):
    from PIL import Image

    source = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)).save(source)
    code, out, err = run(["explain", source, "-k", "gaussian:sigma=2", "--stride", "3", "--json"], capsys)
    assert code == 0, err
    predicted = json.loads(out)
    code, out, err = run(["apply", source, "-k", "gaussian:sigma=2", "--stride", "3", "-o", tmp_path,
                          "--report", "json"], capsys)
    assert code == 0, err
    applied = json.loads(out)
    assert predicted["output_shape"] == applied["output_shape"] == [3, 13, 17]
    assert predicted["padding"] == applied["padding"]


@pytest.mark.parametrize("args, phrases", [
    (["--size", "3", "--kernel", "5"], ["height 3 is too small", "at least 5"]),
    (["--size", "8", "--kernel", "2", "--pool", "max", "--padding", "2"], ["half the kernel"]),
    (["--size", "8", "--kernel", "3", "--transposed", "--stride", "2", "--output-padding", "2"],
     ["output padding 2"]),
    (["--size", "8", "--kernel", "3", "--layer", "conv:k=3"], ["--kernel", "--layer"]),
    (["--size", "8", "--layer", "conv:k=3,q=1"], ["unknown key 'q'"]),
    (["--size", "8", "--layer", "blur:k=3"], ["conv, tconv, pool"]),
    (["--size", "8"], ["--kernel"]),
    (["--kernel", "3"], ["--size"]),
])
def test_explain_errors_are_one_line_exit_2(capsys, args, phrases):
    code, _, err = run(["explain", *args], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    for phrase in phrases:
        assert phrase in err, err


def test_explain_reads_only_the_image_header(tmp_path, rng, capsys, monkeypatch):
    from PIL import Image

    source = tmp_path / "big.png"
    Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(source)

    def refuse_to_decode(self, *args, **kwargs):
        raise AssertionError("explain decoded the pixels")

    monkeypatch.setattr(Image.Image, "load", refuse_to_decode)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", refuse_to_decode)
    code, out, err = run(["explain", source, "-k", "box:size=5", "--padding", "valid", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["output_shape"] == [1, 36, 26]


def test_im2col_duplication_batch_separable_and_dense_counts(capsys):
    """The seeds' counts: 300 input values against 27 x 64 column entries, the batch form,
    kH + kW against kH x kW, and the fully connected layer a convolution replaces."""
    code, out, err = run(["explain", "--size", "10", "--kernel", "3", "--in-channels", "3",
                          "--out-channels", "1", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["im2col"]["input_values"] == 300
    assert result["im2col"]["column_entries"] == 27 * 64
    assert result["separable"] == {"taps": 9, "separable_taps": 6, "kernel_is_separable": None}
    assert result["fully_connected"] == {"weights": 300 * 64, "conv_weights": 27}
    code, out, err = run(["explain", "--size", "10", "--kernel", "3", "--in-channels", "3",
                          "--out-channels", "2", "--batch", "4"], capsys)
    assert code == 0, err
    assert "(4, 3, 10, 10) -> (4, 2, 8, 8)   (N, C, H, W)" in out
    assert "columns 27x256 = 2x256, reshaped to 4x2x8x8" in out
    assert f"multiply-accumulates (a batch of 4): {4 * 2 * 27 * 64:,}" in out
    code, out, err = run(["explain", "--size", "64", "-k", "gaussian:sigma=2"], capsys)
    assert "this kernel is rank 1" in out and "26 multiply-adds" in out and "instead of 169" in out


def test_dilated_span_and_receptive_field_of_one_layer(capsys):
    code, out, err = run(["explain", "--size", "32", "--kernel", "3", "--dilation", "4"], capsys)
    assert code == 0, err
    assert "dilation 4 spreads the 3 taps over D(K-1) + 1 = 4*(3-1) + 1 = 9 pixels" in out
    assert "receptive field: 9x9 input pixels per output" in out


def test_signals_and_volumes_get_their_own_axes(capsys):
    code, out, err = run(["explain", "--size", "309", "--dims", "1", "--kernel", "7", "--stride",
                          "2"], capsys)
    assert code == 0, err
    assert "(1, 309) -> (1, 152)   (C, L)" in out and "L_out = floor((L + 2P" in out
    code, out, err = run(["explain", "--size", "24,96,96", "--kernel", "3,3,3", "--padding", "1",
                          "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["output_shape"] == [1, 24, 96, 96]
    assert list(result["axes"]) == ["depth", "height", "width"]
    assert result["padding"] == {"front": 1, "back": 1, "top": 1, "bottom": 1, "left": 1, "right": 1}


def test_fc_layer_counts_every_connection(capsys):
    code, out, err = run(["explain", "--size", "8", "--in-channels", "4", "--layer",
                          "conv:k=3,p=1,c=16", "--layer", "fc:c=10", "--json"], capsys)
    assert code == 0, err
    fc = json.loads(out)["layers"][1]
    assert fc["output_shape"] == [10, 1, 1]
    assert fc["params"] == 16 * 8 * 8 * 10 + 10 and fc["macs"] == 16 * 8 * 8 * 10
    assert fc["receptive_field"] == [3 + 7, 3 + 7]      # the conv's 3, then all 8 positions
