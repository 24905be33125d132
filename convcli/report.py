"""Render output records: a Rich table for people, JSON Lines for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from rich.table import Table

__all__ = ["json_line", "records_table", "shape_text"]


def json_line(record: dict) -> str:
    """One record as one line of JSON (keys in a stable order)."""
    return json.dumps(record, separators=(",", ":"))


def shape_text(shape: Iterable[int]) -> str:
    """``[3, 512, 512]`` -> ``3x512x512``."""
    return "x".join(str(n) for n in shape)


def _pair_text(values: list[int]) -> str:
    return str(values[0]) if values[0] == values[1] else shape_text(values)


def _geometry_text(record: dict) -> str:
    pad = record["padding"]
    sides = (pad["top"], pad["bottom"], pad["left"], pad["right"])
    pad_text = str(sides[0]) if len(set(sides)) == 1 else "{}/{}/{}/{}".format(*sides)
    return (f"s{_pair_text(record['stride'])} p{pad_text} d{_pair_text(record['dilation'])} "
            f"{record['pad_mode']}")


# (header, justify, wraps): short technical columns never wrap; names fold when space is short.
COLUMNS = (("input", "left", True), ("kernel", "left", True), ("C×H×W in → out", "left", False),
           ("weights", "right", False), ("geometry", "left", False), ("engine", "left", False),
           ("load/conv/write ms", "right", False), ("MP/s", "right", False))


def records_table(records: list[dict]) -> Table:
    """One row per output: input name, shapes, geometry, engine path and timings (the JSON
    report has the full paths, including the output's)."""
    table = Table(title="convcli apply", title_justify="left")
    for name, justify, wraps in COLUMNS:
        table.add_column(name, justify=justify, overflow="fold", no_wrap=not wraps)
    for r in records:
        t = r["timings_ms"]
        table.add_row(Path(r["input"]).name, r["kernel"],
                      f"{shape_text(r['input_shape'])} → {shape_text(r['output_shape'])}",
                      shape_text(r["kernel_shape"]), _geometry_text(r), r["engine"],
                      f"{t['load']:.1f}/{t['convolve']:.1f}/{t['write']:.1f}",
                      f"{r['megapixels_per_s']:.1f}")
    return table
