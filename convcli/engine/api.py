"""``conv2d`` with PyTorch's signature, and ``convolve``, the one entry to the compiled loops.

``conv2d`` parses PyTorch-style arguments (ints, pairs, ``'same'``/``'valid'``) and
hands explicit per-side padding to ``convolve``, which validates the arrays, maps the
borders (``border_map``: no padded copy), picks an engine path and runs it. Numba is imported on the first call,
not when convcli is imported.
"""

from __future__ import annotations

import numpy as np

from .. import geometry
from ..choices import ENGINE_CHOICES, ENGINE_PATHS, PADDING_MODES
from ..errors import UsageError, check_choice
from ._runtime import run_tasks, use_numpy

__all__ = ["conv2d", "convolve", "choose_path", "fft_only_if_finite", "all_finite",
           "border_map", "rank_one_factors", "ENGINE_PATHS", "PADDING_MODES"]

RANK_ONE_TOLERANCE = 1e-6  # second singular value relative to the first
# Above this many taps an SVD takes seconds to hours (O(n^3): a 6001^2 kernel, hours); larger
# kernels are tested by one cross of the matrix instead, in O(kH * kW).
SVD_MAX_TAPS = 64 * 64
# Time model for choosing a path. Only ratios between paths matter (the shared machine's speed
# drifts 2x); each entry was fitted on 2 threads, interleaved with the direct loops, on 1 Dec
# 2026 (issue #16; the commits that set them give every measured shape):
# - direct: ~0.037 ns per tap per output pixel and channel pair (7x7 and up; smaller kernels
#   are bound by memory), plus ~0.5 ns per output value for their stores (``_output_ns``).
# - FFT (ducc0 float32 tiles, ``_fft``): ~2.3 ns per pixel per transformed channel (forward
#   for inputs, inverse for outputs) + ~1.9 ns per pixel per spectral product (input channel
#   of a group x output channel) + ~0.01 ms per call. Depthwise fft / direct measured for
#   11, 13, 15, 17 x 17 kernels: 4096^2 1.37 1.10 0.90 0.60; 1024^2 1.73 0.96 0.79 0.57;
#   3 x 4096^2 1.31 0.94 0.81 0.59: a tie at 13 x 13, so the model switches at 13-14.
# - GEMM (``_gemm``): ~0.011 ns per tap (BLAS) + ~0.13 ns per column-matrix row and output
#   pixel (the copies) + ~0.9 ns per output value (its products write the output planes, and
#   shallow ones are bound by that). gemm / direct measured (model), 3x3 on 1024^2 unless
#   said: 16 -> 16 0.50 (0.63), 8 -> 8 0.84-0.93 (0.90), 8 -> 8 5x5 on 512^2 0.86 (0.80),
#   4 -> 8 1.12 (1.03), 6 -> 6 1.97 (1.07), 2 -> 8 1.62 (1.19), 4 -> 4 2.63 (1.35),
#   64 -> 64 on 128^2 0.29 (0.39); 3 -> 16 a tie, 0.91-1.08 on 2048^2 (0.94) but 1.10-1.21
#   on 512^2, which a per-pixel model cannot tell apart.
# When NumPy takes a compiled path's call instead: ``_runtime.use_numpy``.
COST = {"direct_ns_per_tap": 0.037, "fft_ns_per_pixel": 2.3, "fft_ns_per_product": 1.9,
        "fft_fixed_ns": 1e4, "direct_ns_per_output": 0.5, "gemm_ns_per_tap": 0.011,
        "gemm_ns_per_column": 0.13, "gemm_ns_per_output": 0.9}
# Output and input channels per group below which the GEMM path is never taken: depthwise
# and single-output kernels leave a product one row deep or one row tall.
GEMM_MIN_CHANNELS = 2


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", *, flip=False, engine="auto") -> np.ndarray:
    """2-D cross-correlation with the arguments and results of ``torch.nn.functional.conv2d``.

    ``x`` is (C, H, W) or (N, C, H, W); ``weight`` (C_out, C_in/groups, kH, kW); ``bias``
    (C_out,) or None. ``padding`` is an int, an (H, W) pair, ``'valid'`` or ``'same'``
    (stride 1 only, as in PyTorch). ``padding_mode`` is ``zeros``, ``reflect``,
    ``replicate``, ``circular`` (as ``torch.nn.Conv2d``) or ``symmetric``. ``flip=True``
    gives a true convolution. ``engine`` forces ``direct``, ``separable``, ``fft``, ``gemm``
    or ``numpy``. Returns
    float32 with the dimensionality of ``x``.
    """
    weight = _as_float32(weight, "weight")
    if weight.ndim != 4:
        raise UsageError(f"weight must be 4-D (C_out, C_in/groups, kH, kW); got shape {weight.shape}")
    if flip:
        weight = np.ascontiguousarray(weight[..., ::-1, ::-1])
    stride_hw = geometry.pair(stride, "stride")
    dilation_hw = geometry.pair(dilation, "dilation")
    explicit = geometry.resolve_padding(padding, weight.shape[2:], stride_hw=stride_hw,
                                        dilation_hw=dilation_hw)
    x = _as_float32(x, "x")
    if x.ndim not in (3, 4):
        raise UsageError(f"x must be (C, H, W) or (N, C, H, W); got shape {x.shape}")
    out, _ = convolve(x if x.ndim == 4 else x[np.newaxis], weight, bias, stride=stride_hw,
                      padding=explicit, dilation=dilation_hw, groups=groups,
                      padding_mode=padding_mode, engine=engine)
    return out if x.ndim == 4 else out[0]


def convolve(x, weight, bias=None, *, stride=(1, 1), padding=geometry.Padding(0, 0, 0, 0),
             dilation=(1, 1), groups=1, padding_mode="zeros", factors=None,
             engine="auto", row_map=None) -> tuple[np.ndarray, str]:
    """Convolve a batch ``x`` (N, C, H, W) with explicit per-side ``padding``.

    ``factors`` optionally gives (column (C_out, kH), row (C_out, kW)) with
    ``outer(column[c], row[c]) == weight[c, 0]``, as a separable kernel carries them;
    without them ``auto`` detects rank-1 kernels itself. ``row_map``, if given, replaces
    the padded rows: padded row p reads row ``row_map[p]`` of ``x`` (-1: a zero), and the
    output is as high as ``len(row_map)`` allows (``padding.top``/``bottom`` are unused);
    that is how a strip of an image is filtered (``convcli.strips``). Returns (output,
    engine path).
    """
    x, weight = _as_float32(x, "x"), _as_float32(weight, "weight")
    bias = _check_shapes(x, weight, bias, groups)
    check_choice("engine", engine, ENGINE_CHOICES)
    if row_map is None:
        row_map = border_map(x.shape[2], padding.rows, padding_mode)
        size_hw = x.shape[2:]
    else:
        row_map = _checked_row_map(row_map, x.shape[2])
        size_hw, padding = (row_map.size, x.shape[3]), geometry.Padding(0, 0, *padding.cols)
    out_hw, full_hw = _output_sizes(size_hw, weight, padding, stride, dilation)
    # Fresh zero pages from the kernel, faulted in by the threads that write them; every path
    # overwrites each output pixel. (A fill(0) here cost a third of a 3x3 call.)
    out = np.zeros((x.shape[0], weight.shape[0]) + out_hw, dtype=np.float32)
    col_map = border_map(x.shape[3], padding.cols, padding_mode)
    geometry_args = (row_map, col_map, padding.left, stride[0], stride[1], dilation[0], dilation[1])
    path, factors = _choose_path(weight, groups, factors, engine,
                                 out_pixels=x.shape[0] * out_hw[0] * out_hw[1],
                                 full_pixels=x.shape[0] * full_hw[0] * full_hw[1],
                                 in_channels=x.shape[1])
    if engine == "auto":
        path = fft_only_if_finite(path, x)
    if path == "numpy":
        from ._numpy import numpy_conv

        numpy_conv(x, weight, bias, _factor_rows(factors, weight.shape[0]), *geometry_args,
                   groups, out)
    elif path == "separable":
        from ._loops import separable_conv

        run_tasks(separable_conv, out.shape[0] * out.shape[1] * out.shape[2], x,
                  *_factor_rows(factors, weight.shape[0]), bias, *geometry_args, out)
    elif path == "gemm":
        from ._gemm import gemm_conv

        gemm_conv(x, weight, bias, *geometry_args, groups, out)
    elif path == "fft":
        from ._fft import fft_conv

        fft_conv(x, weight, bias, *geometry_args, groups, out)
    else:
        from ._loops import direct_conv, strided_conv

        loop = direct_conv if stride[1] == dilation[1] == 1 else strided_conv
        run_tasks(loop, out.shape[0] * out.shape[1] * out.shape[2], x, weight, bias,
                  *geometry_args, groups, out)
    return out, path


def choose_path(x_shape, weight, *, stride=(1, 1), padding=geometry.Padding(0, 0, 0, 0),
                dilation=(1, 1), groups=1, factors=None, engine="auto") -> str:
    """The path ``convolve`` takes on an input of ``x_shape`` (N, C, H, W) before it looks at
    the pixels (then ``fft_only_if_finite``, for ``auto``). Deciding it once for a whole
    image and forcing it on every strip keeps a strip on the path the whole image takes."""
    weight = _as_float32(weight, "weight")
    check_choice("engine", engine, ENGINE_CHOICES)
    out_hw, full_hw = _output_sizes(tuple(x_shape[2:]), weight, padding, stride, dilation)
    return _choose_path(weight, groups, factors, engine,
                        out_pixels=x_shape[0] * out_hw[0] * out_hw[1],
                        full_pixels=x_shape[0] * full_hw[0] * full_hw[1],
                        in_channels=x_shape[1])[0]


def fft_only_if_finite(path: str, x: np.ndarray) -> str:
    """``path``, or ``direct`` instead of ``fft`` when ``x`` holds a NaN or inf: on an FFT tile
    it would spread over the whole tile, not just the windows that cover it. (For paths
    chosen automatically; a forced ``fft`` is taken as asked.)"""
    return "direct" if path == "fft" and not all_finite(x) else path


def all_finite(values: np.ndarray) -> bool:
    """No NaN or infinity in ``values``: their float64 sum (which finite float32 values cannot
    overflow) is finite; one pass and no full-size temporary, unlike ``np.isfinite``."""
    with np.errstate(invalid="ignore", over="ignore"):          # inf - inf: NaN, quietly
        return bool(np.isfinite(np.sum(values, dtype=np.float64)))


def _output_sizes(size_hw, weight, padding, stride, dilation):
    """(output (H, W), output (H, W) at stride 1: the FFT path's work)."""
    out_hw = geometry.conv_output_hw(size_hw, weight.shape[2:], padding, stride_hw=stride,
                                     dilation_hw=dilation)
    full_hw = geometry.conv_output_hw(size_hw, weight.shape[2:], padding, dilation_hw=dilation)
    return out_hw, full_hw


def _checked_row_map(row_map, height: int) -> np.ndarray:
    """An explicit row map as int64, every entry -1 or a row of ``x``."""
    row_map = np.ascontiguousarray(row_map, dtype=np.int64)
    if row_map.ndim != 1 or (row_map.size and (row_map.min() < -1 or row_map.max() >= height)):
        raise ValueError(f"row_map must be 1-D with entries in [-1, {height}); got "
                         f"{row_map.size} entries from {row_map.min(initial=0)} to "
                         f"{row_map.max(initial=0)}")                 # a programming error
    return row_map


def border_map(size: int, pads: tuple[int, int], mode: str) -> np.ndarray:
    """For each position of the padded axis, the input index it reads (-1: a zero).

    The same rule as ``numpy.pad`` in ``mode``, applied to the indices instead of the
    pixels, so the engine never copies the image to pad it.
    """
    check_choice("padding_mode", mode, PADDING_MODES)
    indices = np.arange(size, dtype=np.int64)
    if mode == "zeros":
        return np.pad(indices, pads, mode="constant", constant_values=-1)
    if size == 0:
        raise UsageError(f"padding_mode {mode!r} needs a non-empty input")
    return np.pad(indices, pads, mode=PADDING_MODES[mode])


def rank_one_factors(weight: np.ndarray, tolerance: float = RANK_ONE_TOLERANCE):
    """(column (C_out, kH), row (C_out, kW)) if every ``weight[c, 0]`` is rank 1, else None."""
    if weight.shape[1] != 1:
        return None
    columns, rows = [], []
    for kernel in np.asarray(weight[:, 0], np.float64):
        if kernel.size > SVD_MAX_TAPS:
            factors = _cross_factors(kernel, tolerance)
            if factors is None:
                return None
            columns.append(factors[0])
            rows.append(factors[1])
            continue
        # Singular values alone first: most kernels are not rank 1, and OpenBLAS's threaded
        # full SVD of a 63 x 63 kernel took 96 ms here (0.17 ms for the values alone).
        s = np.linalg.svd(kernel, compute_uv=False)
        if s[0] == 0 or (s.size > 1 and s[1] > tolerance * s[0]):
            return None
        u, s, vt = np.linalg.svd(kernel)
        scale = np.sqrt(s[0])
        columns.append(u[:, 0] * scale)
        rows.append(vt[0] * scale)
    return np.array(columns, np.float32), np.array(rows, np.float32)


def _cross_factors(kernel: np.ndarray, tolerance: float):
    """(column, row) of a large rank-1 ``kernel`` without an SVD: the column and row through
    its largest tap (a rank-1 matrix is their outer product over that tap), kept when the
    residual is within ``tolerance`` of the kernel's norm; None otherwise."""
    i, j = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    pivot = kernel[i, j]
    if pivot == 0:
        return None
    column, row = kernel[:, j] / pivot, kernel[i].copy()
    if np.linalg.norm(kernel - np.outer(column, row)) > tolerance * np.linalg.norm(kernel):
        return None
    return column, row


def _choose_path(weight: np.ndarray, groups: int, factors, engine: str, *, out_pixels: int = 0,
                 full_pixels: int = 0, in_channels: int = 1) -> tuple[str, tuple | None]:
    """(engine path, separable factors): ``engine`` if forced, else by a cost model (``COST``).
    The factors are the given ones, or found here (once) when a kernel may be separable.

    separable: a depthwise rank-1 kernel where kH + kW < kH * kW.
    fft: when its estimated time beats the direct loops': depthwise from 14 x 14 (on images
    larger than a few dozen pixels a side), later where many channels mix (each input and
    output channel pair is a product of spectra).
    gemm: where its estimated time beats the direct loops' (with their output stores) or
    the FFT's: kernels that mix several channels each way (3 -> 16 or 16 -> 16 3x3, not
    4 -> 4 3x3; never depthwise). It needs no compiled loops, so it never becomes ``numpy``.
    direct: everything else.
    numpy: instead of the compiled separable or direct loops when ``_runtime.use_numpy``
    says so: a small call in a process that has not loaded them, or any call NumPy ends
    sooner than a compile while a background process compiles them. It uses the separable
    factors too.
    """
    kernel_h, kernel_w = weight.shape[2:]
    out_channels, group_in = weight.shape[:2]
    depthwise = group_in == 1
    if engine in ("direct", "fft", "gemm"):
        return engine, factors
    worth_it = kernel_h + kernel_w < kernel_h * kernel_w
    if depthwise and (engine == "separable" or worth_it):
        factors = factors if factors is not None else rank_one_factors(weight)
    if engine == "separable":
        if not depthwise or factors is None:
            raise UsageError("engine 'separable' needs a rank-1 kernel with one input channel per "
                             "group (C_in/groups == 1); use engine 'auto' or 'direct'")
        return "separable", factors
    separable = depthwise and worth_it and factors is not None
    taps = out_channels * (kernel_h + kernel_w if separable else group_in * kernel_h * kernel_w)
    if separable:
        path = "separable"
    else:
        direct_ns = COST["direct_ns_per_tap"] * taps * out_pixels
        fft_ns = ((COST["fft_ns_per_pixel"] * (in_channels + out_channels)
                   + COST["fft_ns_per_product"] * group_in * out_channels) * full_pixels
                  + COST["fft_fixed_ns"])
        path = "fft" if fft_ns < direct_ns else "direct"
        best_ns = fft_ns if path == "fft" else direct_ns + _output_ns(out_channels, out_pixels)
        if engine == "auto" and _gemm_ns(weight, groups, taps, out_pixels) < best_ns:
            return "gemm", factors            # BLAS, no compiled loops: never "numpy"
    if engine == "numpy" or (path != "fft" and use_numpy(taps * out_pixels)):
        return "numpy", (factors if separable else None)
    return path, factors


def _output_ns(out_channels: int, out_pixels: int) -> float:
    """The direct loops' time beyond their taps': storing the output (small kernels)."""
    return COST["direct_ns_per_output"] * out_channels * out_pixels


def _gemm_ns(weight: np.ndarray, groups: int, taps: int, out_pixels: int) -> float:
    """The GEMM path's estimated time (inf where it does not fit: a product needs
    ``GEMM_MIN_CHANNELS`` output and input channels per group to pay for its gather)."""
    out_channels, group_in, kernel_h, kernel_w = weight.shape
    if min(out_channels // groups, group_in) < GEMM_MIN_CHANNELS:
        return float("inf")
    gathered = group_in * kernel_h * kernel_w * groups          # column-matrix rows
    return (COST["gemm_ns_per_tap"] * taps + COST["gemm_ns_per_column"] * gathered
            + COST["gemm_ns_per_output"] * out_channels) * out_pixels


def _factor_rows(factors, out_channels: int):
    """Separable factors as contiguous float32 (column (C_out, kH), row (C_out, kW)), or None."""
    if factors is None:
        return None
    return tuple(np.ascontiguousarray(_as_float32(f, "factors").reshape(out_channels, -1))
                 for f in factors)


def _as_float32(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{name} must hold real numbers; got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float32)


def _check_shapes(x: np.ndarray, weight: np.ndarray, bias, groups: int) -> np.ndarray:
    """Validate the PyTorch shape rules; return the bias as a float32 (C_out,) array."""
    if x.ndim != 4:
        raise UsageError(f"x must be (N, C, H, W) here; got shape {x.shape}")
    if weight.ndim != 4:
        raise UsageError(f"weight must be 4-D (C_out, C_in/groups, kH, kW); got shape {weight.shape}")
    return check_weight(x.shape[1], weight.shape, bias, groups)


def check_weight(channels: int, weight_shape: tuple[int, ...], bias, groups: int) -> np.ndarray:
    """PyTorch's rules for a (C_out, C_in/groups, *kernel) weight on ``channels`` inputs, for
    any number of kernel axes; return the bias as a float32 (C_out,) array (zeros if None)."""
    check_groups(groups)
    out_channels, group_in = weight_shape[:2]
    if min(weight_shape) < 1:
        raise UsageError(f"weight has an empty dimension: shape {weight_shape}")
    if channels % groups or out_channels % groups:
        raise UsageError(f"groups={groups} must divide both input channels ({channels}) and "
                         f"output channels ({out_channels})")
    if channels // groups != group_in:
        raise UsageError(f"weight {weight_shape} expects {group_in * groups} input channels with "
                         f"groups={groups}; x has {channels}")
    return check_bias(bias, out_channels)


def check_groups(groups) -> None:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise UsageError(f"groups must be a positive integer; got {groups!r}")


def check_bias(bias, out_channels: int) -> np.ndarray:
    """``bias`` as float32 (C_out,), or zeros when None."""
    if bias is None:
        return np.zeros(out_channels, np.float32)
    bias = _as_float32(bias, "bias")
    if bias.shape != (out_channels,):
        raise UsageError(f"bias must have shape ({out_channels},); got {bias.shape}")
    return bias
