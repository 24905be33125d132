"""`convcli apply --layer`: whole stacks of layers on real data, as explain describes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli as run
from convcli.explain import explain_stack
from convcli.kernels import resolve
from convcli.layers import layers_from_specs, parse_layer
from convcli.stacks import run_stack

SAMPLES = Path(__file__).resolve().parent.parent / "samples"




def relative_error(got, expected) -> float:
    expected = np.asarray(expected, np.float64)
    return float(np.abs(np.asarray(got, np.float64) - expected).max() / np.abs(expected).max())


def write_stack(path: Path, layers: list[dict]) -> Path:
    path.write_text(json.dumps({"layers": layers}))        # JSON is valid YAML
    return path


@pytest.fixture
def photo(tmp_path) -> Path:
    """A real photo, cropped small so torch's reference runs quickly."""
    from PIL import Image

    path = tmp_path / "cat.png"
    Image.open(SAMPLES / "chelsea.png").crop((100, 50, 260, 170)).save(path)
    return path


def test_the_issues_yaml_stack_equals_torch(tmp_path, rng, photo, capsys):
    """conv(gaussian) -> conv 3->2 with bias, stride 2 -> relu -> max-pool -> tconv 2->4 back up
    -> shuffle: the output equals the same ops in torch to 1e-5."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    weights = rng.standard_normal((2, 3, 3, 3)).round(3)
    bias = [0.1, -0.2]
    up = rng.standard_normal((2, 4, 4, 4)).round(3)
    stack = write_stack(tmp_path / "net.yaml", [
        {"type": "conv", "kernel": "gaussian:sigma=2"},
        {"type": "conv", "weights": weights.tolist(), "bias": bias, "stride": 2, "padding": 1},
        {"type": "relu"},
        {"type": "pool", "mode": "max", "kernel": 2},
        {"type": "tconv", "weights": up.tolist(), "stride": 2, "padding": 1, "output_padding": 1},
        {"type": "shuffle", "groups": 2},
    ])
    code, out, err = run(["apply", photo, "--layer", stack, "-o", tmp_path / "out.npy",
                          "--report", "json"], capsys)
    assert code == 0, err
    got = np.load(tmp_path / "out.npy")

    from PIL import Image

    x = torch.from_numpy(np.asarray(Image.open(photo), np.float64).transpose(2, 0, 1) / 255)[None]
    gaussian = torch.from_numpy(resolve("gaussian:sigma=2").kernels[0].weights.copy())
    half = gaussian.shape[0] // 2
    y = functional.conv2d(functional.pad(x, (half,) * 4, mode="reflect"),
                          gaussian.expand(3, 1, -1, -1), groups=3)
    y = functional.conv2d(y, torch.from_numpy(weights), torch.tensor(bias, dtype=torch.float64),
                          stride=2, padding=1)
    y = functional.max_pool2d(functional.relu(y), 2)
    y = functional.conv_transpose2d(y, torch.from_numpy(up), stride=2, padding=1, output_padding=1)
    expected = functional.channel_shuffle(y.float(), 2).double()[0].numpy()
    assert got.shape == expected.shape == (4, 61, 81)      # (30 - 1)*2 - 2 + 3 + 1 + 1 = 61
    assert relative_error(got, expected) < 1e-5
    record = json.loads(out)
    assert [layer["output_shape"] for layer in record["layers"]] == [
        [3, 120, 160], [2, 60, 80], [2, 60, 80], [2, 30, 40], [4, 61, 81], [4, 61, 81]]


STACKS_2D = [
    ["conv:k=3,c=4,s=2,p=1,init=random", "relu", "pool:k=2,mode=avg,ceil=true",
     "tconv:k=3,s=2,c=2,op=1,init=random,seed=3", "shuffle:g=2"],
    ["conv:kernel=sobel-x", "abs", "pool:k=3,s=2,p=1", "leaky-relu:slope=0.2", "bias:value=0.5",
     "sigmoid"],
    ["conv:k=5x3,c=6,g=3,d=2,p=same,init=random", "tanh", "conv:k=1,c=2,init=random",
     "pool:k=2,d=2"],
]


@pytest.mark.parametrize("specs", STACKS_2D)
def test_explain_and_run_agree_on_every_layer(specs, rng):
    layers = layers_from_specs(specs)
    x = rng.random((3, 37, 29), dtype=np.float32) + 0.1
    out, explanation, runs = run_stack(x, layers, pad_mode="reflect")
    assert [run_["output_shape"] for run_ in runs] == [row.output_shape for row in
                                                       explain_stack(x.shape, layers).layers]
    assert list(out.shape) == explanation.output_shape
    assert np.isfinite(out).all()


def test_cli_explain_prints_the_shapes_apply_makes(tmp_path, photo, capsys):
    args = ["--layer", "conv:k=3,c=8,s=2,init=random", "--layer", "relu", "--layer",
            "pool:k=3,s=2,ceil=true", "--layer", "tconv:k=4,s=2,p=1,c=3,init=random"]
    code, out, err = run(["explain", photo, *args, "--json"], capsys)
    assert code == 0, err
    explained = [row["output_shape"] for row in json.loads(out)["layers"]]
    code, out, err = run(["apply", photo, *args, "-o", tmp_path / "o", "--format", "npy",
                          "--report", "json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert [layer["output_shape"] for layer in record["layers"]] == explained
    assert list(np.load(record["output"]).shape) == explained[-1]


def test_a_kernel_spec_layer_runs_exactly_as_dash_k(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "--layer", "conv:kernel=gaussian:sigma=1.5,size=7,s=2",
                        "-o", tmp_path / "layer.npy"], capsys)
    assert code == 0, err
    code, _, err = run(["apply", photo, "-k", "gaussian:sigma=1.5,size=7", "--stride", "2",
                        "-o", tmp_path / "k.npy"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "layer.npy"), np.load(tmp_path / "k.npy"))


def test_save_stages_writes_every_layer_in_order(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "--layer", "conv:kernel=sobel-x", "--layer", "abs",
                        "--layer", "pool:k=2", "-o", tmp_path / "o", "--save-stages",
                        "--format", "npy"], capsys)
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert names == ["cat_stack.npy", "cat_stack_stage01-conv-3x3-sobel-x.npy",
                     "cat_stack_stage02-abs.npy"]
    first = np.load(tmp_path / "o" / names[1])
    np.testing.assert_array_equal(np.abs(first), np.load(tmp_path / "o" / names[2]))


def test_split_writes_one_png_per_map(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "--layer", "conv:k=3,c=5,init=random", "-o", tmp_path / "o",
                        "--split"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        f"cat_stack_c{i:02d}.png" for i in range(5)]


@pytest.mark.parametrize("layers, phrases", [
    (["pool:k=200"], ["layer 1 (max-pool 200x200)", "too small", "at least"]),
    (["conv:k=3,c=4,g=3,init=random"], ["layer 1", "groups=3 must divide"]),
    (["conv:k=3,c=8", "relu"], ["--layer 1 (conv 3)", "no weights", "init=random"]),
    (["fc:c=10"], ["fc layers are counted by convcli explain"]),
    (["shuffle:g=2"], ["layer 1 (shuffle 2)", "must divide the 3 channels"]),
    (["conv:k=3,c=4,init=random", "bias:value=1", "pool:k=2,d=2,mode=avg"],
     ["layer 3", "no dilation"]),
    (["relu:k=3"], ["relu layers take no keys"]),
    (["tconv:k=3,s=2,op=2,init=random"], ["output padding 2"]),
])
def test_bad_stacks_stop_before_any_work(tmp_path, photo, capsys, layers, phrases):
    args = [a for layer in layers for a in ("--layer", layer)]
    code, _, err = run(["apply", photo, *args, "-o", tmp_path / "o"], capsys)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    for phrase in phrases:
        assert phrase in err, err
    assert not (tmp_path / "o").exists()


def test_channels_that_do_not_chain_name_the_layer(tmp_path, rng, photo, capsys):
    stack = write_stack(tmp_path / "bad.yaml", [
        {"type": "conv", "weights": rng.standard_normal((2, 3, 3, 3)).tolist()},
        {"type": "conv", "weights": rng.standard_normal((4, 5, 1, 1)).tolist()},
    ])
    code, _, err = run(["apply", photo, "--layer", stack, "-o", tmp_path / "o"], capsys)
    assert code == 2
    assert "layer 2" in err and "expect 5 input channels" in err and "has 2" in err, err


def test_k_and_layer_are_one_or_the_other(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "sobel", "--layer", "relu", "-o", tmp_path], capsys)
    assert code == 2 and "not both" in err
    code, _, err = run(["apply", photo, "-o", tmp_path], capsys)
    assert code == 2 and "--layer" in err


def test_layer_spec_parsing_keeps_kernel_parameters():
    layer = parse_layer("conv:kernel=gaussian:sigma=2,size=9,s=2")
    assert layer.operation.name == "gaussian:sigma=2,size=9"
    assert layer.kernel == (9, 9) and layer.stride == (2, 2)
    assert parse_layer("conv:k=3x5,c=4,init=random").kernel == (3, 5)


# --- signals and volumes from the shell ------------------------------------------------------

def test_a_1d_kernel_smooths_the_sunspot_signal(tmp_path, capsys):
    kernel = tmp_path / "smooth.yaml"
    kernel.write_text("weights: [1, 4, 6, 4, 1]\nnormalize: true\n")
    code, _, err = run(["apply", SAMPLES / "sunspots.npy", "-k", kernel, "-o", tmp_path / "s.npy"],
                       capsys)
    assert code == 0, err
    signal = np.load(SAMPLES / "sunspots.npy").astype(np.float64)
    padded = np.pad(signal, ((0, 0), (2, 2)), mode="reflect")         # 'same', reflect borders
    expected = sum(w * padded[:, k:k + signal.shape[1]] for k, w in enumerate([1, 4, 6, 4, 1])) / 16
    got = np.load(tmp_path / "s.npy")
    assert got.shape == (1, 309) and relative_error(got, expected) < 1e-6


def test_a_1d_stack_with_channels(tmp_path, rng, capsys):
    """Weights nested 3 deep on a signal are C_out x C_in x K: 1 -> 2 channels, then pooled."""
    weights = rng.standard_normal((2, 1, 4)).round(3)
    stack = write_stack(tmp_path / "net.yaml", [
        {"type": "conv", "weights": weights.tolist(), "stride": 2},
        {"type": "pool", "mode": "avg", "kernel": 3}])
    code, out, err = run(["apply", SAMPLES / "sunspots.npy", "--layer", stack, "-o",
                          tmp_path / "n.npy", "--report", "json"], capsys)
    assert code == 0, err
    signal = np.load(SAMPLES / "sunspots.npy").astype(np.float64)[0]
    conv = np.array([[weights[c, 0] @ signal[i * 2:i * 2 + 4] for i in range(153)] for c in range(2)])
    expected = conv[:, :51 * 3].reshape(2, 51, 3).mean(axis=2)
    assert relative_error(np.load(tmp_path / "n.npy"), expected) < 1e-5
    assert json.loads(out)["layers"][0]["output_shape"] == [2, 153]


def test_a_3d_kernel_on_the_mri_volume_equals_scipy(tmp_path, rng, capsys):
    ndimage = pytest.importorskip("scipy.ndimage")
    tifffile = pytest.importorskip("tifffile")
    weights = rng.standard_normal((3, 3, 3)).round(3)
    kernel = tmp_path / "k3.yaml"
    kernel.write_text(json.dumps({"name": "k3", "weights": weights.tolist()}))
    code, out, err = run(["apply", SAMPLES / "brain_mri.tif", "-k", kernel, "-o",
                          tmp_path / "v.npy", "--report", "json"], capsys)
    assert code == 0, err
    volume = tifffile.imread(SAMPLES / "brain_mri.tif").astype(np.float64) / 65535
    expected = ndimage.correlate(volume, weights, mode="mirror")      # mirror is torch's reflect
    got = np.load(tmp_path / "v.npy")
    assert got.shape == (1, 24, 96, 96) and relative_error(got[0], expected) < 1e-5
    record = json.loads(out)
    assert record["padding"] == {"front": 1, "back": 1, "top": 1, "bottom": 1, "left": 1, "right": 1}
    assert record["kernel_shape"] == [1, 1, 3, 3, 3]


def test_explain_shows_a_volumes_formula_per_axis(tmp_path, capsys):
    kernel = tmp_path / "k3.yaml"
    kernel.write_text("weights: " + json.dumps(np.ones((3, 5, 5)).tolist()))
    code, out, err = run(["explain", SAMPLES / "brain_mri.tif", "-k", kernel, "--stride", "2"],
                         capsys)
    assert code == 0, err
    assert "(1, 24, 96, 96) -> (1, 12, 48, 48)   (C, D, H, W)" in out
    assert "Z_out = ceil" not in out and "depth:" in out and "Z_out = floor((Z + " in out


def test_a_kernel_for_other_axes_fails_the_file_on_one_line(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "smooth-1d", "-o", tmp_path / "o"], capsys)
    assert code == 2            # the only input: a usage error before any work, as for --layer
    assert len(err.strip().splitlines()) == 1
    assert "weights nested 1 deep do not fit an input with 2 spatial axes" in err
    assert "(one height x width kernel for every channel)" in err


# --- hostile layer specs: a UsageError, never another exception ------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from convcli.errors import UsageError  # noqa: E402
from convcli.layers import layer_from_mapping  # noqa: E402

SPEC_PIECES = st.sampled_from(["conv", "tconv", "pool", "relu", "shuffle", "bias", "fc", "leaky-relu",
                               ":", ",", "=", "k", "s", "p", "d", "c", "g", "op", "mode", "ceil",
                               "kernel", "init", "random", "seed", "slope", "value", "max", "avg",
                               "same", "valid", "0", "1", "3", "-2", "1.5", "x", "3x3x3x3", "nan",
                               "gaussian:sigma=2", "sobel", "weights", "pad_mode", "true", " "])
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 9) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children,
                                                                      max_size=3),
    max_leaves=12)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(SPEC_PIECES, max_size=12), st.sampled_from([(3, 17, 13), (2, 40), (1, 6, 9, 9)]))
def test_random_layer_specs_fail_as_usage_errors(pieces, shape):
    try:
        layer = parse_layer("".join(pieces))
        explain_stack(shape, [layer])
    except UsageError:
        pass


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(["conv", "tconv", "pool", "bias", "shuffle", "leaky-relu"]),
       st.dictionaries(st.sampled_from(["kernel", "weights", "bias", "stride", "padding", "groups",
                                        "value", "mode", "output_padding", "slope", "init", "c"]),
                       YAML_VALUES, max_size=4))
def test_random_yaml_layers_fail_as_usage_errors(kind, values):
    try:
        layer = layer_from_mapping(kind, values, "net.yaml: layer 1")
        explain_stack((3, 12, 10), [layer])
    except UsageError:
        pass


@pytest.mark.parametrize("args, phrase", [
    (["-k", "sobel", "--save-stages", "-o", "OUT"], "--save-stages writes the maps of every --layer"),
    (["--layer", "relu", "--split", "-o", "png:-"], "write several files"),
])
def test_stage_and_split_options_need_files(tmp_path, photo, capsys, args, phrase):
    args = [str(tmp_path / "o") if a == "OUT" else a for a in args]
    code, _, err = run(["apply", photo, *args], capsys)
    assert code == 2 and phrase in err, err


def test_geometry_options_belong_to_the_layers(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "--layer", "relu", "--stride", "2", "-o", tmp_path], capsys)
    assert code == 2 and "put them in the layer specs" in err, err


def test_a_stack_over_a_folder_with_two_workers_equals_one_worker(tmp_path, rng, capsys):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(folder / f"{index}.png")
    args = ["--layer", "conv:k=3,c=4,init=random,seed=7", "--layer", "relu", "--layer", "pool:k=2",
            "--format", "npy", "--report", "none", "-q"]
    for jobs in ("1", "2"):
        code, _, err = run(["apply", folder, *args, "-j", jobs, "-o", tmp_path / f"j{jobs}"], capsys)
        assert code == 0, err
    for index in range(4):
        one = np.load(tmp_path / "j1" / f"{index}_stack.npy")
        assert one.shape == (4, 19, 25)
        np.testing.assert_allclose(np.load(tmp_path / "j2" / f"{index}_stack.npy"), one, rtol=1e-6,
                                   atol=1e-6)


def test_an_image_kernel_on_a_signal_says_what_fits(tmp_path, capsys):
    code, _, err = run(["apply", SAMPLES / "sunspots.npy", "-k", "gaussian:sigma=2", "-o",
                        tmp_path / "o"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1       # the only input
    assert "kernel 13x13 is for an image (2 axes) but this input is a signal (1: length)" in err
    assert "smooth-1d" in err


def test_a_kernel_spec_layer_adds_its_bias(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "--layer", "conv:kernel=box:size=3,bias=0.25", "-o",
                        tmp_path / "biased.npy"], capsys)
    assert code == 0, err
    code, _, err = run(["apply", photo, "-k", "box:size=3", "-o", tmp_path / "plain.npy"], capsys)
    np.testing.assert_allclose(np.load(tmp_path / "biased.npy"), np.load(tmp_path / "plain.npy") + 0.25,
                               rtol=1e-6, atol=1e-6)


def test_the_same_kernel_twice_is_named_as_the_problem(tmp_path, photo, capsys):
    code, _, err = run(["apply", photo, "-k", "sobel", "-k", "sobel", "-o", tmp_path / "o"], capsys)
    assert code == 2 and "two kernels of" in err and "give each kernel once" in err, err


def test_a_conv_bias_of_the_wrong_length_stops_before_any_work(tmp_path, photo, capsys):
    stack = write_stack(tmp_path / "net.yaml", [
        {"type": "conv", "k": 3, "c": 2, "init": "random", "bias": [1, 2, 3]}])
    code, _, err = run(["apply", photo, "--layer", stack, "-o", tmp_path / "o"], capsys)
    assert code == 2 and "layer 1" in err and "bias has 3 values" in err, err
    assert not (tmp_path / "o").exists()
