"""Hostile inputs for tests/test_fuzz.py, generated from a seed, and the fork runner that runs them.

Every case belongs to a *family* (``image-trunc-png``, ``kspec-unicode-digits``, ``yaml-deep``,
...) and is made by ``make_case(family, index, seed, workdir)`` from a generator seeded with
``(seed, family, index)`` only: a case is the same whatever the total count, so one case can be
rerun alone. Nothing binary is committed; every file is written at test time into ``workdir``.

Run as a script, this module is the fork runner: ``python tests/fuzz_cases.py CASES.json
RESULTS.json`` imports convcli once, then runs each case's argv in a forked child (``convcli.cli.
main(argv)``, exactly what ``python -m convcli`` calls) with file descriptors 0/1/2 redirected,
so C libraries writing straight to fd 2 (libtiff) are caught as in a real process. A child that
outlives its time bound is killed with its process group and reported as a hang. Forking costs
~10 ms instead of the ~0.4 s a fresh interpreter and import cost, which is what makes thousands
of cases affordable. Image families still run through real ``python -m convcli`` subprocesses.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

# ---------------------------------------------------------------------------------------------
# Vocabulary

BUILTIN_NAMES = ["identity", "box", "gaussian", "binomial", "sobel-x", "sobel-y", "scharr-x",
                 "scharr-y", "prewitt-x", "prewitt-y", "roberts-x", "roberts-y", "laplacian", "log",
                 "sharpen", "emboss", "motion", "dog", "sobel", "scharr", "prewitt", "kirsch",
                 "compass"]
LIBRARY_NAMES = ["edge-enhance", "emboss-5x5", "high-pass", "luma", "outline", "ridge", "sepia",
                 "smooth-more", "unsharp", "smooth-1d", "box-3d", "vertical-lines"]
PARAM_KEYS = ["sigma", "size", "neighbors", "length", "angle", "sigma1", "sigma2", "base",
              "dilation"]
JUNK_WORDS = ["", " ", "x", "nan", "inf", "-inf", "NaN", "None", "null", "true", "0x10", "1e",
              "1_000", "--", "=", ":", ",", "..", "../etc/passwd", "${HOME}", "%s", "\t", "é",
              "\u200b", "\x7f", "💥", "' OR 1=1"]
LONG_NAMES = ["a" * 300, "x" * 256 + ".yaml", "k" * 255, "/".join(["d" * 200] * 3), "é" * 200]
UNICODE_DIGITS = ["٣", "３", "৩", "²", "½", "Ⅻ", "߃", "𝟑", "〇", "꘣", "١٢", "３.５", "-٣"]
HUGE_NUMBERS = ["1e308", "1e309", "-1e309", "99999999999999999999999", "2147483648", "4294967297",
                "9223372036854775808", "1" + "0" * 400, "65536", "100000", "1e6", "3.4e38"]
SMALL_NUMBERS = ["0", "1", "2", "3", "5", "7", "-1", "-3", "0.5", "1.5", "0.0001", "-0.5", "12",
                 "31", "1e-9", "+2", "2.", ".5", "007", "1e1"]
LAYER_KINDS = ["conv", "tconv", "pool", "relu", "sigmoid", "tanh", "abs", "leaky-relu", "shuffle",
               "bias", "fc"]
LAYER_KEYS = ["k", "s", "p", "d", "c", "g", "op", "mode", "ceil", "slope", "value", "kernel",
              "stride", "padding", "dilation", "out_channels", "groups", "init", "bias",
              "weights"]
LAYER_VALUES = ["3", "1", "2", "0", "5", "3x3", "2,2", "same", "valid", "full", "max", "avg",
                "random", "zeros", "true", "false", "0.1", "-1", "sobel-x", "gaussian:sigma=1",
                "[[1,2],[3,4]]", "4"]
OPTION_VALUES = {
    "--stride": ["1", "2", "3", "1,2", "0", "-1", "2,2,2", "", "x", "1.5"],
    "--padding": ["same", "valid", "full", "0", "1", "2,3", "-1", "SAME", "", "foo", "1,2,3"],
    "--dilation": ["1", "2", "3", "2,1", "0", "", "-2", "x"],
    "--pad-mode": ["zeros", "reflect", "replicate", "circular", "symmetric", "", "mirror"],
    "--normalize": ["auto", "clip", "abs", "robust", "minmax", "offset", "", "none"],
    "--format": ["png", "jpeg", "webp", "bmp", "gif", "tiff", "npy", "", "exr"],
    "--scale": ["1", "0", "-1", "2.5", "1e30", "nan", "inf", "", "x"],
    "--bias": ["0", "0.5", "-1", "1e30", "nan", "", "x"],
    "--quality": ["95", "1", "100", "0", "101", "-5", ""],
    "--bit-depth": ["8", "16", "12", "0", ""],
    "--max-pixels": ["0", "1", "10", "250000000", "-1", ""],
    "--engine": ["numpy", "auto", "direct", "separable", "fft", "NUMPY", "gpu"],
}


def rng_for(seed: int, family: str, index: int) -> np.random.Generator:
    """The generator of one case: depends on nothing but the seed, the family and the index."""
    return np.random.default_rng([seed, zlib.crc32(family.encode()), index])


def pick(rng, items):
    return items[int(rng.integers(len(items)))]


# ---------------------------------------------------------------------------------------------
# Kernel specs (-k)

def _number(rng, *, unicode=False, huge=False) -> str:
    pools = [SMALL_NUMBERS] + ([UNICODE_DIGITS] if unicode else []) + ([HUGE_NUMBERS] if huge else [])
    return pick(rng, pick(rng, pools))


def _named_spec(rng, *, unicode=False, huge=False, junk=False) -> str:
    name = pick(rng, BUILTIN_NAMES + LIBRARY_NAMES if not junk or rng.random() < 0.7
                else JUNK_WORDS + ["Gaussian", "SOBEL", "gauss", "box3", "sobel_x"])
    if rng.random() < 0.25:
        return name
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        key = pick(rng, PARAM_KEYS) if not junk or rng.random() < 0.7 else pick(rng, JUNK_WORDS)
        value = (_number(rng, unicode=unicode, huge=huge) if not junk or rng.random() < 0.6
                 else pick(rng, JUNK_WORDS))
        if junk and rng.random() < 0.15:
            parts.append(key)                       # a key without "="
        else:
            parts.append(f"{key}={value}")
    separator = ":" if not junk or rng.random() < 0.8 else pick(rng, ["::", " : ", "=", ";"])
    return name + separator + ",".join(parts)


def _inline_value(rng, *, unicode=False, huge=False) -> str:
    r = rng.random()
    if r < 0.75:
        return str(round(float(rng.normal()), int(rng.integers(0, 4))))
    if r < 0.85:
        return pick(rng, SMALL_NUMBERS)
    if unicode:
        return pick(rng, UNICODE_DIGITS)
    if huge:
        return pick(rng, HUGE_NUMBERS)
    return pick(rng, ["nan", "-", "x", '"2"', "true", "null", "[]", "1e", ""])


def _inline_list_spec(rng, **kind) -> str:
    rows, cols = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    junk = kind.pop("junk", False)
    matrix = [[_inline_value(rng, **kind) if (junk or kind) and rng.random() < 0.2
               else str(int(rng.integers(-3, 4))) for _ in range(cols)] for _ in range(rows)]
    if junk and rng.random() < 0.4:                  # ragged
        matrix[int(rng.integers(rows))].append("1")
    text = "[" + ",".join("[" + ",".join(row) + "]" for row in matrix) + "]"
    depth = int(rng.integers(0, 4)) if junk else 0
    text = "[" * depth + text + "]" * depth
    if junk and rng.random() < 0.3:
        text = text[: int(rng.integers(1, len(text)))]   # unbalanced
    return text


def _inline_magick_spec(rng, **kind) -> str:
    junk = kind.pop("junk", False)
    w, h = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    count = w * h + (int(rng.integers(-2, 3)) if junk and rng.random() < 0.5 else 0)
    values = [_inline_value(rng, **kind) if (junk or kind) and rng.random() < 0.2
              else str(int(rng.integers(-3, 4))) for _ in range(max(count, 0))]
    sep = pick(rng, [",", " ", ", "])
    head = pick(rng, [f"{w}x{h}", f"{w}", f"{w}x{h}+0+0", f"{w}x{h}+1+1"]) if junk else f"{w}x{h}"
    if kind.get("unicode") and rng.random() < 0.5:
        head = pick(rng, ["٣x٣", "３x３", "3x٣"])
    if kind.get("huge") and rng.random() < 0.5:
        head = pick(rng, ["100000x100000", "99999x1", "1x65536", "4294967297x1"])
    return f"{head}: " + sep.join(values)


def kernel_spec(rng, family: str) -> str:
    """A ``-k`` string of the family's flavour."""
    if family == "kspec-long-name":
        return pick(rng, LONG_NAMES) + pick(rng, ["", ":size=3", ":dilation=2", "=1"])
    kind = {"kspec-named": {}, "kspec-junk": {"junk": True},
            "kspec-unicode-digits": {"unicode": True}, "kspec-huge": {"huge": True}}[family]
    r = rng.random()
    if r < 0.55:
        return _named_spec(rng, **kind)
    if r < 0.8:
        return _inline_list_spec(rng, **dict(kind))
    return _inline_magick_spec(rng, **dict(kind))


# ---------------------------------------------------------------------------------------------
# YAML documents

def _yaml_scalar(rng, family: str):
    r = rng.random()
    if family == "yaml-huge-numbers" and r < 0.5:
        return pick(rng, HUGE_NUMBERS + ["1e400", "-1e400", ".inf", "1" + "0" * 5000, "0x" + "f" * 40])
    if r < 0.6:
        return str(int(rng.integers(-3, 4)))
    if r < 0.75:
        return str(round(float(rng.normal()), 3))
    return pick(rng, ["true", "false", "null", "~", "'2'", '"x"', "[]", "{}", ".nan", "yes",
                      "2001-12-14", "!!binary aGk=", "sobel", "same", "''"])


def _yaml_matrix(rng, family: str) -> str:
    rows, cols = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    return "[" + ", ".join("[" + ", ".join(_yaml_scalar(rng, family) if rng.random() < 0.3
                                           else str(int(rng.integers(-2, 3)))
                                           for _ in range(cols)) + "]"
                           for _ in range(rows)) + "]"


def _yaml_random_node(rng, family: str, depth: int) -> str:
    r = rng.random()
    if depth > 3 or r < 0.4:
        return _yaml_scalar(rng, family)
    if r < 0.7:
        return "[" + ", ".join(_yaml_random_node(rng, family, depth + 1)
                               for _ in range(int(rng.integers(0, 4)))) + "]"
    keys = ["name", "weights", "scale", "bias", "x", "1", "null", "weights"]
    return "{" + ", ".join(f"{pick(rng, keys)}: {_yaml_random_node(rng, family, depth + 1)}"
                           for _ in range(int(rng.integers(0, 4)))) + "}"


def yaml_document(rng, family: str) -> str:
    """A YAML kernel (or layers) file of the family's flavour, as text."""
    if family == "yaml-deep":
        depth = int(rng.integers(200, 20000))
        opener, closer = pick(rng, [("[", "]"), ("{a: ", "}")])
        return "weights: " + opener * depth + "1" + closer * depth + "\n"
    if family == "yaml-aliases":
        levels = int(rng.integers(3, 10))
        lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
        for i in range(1, levels):
            lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
        lines.append(f"weights: *a{levels - 1}")
        if rng.random() < 0.5:
            lines.append("layers: [*a0]")
        return "\n".join(lines) + "\n"
    if family == "yaml-junk":
        r = rng.random()
        if r < 0.25:
            return bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8)).decode(
                "latin-1")
        if r < 0.4:
            return pick(rng, ["", "---\n...\n", "- 1\n- 2\n", "!!python/object:os.system ls\n",
                              "weights: [[1, 2], [3\n", "\t weights: 1\n", "%YAML 9.9\n---\n1\n",
                              "weights: &x [*x]\n", "a: 1\na: 2\n", "? [1]\n: 2\n"])
        return "\n".join(f"{pick(rng, ['name', 'weights', 'separable', 'scale', 'normalize', 'bias', 'stride', 'padding', 'dilation', 'description', 'layers', 'junk'])}: "
                         f"{_yaml_random_node(rng, family, 0)}"
                         for _ in range(int(rng.integers(1, 6)))) + "\n"
    # yaml-kernel, yaml-huge-numbers: the right keys with random values
    lines = [f"name: {pick(rng, ['fuzz', 'x', 'sobel', 'a b', '', '../up', 'ünï'])}"]
    if rng.random() < 0.8:
        lines.append(f"weights: {_yaml_matrix(rng, family)}")
    if rng.random() < 0.3:
        lines.append(f"separable: {{column: {_yaml_matrix(rng, family)[1:-1].split('], [')[0]}]," 
                     f" row: [{_yaml_scalar(rng, family)}, 1]}}")
    for key in ["scale", "normalize", "bias", "stride", "padding", "dilation"]:
        if rng.random() < 0.25:
            lines.append(f"{key}: {_yaml_scalar(rng, family)}")
    return "\n".join(lines) + "\n"


def layer_yaml_document(rng, family: str) -> str:
    """A --layer YAML file: a list of layers (or junk)."""
    if family != "layer-yaml" or rng.random() < 0.3:
        return yaml_document(rng, pick(rng, ["yaml-junk", "yaml-kernel"]))
    items = []
    for _ in range(int(rng.integers(1, 4))):
        kind = pick(rng, LAYER_KINDS)
        keys = {pick(rng, LAYER_KEYS): _yaml_scalar(rng, family) if rng.random() < 0.3
                else pick(rng, ["3", "1", "2", "same"]) for _ in range(int(rng.integers(0, 3)))}
        items.append("- {" + ", ".join([f"kind: {kind}"] + [f"{k}: {v}" for k, v in keys.items()]) + "}")
    head = "layers:\n" if rng.random() < 0.6 else ""
    return head + "\n".join(("  " if head else "") + item for item in items) + "\n"


# ---------------------------------------------------------------------------------------------
# Layer specs (--layer)

def layer_spec(rng, family: str) -> str:
    huge = family == "layer-huge"
    kind = pick(rng, LAYER_KINDS) if rng.random() < 0.9 else pick(rng, JUNK_WORDS + ["Conv", "pool2"])
    if rng.random() < 0.3:
        return kind
    parts = []
    for _ in range(int(rng.integers(1, 4))):
        key = pick(rng, LAYER_KEYS) if rng.random() < 0.9 else pick(rng, JUNK_WORDS)
        value = (pick(rng, HUGE_NUMBERS) if huge and rng.random() < 0.5
                 else pick(rng, LAYER_VALUES) if rng.random() < 0.8 else pick(rng, JUNK_WORDS))
        parts.append(f"{key}={value}")
    return kind + ":" + ",".join(parts)


# ---------------------------------------------------------------------------------------------
# Hostile image files

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(rng, *, mode="RGB", size=(12, 9)) -> bytes:
    from PIL import Image

    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(mode, 3)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels,
                            mode=None if mode in ("L", "LA", "RGB", "RGBA") else None)
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def png_with_ihdr(rng, width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose IHDR says width x height (CRC fixed, so only the numbers are absurd)."""
    data = png_bytes(rng)
    ihdr = struct.pack(">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, depth, colour, 0, 0, 0)
    return data[:8] + _png_chunk(b"IHDR", ihdr) + data[8 + 25:]


def pillow_bytes(rng, fmt: str, *, mode="RGB", size=(12, 9), exif=None) -> bytes:
    from PIL import Image

    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def tiff_bytes(rng, dtype="uint16", shape=(9, 12), **extra) -> bytes:
    import tifffile

    if np.dtype(dtype).kind == "f":
        array = rng.normal(size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        array = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():         # tifffile's notes on future layouts: the test's, not convcli's
        warnings.simplefilter("ignore", DeprecationWarning)
        tifffile.imwrite(buffer, array, **extra)
    return buffer.getvalue()


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def bit_flips(rng, data: bytes, keep_header: int = 0) -> bytes:
    data = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        position = int(rng.integers(min(keep_header, len(data) - 1), len(data)))
        data[position] ^= 1 << int(rng.integers(8))
    return bytes(data)


def truncated(rng, data: bytes) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _exif(orientation: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def hostile_file(rng, family: str, folder: Path, index: int) -> Path | None:
    """Write one hostile input of ``family`` into ``folder``; return its path (None: nothing)."""
    name = f"f{index:04d}"
    base = pick(rng, ["png", "jpg", "tif", "bmp", "webp", "gif"])
    fmt = {"png": "PNG", "jpg": "JPEG", "tif": "TIFF", "bmp": "BMP", "webp": "WEBP", "gif": "GIF"}

    def write(suffix: str, data: bytes) -> Path:
        path = folder / f"{name}.{suffix}"
        path.write_bytes(data)
        return path

    if family == "image-bitflip":
        kind = pick(rng, ["png", "jpg", "bmp", "webp", "gif"])
        return write(kind, bit_flips(rng, pillow_bytes(rng, fmt[kind], mode="RGB"), keep_header=8))
    if family == "image-bitflip-tiff":
        return write("tif", bit_flips(rng, tiff_bytes(rng, pick(rng, ["uint8", "uint16", "float32"])),
                                      keep_header=8))
    if family == "image-trunc":
        kind = pick(rng, ["png", "jpg", "bmp", "webp", "gif"])
        return write(kind, truncated(rng, pillow_bytes(rng, fmt[kind])))
    if family == "image-trunc-tiff":
        return write("tif", truncated(rng, tiff_bytes(rng, pick(rng, ["uint8", "uint16", "float32"]))))
    if family == "image-png-header":
        width, height = pick(rng, [(100000, 100000), (0, 0), (0, 5), (5, 0), (2**31 - 1, 1),
                                   (1, 2**31 - 1), (2**32 - 1, 2**32 - 1), (65535, 65535),
                                   (20000, 20000)])
        depth, colour = pick(rng, [(8, 2), (16, 2), (8, 6), (1, 0), (3, 2), (8, 7), (16, 3)])
        return write("png", png_with_ihdr(rng, width, height, depth, colour))
    if family == "image-odd-files":
        r = int(rng.integers(8))
        if r == 0:
            return write(pick(rng, ["png", "jpg", "tif", "npy", "bmp"]), b"")
        if r == 1:
            return write(pick(rng, ["png", "jpg", "tif"]), b"\0" * int(rng.integers(1, 4096)))
        if r == 2:
            return write("jpg", png_bytes(rng))                         # a PNG named .jpg
        if r == 3:
            return write("png", pillow_bytes(rng, pick(rng, ["JPEG", "BMP", "GIF"])))
        if r == 4:
            return write(pick(rng, ["txt", "PNG", "png~", "jpeg2"]), png_bytes(rng))  # odd suffix
        if r == 5:
            return write("png", bytes(rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8)))
        if r == 6:
            return write("tif", b"II*\0" + bytes(rng.integers(0, 256, 64, dtype=np.uint8)))
        path = folder / f"{name}.png"                                   # a folder named like an image
        path.mkdir()
        (path / "inside.png").write_bytes(png_bytes(rng))
        return path
    if family == "image-modes":
        r = int(rng.integers(7))
        if r == 0:
            return write("png", png_bytes(rng, size=(1, 1), mode=pick(rng, ["L", "RGB", "RGBA"])))
        if r == 1:
            return write("png", png_bytes(rng, mode="P"))
        if r == 2:
            return write("png", png_bytes(rng, mode=pick(rng, ["LA", "RGBA"])))
        if r == 3:
            return write(pick(rng, ["gif", "bmp"]), pillow_bytes(rng, "GIF" if base == "gif" else "BMP",
                                                                   mode=pick(rng, ["P", "L", "1"])))
        if r == 4:
            return write("png", pillow_bytes(rng, "PNG", mode=pick(rng, ["I;16", "1", "L"])))
        if r == 5:
            return write("webp", pillow_bytes(rng, "WEBP", mode=pick(rng, ["RGB", "RGBA"])))
        return write("jpg", pillow_bytes(rng, "JPEG", mode=pick(rng, ["L", "CMYK", "RGB"])))
    if family == "image-tiff":
        r = int(rng.integers(5))
        dtype = pick(rng, ["uint8", "uint16", "int16", "uint32", "float32", "float64", "int8"])
        shape = pick(rng, [(9, 12), (1, 1), (9, 12, 3), (3, 9, 12), (2, 5, 6, 4), (9, 12, 2), (1, 300)])
        if r == 0:
            return write("tif", tiff_bytes(rng, dtype, shape))
        if r == 1:
            return write("tif", tiff_bytes(rng, dtype, shape, compression="zlib"))
        if r == 2:
            return write("tiff", tiff_bytes(rng, dtype, (3, 8, 8), imagej=dtype in ("uint8", "uint16", "float32")))
        if r == 3:
            return write("tif", tiff_bytes(rng, dtype, (8, 8), tile=(16, 16)))
        return write("tif", tiff_bytes(rng, "uint8", (8, 8, 3), photometric="rgb"))
    if family == "image-tiff-tags":
        tags = [(282, 5, 1, pick(rng, [(1, 0), (0, 0), (2**32 - 1, 1), (72, 1)]), False),
                (283, 5, 1, pick(rng, [(1, 0), (72, 1)]), False),
                (274, 3, 1, int(rng.integers(0, 12)), False)]
        chosen = [tags[i] for i in sorted(set(rng.integers(0, 3, 2).tolist()))]
        return write("tif", tiff_bytes(rng, pick(rng, ["uint8", "uint16", "float32"]), (8, 8),
                                       extratags=chosen))
    if family == "image-exif":
        orientation = pick(rng, [1, 2, 3, 4, 5, 6, 7, 8, 0, 9, 255, 65535])
        kind = pick(rng, ["jpg", "png", "webp"])
        return write(kind, pillow_bytes(rng, fmt[kind], size=(7, 5), exif=_exif(orientation)))
    if family == "image-exif-corrupt":
        kind = pick(rng, ["jpg", "png", "webp"])
        exif = _exif(pick(rng, [3, 6]))
        exif = exif[:6] + bit_flips(rng, exif[6:]) if rng.random() < 0.5 else truncated(rng, exif)
        return write(kind, pillow_bytes(rng, fmt[kind], size=(7, 5), exif=exif))
    if family == "image-npy-bitflip":
        return write("npy", bit_flips(rng, npy_bytes(rng.normal(size=(3, 8, 8)).astype("float32"))))
    if family == "image-npy":
        r = pick(rng, [0, 1, 3, 4, 5, 6, 7, 8])             # 2, bit flips: image-npy-bitflip
        shape = pick(rng, [(), (0,), (5,), (2, 7), (3, 4, 5), (1, 2, 3, 4), (1, 1, 1, 1, 1), (0, 4, 4),
                           (4, 0), (2, 3, 4, 5, 6)])
        dtype = pick(rng, ["float32", "float64", "float16", "int64", "uint8", "bool", "complex64",
                           "int8", ">f4", ">i2", "U3", "object", "datetime64[s]", "V4"])
        if r == 0:
            try:
                data = npy_bytes(np.zeros(shape, dtype=dtype))
            except (TypeError, ValueError):
                data = npy_bytes(np.zeros(shape))
            return write("npy", data)
        if r == 1:
            return write("npy", truncated(rng, npy_bytes(rng.normal(size=(3, 8, 8)).astype("float32"))))
        if r == 2:
            return write("npy", bit_flips(rng, npy_bytes(rng.normal(size=(3, 8, 8)).astype("float32"))))
        if r == 3:
            return write("npy", npy_bytes(np.asfortranarray(rng.normal(size=(3, 8, 8)))))
        if r == 4:
            return write("npy", npy_bytes(np.array([1, "a", None], dtype=object)))
        if r == 5:
            header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % pick(
                rng, ["100000, 100000", "-1, 5", "3, 99999999999", "", "1,", "2**40,", "'a',"])
            magic = b"\x93NUMPY\x01\x00"
            head = header.encode().ljust(118) + b"\n"
            return write("npy", magic + struct.pack("<H", len(head)) + head + b"\0" * 64)
        if r == 6:
            array = rng.normal(size=(3, 8, 8)).astype("float32")
            array.flat[rng.integers(0, array.size, 5)] = pick(rng, [np.nan, np.inf, -np.inf, 3e38])
            return write("npy", npy_bytes(array))
        if r == 7:
            return write("npy", npy_bytes(np.zeros((2, 3), dtype=[("a", "<f4"), ("b", "<i4")])))
        return write("npy", b"\x93NUMPY\x09\x00" + bytes(rng.integers(0, 256, 50, dtype=np.uint8)))
    if family == "image-symlink-loop":
        path = folder / f"{name}.png"
        if rng.random() < 0.5:
            os.symlink(path.name, path)                                  # points at itself
        else:
            other = folder / f"{name}b.png"
            os.symlink(other.name, path)
            os.symlink(path.name, other)
        return path
    if family == "image-symlink-dangling":
        path = folder / f"{name}.png"
        os.symlink(pick(rng, ["missing.png", "/nonexistent/x.png", "."]), path)
        return path
    raise ValueError(f"unknown family {family}")


# ---------------------------------------------------------------------------------------------
# Cases

def tiny_png(path: Path, rng, size=(10, 8), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(rng, size=size, mode=mode))
    return path


def _options(rng, family: str) -> list[str]:
    """A few random apply options; junk values only in the options family."""
    args = []
    keys = list(OPTION_VALUES)
    for _ in range(int(rng.integers(0, 3 if family != "apply-options" else 5))):
        key = pick(rng, keys)
        values = OPTION_VALUES[key] if family == "apply-options" else OPTION_VALUES[key][:5]
        if key == "--engine":
            values = [v for v in values if v != ""]
        args += [key, pick(rng, values)]
    return args


def make_case(family: str, index: int, seed: int, workdir: Path) -> dict:
    """One in-process (forked) case: ``{"id", "family", "argv", "inputs"}``; files go to workdir."""
    rng = rng_for(seed, family, index)
    case_dir = workdir / f"{family}-{index}"
    case_dir.mkdir(parents=True)
    image = tiny_png(case_dir / "in" / "img.png", rng, mode=pick(rng, ["RGB", "L", "RGBA"]))
    out = case_dir / "out"
    engine = ["--engine", "numpy"]
    if family.startswith("kspec-"):
        spec = kernel_spec(rng, family)
        if rng.random() < 0.3:
            argv = ["kernels", "show", spec]
        elif rng.random() < 0.2:
            argv = ["explain", str(image), "-k", spec]
        else:
            argv = ["apply", str(image), "-k", spec, "-o", str(out), *engine, *_options(rng, family)]
    elif family.startswith("yaml-"):
        path = case_dir / "in" / pick(rng, ["k.yaml", "k.yml"])
        path.write_text(yaml_document(rng, family), encoding="utf-8")
        r = rng.random()
        if r < 0.25:
            argv = ["kernels", "show", str(path)]
        elif r < 0.4:
            argv = ["apply", str(image), "--layer", str(path), "-o", str(out), *engine]
        else:
            argv = ["apply", str(image), "-k", str(path), "-o", str(out), *engine]
    elif family in ("layer-specs", "layer-huge", "layer-yaml"):
        if family == "layer-yaml":
            path = case_dir / "in" / "layers.yaml"
            path.write_text(layer_yaml_document(rng, family), encoding="utf-8")
            layers = ["--layer", str(path)]
        else:
            layers = [a for _ in range(int(rng.integers(1, 4))) for a in ("--layer", layer_spec(rng, family))]
        if rng.random() < 0.35:
            argv = ["explain", "--size", pick(rng, ["16", "16,12", "32", "8,8,8", "100"]), *layers]
            if rng.random() < 0.3:
                argv.append("--json")
        else:
            argv = ["apply", str(image), *layers, "-o", str(out), *engine]
    elif family == "apply-options":
        spec = pick(rng, ["sobel", "gaussian:sigma=1", "box:size=3", "laplacian", "sharpen",
                          "[[1,2],[3,4]]", "luma", "sobel-x"])
        argv = ["apply", str(image), "-k", spec, "-o", str(out), *_options(rng, family)]
        if "--engine" not in argv:
            argv += engine
    elif family == "options-unicode-digits":
        key = pick(rng, ["--stride", "--padding", "--dilation"])
        argv = ["apply", str(image), "-k", "sobel", "-o", str(out), *engine,
                key, pick(rng, UNICODE_DIGITS)]
    elif family == "explain-numbers":
        argv = ["explain", "--size", pick(rng, ["16", "0", "1", "16,12", "x", "٣", "1" + "0" * 30, ""]),
                "--kernel", pick(rng, ["3", "0", "5x5", "100", "-1", "", "sobel"])]
        for key in ("--stride", "--padding", "--dilation", "--groups", "--in-channels", "--out-channels",
                    "--batch", "--pool", "--output-padding"):
            if rng.random() < 0.3:
                argv += [key, pick(rng, SMALL_NUMBERS + ["same", "max", "avg", "", "x"])]
        if rng.random() < 0.2:
            argv.append("--transposed")
    elif family == "engine-empty":
        argv = ["apply", str(image), "-k", "sobel", "-o", str(out), "--engine",
                pick(rng, ["", " ", "\t"])]
    else:
        raise ValueError(f"unknown family {family}")
    if argv[0] == "apply" and rng.random() < 0.3:
        argv += ["--report", pick(rng, ["json", "none"])]
    return {"id": f"{family}#{index}", "family": family, "argv": argv,
            "inputs": str(case_dir / "in"), "out": str(out)}


# ---------------------------------------------------------------------------------------------
# The contract

WARNING_MARKERS = ("Warning:", "DeprecationWarning", "RuntimeWarning", "UserWarning",
                   "warnings.warn", "TIFFReadDirectory", "TIFFFetch", "libtiff", "Traceback")


def contract_problems(result: dict, *, timeout: float) -> list[str]:
    """What the result of one run breaks of the error contract (empty: nothing)."""
    problems = []
    if result.get("hung"):
        return [f"hang: still running after {timeout:g} s (killed)"]
    code = result["code"]
    if code not in (0, 1, 2):
        problems.append(f"exit code {code} (not 0, 1 or 2)")
    stderr = result["stderr"]
    if "Traceback" in stderr:
        problems.append("traceback on stderr")
    for line in stderr.splitlines():
        if line.strip() and not line.startswith("convcli: "):
            problems.append(f"stderr line not 'convcli: ...': {line[:200]!r}")
            break
    for marker in WARNING_MARKERS[:5]:
        if marker in stderr:
            problems.append(f"Python warning text on stderr ({marker})")
            break
    if "--report" in result["argv"] and "json" == result["argv"][result["argv"].index("--report") + 1]:
        for line in result["stdout"].splitlines():
            try:
                json.loads(line)
            except ValueError:
                problems.append(f"--report json stdout line is not JSON: {line[:200]!r}")
                break
    if code in (1, 2) and not any(line.startswith("convcli: error: ") for line in stderr.splitlines()):
        problems.append(f"exit {code} without a 'convcli: error:' line")
    return problems


def tree_digest(folder: Path) -> dict[str, str]:
    """Path -> sha256 (or a symlink's target) of everything under folder, to prove it unchanged."""
    import hashlib

    digest = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                digest[key] = "-> " + os.readlink(path)
            elif path.is_file():
                digest[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                digest[key] = "dir"
    return digest


def leftovers(folder: Path) -> list[str]:
    """Temporary files (``.{name}.tmp-*``) an interrupted writer left under folder."""
    if not folder.exists():
        return []
    return sorted(str(p) for p in folder.rglob(".*.tmp-*"))


def broken_outputs(folder: Path) -> list[str]:
    """Outputs that are not whole: every written PNG/NPY must load."""
    bad = []
    if not folder.exists():
        return bad
    for path in folder.rglob("*"):
        if not path.is_file() or path.name.startswith("."):
            continue
        try:
            if path.suffix == ".png":
                from PIL import Image

                with Image.open(path) as image:
                    image.load()
            elif path.suffix == ".npy":
                np.load(path)
        except Exception as error:          # noqa: BLE001 -- any failure means a broken output
            bad.append(f"{path}: {error}")
    return bad


# ---------------------------------------------------------------------------------------------
# The fork runner

MEMORY_LIMIT = int(os.environ.get("CONVCLI_FUZZ_MEMORY_MB", "3072")) << 20


def limit_memory() -> None:
    """Cap the address space of a case (a shared machine): an absurd allocation fails at once
    instead of swapping; what convcli makes of the MemoryError is then part of the contract."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _run_one(argv: list[str], timeout: float, scratch: Path) -> dict:
    out_path, err_path = scratch / "stdout", scratch / "stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:                                           # the child: one convcli run
        code = 1
        try:
            os.setpgid(0, 0)
            limit_memory()
            stdin = os.open(os.devnull, os.O_RDONLY)
            out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(stdin, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            from convcli.cli import main

            try:
                main(argv)
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except BaseException:                          # what `python -m convcli` would show
                import traceback

                traceback.print_exc()
                code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    hung = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            hung = True
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            status = 0
            break
        time.sleep(0.005)
    seconds = time.monotonic() - start
    code = os.waitstatus_to_exitcode(status) if not hung else None
    read = lambda p: p.read_bytes().decode("utf-8", "replace") if p.exists() else ""  # noqa: E731
    return {"argv": argv, "code": code, "hung": hung, "seconds": round(seconds, 3),
            "stdout": read(out_path), "stderr": read(err_path)}


def run_cases(cases: list[dict], timeout: float, scratch: Path) -> list[dict]:
    import convcli.cli  # noqa: F401  -- import once in the parent: every fork starts warm
    from convcli import batch, explain, images, kernels, layers, pipeline, stacks  # noqa: F401
    from convcli.engine import _numpy  # noqa: F401

    scratch.mkdir(parents=True, exist_ok=True)
    results = []
    for case in cases:
        result = _run_one(case["argv"], timeout, scratch)
        result["id"] = case["id"]
        results.append(result)
    return results


if __name__ == "__main__":
    cases_file, results_file, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cases = json.loads(Path(cases_file).read_text())
    Path(results_file).write_text(json.dumps(run_cases(cases, timeout,
                                                       Path(results_file).parent / "scratch")))
