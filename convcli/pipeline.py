"""One image through: load -> convolve -> write, with timings.

``plan_outputs`` decides every output path before any pixel is read, so usage
problems (name collisions, a file ``-o`` with several outputs) stop the run before
work starts; ``apply_to_image`` then does the work for one input and returns one
``OutputRecord`` per kernel for the report.
"""

from __future__ import annotations

import math
import re
import string
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from . import geometry, images
from .choices import BIT_DEPTHS, NORMALIZE_CHOICES
from .engine import PADDING_MODES, all_finite, compile_seconds, rank_one_factors
from .errors import ConvcliError, FileFailure, UsageError, check_choice, print_warning
from .inputs import Source, is_stream
from .kernels import Operation
from .layers import Stack, channel_plan, kernel_geometry, layer_for_operation
from .explain import explain_stack
from .stacks import LayerRun, filter_operation, run_stack

__all__ = ["ApplyOptions", "OutputRecord", "Job", "plan_outputs", "compare_sheets", "apply_to_image",
           "output_stem", "output_folder", "check_output_folder", "check_jobs_up_front"]

OUTPUT_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".jpg": "jpeg",
                   ".jpeg": "jpeg", ".webp": "webp", ".bmp": "bmp", ".gif": "gif"}
EXTENSIONS = {"tiff": "tif", "jpeg": "jpg"}          # --format -> the {ext} of output names
CLIPPED_WARNING = 0.01                               # warn when more pixels than this clip
# Inputs above this many pixels (or voxels) fail unless --max-pixels allows them: 250 MP of RGB
# is 3 GB as float32, and a run holds about three times its input.
DEFAULT_MAX_PIXELS = 250_000_000
# Images of this many pixels or more are streamed when they can be (unless --max-memory 0):
# a 4096^2 RGB PNG Sobel took 1.6 s streamed and 2.8 s in memory, 2048^2 1.6 and 0.8 s
# (streaming loads the compiled loops, ~0.6 s, which small images never need).
STREAM_FROM_PIXELS = 10_000_000
# A streamed image holds strips, not pixels, but a header is not proof of an image: one
# claiming 10^12 pixels of a few bytes of data would plan and decode for hours. Without
# --max-pixels, streamed images may have 2^36 pixels (262144^2) and 2^24 rows (whose row
# maps, 8 bytes a row, the strips share).
DEFAULT_MAX_STREAMED_PIXELS = 1 << 36
MAX_STREAMED_ROWS = 1 << 24
DEFAULT_NAME = "{stem}_{kernel}.{ext}"
NAME_FIELDS = ("stem", "kernel", "ext", "parent", "suffix")
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
    save_stages: bool = False
    split: bool = False
    quality: int = 95
    max_pixels: int | None = None   # None: the defaults of _check_size
    scale: float = 1.0      # multiplies every -k kernel's weights
    bias: float = 0.0       # added to every -k output, after the responses are combined
    max_memory: int = 1 << 30   # an image whose float32 pixels pass this is streamed (0: no limit)
    stream: bool = False        # stream every image that can be (--stream)

    def __post_init__(self) -> None:
        check_choice("--pad-mode", self.pad_mode, PAD_MODES)
        check_choice("--normalize", self.normalize, NORMALIZE_CHOICES)
        check_choice("--format", self.fmt, images.OUTPUT_FORMATS)
        if self.bit_depth not in (None, *BIT_DEPTHS):
            raise UsageError(f"--bit-depth must be {' or '.join(map(str, BIT_DEPTHS))}; "
                             f"got {self.bit_depth}")
        if self.bit_depth == 16 and self.fmt in images.PILLOW_FORMATS:
            raise UsageError(f"--bit-depth 16 needs png; {self.fmt} holds 8 bits per channel")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be 1 to 100; got {self.quality}")
        if self.max_memory < 0:
            raise UsageError(f"--max-memory must be >= 0 (0: no limit); got {self.max_memory}")
        if self.max_pixels is not None and self.max_pixels < 0:
            raise UsageError(f"--max-pixels must be >= 0 (0: no limit); got {self.max_pixels}")
        from .engine.api import ENGINE_CHOICES

        check_choice("--engine", self.engine, ENGINE_CHOICES)
        for option, value in (("--scale", self.scale), ("--bias", self.bias)):
            if not math.isfinite(value):
                raise UsageError(f"{option} must be a finite number; got {value}")


@dataclass(frozen=True)
class Job:
    """One output to produce: which input, which operation, where it goes."""

    source: Source
    operation: Operation
    destination: Path
    to_stdout: bool = False
    compare: Path | None = None      # --compare: the input's before/after sheet (all its jobs)


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
    layers: list[dict] = field(default_factory=list)
    clipped_fraction: float = 0.0
    peak_memory_mb: float | None = None   # the process's peak resident memory after this output
    strips: int | None = None             # strips it was filtered in (None: in memory)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def output_stem(operation: Operation | Stack) -> str:
    """A file-name-safe form of the kernel spec: ``gaussian:sigma=2`` -> ``gaussian-sigma-2``."""
    return _slug(operation.name, "kernel")


def output_format(out: str, fmt: str | None) -> str:
    """The output format: ``--format`` if given, else what ``-o`` implies (``x.jpg``, ``npy:-``),
    else png. A ``-o`` that says otherwise than ``--format``, a suffix that is no output format
    (unless ``-o`` is a folder: one that exists, or written with a trailing ``/``), and a bare
    ``-`` are usage errors."""
    valid = ", ".join(OUTPUT_SUFFIXES)
    if out == "-":
        raise UsageError("-o - is ambiguous; write one image to standard output with png:- "
                         "(or jpg:-, tif:-, npy:-), or give a folder")
    if is_stream(out):
        implied = OUTPUT_SUFFIXES.get("." + out.split(":")[0].lower())
        if implied is None:
            raise UsageError(f"-o {out}: stream format must be one of "
                             f"{', '.join(s.lstrip('.') for s in OUTPUT_SUFFIXES)} (e.g. -o png:-)")
    elif _is_folder(out):
        implied = None
    else:
        suffix = Path(out).suffix.lower()
        implied = OUTPUT_SUFFIXES.get(suffix)
        if suffix and implied is None:
            raise UsageError(f"-o {out}: {suffix} is not an output format ({valid}); for a "
                             f"folder, end it with / (-o {out}/)")
    if fmt is not None and implied is not None and implied != fmt:
        raise UsageError(f"-o {out} implies {implied} but --format is {fmt}; make them agree "
                         f"(suffixes: {valid})")
    return fmt or implied or "png"


def _clash_advice(first: Path, second: Path) -> str:
    """What separates two inputs that would write the same output, as a --name to use."""
    if first.stem == second.stem and first.suffix.lower() != second.suffix.lower():
        return "they differ only in suffix: use --name '{stem}_{suffix}_{kernel}.{ext}'"
    if first.resolve().parent.name != second.resolve().parent.name:
        return "use --name '{parent}_{stem}_{kernel}.{ext}', or -r to mirror their folders"
    return "rename one input"


def check_output_folder(out: str, *, create: bool) -> None:
    """A ``-o`` folder that cannot be one (a file is in the way) or cannot be written is a
    usage error before any work; ``create`` makes it (the outputs go there anyway)."""
    folder = output_folder(out)
    if folder is None:
        return
    existing = next(p for p in [folder, *folder.parents] if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise UsageError(f"-o {out}: {existing} is a file, not a folder; give a folder (or one "
                         "file name with an image suffix for a single output)")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = tempfile.TemporaryFile(dir=folder)
            probe.close()
        except OSError as error:
            raise UsageError(f"-o {out}: cannot write there ({error.strerror or error})") from None


def output_folder(out: str) -> Path | None:
    """The folder ``-o`` names, or None when it names a file or a stream."""
    return Path(out) if not is_stream(out) and out != "-" and _is_folder(out) else None


def _is_folder(out: str) -> bool:
    """``-o`` names a folder: it exists as one, ends in a slash, or has no suffix."""
    return Path(out).is_dir() or out.endswith(("/", "\\")) or not Path(out).suffix


def check_name_template(template: str) -> None:
    """``--name`` may use {stem}, {kernel}, {ext}, {parent} and {suffix} (the input's, without
    the dot); it must stay inside ``-o``."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        raise UsageError(f"--name {template!r}: {error}") from None
    unknown = sorted(fields - set(NAME_FIELDS))
    if unknown:
        raise UsageError(f"--name {template!r}: unknown field {{{unknown[0]}}}; valid fields are "
                         + ", ".join("{" + f + "}" for f in NAME_FIELDS))
    sample = Path(template.format(stem="x", kernel="k", ext="png", parent="p", suffix="jpg"))
    if sample.is_absolute() or ".." in sample.parts:
        raise UsageError(f"--name {template!r} must name a file inside the -o folder")


def plan_outputs(sources: list[Source], operations: list[Operation | Stack], out: str,
                 options: ApplyOptions, name: str = DEFAULT_NAME) -> list[Job]:
    """Every (input, kernel) pair with its output path, checked before any work.

    ``out`` is a file when there is exactly one input and one kernel and it ends in an
    output suffix (``.png``, ``.tif``, ``.tiff``, ``.npy``); ``png:-`` etc. is standard
    output (one output only); otherwise a folder, where each output is named by the
    ``name`` template inside the source's sub-folder.
    """
    jobs = _plan(sources, operations, out, options, name)
    made_by = {job.destination.resolve(): job.source for job in jobs if not job.to_stdout}
    own = [s for s in sources if s.found and made_by.get(s.path.resolve(), s) is not s]
    if own:                        # outputs of an earlier run in an input folder: not inputs
        sources = [s for s in sources if s not in own]
        jobs = _plan(sources, operations, out, options, name) if sources else []
    named = {s.path.resolve(): s.path for s in sources if not s.from_stdin}
    for job in jobs:
        if not job.to_stdout and job.destination.resolve() in named:
            raise UsageError(f"-o {out} would write {job.destination} over the input "
                             f"{named[job.destination.resolve()]}; convcli never replaces an "
                             "input: choose another -o or --name")
    return jobs


def _plan(sources: list[Source], operations: list[Operation | Stack], out: str,
          options: ApplyOptions, name: str) -> list[Job]:
    operations = [_scaled(operation, options) for operation in operations]
    for operation in operations:
        _check_engine(operation, options.engine)
    count = len(sources) * len(operations)
    single_file = is_stream(out) or not _is_folder(out)
    if single_file:
        if count != 1:
            raise UsageError(f"-o {out} names one file but this run makes {count} outputs; "
                             "give a folder instead")
        return [Job(sources[0], operations[0], Path(out), to_stdout=is_stream(out))]
    check_name_template(name)
    jobs, seen = [], {}
    extension = EXTENSIONS.get(options.fmt, options.fmt)
    for source in sources:
        for operation in operations:
            filename = name.format(stem=source.path.stem, kernel=output_stem(operation),
                                   ext=extension, parent=source.path.resolve().parent.name,
                                   suffix=source.path.suffix.lstrip(".").lower())
            destination = Path(out) / source.folder / filename
            if destination in seen and seen[destination] == source.path:
                raise UsageError(f"two kernels of {source.path} would both write {destination}: "
                                 "give each kernel once, or make their names differ")
            if destination in seen:
                raise UsageError(f"{seen[destination]} and {source.path} would both write "
                                 f"{destination}; {_clash_advice(seen[destination], source.path)}")
            seen[destination] = source.path
            jobs.append(Job(source, operation, destination))
    return jobs


def _check_engine(operation: Operation | Stack, engine: str) -> None:
    """``--engine separable`` runs rank-1 kernels only: a -k kernel that is not one is a usage
    error here, once, rather than a failure of every file."""
    if engine != "separable" or isinstance(operation, Stack):
        return
    for kernel in operation.kernels:
        weights = kernel.weights
        if weights.ndim == 2 and kernel.is_separable:
            continue
        if weights.ndim == 4 and rank_one_factors(weights) is not None:
            continue
        if weights.ndim in (2, 4):
            raise UsageError(f"--engine separable runs kernels that are an outer product of a "
                             f"column and a row (rank 1), with one input channel per group; "
                             f"-k {kernel.name} is not one: use --engine auto or direct")


def _scaled(operation: Operation | Stack, options: ApplyOptions) -> Operation | Stack:
    """The -k operation with ``--scale`` and ``--bias`` applied (a stack's layers carry their own)."""
    if not isinstance(operation, Stack):
        return operation.scaled(options.scale, options.bias)
    if (options.scale, options.bias) != (1.0, 0.0):
        raise UsageError("--scale and --bias apply to -k kernels, not to a --layer stack")
    return operation


def compare_sheets(jobs: list[Job], out: str, name: str = DEFAULT_NAME) -> list[Job]:
    """``--compare``: the jobs, each with its input's before/after sheet, a PNG named as the
    output of a kernel called ``compare`` would be (``{stem}_compare.png`` by default; when
    ``--name`` has no ``{kernel}``, ``_compare`` is added to the name). A sheet that would
    be an output, or another input's sheet, is a usage error before any work."""
    taken = {job.destination: f"an output of {job.source.path}" for job in jobs}
    sheet_of: dict[Source, Path] = {}
    for source in dict.fromkeys(job.source for job in jobs):
        filename = Path(name.format(stem=source.path.stem, kernel="compare", ext="png",
                                    parent=source.path.resolve().parent.name,
                                    suffix=source.path.suffix.lstrip(".").lower()))
        if "{kernel}" not in name:
            filename = _beside(filename, "compare")
        if filename.suffix.lower() != ".png":
            filename = (filename.with_suffix(".png") if filename.suffix.lower() in OUTPUT_SUFFIXES
                        else filename.with_name(filename.name + ".png"))
        sheet = Path(out) / source.folder / filename
        if sheet in taken:
            raise UsageError(f"--compare: the sheet of {source.path} would overwrite {sheet}, "
                             f"{taken[sheet]}; change --name or rename the input")
        taken[sheet] = f"the sheet of {source.path}"
        sheet_of[source] = sheet
    return [replace(job, compare=sheet_of[job.source]) for job in jobs]


def check_jobs_up_front(jobs: list[Job], options: ApplyOptions) -> None:
    """A kernel or stack that does not fit its input (a window larger than the padded input,
    channels that do not match or chain, groups that do not divide) is a usage error before
    any work, read from the header and naming the file (and a stack's layer): for a stack,
    on the first readable input; for -k kernels, when the run has a single input. Other
    inputs that do not fit fail alone, later."""
    sources = list(dict.fromkeys(job.source for job in jobs))
    if not any(isinstance(job.operation, Stack) for job in jobs) and len(sources) != 1:
        return
    for source in sources:
        if source.from_stdin:
            continue
        try:
            shape = images.read_header(source.path, gray=options.gray)
        except ConvcliError:
            continue                               # that file fails on its own, later
        for job in jobs:
            if job.source == source:
                try:
                    _plan_job(job.operation, shape, source.path, options)
                except FileFailure as error:
                    raise UsageError(str(error)) from None
        return


def apply_to_image(source: Source, jobs: list[Job], options: ApplyOptions, *,
                   data: bytes | None = None, strips_from=None) -> list[OutputRecord]:
    """Load ``source`` once and produce every job's output; one record per output.

    ``data`` holds the image's bytes when it comes from standard input. With ``--compare``
    (``Job.compare``) it also writes the input's before/after sheet. ``strips_from``, for a
    streamed input, makes its strips (``stream.stream_image``'s: a Dask cluster's).
    """
    sheet = jobs[0].compare
    if not options.overwrite:
        for job in jobs:
            if not job.to_stdout and job.destination.exists():
                raise FileFailure(f"{job.destination}: already exists; use --overwrite to replace it")
        if sheet is not None and sheet.exists():
            raise FileFailure(f"{sheet}: already exists; use --overwrite to replace it")
    if _streamed(source, jobs, options, data):
        from .stream import stream_image

        return stream_image(source, jobs, options, strips_from=strips_from)
    started = time.perf_counter()
    if data is None:               # refused from the header, before any pixel is decoded
        _check_size(source.path, images.read_header(source.path, gray=options.gray), options)
    image = images.load_image(source.path, gray=options.gray, data=data)
    _check_size(source.path, image.pixels.shape, options)
    load_ms = _ms_since(started)
    if not all_finite(image.pixels):                           # no full-size temporary
        bad = image.pixels.size - int(np.count_nonzero(np.isfinite(image.pixels)))
        print_warning(f"{source.path}: {bad:,} NaN or infinite input value(s); they spread to every "
                      "output whose window reads them")
    plans = [_plan_job(job.operation, image.pixels.shape, image.path, options)
             for job in jobs]                              # all fit, or nothing is written
    records = []
    # the input as read: integer pixels as they are; float ones (any range) stretched
    tiles = [_sheet_tile(image.pixels, "clip" if image.bit_depth <= 16 else "minmax")] if sheet else []
    for index, (job, plan) in enumerate(zip(jobs, plans)):
        last = index == len(jobs) - 1
        with np.errstate(all="ignore"):  # non-finite inputs were warned about once, above
            if isinstance(plan, Stack):
                filtered = _stack_job(job, plan, image, options)
            else:
                filtered = _filter_job(job, plan, image, options, into_input=last)
        if last:
            del image  # the last output is written without the input in memory
        if sheet:
            tiles.append(_sheet_tile(filtered.maps, _normalize(job, filtered.maps, options)))
        with np.errstate(all="ignore"):
            records.append(_write_job(job, filtered, load_ms, options))
        records[-1].peak_memory_mb = _peak_memory_mb()
    if sheet:
        from .pictures import compare_sheet

        labels = [f"{source.path.name} (input)"] + [_sheet_label(job.operation) for job in jobs]
        images.save_picture(sheet, compare_sheet(tiles, labels), overwrite=options.overwrite)
    return records


def _streamed(source: Source, jobs: list[Job], options: ApplyOptions,
              data: bytes | None) -> bool:
    """Stream this input (``stream``) if it can be: with ``--stream``, when its float32
    pixels pass ``--max-memory``, or when it has ``STREAM_FROM_PIXELS`` or more (faster
    streamed, the same output); an input too large that cannot be streamed fails here,
    from its header, with what would work."""
    if not options.stream and not options.max_memory:
        return False
    from .stream import float_bytes, why_not_streamed, _size_text

    if data is not None:               # standard input: in memory, as --max-pixels allows
        return False
    shape = images.read_header(source.path, gray=options.gray)
    size = float_bytes(shape)
    too_big = bool(options.max_memory) and size > options.max_memory
    large = len(shape) == 3 and shape[1] * shape[2] >= STREAM_FROM_PIXELS
    if not (too_big or large or options.stream):
        return False
    reason = why_not_streamed(source, jobs, options, data)
    if reason is None:
        _check_size(source.path, shape, options, streamed=True)
        return True
    if too_big:
        raise FileFailure(f"{source.path}: {_size_text(size)} as float32 is more than "
                          f"--max-memory {_size_text(options.max_memory)} and it cannot be "
                          f"streamed ({reason}); 2-D images stream to --format png or tiff; "
                          "or raise --max-memory (0: no limit) if the machine has the memory")
    return False


def _peak_memory_mb() -> float:
    from .stream import peak_memory_mb

    return peak_memory_mb()


def _sheet_tile(maps: np.ndarray, normalize: str) -> np.ndarray:
    """A compare sheet's picture of ``maps``: their 8-bit PNG pixels, shrunk to a tile at
    once (the sheet never holds full-size pictures)."""
    from .pictures import fit_tile

    return fit_tile(images.display_pixels(maps, normalize))


def _sheet_label(operation: Operation | Stack) -> str:
    """Under a sheet's tile: the kernel spec, or the stack's name and layers."""
    if isinstance(operation, Stack):
        return f"{operation.name}: " + " > ".join(layer.describe() for layer in operation.layers)
    return operation.name


def _timings(convolve_ms: float, compile_ms: float) -> dict[str, float]:
    """``{"convolve"}``, and ``"compile"`` when this job waited for Numba to compile."""
    return {"convolve": convolve_ms, **({"compile": compile_ms} if compile_ms else {})}


def _check_size(path: Path, shape: tuple[int, ...], options: ApplyOptions, *,
                streamed: bool = False) -> None:
    """``--max-pixels``: by default ``DEFAULT_MAX_PIXELS`` for an in-memory run (its
    memory), ``DEFAULT_MAX_STREAMED_PIXELS`` and ``MAX_STREAMED_ROWS`` for a streamed one
    (its time, against hostile headers); 0 is no limit."""
    limit = options.max_pixels
    if limit is None:
        limit = DEFAULT_MAX_STREAMED_PIXELS if streamed else DEFAULT_MAX_PIXELS
        if streamed and shape[-2] > MAX_STREAMED_ROWS:
            raise FileFailure(f"{path}: {shape[-2]:,} rows is more than a streamed image may "
                              f"have ({MAX_STREAMED_ROWS:,}); --max-pixels 0 lifts the limit")
    pixels = math.prod(shape[1:])
    if limit and pixels > limit:
        why = ("" if streamed else f" if the machine has the memory: {4 * shape[0]} bytes a "
               "pixel as float32, about 3 times over")
        raise FileFailure(f"{path}: {pixels:,} pixels is more than --max-pixels {limit:,}; "
                          f"raise it (0: no limit){why}")


@dataclass(frozen=True)
class _FilterPlan:
    """How a ``-k`` kernel runs on one image: its geometry and channel plan."""

    stride: tuple[int, int]
    padding: geometry.Padding
    dilation: tuple[int, int]
    groups: int
    out_channels: int


def _plan_job(operation: Operation | Stack, shape: tuple[int, ...], path: Path,
              options: ApplyOptions) -> _FilterPlan | Stack:
    """Check that ``operation`` can run on the image ``path`` of ``shape`` before anything is
    written for it (a FileFailure naming the image otherwise): the plan of a ``-k`` kernel on
    an image, or the stack that runs a ``--layer`` stack (and ``-k`` on a signal or a volume)."""
    if isinstance(operation, Stack) or len(shape) != 3 or \
            operation.kernels[0].weights.ndim not in (2, 4):
        stack = operation if isinstance(operation, Stack) else Stack(operation.name, (
            layer_for_operation(operation, stride=options.stride, padding=options.padding,
                                dilation=options.dilation),))
        try:
            explain_stack(shape, list(stack.layers))
        except UsageError as error:
            raise FileFailure(f"{path}: {error}") from None
        return stack
    channels, height, width = shape
    first = operation.kernels[0]
    stride, padding_spec, dilation = kernel_geometry(first, options.stride, options.padding,
                                                     options.dilation)
    padding = geometry.resolve_padding(
        padding_spec, first.size, stride_hw=stride, dilation_hw=dilation,
        size_hw=(height, width), strided_same=True)
    try:
        geometry.conv_output_hw((height, width), first.size, padding,
                                stride_hw=stride, dilation_hw=dilation,
                                what=f"{path}: image")
    except UsageError as error:  # the image, not the options, is the problem here
        raise FileFailure(str(error)) from None
    groups, out_channels = channel_plan(first, channels, path)
    return _FilterPlan(stride, padding, dilation, groups, out_channels)


@dataclass
class _Filtered:
    """One job's response, ready to write, and what the report says about how it was made."""

    maps: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int
    record: OutputRecord


def _filter_job(job: Job, plan: _FilterPlan, image: images.LoadedImage, options: ApplyOptions,
                *, into_input: bool = False) -> _Filtered:
    """Filter the image for one job; ``into_input`` lets the result overwrite the image's
    pixels (the last job: one image less in memory)."""
    channels, height, width = image.pixels.shape
    first = job.operation.kernels[0]
    stride, padding, dilation = plan.stride, plan.padding, plan.dilation
    groups, out_channels = plan.groups, plan.out_channels

    started, compiled_before = time.perf_counter(), compile_seconds()
    maps, paths = filter_operation(image.pixels, job.operation, pad_mode=options.pad_mode,
                                   flip=options.flip, stride=stride,
                                   pads=(padding.rows, padding.cols), dilation=dilation,
                                   engine_path=options.engine, into_input=into_input,
                                   path=image.path)
    compile_ms = round((compile_seconds() - compiled_before) * 1e3, 3)
    convolve_ms = round(max(_ms_since(started) - compile_ms, 0.0), 3)   # compiling reported apart

    alpha = None
    if image.alpha is not None and options.fmt == "png":
        alpha = _alpha_at_outputs(image.alpha, maps.shape[1:], first.size, stride, padding, dilation)
    record = OutputRecord(
        input=str(image.path), output=str(job.destination), kernel=job.operation.name,
        input_shape=[channels, height, width], output_shape=list(maps.shape),
        kernel_shape=[out_channels, channels // groups, *first.size], stride=list(stride),
        padding=padding.as_dict(), dilation=list(dilation), pad_mode=options.pad_mode,
        engine="+".join(dict.fromkeys(paths)), timings_ms=_timings(convolve_ms, compile_ms),
        megapixels_per_s=round(height * width / 1e6 / max(convolve_ms / 1e3, 1e-9), 2),
        layers=[LayerRun(layer=f"1: conv {'x'.join(map(str, first.size))} {job.operation.name}",
                         output_shape=list(maps.shape), engine="+".join(dict.fromkeys(paths)),
                         ms=convolve_ms)])
    return _Filtered(maps, alpha, _bit_depth(image, options), record)


def _write_job(job: Job, filtered: _Filtered, load_ms: float,
               options: ApplyOptions) -> OutputRecord:
    """Write (or stream) the response; complete the record with the load and write times and
    the share of pixels clipped (a warning above 1%)."""
    normalize = _normalize(job, filtered.maps, options)
    started = time.perf_counter()
    arguments = dict(fmt=options.fmt, alpha=filtered.alpha, bit_depth=filtered.bit_depth,
                     normalize=normalize, quality=options.quality)
    if job.to_stdout:
        rendered = images.render(filtered.maps, **arguments)
        rendered.write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        clipped = rendered.clipped_fraction
    elif options.split:
        clipped = np.mean([images.save_image(_beside(job.destination, f"c{index:02d}"),
                                             plane[np.newaxis], overwrite=options.overwrite,
                                             **arguments)
                           for index, plane in enumerate(filtered.maps)])
    else:
        clipped = images.save_image(job.destination, filtered.maps, overwrite=options.overwrite,
                                    **arguments)
    record = filtered.record
    record.timings_ms = {"load": load_ms, **record.timings_ms, "write": _ms_since(started)}
    record.clipped_fraction = round(float(clipped), 6)
    if clipped > CLIPPED_WARNING:
        print_warning(f"{record.output}: {clipped:.1%} of the values were clipped to the output's "
                      f"range (--normalize {normalize}); --normalize robust or minmax shows more "
                      "of them, --format tiff or npy keeps them all")
    return record


def _stack_job(job: Job, stack: Stack, image: images.LoadedImage,
               options: ApplyOptions) -> _Filtered:
    """Run a stack of layers (``--layer``; or ``-k`` on a signal or a volume) on the input."""

    def save_stage(number: int, title: str, maps: np.ndarray) -> None:
        if number < len(stack.layers):         # the last stage is the output itself
            stage = _beside(job.destination, f"stage{number:02d}-{_slug(title.split(': ', 1)[1])}")
            images.save_image(stage, maps, fmt=options.fmt, bit_depth=8,
                              normalize=_auto_normalize(stack, maps), overwrite=options.overwrite)

    maps, explanation, runs = run_stack(image.pixels, list(stack.layers), pad_mode=options.pad_mode,
                                        flip=options.flip, engine_path=options.engine,
                                        path=image.path,
                                        on_stage=save_stage if options.save_stages else None)
    convolve_ms = round(sum(run["ms"] for run in runs), 3)      # not the stages' writes
    compile_ms = round(sum(run.get("compile_ms", 0.0) for run in runs), 3)
    alpha = image.alpha if (image.alpha is not None and options.fmt == "png"
                            and maps.shape[1:] == image.pixels.shape[1:]) else None
    pixels = math.prod(image.pixels.shape[1:])
    record = OutputRecord(
        input=str(image.path), output=str(job.destination), kernel=stack.name,
        input_shape=list(image.pixels.shape), output_shape=list(maps.shape),
        **_one_layer_geometry(stack, explanation, options.pad_mode),
        engine="+".join(dict.fromkeys(r["engine"] for r in runs)),
        timings_ms=_timings(convolve_ms, compile_ms),
        megapixels_per_s=round(pixels / 1e6 / max(convolve_ms / 1e3, 1e-9), 2), layers=runs)
    return _Filtered(maps, alpha, _bit_depth(image, options), record)


def _one_layer_geometry(stack: Stack, explanation, pad_mode: str) -> dict:
    """The report's kernel_shape, stride, padding, dilation and pad_mode: those of a stack's
    only layer when it is a conv (``-k`` on a signal or a volume); null otherwise."""
    if len(stack.layers) != 1 or stack.layers[0].kind != "conv":
        return dict.fromkeys(("kernel_shape", "stride", "padding", "dilation", "pad_mode"))
    row = explanation.layers[0]
    layer = stack.layers[0].for_axes(len(row.input_shape) - 1)
    return {"kernel_shape": [row.output_shape[0], row.input_shape[0] // row.groups, *layer.kernel],
            "stride": list(layer.stride), "padding": row.padding_dict(),
            "dilation": list(layer.dilation), "pad_mode": layer.border_mode(pad_mode)}


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


def _bit_depth(image, options: ApplyOptions) -> int:
    """``--bit-depth``, else 16 for a 16-bit input (an ``images.LoadedImage`` or a streamed
    reader: its ``bit_depth``) written as PNG, else 8."""
    return options.bit_depth or (16 if image.bit_depth >= 16 and options.fmt == "png" else 8)


def _beside(destination: Path, suffix: str) -> Path:
    """``out/photo_net.png`` -> ``out/photo_net_{suffix}.png``."""
    return destination.with_name(f"{destination.stem}_{suffix}{destination.suffix}")


def _slug(text: str, default: str = "layer") -> str:
    """File-name-safe text: ``conv 3x3 sobel-x`` -> ``conv-3x3-sobel-x``."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-.") or default


def _normalize(job: Job, maps: np.ndarray, options: ApplyOptions) -> str:
    """The --normalize mode a job's maps are written with (``auto`` decided here)."""
    return _auto_normalize(job.operation, maps) if options.normalize == "auto" else options.normalize


def _auto_normalize(operation: Operation | Stack, maps: np.ndarray) -> str:
    """``--normalize auto``: zero-sum kernels (edges, Laplacian, DoG, high-pass, and the
    gradient magnitude or compass maximum of such kernels) as ``robust`` (magnitude up to its
    99.5th percentile: visible whatever the kernel's gain) unless ``--bias`` lifts them into
    view, other kernels' responses as they are (``clip``); a stack's maps as they are when
    they lie in [0, 1], else stretched
    (``minmax``): random or learned weights have no natural range."""
    if isinstance(operation, Stack):
        finite = maps[np.isfinite(maps)]
        inside = finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0)
        return "clip" if inside else "minmax"
    zero_sum = all(kernel.is_zero_sum for kernel in operation.kernels)
    return "robust" if zero_sum and not operation.bias else "clip"      # a bias lifts negatives


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1e3, 3)
