"""The ``convcli`` command line: parses options, calls the pipeline, prints reports.

No numerics and no Pillow here; the pipeline (and with it NumPy and, on first use,
Numba) is imported inside the commands so ``convcli --help`` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .choices import (BENCH_CASES, BIT_DEPTHS, ENGINE_CHOICES, NORMALIZE_CHOICES, OUTPUT_FORMATS,
                      PADDING_MODES, PADDING_WORDS, POOL_MODES, REPORT_CHOICES)
from .errors import (ConvcliError, UsageError, check_choice, print_error, print_note,
                     print_warning, route_warnings)
from .numerals import whole_number

# Typer's --install-completion / --show-completion on the root: completion runs convcli with
# _CONVCLI_COMPLETE set, which main() passes through like any other run.
app = typer.Typer(
    help="Convolution filters for images: named kernels or YAML kernels, any stride, "
         "padding, border mode and dilation, with a shape/timing report.",
    no_args_is_help=True, pretty_exceptions_enable=False,
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
kernels_app = typer.Typer(help="List the built-in and library kernels, or show one.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(kernels_app, name="kernels")

IMAGE_HINT = (".png", ".jpg", ".tif")


def _completion(words):
    """Shell completion of an option's value: the words that start as typed."""
    return lambda incomplete: [word for word in words if word.startswith(incomplete)]


def _one_of(choices) -> dict:
    """Option settings for one word of ``choices``: the metavar ``a|b|c`` and shell completion
    of the words (the command checks the value and says what is valid)."""
    words = tuple(map(str, choices))
    return {"metavar": "|".join(words), "autocompletion": _completion(words)}


def _kernel_names(incomplete: str) -> list[str]:
    """Shell completion of -k: kernel names (nothing for a file name: the shell completes it)."""
    from .kernels import list_kernels

    return [info.name for info in list_kernels() if info.name.startswith(incomplete)]


# Metavars of the options that take sizes: one number for every axis, or one per axis.
SIZES = "N|H,W"
PADDING = "|".join(PADDING_WORDS) + "|" + SIZES


def _examples(*commands: str) -> str:
    """A command's epilog: example command lines, kept as written (the \\b stops the help
    formatter from joining them into one paragraph). Each runs from the repository's root."""
    return "Examples:\n\n\b\n" + "\n".join(f"  {command}" for command in commands)


def _version(value: bool) -> None:
    if value:
        print(f"convcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
    version: Annotated[Optional[bool], typer.Option(
        "--version", "-V", callback=_version, is_eager=True,
        help="Print the version and exit.")] = None,
) -> None:
    """Convolution filters for images."""


def parse_sizes(text: Optional[str], option: str, *, minimum: int = 1) -> Optional[tuple[int, ...]]:
    """``"2"`` -> (2,) (every axis), ``"2,3"`` -> (2, 3), ``"2,3,3"`` -> (2, 3, 3), ``None`` -> None."""
    if text is None:
        return None
    numbers = [whole_number(p) for p in text.split(",")]
    if len(numbers) not in (1, 2, 3) or None in numbers:
        kind = "positive integer" if minimum else "integer >= 0"
        raise UsageError(f"{option} takes a {kind} N, or one per axis (H,W or D,H,W); got {text!r}")
    from .geometry import ntuple

    return ntuple(tuple(numbers), len(numbers), option, minimum=minimum)


def parse_padding(text: Optional[str]):
    """``same``/``valid``/``full``, ``N`` or ``H,W`` (each >= 0)."""
    if text is None:
        return None
    word = text.strip().lower()
    if word in PADDING_WORDS:
        return word
    values = tuple(whole_number(p) for p in word.split(","))
    if len(values) not in (1, 2) or None in values:
        raise UsageError(f"--padding takes {', '.join(PADDING_WORDS)}, N or H,W (N >= 0); "
                         f"got {text!r}")
    return values if len(values) == 2 else values[0]


@app.command(epilog=_examples(
    "convcli apply samples/coins.png -k sobel -o out/",
    "convcli apply 'samples/*.png' -k gaussian:sigma=2 -k sobel -o filtered/"))
def apply(
    ctx: typer.Context,
    images: Annotated[list[str], typer.Argument(
        help="Image files, folders, glob patterns; '-' reads paths from stdin; 'png:-' (any "
             "FORMAT:-) reads one image from stdin.", metavar="IMAGE...", show_default=False)],
    output: Annotated[str, typer.Option(
        "--output", "-o", metavar="DIR|FILE|FMT:-", show_default=False,
        help="Output folder (a path without a suffix, or ending in /); or a file for one image "
             "and one kernel, its format from the suffix (.png .jpg .webp .bmp .gif .tif .npy); "
             "or png:- / jpg:- / tiff:- / npy:- for standard output.")],
    kernel: Annotated[Optional[list[str]], typer.Option(
        "--kernel", "-k", metavar="SPEC", autocompletion=_kernel_names, show_default=False,
        help="Kernel: NAME[:key=value,...], a library name, or a YAML file. Repeatable: one "
             "output per kernel.")] = None,
    layer: Annotated[Optional[list[str]], typer.Option(
        help="A layer of a stack, in order (conv:kernel=sobel-x, conv:k=3,c=8,init=random, relu, "
             "pool:k=2, tconv:..., shuffle:g=2, bias:value=0.1), or a YAML file of layers. "
             "Repeatable: one output for the whole stack. Instead of -k.", metavar="SPEC|FILE",
        show_default=False)] = None,
    save_stages: Annotated[bool, typer.Option(
        "--save-stages", help="With --layer: also write every layer's maps "
                              "({stem}_{kernel}_stage01-....{ext}).")] = False,
    split: Annotated[bool, typer.Option(
        "--split", help="PNG: one file per feature map ({stem}_{kernel}_c00.png, ...) instead of "
                        "one grid of all maps.")] = False,
    compare: Annotated[bool, typer.Option(
        "--compare", help="Also write a before/after sheet per input, {stem}_compare.png beside "
                          "its outputs: the input and every output, side by side.")] = False,
    stride: Annotated[Optional[str], typer.Option(
        help="Step in pixels, one for both axes or H,W. Default: the kernel's, else 1.",
        metavar=SIZES, show_default=False)] = None,
    padding: Annotated[Optional[str], typer.Option(
        help="Pixels added on each side (N or H,W), or same (output as large as the input), "
             "valid (none) or full. Default: the kernel's, else same.", metavar=PADDING,
        show_default=False)] = None,
    pad_mode: Annotated[str, typer.Option(
        "--pad-mode", help="What the padding holds, shown for a row abcd: zeros 000|abcd|000, "
                           "reflect dcb|abcd|cba, replicate aaa|abcd|ddd, circular "
                           "bcd|abcd|abc, symmetric cba|abcd|dcb.",
        **_one_of(PADDING_MODES))] = "reflect",
    dilation: Annotated[Optional[str], typer.Option(
        help="Spacing of the kernel's taps (one for both axes or H,W). Default: the kernel's, "
             "else 1.", metavar=SIZES, show_default=False)] = None,
    flip: Annotated[bool, typer.Option(
        "--flip", help="True convolution (kernel flipped) instead of cross-correlation.")] = False,
    scale: Annotated[float, typer.Option(
        help="Multiply each -k kernel's weights (OpenCV filter2D's kernel * scale).",
        metavar="S")] = 1.0,
    bias: Annotated[float, typer.Option(
        help="Add to every -k output, after a sobel-like operation combines its kernels "
             "(ImageMagick's -bias 50% is 0.5; OpenCV's delta).", metavar="B")] = 0.0,
    normalize: Annotated[str, typer.Option(
        help="Responses to pixels (picture formats). auto: robust for zero-sum kernels (edges), "
             "else clip.", **_one_of(NORMALIZE_CHOICES))] = "auto",
    fmt: Annotated[Optional[str], typer.Option(
        "--format", help="png (8/16-bit); jpeg, webp, bmp, gif (8-bit); tiff (float32 raw) or "
                         "npy (raw C,H,W). Default: from -o's suffix, else png.",
        show_default=False, **_one_of(OUTPUT_FORMATS))] = None,
    quality: Annotated[int, typer.Option(help="JPEG and WebP quality.", metavar="1-100")] = 95,
    max_pixels: Annotated[Optional[int], typer.Option(
        "--max-pixels", help="Fail inputs with more pixels (or voxels) than this; 0: no limit. "
                             "Default: 250,000,000; streamed images: 2^36, and 2^24 rows.",
        metavar="N", show_default=False)] = None,
    max_memory: Annotated[Optional[str], typer.Option(
        "--max-memory", help="Stream 2-D images (a TIFF page, PNG, JPEG, ...) larger than this "
                             "as float32 (or of 10 megapixels or more) in strips, to --format "
                             "png or tiff (tiled BigTIFF); larger inputs that cannot stream "
                             "fail. Bytes or K/M/G; 0: no limit, never streamed but with "
                             "--stream. Default: 1G.",
        metavar="SIZE", show_default=False)] = None,
    stream: Annotated[bool, typer.Option(
        "--stream", help="Stream every image that can be (see --max-memory)."
    )] = False,
    max_kernel: Annotated[int, typer.Option(
        "--max-kernel", help="Refuse kernels with a side larger than this; 0: no limit.",
        metavar="N")] = 1025,
    max_yaml_bytes: Annotated[int, typer.Option(
        "--max-yaml-bytes", help="Refuse kernel YAML files larger than this; 0: no limit.",
        metavar="N")] = 16_000_000,
    bit_depth: Annotated[Optional[int], typer.Option(
        "--bit-depth", help="PNG bit depth. Default: 16 for 16-bit inputs, else 8.",
        show_default=False, **_one_of(BIT_DEPTHS))] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Leave outputs that exist; make only the missing ones (resume).")] = False,
    gray: Annotated[bool, typer.Option("--gray", help="Convert to one luminance channel first.")] = False,
    engine: Annotated[str, typer.Option(
        help="Engine path; auto chooses by a cost model.", **_one_of(ENGINE_CHOICES))] = "auto",
    recursive: Annotated[bool, typer.Option(
        "--recursive", "-r", help="Descend into folders; mirror their sub-folders under -o.")] = False,
    name: Annotated[str, typer.Option(
        help="Output name template; fields {stem}, {kernel}, {ext}, {parent}.",
        metavar="TEMPLATE")] = "{stem}_{kernel}.{ext}",
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", help="Worker processes. Default: one per core for 2 x cores images or "
                             "more, else 1 (Numba threads share the cores).", metavar="N",
        show_default=False)] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        "--scheduler", envvar="DASK_SCHEDULER_ADDRESS", metavar="tcp://HOST:PORT|local",
        help="Run the files as tasks on the Dask cluster of this scheduler (pip install "
             "'convcli[dask]'; its workers need the same convcli and the files at the same "
             "paths; an image past --max-memory is streamed here, its strips tasks); "
             "local: this machine's worker processes. Default: "
             "$DASK_SCHEDULER_ADDRESS, else local.", show_default=False,
        show_envvar=False)] = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed file.")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="List what would be written, and what becomes of outputs that "
                          "exist; write nothing.")] = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bar, table, summary or notes; errors, warnings and "
                              "--report json still print.")] = False,
    report: Annotated[str, typer.Option(
        help="table (for people), json (JSON Lines) or none.",
        **_one_of(REPORT_CHOICES))] = "table",
    report_file: Annotated[Optional[Path], typer.Option(
        "--report-file", help="Write the JSON Lines report here instead of stdout.",
        metavar="FILE", show_default=False)] = None,
) -> None:
    """Apply kernels (or a stack of layers) to images and write the feature maps."""
    from . import batch, kernels, pipeline
    from .inputs import expand_inputs, is_stream

    if bool(kernel) == bool(layer):
        raise UsageError("give -k KERNEL (one output per kernel) or --layer (a stack: one output), "
                         "not both" if kernel else "give -k KERNEL or --layer LAYER (see --help)")
    if layer and any(v is not None for v in (stride, padding, dilation)):
        raise UsageError("--stride, --padding and --dilation set a -k kernel's geometry; with "
                         "--layer put them in the layer specs (e.g. --layer conv:k=3,s=2,p=1)")
    if layer and (scale, bias) != (1.0, 0.0):
        raise UsageError("--scale and --bias change -k kernels; in a --layer stack put the scale in "
                         "the kernel (a YAML kernel's scale:) and the bias in a layer (--layer "
                         "bias:value=B)")
    if save_stages and not layer:
        raise UsageError("--save-stages writes the maps of every --layer; give --layer")
    if (save_stages or split) and is_stream(output):
        raise UsageError(f"--save-stages and --split write several files; -o {output} is one stream")
    if compare and (is_stream(output) or (Path(output).suffix.lower() in pipeline.OUTPUT_SUFFIXES
                                          and not Path(output).is_dir())):
        raise UsageError(f"--compare writes a sheet beside the outputs; -o {output} is one "
                         f"{'stream' if is_stream(output) else 'file'}: give a folder")

    check_choice("--report", report, REPORT_CHOICES)
    if report_file is not None and report == "table":
        report = "json"                          # a report file implies JSON Lines
    if overwrite and skip_existing:
        raise UsageError("--overwrite and --skip-existing contradict each other; give one")
    if is_stream(output) and report == "json" and report_file is None:
        raise UsageError(f"-o {output} writes the image to stdout; send the JSON report to a file "
                         "with --report-file")
    options = pipeline.ApplyOptions(
        stride=parse_sizes(stride, "--stride"), padding=parse_padding(padding), pad_mode=pad_mode,
        dilation=parse_sizes(dilation, "--dilation"), flip=flip, normalize=normalize,
        fmt=pipeline.output_format(output, fmt), bit_depth=bit_depth, overwrite=overwrite,
        gray=gray, engine=engine, save_stages=save_stages, split=split, quality=quality,
        scale=scale, bias=bias, **({} if max_pixels is None else {"max_pixels": max_pixels}),
        max_memory=_max_memory(max_memory), stream=stream)
    scheduler = _scheduler(scheduler, images, output)
    settings = batch.BatchSettings(
        jobs=jobs, fail_fast=fail_fast, skip_existing=skip_existing, dry_run=dry_run, quiet=quiet,
        report=report, report_file=report_file, debug=ctx.find_root().params.get("debug", False),
        scheduler=scheduler)
    for option, limit in (("--max-kernel", max_kernel), ("--max-yaml-bytes", max_yaml_bytes)):
        if limit < 0:
            raise UsageError(f"{option} must be >= 0 (0: no limit); got {limit}")
    operations = ([kernels.resolve(spec, max_kernel=max_kernel, max_yaml_bytes=max_yaml_bytes)
                   for spec in kernel] if kernel else [_stack_from_options(layer)])
    expansion = expand_inputs(images, recursive=recursive,
                              exclude=pipeline.output_folder(output))
    for path in expansion.not_images:
        print_warning(f"{path}: not an image file name ({', '.join(IMAGE_HINT)}, ...); skipped")
    for message in expansion.bad_links:
        print_warning(message)
    failures = expansion.failures()
    if not expansion.sources and not failures:
        print_warning("no images to process")
        return
    stdin_data = sys.stdin.buffer.read() if any(s.from_stdin for s in expansion.sources) else None
    plan = pipeline.plan_outputs(expansion.sources, operations, output, options, name)
    if not plan and not failures:
        print_warning("no images to process (the inputs are this run's own outputs)")
        return
    if compare:
        plan = pipeline.compare_sheets(plan, output, name)
    pipeline.check_jobs_up_front(plan, options)
    pipeline.check_output_folder(output, create=not dry_run)      # last check: it makes -o
    code = batch.run_batch(plan, options, settings, stdin_data=stdin_data,
                           failed_before=failures)
    if code:
        raise typer.Exit(code)


def _max_memory(text: Optional[str]) -> int:
    from .stream import parse_memory

    return parse_memory(text)


def _scheduler(address: Optional[str], images: list[str], output: str) -> Optional[str]:
    """``--scheduler`` (or $DASK_SCHEDULER_ADDRESS) -> the address, None for the local pool.
    Checked before any work, without importing Dask: the address's form, that Dask is
    installed, and that every input and output is a file the workers can reach."""
    if not address:
        return None
    from .cluster import check_installed, parse_address
    from .inputs import is_stream

    address = parse_address(address)
    if address is None:
        return None
    streams = [spelling for spelling in images if is_stream(spelling)] + (
        [f"-o {output}"] if is_stream(output) else [])
    if streams:
        raise UsageError(f"--scheduler runs the files on the cluster's workers, which cannot "
                         f"read this process's stdin or write its stdout ({', '.join(streams)}); "
                         "give files (on a file system the workers share), or --scheduler local")
    check_installed()
    return address


def _stack_from_options(specs: list[str]):
    """The stack ``--layer`` names; called ``{kernel}`` in output names: the YAML file's stem
    when one file gives the layers, else ``stack``."""
    from .layers import Stack, check_runnable, layers_from_specs

    layers = layers_from_specs(specs)
    check_runnable(layers)
    single_file = len(specs) == 1 and specs[0].lower().endswith((".yaml", ".yml"))
    return Stack(Path(specs[0]).stem if single_file else "stack", tuple(layers))


@app.command(epilog=_examples(
    "convcli explain samples/chelsea.png -k 5 --stride 2 --padding same",
    "convcli explain --size 224 --layer conv:k=3,s=2,p=1,c=16 --layer pool:k=2"))
def explain(
    image: Annotated[Optional[Path], typer.Argument(
        help="An image: its size and channels are read from the header only.", metavar="IMAGE",
        show_default=False)] = None,
    size: Annotated[Optional[str], typer.Option(
        help="Input size (instead of an image): N (a square image), H,W, D,H,W; with --dims 1, L.",
        metavar="N|H,W|D,H,W", show_default=False)] = None,
    kernel: Annotated[Optional[str], typer.Option(
        "--kernel", "-k", metavar="K|H,W|SPEC", show_default=False,
        help="Kernel size K or H,W, or a kernel spec (gaussian:sigma=2, a YAML file).")] = None,
    stride: Annotated[Optional[str], typer.Option(help="Default 1; pool: the kernel.",
                                                  metavar=SIZES, show_default=False)] = None,
    padding: Annotated[Optional[str], typer.Option(
        help="Default: 0, or same for a kernel spec (as apply).", metavar=PADDING,
        show_default=False)] = None,
    dilation: Annotated[Optional[str], typer.Option(help="Default 1.", metavar=SIZES,
                                                    show_default=False)] = None,
    in_channels: Annotated[Optional[int], typer.Option(
        "--in-channels", help="Input channels with --size (default 1).", metavar="C",
        show_default=False)] = None,
    out_channels: Annotated[Optional[int], typer.Option(
        "--out-channels", help="Output channels (default: as many as in).", metavar="C",
        show_default=False)] = None,
    groups: Annotated[int, typer.Option(help="Channel groups of the convolution.",
                                        metavar="G")] = 1,
    transposed: Annotated[bool, typer.Option("--transposed", help="A transposed convolution.")] = False,
    output_padding: Annotated[Optional[str], typer.Option(
        "--output-padding", help="Extra output rows/columns of a transposed convolution.",
        metavar=SIZES, show_default=False)] = None,
    pool: Annotated[Optional[str], typer.Option(help="Pooling instead of a convolution.",
                                                show_default=False, **_one_of(POOL_MODES))] = None,
    ceil_mode: Annotated[bool, typer.Option("--ceil-mode", help="Pooling rounds up.")] = False,
    layer: Annotated[Optional[list[str]], typer.Option(
        help="A layer of a stack, e.g. conv:k=3,s=1,p=1,c=16 or pool:k=2; or a YAML file of layers. "
             "Repeatable.", metavar="SPEC|FILE", show_default=False)] = None,
    gray: Annotated[bool, typer.Option("--gray", help="Count the image as one channel.")] = False,
    dims: Annotated[Optional[int], typer.Option(
        help="Spatial axes with --size: 1 (a signal), 2 (an image) or 3 (a volume). Default: "
             "as many as --size gives; one number is a square image.", metavar="1|2|3",
        show_default=False)] = None,
    batch: Annotated[int, typer.Option(
        help="Count N inputs at once: MACs and im2col columns of the batch (N, C, ...).",
        metavar="N")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts.")] = False,
) -> None:
    """Print the output-size formula with the real numbers put in, step by step."""
    import json

    from . import explain as explaining
    from .explain import input_shape_for, layer_from_options, layers_from_specs

    if batch < 1:
        raise UsageError(f"--batch must be >= 1; got {batch}")
    shape = input_shape_for(image, parse_sizes(size, "--size"), in_channels, gray, dims)
    if layer:
        single = {"--kernel": kernel, "--stride": stride, "--padding": padding, "--dilation": dilation,
                  "--pool": pool, "--output-padding": output_padding}
        given = [name for name, value in single.items() if value is not None] + (
            ["--transposed"] if transposed else [])
        if given:
            raise UsageError(f"{', '.join(given)} describe one layer; with --layer put them in the "
                             "layer specs instead (e.g. --layer conv:k=3,s=2,p=1)")
        result = explaining.explain_stack(shape, layers_from_specs(layer), batch=batch)
    else:
        if kernel is None:
            raise UsageError("give --kernel (a size like 3 or 3,5, or a kernel spec), or --layer")
        one = layer_from_options(
            shape, kernel=kernel, stride=parse_sizes(stride, "--stride"),
            padding=parse_padding(padding), dilation=parse_sizes(dilation, "--dilation"),
            out_channels=out_channels, groups=groups, transposed=transposed,
            output_padding=parse_sizes(output_padding, "--output-padding", minimum=0),
            pool=pool, ceil_mode=ceil_mode)
        result = explaining.explain_layer(shape, one, what=str(image) if image else "input",
                                          batch=batch)
    print(json.dumps(result.as_dict()) if as_json else explaining.render_text(result))


@app.command(epilog=_examples(
    "convcli bench --case dense3 --case separable --repeat 3",
    "convcli bench --case end-to-end --json bench.json"))
def bench(
    case: Annotated[Optional[list[str]], typer.Option(
        help=f"A case to run (repeatable); default: all but scale-tiff (a 20000x20000 TIFF "
             f"streamed: minutes). Cases: {', '.join(BENCH_CASES)}.",
        metavar="CASE", autocompletion=_completion(BENCH_CASES),
        show_default=False)] = None,
    repeat: Annotated[int, typer.Option(help="Timed runs per measurement (median).",
                                        metavar="N")] = 5,
    json_file: Annotated[Optional[Path], typer.Option(
        "--json", help="Also write the results as JSON here.", metavar="FILE",
        show_default=False)] = None,
) -> None:
    """Time convcli against OpenCV, scipy, torch, libvips and a shell loop, in one run
    (medians, ratios).

    The scale-* cases are issue #15's targets on large images, whole processes against
    libvips where pyvips imports (here, or in the Python CONVCLI_BENCH_VIPS_PYTHON names):
    scale-png (10000x10000 PNG, gaussian:sigma=3), scale-sobel (4096x4096 PNG, Sobel) and
    scale-tiff (20000x20000 tiled TIFF streamed, with its output checked against the
    in-memory result on sampled windows), which takes minutes and runs only when named.
    Engine cases' convcli rows also give GFLOP/s (2 per multiply-add the case needs) and its
    share of this machine's float32 FMA peak, measured first by a register-only loop.
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from .bench import as_json, machine_summary, missing_references, peak_summary, run_cases

    if repeat < 1:
        raise UsageError(f"--repeat must be >= 1; got {repeat}")
    for line in missing_references():
        print_note(line)
    results = run_cases(case or [], repeat)
    peak = peak_summary()
    table = Table(title=f"convcli bench: {machine_summary()}; medians of {repeat}"
                        + (f"; {peak}" if peak else ""), title_justify="left")
    for column, justify in (("tool", "left"), ("median", "right"), ("convcli / tool", "right"),
                            ("GFLOP/s (peak %)", "right"), ("note", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    case_seen = None
    for r in results:
        if r.case != case_seen:
            table.add_section()
            table.add_row(f"[bold]{r.case}[/bold]")
            case_seen = r.case
        table.add_row(f"  {r.tool}", f"{r.ms:.2f} {r.unit}",
                      "" if r.ratio is None else f"{r.ratio:.2f}x", _gflops_cell(r), r.note)
    Console(width=max(Console().width, 110)).print(table)
    if json_file is not None:
        json_file.write_text(json.dumps(as_json(results), indent=2) + "\n", encoding="utf-8")


def _gflops_cell(row) -> str:
    """``27.3 (21%)``: a bench row's GFLOP/s and its share of the measured FMA peak."""
    if row.gflops is None:
        return ""
    return f"{row.gflops:.1f}" + ("" if row.peak_share is None else f" ({row.peak_share:.0%})")


@app.command(epilog=_examples("convcli warmup", "NUMBA_CACHE_DIR=/opt/convcli-cache convcli warmup"))
def warmup(
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the seconds and the cache folder as JSON.")] = False,
) -> None:
    """Compile the engine's loops now (or find them cached), so no later run waits on them.

    Runs do this by themselves in the background the first time (and use NumPy meanwhile);
    container images and CI runners can do it once after installing. It prints the seconds
    each compiled loop took (cached: already there) and where the cache is: one folder per
    machine and convcli version, shared by every environment (NUMBA_CACHE_DIR moves it).
    """
    import json

    from .engine.warmup import cache_folder, warm_up

    seconds = warm_up()
    if as_json:
        print(json.dumps({"seconds": seconds, "total": round(sum(seconds.values()), 3),
                          "cache": cache_folder()}))
        return
    for name, taken in seconds.items():
        print(f"{name:16} {'cached' if taken == 0 else f'compiled in {taken:.1f} s'}")
    print(f"total compile time: {sum(seconds.values()):.1f} s; cache: {cache_folder()}")


@kernels_app.command("list", epilog=_examples(
    "convcli kernels list --names",
    "convcli kernels list --json"))
def kernels_list(
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON array of objects (name, size, kind, description) for "
                       "scripts.")] = False,
    names: Annotated[bool, typer.Option(
        "--names", help="Only the names, one per line (for scripts and shell loops).")] = False,
) -> None:
    """List every kernel: built-ins, operations and the YAML library."""
    from .kernels import list_kernels

    if as_json and names:
        raise UsageError("--json and --names are two ways to print the list; give one")
    infos = list_kernels()
    if names:
        print("\n".join(info.name for info in infos))
        return
    if as_json:
        import json
        from dataclasses import asdict

        print(json.dumps([asdict(info) for info in infos]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="convcli kernels", title_justify="left")
    for column in ("name", "size", "kind", "description"):
        table.add_column(column, overflow="fold")
    for info in infos:
        table.add_row(info.name, info.size, info.kind, info.description)
    Console().print(table)


@kernels_app.command("show", epilog=_examples(
    "convcli kernels show gaussian:sigma=1.5",
    "convcli kernels show sobel --png sobel.png"))
def kernels_show(
    spec: Annotated[str, typer.Argument(help="Kernel spec, e.g. gaussian:sigma=1.5",
                                        metavar="SPEC", autocompletion=_kernel_names)],
    png: Annotated[Optional[Path], typer.Option(
        "--png", help="Also draw it into this PNG: a heat map of the weights and the frequency "
                      "response |H|, one row per kernel.", metavar="FILE",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace an existing --png file.")] = False,
) -> None:
    """Print a kernel's matrix, its sum and whether it is separable; --png also draws it."""
    from .kernels import render_kernel, resolve

    operation = resolve(spec)
    text = render_kernel(operation)
    if png is not None:
        if png.suffix.lower() != ".png":
            raise UsageError(f"--png {png}: the file name must end in .png")
        from .images import save_picture
        from .pictures import kernel_picture

        picture = kernel_picture([(kernel.name, kernel.weights) for kernel in operation.kernels],
                                 title=text.splitlines()[0])
        save_picture(png, picture, overwrite=overwrite)
    print(text)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app, turning every user error into one line and an exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    if debug:                       # accepted anywhere, as the root option it is
        args = ["--debug"] + [arg for arg in args if arg != "--debug"]
    else:
        route_warnings()
    try:
        code = app(args=args, prog_name="convcli", standalone_mode=False)
    except ConvcliError as error:
        if debug:
            raise
        print_error(str(error))
        code = error.exit_code
    except typer.TyperException as error:  # Typer's own usage errors: bad or missing options
        if debug:
            raise
        if type(error).__name__ == "NoArgsIsHelpError":
            print(error.format_message())
        else:
            command = getattr(getattr(error, "ctx", None), "command_path", "convcli")
            print_error(f"{error.format_message()} (see '{command} --help')")
        code = getattr(error, "exit_code", 2)
    except typer.Abort:
        code = 130
    sys.exit(code or 0)
