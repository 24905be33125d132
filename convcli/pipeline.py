"""One image through: load -> convolve -> write, with timings.

``plan_outputs`` decides every output path before any pixel is read, so usage
problems (name collisions, a file ``-o`` with several outputs) stop the run before
work starts; ``apply_to_image`` then does the work for one input and returns one
``OutputRecord`` per kernel for the report.
"""

from __future__ import annotations

import re
import string
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import geometry, images
from .engine import PADDING_MODES, convolve
from .errors import FileFailure, UsageError, check_choice
from .inputs import Source, is_stream
from .kernels import Kernel, Operation

__all__ = ["ApplyOptions", "OutputRecord", "Job", "plan_outputs", "apply_to_image", "output_stem",
           "kernel_geometry", "channel_plan"]

OUTPUT_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
DEFAULT_NAME = "{stem}_{kernel}.{ext}"
NAME_FIELDS = ("stem", "kernel", "ext", "parent")
NORMALIZE_CHOICES = ("auto",) + images.NORMALIZE_MODES
PAD_MODES = tuple(PADDING_MODES)


@dataclass(frozen=True)
class ApplyOptions:
    """What `convcli apply` was asked to do; ``None`` means "the kernel's default, else ours"."""

    stride: tuple[int, int] | None = None
    padding: geometry.PaddingSpec | None = None
    pad_mode: str = "reflect"
    dilation: tuple[int, int] | None = None
    flip: bool = False
    normalize: str = "auto"
    fmt: str = "png"
    bit_depth: int | None = None
    overwrite: bool = False
    gray: bool = False
    engine: str = "auto"

    def __post_init__(self) -> None:
        check_choice("--pad-mode", self.pad_mode, PAD_MODES)
        check_choice("--normalize", self.normalize, NORMALIZE_CHOICES)
        check_choice("--format", self.fmt, images.OUTPUT_FORMATS)
        if self.bit_depth not in (None, 8, 16):
            raise UsageError(f"--bit-depth must be 8 or 16; got {self.bit_depth}")


@dataclass(frozen=True)
class Job:
    """One output to produce: which input, which operation, where it goes."""

    source: Source
    operation: Operation
    destination: Path
    to_stdout: bool = False


@dataclass
class OutputRecord:
    """What happened for one output; the report renders these."""

    input: str
    output: str
    kernel: str
    input_shape: list[int]
    output_shape: list[int]
    kernel_shape: list[int]
    stride: list[int]
    padding: dict[str, int]
    dilation: list[int]
    pad_mode: str
    engine: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    megapixels_per_s: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def output_stem(operation: Operation) -> str:
    """A file-name-safe form of the kernel spec: ``gaussian:sigma=2`` -> ``gaussian-sigma-2``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", operation.name).strip("-.") or "kernel"


def output_format(out: str, fmt: str | None) -> str:
    """The output format: ``--format`` if given, else what ``-o`` implies (``x.tif``, ``npy:-``),
    else png. A ``-o`` that says otherwise than ``--format`` is a usage error."""
    if is_stream(out):
        implied = OUTPUT_SUFFIXES.get("." + out.split(":")[0].lower())
        if implied is None:
            raise UsageError(f"-o {out}: stream format must be png, tif, tiff or npy (e.g. -o png:-)")
    else:
        implied = OUTPUT_SUFFIXES.get(Path(out).suffix.lower()) if not Path(out).is_dir() else None
    if fmt is not None and implied is not None and implied != fmt:
        raise UsageError(f"-o {out} implies {implied} but --format is {fmt}; make them agree "
                         "(png: .png, tiff: .tif/.tiff, npy: .npy)")
    return fmt or implied or "png"


def check_name_template(template: str) -> None:
    """``--name`` may use {stem}, {kernel}, {ext} and {parent} and must end in ``.{ext}``-like
    text of its own choosing; it must stay inside ``-o``."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise UsageError(f"--name {template!r}: {error}") from None
    unknown = sorted(fields - set(NAME_FIELDS))
    if unknown:
        raise UsageError(f"--name {template!r}: unknown field {{{unknown[0]}}}; valid fields are "
                         + ", ".join("{" + f + "}" for f in NAME_FIELDS))
    sample = Path(template.format(stem="x", kernel="k", ext="png", parent="p"))
    if sample.is_absolute() or ".." in sample.parts:
        raise UsageError(f"--name {template!r} must name a file inside the -o folder")


def plan_outputs(sources: list[Source], operations: list[Operation], out: str,
                 options: ApplyOptions, name: str = DEFAULT_NAME) -> list[Job]:
    """Every (input, kernel) pair with its output path, checked before any work.

    ``out`` is a file when there is exactly one input and one kernel and it ends in an
    output suffix (``.png``, ``.tif``, ``.tiff``, ``.npy``); ``png:-`` etc. is standard
    output (one output only); otherwise a folder, where each output is named by the
    ``name`` template inside the source's sub-folder.
    """
    count = len(sources) * len(operations)
    single_file = is_stream(out) or (Path(out).suffix.lower() in OUTPUT_SUFFIXES
                                     and not Path(out).is_dir())
    if single_file:
        if count != 1:
            raise UsageError(f"-o {out} names one file but this run makes {count} outputs; "
                             "give a folder instead")
        return [Job(sources[0], operations[0], Path(out), to_stdout=is_stream(out))]
    check_name_template(name)
    jobs, seen = [], {}
    extension = "tif" if options.fmt == "tiff" else options.fmt
    for source in sources:
        for operation in operations:
            filename = name.format(stem=source.path.stem, kernel=output_stem(operation),
                                   ext=extension, parent=source.path.resolve().parent.name)
            destination = Path(out) / source.folder / filename
            if destination in seen:
                raise UsageError(f"{seen[destination]} and {source.path} would both write "
                                 f"{destination}; rename one input, or use --name with {{parent}}")
            seen[destination] = source.path
            jobs.append(Job(source, operation, destination))
    return jobs


def apply_to_image(source: Source, jobs: list[Job], options: ApplyOptions, *,
                   data: bytes | None = None) -> list[OutputRecord]:
    """Load ``source`` once and produce every job's output; one record per output.

    ``data`` holds the image's bytes when it comes from standard input.
    """
    if not options.overwrite:
        for job in jobs:
            if not job.to_stdout and job.destination.exists():
                raise FileFailure(f"{job.destination}: already exists; use --overwrite to replace it")
    started = time.perf_counter()
    image = images.load_image(source.path, gray=options.gray, data=data)
    load_ms = _ms_since(started)
    records = []
    for index, job in enumerate(jobs):
        last = index == len(jobs) - 1
        filtered = _filter_job(job, image, options, into_input=last)
        if last:
            del image  # the last output is written without the input in memory
        records.append(_write_job(job, filtered, load_ms, options))
    return records


def kernel_geometry(kernel: Kernel, options: ApplyOptions):
    """(stride, padding spec, dilation) for ``kernel``: the options', else the kernel's, else
    an image filter's defaults (stride 1, 'same', dilation 1). ``explain`` uses this too."""
    stride = options.stride or geometry.pair(kernel.stride, "stride")
    dilation = options.dilation or geometry.pair(kernel.dilation, "dilation")
    padding = options.padding if options.padding is not None else (
        kernel.padding if kernel.padding is not None else "same")
    return stride, padding, dilation


def channel_plan(kernel: Kernel, channels: int, path: Path) -> tuple[int, int]:
    """(groups, output channels) of ``kernel`` on a ``channels``-channel image.

    A 2-D kernel runs depthwise (groups = C: the same kernel on every channel);
    a 4-D kernel maps its C_in channels to C_out feature maps (groups = 1).
    """
    if kernel.weights.ndim == 2:
        return channels, channels
    out_channels, in_channels = kernel.weights.shape[:2]
    if in_channels != channels:
        raise FileFailure(
            f"{path}: has {channels} channel(s) but kernel {kernel.name} expects {in_channels}"
            + ("; use --gray for a one-channel kernel" if in_channels == 1 else ""))
    return 1, out_channels


@dataclass
class _Filtered:
    """One job's response, ready to write, and what the report says about how it was made."""

    maps: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    record: OutputRecord


def _filter_job(job: Job, image: images.LoadedImage, options: ApplyOptions, *,
                into_input: bool = False) -> _Filtered:
    """Filter the image for one job; ``into_input`` lets the result overwrite the image's
    pixels (the last job: one image less in memory)."""
    channels, height, width = image.pixels.shape
    first = job.operation.kernels[0]
    stride, padding_spec, dilation = kernel_geometry(first, options)
    padding = geometry.resolve_padding(
        padding_spec, first.size, stride_hw=stride, dilation_hw=dilation,
        size_hw=(height, width), strided_same=True)
    try:
        geometry.conv_output_hw((height, width), first.size, padding,
                                stride_hw=stride, dilation_hw=dilation,
                                what=f"{image.path}: image")
    except UsageError as error:  # the image, not the options, is the problem here
        raise FileFailure(str(error)) from None

    started = time.perf_counter()
    groups, out_channels = channel_plan(first, channels, image.path)
    maps, paths = _filter(image, job.operation, options, into_input, stride=stride,
                          padding=padding, dilation=dilation, padding_mode=options.pad_mode,
                          engine=options.engine)
    convolve_ms = _ms_since(started)

    alpha = None
    if image.alpha is not None and options.fmt == "png":
        alpha = _alpha_at_outputs(image.alpha, maps.shape[1:], first.size, stride, padding, dilation)
    record = OutputRecord(
        input=str(image.path), output=str(job.destination), kernel=job.operation.name,
        input_shape=[channels, height, width], output_shape=list(maps.shape),
        kernel_shape=[out_channels, channels // groups, *first.size], stride=list(stride),
        padding=padding.as_dict(), dilation=list(dilation), pad_mode=options.pad_mode,
        engine="+".join(dict.fromkeys(paths)), timings_ms={"convolve": convolve_ms},
        megapixels_per_s=round(height * width / 1e6 / max(convolve_ms / 1e3, 1e-9), 2))
    bit_depth = options.bit_depth or (16 if image.bit_depth >= 16 else 8)
    return _Filtered(maps, alpha, bit_depth, record)


def _write_job(job: Job, filtered: _Filtered, load_ms: float,
               options: ApplyOptions) -> OutputRecord:
    """Write (or stream) the response; complete the record with the load and write times."""
    first = job.operation.kernels[0]
    normalize = options.normalize
    if normalize == "auto":
        normalize = "abs" if job.operation.combine == "single" and first.is_zero_sum else "clip"
    started = time.perf_counter()
    arguments = dict(fmt=options.fmt, alpha=filtered.alpha, bit_depth=filtered.bit_depth,
                     normalize=normalize)
    if job.to_stdout:
        sys.stdout.buffer.write(images.encode_image(filtered.maps, **arguments))
        sys.stdout.buffer.flush()
    else:
        images.save_image(job.destination, filtered.maps, overwrite=options.overwrite, **arguments)
    record = filtered.record
    record.timings_ms = {"load": load_ms, "convolve": record.timings_ms["convolve"],
                         "write": _ms_since(started)}
    return record


def _filter(image: images.LoadedImage, operation: Operation, options: ApplyOptions,
            into_input: bool, **geometry_args) -> tuple[np.ndarray, list[str]]:
    """The operation's (C_out, H_out, W_out) response and the engine paths that ran.

    2-D kernels act on each channel on its own, so the channels go through one at a time:
    besides the image and the result, only one channel's responses are in memory. With
    ``into_input``, a result of the image's size is stored over the channels already done.
    """
    pixels, paths = image.pixels, []
    depthwise = all(kernel.weights.ndim == 2 for kernel in operation.kernels)
    parts = [pixels[c:c + 1] for c in range(pixels.shape[0])] if depthwise else [pixels]
    arguments = [_weights_for(kernel, parts[0].shape[0], options.flip, image.path)
                 for kernel in operation.kernels]          # the same for every part
    maps = None
    for index, part in enumerate(parts):
        total = None
        for weight, bias, factors, groups in arguments:
            response, path = convolve(part[np.newaxis], weight, bias, groups=groups,
                                      factors=factors, **geometry_args)
            total = _combine(total, response[0], operation.combine)
            paths.append(path)
            del response
        if operation.combine == "magnitude":
            np.sqrt(total, out=total)
        if len(parts) == 1:
            return total, paths
        if maps is None:
            fits = into_input and total.shape[1:] == pixels.shape[1:] and pixels.flags.writeable
            maps = pixels if fits else np.empty((len(parts),) + total.shape[1:], np.float32)
        maps[index] = total[0]
    return maps, paths


def _weights_for(kernel: Kernel, channels: int, flip: bool, path: Path):
    """Engine arguments (weight, bias, factors, groups) for ``kernel`` on the image."""
    groups, out_channels = channel_plan(kernel, channels, path)
    weights = kernel.weights[..., ::-1, ::-1] if flip else kernel.weights
    factors = None
    if weights.ndim == 2:
        weight = np.broadcast_to(weights, (channels, 1) + weights.shape)
        if kernel.factors is not None:
            column, row = (f[::-1] if flip else f for f in kernel.factors)
            factors = (np.broadcast_to(column, (channels, column.size)),
                       np.broadcast_to(row, (channels, row.size)))
    else:
        weight = weights
    bias = None
    if kernel.bias is not None:
        bias = np.broadcast_to(np.asarray(kernel.bias, np.float32), (out_channels,))
    return np.ascontiguousarray(weight, np.float32), bias, factors, groups


def _combine(total: np.ndarray | None, response: np.ndarray, combine: str) -> np.ndarray:
    """Fold one kernel's response into the operation's result, in place (one image in memory
    however many kernels): the response itself, the sum of squares (the caller takes the
    square root at the end: gradient magnitude), or the maximum (compass operators)."""
    if combine == "magnitude":
        np.multiply(response, response, out=response)
    elif combine not in ("single", "max"):
        raise ValueError(f"unknown combine rule {combine!r}")  # a programming error
    if total is None:
        return response
    if combine == "max":
        return np.maximum(total, response, out=total)
    if combine == "magnitude":
        return np.add(total, response, out=total)
    raise ValueError("a single-kernel operation got a second kernel")


def _alpha_at_outputs(alpha: np.ndarray, out_hw: tuple[int, int], kernel_hw: tuple[int, int],
                      stride: tuple[int, int], padding: geometry.Padding,
                      dilation: tuple[int, int]) -> np.ndarray:
    """Alpha sampled under each output pixel's kernel anchor (unchanged when sizes match)."""
    rows, cols = (
        np.clip(geometry.anchor_positions(out_hw[axis], kernel_hw[axis], stride[axis],
                                          (padding.top, padding.left)[axis], dilation[axis]),
                0, alpha.shape[axis] - 1)
        for axis in range(2))
    return np.ascontiguousarray(alpha[np.ix_(rows, cols)])


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1e3, 3)
