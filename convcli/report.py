"""Render output records: a Rich table for people, JSON Lines for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from rich import box
from rich.table import Table

__all__ = ["json_line", "records_table", "shape_text"]


def json_line(record: dict) -> str:
    """One record as one line of JSON (keys in a stable order)."""
    return json.dumps(record, separators=(",", ":"))


def shape_text(shape: Iterable[int]) -> str:
    """``[3, 512, 512]`` -> ``3x512x512``."""
    return "x".join(str(n) for n in shape)


def _pair_text(values: list[int]) -> str:
    return str(values[0]) if len(set(values)) == 1 else shape_text(values)


def _ms(value: float) -> str:
    """Milliseconds in few characters: a tenth below 100 ms, whole ones above (a streamed
    image's 2440.9 1239.8 3500.1 did not fit the column)."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _geometry_text(record: dict) -> str:
    pad = record["padding"]
    sides = list(pad.values())          # top/bottom/left/right; front/back first for volumes
    pad_text = str(sides[0]) if len(set(sides)) == 1 else "/".join(map(str, sides))
    return (f"s{_pair_text(record['stride'])} p{pad_text} d{_pair_text(record['dilation'])}\n"
            f"{record['pad_mode']}")


# (header, justify, minimum width): names fold when the terminal is narrow, numbers do not.
COLUMNS = (("input", "left", 10), ("kernel\nweights", "left", 10), ("C×H×W in\nC×H×W out", "left", 0),
           ("stride pad\ndilation", "left", 0), ("engine", "left", 0),
           ("ms: load conv\nwrite; speed", "right", 0))


def records_table(records: list[dict]) -> Table:
    """One row per output: input name, shapes, geometry, engine path and timings (the JSON
    report has the full paths, including the output's). Fits 80 columns."""
    table = Table(title="convcli apply", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for name, justify, minimum in COLUMNS:
        table.add_column(name, justify=justify, min_width=minimum or None,
                         overflow="fold", no_wrap=not minimum)
    for r in records:
        t = r["timings_ms"]
        stack = r["kernel_shape"] is None
        weights = f"stack of {len(r['layers'])}" if stack else shape_text(r["kernel_shape"])
        table.add_row(Path(r["input"]).name, f"{r['kernel']}\n{weights}",
                      f"{shape_text(r['input_shape'])}\n{shape_text(r['output_shape'])}",
                      "" if stack else _geometry_text(r), "" if stack else r["engine"],
                      f"{_ms(t['load'])} {_ms(t['convolve'])}\n"
                      f"{_ms(t['write'])}; {r['megapixels_per_s']:.1f} MP/s")
        for layer in r["layers"] if stack else ():     # one row per layer of a stack
            table.add_row("", f"  {layer['layer']}", shape_text(layer["output_shape"]), "",
                          layer["engine"],
                          "" if layer.get("ms") is None else _ms(layer["ms"]))
    return table
