"""Built-in kernels against their textbook definitions; the spec parser and YAML loader."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from convcli.errors import UsageError
from convcli import kernels as kernels_module
from convcli.kernels import (Kernel, format_spec, library_folder, list_kernels, load_yaml, parse_spec,
                             render_kernel, resolve)


def kernel(spec: str):
    operation = resolve(spec)
    assert len(operation.kernels) == 1
    return operation.kernels[0]


@pytest.mark.parametrize("spec, shape", [
    ("identity", (1, 1)), ("box", (3, 3)), ("box:size=4", (4, 4)), ("gaussian", (7, 7)),
    ("gaussian:sigma=2", (13, 13)), ("gaussian:sigma=2,size=5", (5, 5)), ("binomial", (5, 5)),
    ("sobel-x", (3, 3)), ("scharr-y", (3, 3)), ("prewitt-x", (3, 3)), ("roberts-x", (2, 2)),
    ("laplacian", (3, 3)), ("log:sigma=1.5", (11, 11)), ("sharpen", (3, 3)), ("emboss", (3, 3)),
    ("motion:length=7,angle=30", (7, 7)), ("motion:length=4", (5, 5)), ("dog:sigma1=1,sigma2=2", (13, 13)),
])
def test_builtin_shapes(spec, shape):
    assert kernel(spec).size == shape


def test_gradient_kernels_are_the_textbook_ones():
    np.testing.assert_array_equal(kernel("sobel-x").weights, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(kernel("sobel-y").weights, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    np.testing.assert_array_equal(kernel("scharr-x").weights, [[-3, 0, 3], [-10, 0, 10], [-3, 0, 3]])
    np.testing.assert_array_equal(kernel("prewitt-y").weights, [[-1, -1, -1], [0, 0, 0], [1, 1, 1]])
    np.testing.assert_array_equal(kernel("roberts-y").weights, [[0, 1], [-1, 0]])
    np.testing.assert_array_equal(kernel("laplacian:neighbors=8").weights,
                                  [[1, 1, 1], [1, -8, 1], [1, 1, 1]])


@pytest.mark.parametrize("spec", ["box:size=5", "gaussian:sigma=1.3", "binomial:size=4", "sobel-x",
                                  "sobel-y", "scharr-x", "prewitt-y"])
def test_separable_factors_rebuild_the_weights(spec):
    k = kernel(spec)
    assert k.factors is not None and k.is_separable
    np.testing.assert_allclose(np.outer(*k.factors), k.weights, atol=1e-15)


def test_gaussian_follows_the_formula():
    k = kernel("gaussian:sigma=1.5")
    x = np.arange(-5, 6)
    taps = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    np.testing.assert_allclose(k.weights, np.outer(taps, taps) / taps.sum() ** 2, rtol=1e-12)
    assert math.isclose(k.total, 1.0)


def test_binomial_is_pascals_triangle():
    np.testing.assert_allclose(kernel("binomial:size=5").factors[0], np.array([1, 4, 6, 4, 1]) / 16)


@pytest.mark.parametrize("spec", ["laplacian", "log:sigma=1", "log:sigma=2.5", "dog", "sobel-x",
                                  "roberts-x", "high-pass"])
def test_derivative_kernels_sum_to_zero(spec):
    assert kernel(spec).is_zero_sum


def test_log_has_a_negative_centre_and_is_radially_symmetric():
    weights = kernel("log:sigma=1.2").weights
    centre = weights.shape[0] // 2
    assert weights[centre, centre] == weights.min() < 0
    np.testing.assert_allclose(weights, weights.T)
    np.testing.assert_allclose(weights, weights[::-1, ::-1])


def test_motion_blur_lies_on_its_line():
    horizontal = kernel("motion:length=5").weights
    np.testing.assert_allclose(horizontal[2], np.full(5, 0.2))
    assert horizontal.sum() == pytest.approx(1.0) and np.count_nonzero(horizontal[[0, 1, 3, 4]]) == 0
    vertical = kernel("motion:length=5,angle=90").weights
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-12)
    diagonal = kernel("motion:length=5,angle=45").weights
    assert diagonal[0, 4] > 0 and diagonal[4, 0] > 0 and diagonal[0, 0] == 0   # rising to the right


def test_compass_operators_are_eight_rotations():
    kirsch = resolve("kirsch")
    assert kirsch.combine == "max" and len(kirsch.kernels) == 8
    distinct = {k.weights.tobytes() for k in kirsch.kernels}
    assert len(distinct) == 8
    np.testing.assert_array_equal(kirsch.kernels[2].weights, [[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]])
    np.testing.assert_array_equal(kirsch.kernels[4].weights, kirsch.kernels[0].weights[::-1, ::-1])
    sobel_compass = resolve("compass:base=sobel")
    np.testing.assert_array_equal(sobel_compass.kernels[0].weights, -kernel("sobel-y").weights)
    np.testing.assert_array_equal(sobel_compass.kernels[6].weights, -kernel("sobel-x").weights)
    np.testing.assert_array_equal(sobel_compass.kernels[1].weights, [[0, 1, 2], [-1, 0, 1], [-2, -1, 0]])


@pytest.mark.parametrize("base", ["sobel", "prewitt", "scharr", "kirsch", "robinson"])
def test_every_compass_base_gives_eight_distinct_rotations(base):
    operation = resolve(f"compass:base={base}")
    assert operation.combine == "max" and len(operation.kernels) == 8
    assert len({k.weights.tobytes() for k in operation.kernels}) == 8
    first = operation.kernels[0].weights
    for k in operation.kernels:   # a rotation moves the ring, never the centre or the multiset
        assert k.weights[1, 1] == first[1, 1]
        assert sorted(k.weights.ravel()) == sorted(first.ravel())
    np.testing.assert_array_equal(operation.kernels[4].weights, first[::-1, ::-1])


def test_gradient_magnitude_operations():
    for name in ("sobel", "scharr", "prewitt"):
        operation = resolve(name)
        assert operation.combine == "magnitude"
        assert [k.name for k in operation.kernels] == [f"{name}-x", f"{name}-y"]


def test_dilation_parameter_on_every_kind():
    assert kernel("gaussian:sigma=1,dilation=3").dilation == 3
    assert all(k.dilation == 2 for k in resolve("sobel:dilation=2").kernels)
    assert kernel("unsharp:dilation=2").dilation == 2


def test_parse_spec():
    assert parse_spec(" Gaussian:sigma=2, size=9 ") == ("gaussian", {"sigma": "2", "size": "9"})
    assert parse_spec("sobel") == ("sobel", {})
    assert parse_spec("My/K.yaml") == ("My/K.yaml", {})
    assert parse_spec("My/K.yml:dilation=2") == ("My/K.yml", {"dilation": "2"})


@pytest.mark.parametrize("spec", ["gaussian:sigma=1.5", "gaussian:sigma=2,size=9", "box", "sobel:dilation=2",
                                  "motion:length=7,angle=30", "compass:base=kirsch", "unsharp"])
def test_spec_round_trip(spec):
    name, parameters = parse_spec(spec)
    assert format_spec(name, parameters) == spec
    operation = resolve(spec)
    assert operation.name == spec
    if len(operation.kernels) == 1:
        assert operation.kernels[0].name == spec


def test_weights_are_read_only_float64():
    k = kernel("sobel-x")
    assert k.weights.dtype == np.float64
    with pytest.raises(ValueError):
        k.weights[0, 0] = 9
    with pytest.raises(ValueError):
        k.factors[0][0] = 9


def test_kernel_refuses_factors_that_do_not_match():
    with pytest.raises(UsageError, match="do not multiply out"):
        Kernel("bad", np.ones((3, 3)), factors=(np.ones(3), np.array([1.0, 2, 1])))


def test_list_shows_default_sizes():
    sizes = {info.name: info.size for info in list_kernels()}
    assert sizes["gaussian"] == "7x7 at sigma=1"
    assert sizes["sobel"] == "2 x 3x3" and sizes["kirsch"] == "8 x 3x3"
    assert sizes["roberts-x"] == "2x2" and sizes["box"] == "3x3 at size=3"
    kinds = {info.name: info.kind for info in list_kernels()}
    assert (kinds["sobel-x"], kinds["sobel"], kinds["unsharp"]) == ("kernel", "operation", "library")


@pytest.mark.parametrize("spec, phrases", [
    ("gausian", ["'gausian'", "did you mean gaussian"]),
    ("zzzz", ["unknown kernel 'zzzz'", "kernels list"]),
    ("gaussian:sigma=0", ["sigma must be > 0", "got 0"]),
    ("gaussian:sigma=abc", ["sigma"]),
    ("gaussian:size=4", ["odd"]),
    ("gaussian:sigma=-1", ["gaussian: sigma must be > 0; got -1"]),
    ("box:width=3", ["unknown parameter width", "valid: size, dilation"]),
    ("sobel:size=5", ["sobel: unknown parameter size", "valid: dilation"]),
    ("compass:base=frei", ["base must be one of sobel, prewitt, scharr, kirsch, robinson", "got frei"]),
    ("motion:angle=nan", ["angle", "finite"]),
    ("box:size=3,size=4", ["size is given twice"]),
    (":size=3", ["name is missing"]),
    ("laplacian:neighbors=6", ["4 or 8"]),
    ("dog:sigma1=2,sigma2=1", ["sigma2 must be larger"]),
    ("box:size", ["key=value"]),
    ("box:dilation=0", ["dilation"]),
    ("unsharp:size=3", ["only dilation"]),
])
def test_bad_specs(spec, phrases):
    with pytest.raises(UsageError) as error:
        resolve(spec)
    for phrase in phrases:
        assert phrase in str(error.value)


def test_every_library_file_loads_and_is_listed():
    folder = library_folder()
    assert folder is not None
    files = sorted(folder.glob("*.yaml"))
    assert {"emboss-5x5", "edge-enhance", "unsharp", "ridge", "luma"} <= {f.stem for f in files}
    listed = {info.name: info for info in list_kernels()}
    for path in files:
        operation = load_yaml(path)
        assert operation.kernels[0].weights.size
        assert listed[path.stem].kind == "library" and "broken" not in listed[path.stem].description
    assert listed["luma"].size == "1x3x1x1"
    names = [info.name for info in list_kernels()]
    assert len(names) == len(set(names)), "a library file shadows a built-in"


def test_library_values():
    np.testing.assert_allclose(kernel("luma").weights.ravel(), [0.299, 0.587, 0.114])
    unsharp = kernel("unsharp")
    assert unsharp.total == pytest.approx(1.0) and unsharp.weights[2, 2] == pytest.approx(476 / 256)
    edge = kernel("edge-enhance")
    assert edge.total == pytest.approx(1.0) and edge.weights[1, 1] == pytest.approx(5.0)
    lines = kernel("vertical-lines")
    np.testing.assert_allclose(lines.weights, np.outer([1, 2, 1], [-1, 2, -1]) / 4)


def write(tmp_path, text: str):
    path = tmp_path / "k.yaml"
    path.write_text(text)
    return path


def test_yaml_forms(tmp_path):
    k = kernel(str(write(tmp_path, "weights: [[1, 2], [3, 4]]\nscale: 0.5\nbias: 0.25\nstride: 2\n"
                                   "padding: valid\ndilation: [1, 3]\n")))
    np.testing.assert_array_equal(k.weights, [[0.5, 1], [1.5, 2]])
    assert (k.bias, k.stride, k.padding, k.dilation, k.name) == (0.25, (2, 2), "valid", (1, 3), "k")
    k = kernel(str(write(tmp_path, "name: blur\nseparable: {column: [1, 2, 1], row: [1, 1]}\n"
                                   "normalize: true\n")))
    np.testing.assert_allclose(k.weights, np.outer([1, 2, 1], [1, 1]) / 8)
    np.testing.assert_allclose(np.outer(*k.factors), k.weights)
    k = kernel(str(write(tmp_path, "weights: [[[[1]], [[2]]], [[[3]], [[4]]]]\nbias: [1, 2]\n")))
    assert k.shape == (2, 2, 1, 1) and k.in_channels == 2 and k.bias == (1.0, 2.0)


@pytest.mark.parametrize("text, phrases", [
    ("weights: [[1, 2], [3]]", ["rectangular"]),
    ("weights: [[1, a]]", ["only numbers", "'a'"]),
    ("weights: [[1, '2']]", ["only numbers", "'2'"]),
    ("weights: [[1, true]]", ["only numbers"]),
    ("weights: [[]]", ["no numbers"]),
    ("weights: []", ["non-empty"]),
    ("weights: [[1, .inf]]", ["finite"]),
    ("weights: [[1]]\nnormalize: 1", ["normalize must be true or false"]),
    ("weights: [[1]]\nscale: 2\nnormalize: true", ["scale or normalize"]),
    ("separable: {column: [1, 2]}", ["column", "row"]),
    ("separable: {column: [[1], [2]], row: [1]}", ["flat lists"]),
    ("", ["expected a mapping"]),
    ("weights: [[[[[[1]]]]]]", ["nested 1 to 5 deep"]),   # 1-D and 3-D kernels are valid
    ("weights: [[1]]\nshape: 3", ["unknown key(s) shape", "valid keys"]),
    ("weights: [[1, -1]]\nnormalize: true", ["sum to 0"]),
    ("weights: [[1]]\nseparable: {column: [1], row: [1]}", ["exactly one"]),
    ("weights: [[1, 2]\n  bad: [", [": line 2: invalid YAML"]),
    ("name: x\nweights:\n  - [1, 2]\n  - [3, 4\nbias: 1\n", [": line 5: invalid YAML"]),
    ("weights: [[1]]\nstride: 0", ["stride", ">= 1"]),
    ("weights: [[1]]\npadding: lots", ["padding must be"]),
    ("weights: [[1, 2]]\nbias: [1, 2]", ["bias has 2 values"]),
    ("- 1\n- 2", ["expected a mapping"]),
])
def test_yaml_errors_name_the_file(tmp_path, text, phrases):
    path = write(tmp_path, text)
    with pytest.raises(UsageError) as error:
        resolve(str(path))
    assert str(error.value).startswith(str(path))
    for phrase in phrases:
        assert phrase in str(error.value)


def test_missing_yaml_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(UsageError) as error:
        resolve(str(missing))
    assert str(error.value) == f"{missing}: no such kernel file"


def test_yaml_path_with_dilation_and_file_defaults(tmp_path):
    path = write(tmp_path, "name: wide\nweights: [[1, 2, 1]]\ndilation: 3\n")
    assert kernel(str(path)).dilation == (3, 3)
    assert kernel(f"{path}:dilation=2").dilation == 2
    with pytest.raises(UsageError, match="only dilation"):
        resolve(f"{path}:scale=2")


def test_an_existing_file_does_not_shadow_a_builtin(tmp_path, monkeypatch):
    (tmp_path / "box").write_text("weights: [[7]]\n")
    (tmp_path / "mine").write_text("weights: [[7]]\n")
    monkeypatch.chdir(tmp_path)
    assert kernel("box").size == (3, 3)
    assert kernel("mine").weights[0, 0] == 7


def test_library_finds_a_file_by_its_name_field(tmp_path, monkeypatch):
    (tmp_path / "file-stem.yaml").write_text("name: Pretty-Name\nweights: [[2]]\n")
    (tmp_path / "broken.yaml").write_text("weights: [[1, 2]\n")
    monkeypatch.setattr(kernels_module, "library_folder", lambda: tmp_path)
    assert kernel("file-stem").weights[0, 0] == 2
    assert kernel("pretty-name:dilation=2").dilation == 2
    with pytest.raises(UsageError, match="did you mean file-stem"):
        resolve("file-stm")


def test_render_kernel_shows_matrix_sum_and_separability():
    text = render_kernel(resolve("sobel-x"))
    assert text.splitlines()[0].startswith("sobel-x (3x3): sum 0, separable: yes")
    assert [line.split() for line in text.splitlines()[2:5]] == [["-1", "0", "1"], ["-2", "0", "2"],
                                                                ["-1", "0", "1"]]
    assert render_kernel(resolve("box")).splitlines()[2].split() == ["0.1111"] * 3
    assert "sum 1," in render_kernel(resolve("gaussian"))
    assert "separable: no" in render_kernel(resolve("laplacian"))
    assert "[out 0, in 2]" in render_kernel(resolve("luma"))
    assert "8 kernels" in render_kernel(resolve("kirsch"))


def test_yaml_reads_exponent_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads 1e-3 as text; kernel files accept it as a number."""
    path = tmp_path / "tiny.yaml"
    path.write_text("weights: [[1e-3, -2E+2, 3.5e0]]\n")
    np.testing.assert_array_equal(resolve(str(path)).kernels[0].weights, [[1e-3, -200, 3.5]])


# --- inline kernels: nested lists and ImageMagick's kernel strings ---------------------------

SHARPEN = [[0, -1, 0], [-1, 5, -1], [0, -1, 0]]


@pytest.mark.parametrize("spec, expected", [
    ("[1, 2, 1]", [1, 2, 1]),                                             # 1-D
    ("[[0,-1,0],[-1,5,-1],[0,-1,0]]", SHARPEN),                           # 2-D, JSON
    ("[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]", SHARPEN),
    ("  [[1e-3, -2E+2], [.5, 0x10]]  ", [[1e-3, -200], [0.5, 16]]),      # YAML numbers
    ("[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]", [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]),   # 3-D
    ("[[[[1]], [[2]]], [[[3]], [[4]]]]", [[[[1]], [[2]]], [[[3]], [[4]]]]),           # 2 x 2 x 1x1
    ("3x3: 0,-1,0 -1,5,-1 0,-1,0", SHARPEN),                              # ImageMagick
    ("3x3:0,-1,0,-1,5,-1,0,-1,0", SHARPEN),
    ("3x3: 0 -1 0   -1 5 -1   0 -1 0", SHARPEN),
    ("3X3 : 0, -1, 0, -1, 5, -1, 0, -1, 0", SHARPEN),
    ("3: 0,-1,0 -1,5,-1 0,-1,0", SHARPEN),                                # W alone: W x W
    ("3x3+1+1: 0,-1,0 -1,5,-1 0,-1,0", SHARPEN),                          # the centre origin
    ("0,-1,0,-1,5,-1,0,-1,0", SHARPEN),                                   # old style: odd square
    ("3x1: 1,2,1", [[1, 2, 1]]),                                          # W x H: one row
    ("1x3: 1 2 1", [[1], [2], [1]]),                                      # one column
    ("2x3: 1,2 3,4 5,6", [[1, 2], [3, 4], [5, 6]]),
    ("4x2+1+0: 1 2 3 4 5 6 7 8", [[1, 2, 3, 4], [5, 6, 7, 8]]),          # even: left of centre
    ("3x3: nan,1,nan 1,-4,1 nan,1,nan", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),   # not in the kernel
    ("3x3: -,1,- 1,-4,1 -,1,-", [[0, 1, 0], [1, -4, 1], [0, 1, 0]]),
    ("5x1: 1e-3, .5, +2, -1E2, 3.", [[1e-3, 0.5, 2, -100, 3]]),
    ("1x1: 3e38", [[3e38]]),                                              # float32 still holds it
])
def test_inline_kernels(spec, expected):
    operation = resolve(spec)
    (k,) = operation.kernels
    np.testing.assert_array_equal(k.weights, expected)
    assert k.weights.dtype == np.float64 and not k.weights.flags.writeable
    shape = "x".join(map(str, np.shape(expected)))
    assert re.fullmatch(rf"inline-{shape}-[0-9a-f]{{6}}", operation.name) and operation.name == k.name
    assert k.source == "inline" and operation.combine == "single" and k.bias is None
    assert kernel(f"  {spec} ").name == k.name                  # the name depends on the weights only


def test_inline_names_tell_kernels_apart_and_agree_across_spellings():
    names = {spec: resolve(spec).name for spec in
             ["[[0,-1,0],[-1,5,-1],[0,-1,0]]", "3x3: 0 -1 0 -1 5 -1 0 -1 0", "[[0,-1,0],[-1,4,-1],[0,-1,0]]",
              "[[1, -1]]", "[[1], [-1]]", "[1, -1]"]}
    values = list(names.values())
    assert values[0] == values[1] and len(set(values)) == 5
    assert all(re.fullmatch(r"[a-z0-9x-]+", name) for name in values)    # file-name safe


@pytest.mark.parametrize("spec, phrases", [
    ("3x3: 1,2,3", ["3x3 (width x height) needs 9 values; got 3"]),
    ("3x2: 1 2 3 4 5 6 7", ["needs 6 values; got 7"]),
    ("3x3:", ["needs 9 values; got 0"]),
    ("3x3: 1,2,a,4,5,6,7,8,9", ["'a' is not a number", "commas and/or spaces"]),
    ("3x3: 1,2,0x3,4,5,6,7,8,9", ["'0x3' is not a number"]),
    ("3x3: 1,2,inf,4,5,6,7,8,9", ["'inf' is not a number"]),
    ("0x3: 1", ["width and height must be >= 1"]),
    ("3x3+0+0: 1 1 1 1 1 1 1 1 1", ["origin +0+0 is not supported", "+1+1"]),
    ("3x3@: 1 1 1 1 1 1 1 1 1", ["rotated", "own -k"]),
    ("3x1: 1,2,1; 3x1: 1,0,-1", ["one kernel per -k"]),
    ("3x1: 1e39,1,1", ["float32's range", "got 1e+39"]),
    ("3x1: 1e400,0,0", ["finite", "got inf"]),
    ("1,2,1", ["3 number(s) and no size", "'WxH: values'", "[[0,-1,0]"]),
    ("7", ["1 number(s) and no size"]),
    ("1 2 3 4", ["4 number(s) and no size"]),
    ("[[1, 2], [3]]", ["rectangular"]),
    ("[[1, 2], 3]", ["rectangular"]),
    ("[]", ["non-empty list"]),
    ("[[]]", ["no numbers"]),
    ("[1, a]", ["only numbers", "'a'"]),
    ("[1, true]", ["only numbers"]),
    ("[nan, 1]", ["only numbers", "'nan'"]),
    ("[.nan, 1]", ["finite", "got nan"]),
    ("[-.inf]", ["finite", "got -inf"]),
    ("[1e39]", ["float32's range", "got 1e+39"]),
    ("[[1e308, 1e309]]", ["finite"]),
    ("[[1, 2]", ["invalid YAML", "an inline kernel is a nested list"]),
    ("[1, 2] x", ["invalid YAML", "'WxH: values'"]),
    ("[[[[[[1]]]]]]", ["nested 1 to 5 deep", "6 levels"]),
    ("[{a: 1}]", ["only numbers"]),
])
def test_bad_inline_kernels_are_one_usage_error_naming_the_spec(spec, phrases):
    with pytest.raises(UsageError) as error:
        resolve(spec)
    message = str(error.value)
    assert message.startswith(f"kernel {spec.strip()!r}: ") and "\n" not in message
    for phrase in phrases:
        assert phrase in message


def test_names_and_files_are_not_taken_for_inline_kernels(tmp_path):
    path = tmp_path / "3x3.yaml"
    path.write_text("weights: [[2]]\n")
    assert kernel(str(path)).weights[0, 0] == 2 and kernel(f"{path}:dilation=2").dilation == 2
    with pytest.raises(UsageError, match="unknown kernel '3x3-box'"):
        resolve("3x3-box")


def test_scaled_operation_multiplies_weights_and_adds_the_bias_once():
    sobel = resolve("sobel")
    scaled = sobel.scaled(2.0, 0.5)
    assert scaled.bias == 0.5 and scaled.name == sobel.name and sobel.bias == 0.0
    for before, after in zip(sobel.kernels, scaled.kernels):
        np.testing.assert_array_equal(after.weights, 2 * before.weights)
        np.testing.assert_array_equal(np.outer(*after.factors), after.weights)
    assert sobel.scaled() is sobel and sobel.scaled(1.0, 0.0) is sobel
    assert resolve("[[1, 2]]").scaled(-0.5).kernels[0].weights.tolist() == [[-0.5, -1.0]]
    with pytest.raises(UsageError, match="float32's range"):
        resolve("sharpen").scaled(1e38)
    with pytest.raises(UsageError, match="bias must be a finite number"):
        sobel.scaled(1.0, float("nan"))
