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
from .errors import ConvcliError, FileFailure, UsageError

app = typer.Typer(
    help="Convolution filters for images: named kernels or YAML kernels, any stride, "
         "padding, border mode and dilation, with a shape/timing report.",
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})
kernels_app = typer.Typer(help="List the built-in and library kernels, or show one.",
                          no_args_is_help=True, rich_markup_mode=None)
app.add_typer(kernels_app, name="kernels")

REPORT_CHOICES = ("table", "json", "none")


def _print_error(message: str) -> None:
    """One line on stderr, never wrapped."""
    print(f"convcli: error: {message}", file=sys.stderr, flush=True)


def _report_failure(message: str, ctx: typer.Context) -> None:
    """One line for a failed file; with --debug also the traceback of the exception."""
    if ctx.find_root().params.get("debug"):
        import traceback

        traceback.print_exc()
    _print_error(message)


def _version(value: bool) -> None:
    if value:
        print(f"convcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Convolution filters for images."""


def parse_pair(text: Optional[str], option: str, *, minimum: int = 1) -> Optional[tuple[int, int]]:
    """``"2"`` -> (2, 2), ``"2,3"`` -> (2, 3), ``None`` -> None."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        kind = "positive integer" if minimum else "integer >= 0"
        raise UsageError(f"{option} takes a {kind} N or a pair H,W; got {text!r}")
    from .geometry import pair

    return pair(tuple(int(p) for p in parts) if len(parts) == 2 else int(parts[0]), option,
                minimum=minimum)


def parse_padding(text: Optional[str]):
    """``same``/``valid``/``full``, ``N`` or ``H,W`` (each >= 0)."""
    if text is None:
        return None
    word = text.strip().lower()
    if word in ("same", "valid", "full"):
        return word
    parts = [p.strip() for p in word.split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise UsageError(f"--padding takes same, valid, full, N or H,W (N >= 0); got {text!r}")
    values = tuple(int(p) for p in parts)
    return values if len(values) == 2 else values[0]


@app.command()
def apply(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(help="Image files to filter.", show_default=False)],
    kernel: Annotated[list[str], typer.Option(
        "--kernel", "-k", show_default=False,
        help="Kernel: NAME[:key=value,...], a library name, or a YAML file. Repeatable.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", show_default=False,
        help="Output folder ({stem}_{kernel}.{ext}), or a file for one image and one kernel.")],
    stride: Annotated[Optional[str], typer.Option(
        help="N or H,W. Default: the kernel's, else 1.", show_default=False)] = None,
    padding: Annotated[Optional[str], typer.Option(
        help="same, valid, full, N or H,W. Default: the kernel's, else same.",
        show_default=False)] = None,
    pad_mode: Annotated[str, typer.Option(
        "--pad-mode", help="Border: zeros, reflect, replicate, circular or symmetric.")] = "reflect",
    dilation: Annotated[Optional[str], typer.Option(
        help="N or H,W. Default: the kernel's, else 1.", show_default=False)] = None,
    flip: Annotated[bool, typer.Option(
        "--flip", help="True convolution (kernel flipped) instead of cross-correlation.")] = False,
    normalize: Annotated[str, typer.Option(
        help="Responses to pixels: auto, clip, abs, minmax or offset (PNG only). "
             "auto: abs for zero-sum kernels, else clip.")] = "auto",
    fmt: Annotated[str, typer.Option(
        "--format", help="png (8/16-bit), tiff (float32 raw) or npy (raw C,H,W).")] = "png",
    bit_depth: Annotated[Optional[int], typer.Option(
        "--bit-depth", help="PNG bit depth, 8 or 16. Default: 16 for 16-bit inputs, else 8.",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")] = False,
    gray: Annotated[bool, typer.Option("--gray", help="Convert to one luminance channel first.")] = False,
    engine: Annotated[str, typer.Option(help="Engine path: auto, direct or separable.")] = "auto",
    report: Annotated[str, typer.Option(
        help="table (for people), json (JSON Lines on stdout) or none.")] = "table",
) -> None:
    """Apply kernels to images and write one feature-map image per kernel."""
    from . import kernels, pipeline
    from .report import json_line, records_table

    if report not in REPORT_CHOICES:
        raise UsageError(f"--report must be one of {', '.join(REPORT_CHOICES)}; got {report!r}")
    options = pipeline.ApplyOptions(
        stride=parse_pair(stride, "--stride"), padding=parse_padding(padding), pad_mode=pad_mode,
        dilation=parse_pair(dilation, "--dilation"), flip=flip, normalize=normalize, fmt=fmt,
        bit_depth=bit_depth, overwrite=overwrite, gray=gray, engine=engine)
    operations = [kernels.resolve(spec) for spec in kernel]
    jobs = pipeline.plan_outputs(images, operations, output, options)

    records, failures = [], 0
    for source in dict.fromkeys(job.source for job in jobs):
        try:
            done = pipeline.apply_to_image(source, [j for j in jobs if j.source == source], options)
        except FileFailure as failure:
            _report_failure(str(failure), ctx)
            failures += 1
            continue
        except MemoryError:
            _report_failure(f"{source}: not enough memory to filter this image", ctx)
            failures += 1
            continue
        for record in done:
            if report == "json":
                print(json_line(record.as_dict()), flush=True)
        records.extend(record.as_dict() for record in done)
    if report == "table" and records:
        from rich.console import Console

        Console().print(records_table(records))
    if failures:
        raise typer.Exit(1)


@app.command()
def explain(
    image: Annotated[Optional[Path], typer.Argument(
        help="An image: its size and channels are read from the header only.", show_default=False)] = None,
    size: Annotated[Optional[str], typer.Option(help="Input size H or H,W (instead of an image).",
                                                show_default=False)] = None,
    kernel: Annotated[Optional[str], typer.Option(
        "--kernel", "-k", show_default=False,
        help="Kernel size K or H,W, or a kernel spec (gaussian:sigma=2, a YAML file).")] = None,
    stride: Annotated[Optional[str], typer.Option(help="N or H,W (default 1; pool: the kernel).",
                                                  show_default=False)] = None,
    padding: Annotated[Optional[str], typer.Option(
        help="same, valid, full, N or H,W. Default: 0, or same for a kernel spec (as apply).",
        show_default=False)] = None,
    dilation: Annotated[Optional[str], typer.Option(help="N or H,W (default 1).",
                                                    show_default=False)] = None,
    in_channels: Annotated[Optional[int], typer.Option(
        "--in-channels", help="Input channels with --size (default 1).", show_default=False)] = None,
    out_channels: Annotated[Optional[int], typer.Option(
        "--out-channels", help="Output channels (default: as many as in).", show_default=False)] = None,
    groups: Annotated[int, typer.Option(help="Channel groups of the convolution.")] = 1,
    transposed: Annotated[bool, typer.Option("--transposed", help="A transposed convolution.")] = False,
    output_padding: Annotated[Optional[str], typer.Option(
        "--output-padding", help="Extra output rows/columns of a transposed convolution (N or H,W).",
        show_default=False)] = None,
    pool: Annotated[Optional[str], typer.Option(help="Pooling instead of a convolution: max or avg.",
                                                show_default=False)] = None,
    ceil_mode: Annotated[bool, typer.Option("--ceil-mode", help="Pooling rounds up.")] = False,
    layer: Annotated[Optional[list[str]], typer.Option(
        help="A layer of a stack, e.g. conv:k=3,s=1,p=1,c=16 or pool:k=2; or a YAML file of layers. "
             "Repeatable.", show_default=False)] = None,
    gray: Annotated[bool, typer.Option("--gray", help="Count the image as one channel.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts.")] = False,
) -> None:
    """Print the output-size formula with the real numbers put in, step by step."""
    import json

    from . import explain as explaining
    from .explain import input_shape_for, layer_from_options, layers_from_specs

    shape = input_shape_for(image, size, in_channels, gray)
    if layer:
        single = {"--kernel": kernel, "--stride": stride, "--padding": padding, "--dilation": dilation,
                  "--pool": pool, "--output-padding": output_padding}
        given = [name for name, value in single.items() if value is not None] + (
            ["--transposed"] if transposed else [])
        if given:
            raise UsageError(f"{', '.join(given)} describe one layer; with --layer put them in the "
                             "layer specs instead (e.g. --layer conv:k=3,s=2,p=1)")
        result = explaining.explain_stack(shape, layers_from_specs(layer))
    else:
        if kernel is None:
            raise UsageError("give --kernel (a size like 3 or 3,5, or a kernel spec), or --layer")
        one = layer_from_options(
            shape[0], kernel=kernel, stride=parse_pair(stride, "--stride"),
            padding=parse_padding(padding), dilation=parse_pair(dilation, "--dilation"),
            out_channels=out_channels, groups=groups, transposed=transposed,
            output_padding=parse_pair(output_padding, "--output-padding", minimum=0),
            pool=pool, ceil_mode=ceil_mode)
        result = explaining.explain_layer(shape, one, what=str(image) if image else "input")
    print(json.dumps(result.as_dict()) if as_json else explaining.render_text(result))


@kernels_app.command("list")
def kernels_list() -> None:
    """List every kernel: built-ins, operations and the YAML library."""
    from rich.console import Console
    from rich.table import Table

    from .kernels import list_kernels

    table = Table(title="convcli kernels", title_justify="left")
    for column in ("name", "size", "kind", "description"):
        table.add_column(column, overflow="fold")
    for info in list_kernels():
        table.add_row(info.name, info.size, info.kind, info.description)
    Console().print(table)


@kernels_app.command("show")
def kernels_show(spec: Annotated[str, typer.Argument(help="Kernel spec, e.g. gaussian:sigma=1.5")]) -> None:
    """Print a kernel's matrix, its sum and whether it is separable."""
    from .kernels import render_kernel, resolve

    print(render_kernel(resolve(spec)))


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: run the app, turning every user error into one line and an exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in args
    try:
        code = app(args=args, prog_name="convcli", standalone_mode=False)
    except ConvcliError as error:
        if debug:
            raise
        _print_error(str(error))
        code = error.exit_code
    except typer.TyperException as error:  # Typer's own usage errors: bad or missing options
        if debug:
            raise
        if type(error).__name__ == "NoArgsIsHelpError":
            print(error.format_message())
        else:
            command = getattr(getattr(error, "ctx", None), "command_path", "convcli")
            _print_error(f"{error.format_message()} (see '{command} --help')")
        code = getattr(error, "exit_code", 2)
    except typer.Abort:
        code = 130
    sys.exit(code or 0)
