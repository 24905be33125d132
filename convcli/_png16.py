"""A small PNG codec for what Pillow cannot do: 16-bit colour.

Pillow reads 16-bit RGB, RGBA and gray+alpha PNGs at 8 bits per channel (and gray+alpha
as RGBA), and cannot write them at all. ``read_png16`` decodes those files exactly
(all five row filters, Adam7 interlacing, an RGB ``tRNS`` key); ``encode_png`` writes
8- or 16-bit PNGs. Everything else goes through Pillow. Format: the PNG specification,
https://www.w3.org/TR/png/ (chunks section 5, filters section 7.3 and 9, interlacing 8.2).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["deep_colour_channels", "read_png16", "encode_png"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: L, LA, RGB, RGBA
CHANNELS = {colour: channels for channels, colour in COLOUR_TYPES.items()}
DEEP_COLOUR_TYPES = (2, 4, 6)             # RGB, LA, RGBA: the ones Pillow reads at 8 bits
# Adam7 passes: (first row, first column, row step, column step).
ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
         (1, 0, 2, 1))
# zlib level 1, OpenCV's default: Pillow's level 6 took 75 of ~90 ms per 512x512 RGB image in
# batch runs; level 1 with the Up filter (see encode_png) takes ~8 ms for ~15% larger files.
PNG_COMPRESSION = 1
PNG_FILTER_UP = 2
FILTER_BLOCK_BYTES = 1 << 22  # rows filtered and compressed per step of encode_png


def deep_colour_channels(head: bytes) -> int | None:
    """Channels (alpha included) if ``head``, a file's first 26 bytes or more, starts a
    16-bit RGB, RGBA or gray+alpha PNG; else None (Pillow reads the file exactly)."""
    if len(head) < 26 or not head.startswith(SIGNATURE) or head[12:16] != b"IHDR":
        return None
    depth, colour = head[24], head[25]
    return CHANNELS[colour] if depth == 16 and colour in DEEP_COLOUR_TYPES else None


def read_png16(data: bytes) -> tuple[np.ndarray, bytes | None]:
    """(pixels (H, W, C) uint16, EXIF bytes or None) of a PNG ``deep_colour_channels`` accepts.

    An RGB file with a ``tRNS`` colour key comes back as RGBA (alpha 0 on the key colour).
    Raises ValueError or zlib.error on a damaged file.
    """
    chunks = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    if depth != 16 or colour not in DEEP_COLOUR_TYPES:
        raise ValueError(f"not a 16-bit colour PNG (bit depth {depth}, colour type {colour})")
    channels = CHANNELS[colour]
    passes = []                                       # (top, left, row step, column step, rows, columns)
    for top, left, row_step, column_step in ADAM7 if interlace else ((0, 0, 1, 1),):
        rows, columns = -(-(height - top) // row_step), -(-(width - left) // column_step)
        if rows > 0 and columns > 0:                  # an empty pass has no bytes at all
            passes.append((top, left, row_step, column_step, rows, columns))
    expected = sum(rows * (1 + columns * channels * 2) for *_, rows, columns in passes)
    stream = zlib.decompressobj().decompress(b"".join(chunks.get(b"IDAT", [])), expected)
    if len(stream) < expected:                        # (and never more than the header promises)
        raise ValueError("image data ends early")
    raw = np.frombuffer(stream, np.uint8)
    pixels = np.empty((height, width, channels), np.uint16)
    for top, left, row_step, column_step, rows, columns in passes:
        size = rows * (1 + columns * channels * 2)
        part, raw = raw[:size].reshape(rows, -1), raw[size:]
        samples = _unfilter(part[:, 1:], part[:, 0], channels * 2)
        pixels[top::row_step, left::column_step] = samples.view(">u2").reshape(rows, columns, -1)
    if colour == 2 and b"tRNS" in chunks:
        key = np.frombuffer(chunks[b"tRNS"][0][:6], ">u2")
        alpha = np.where((pixels == key).all(axis=2), 0, 65535).astype(np.uint16)
        pixels = np.dstack([pixels, alpha])
    return pixels, chunks.get(b"eXIf", [None])[0]


def _chunks(data: bytes) -> dict[bytes, list[bytes]]:
    """Chunk type -> the data of each chunk of that type, in file order."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file")
    chunks: dict[bytes, list[bytes]] = {}
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if len(body) < length:
            raise ValueError(f"{kind.decode('latin-1')} chunk ends early")
        chunks.setdefault(kind, []).append(body)
        position += 12 + length                       # length, type, data, CRC
        if kind == b"IEND":
            break
    if b"IHDR" not in chunks:
        raise ValueError("no IHDR chunk")
    return chunks


def _unfilter(filtered: np.ndarray, kinds: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG's row filters: (H, W * bpp) filtered bytes -> raw bytes.

    Filter types 0-4 predict each byte from the same byte of the pixel to the left (a),
    above (b) and above-left (c). A pixel depends on nothing to its right or below, so
    all pixels on one anti-diagonal (row + column = d) are restored together: H + W - 1
    vectorised steps instead of H * W Python ones.
    """
    if kinds.size and kinds.max() > 4:
        raise ValueError(f"unknown PNG filter type {kinds.max()}")
    if kinds.size and kinds.max() <= 2:
        return _unfilter_rows(filtered, kinds, bpp)
    height, width = filtered.shape[0], filtered.shape[1] // bpp
    source = filtered.reshape(height, width, bpp).astype(np.int16)
    restored = np.zeros((height + 1, width + 1, bpp), np.int16)   # row 0, column 0: zeros
    kinds = kinds.astype(np.int16)
    for diagonal in range(height + width - 1):
        row = np.arange(max(0, diagonal - width + 1), min(height, diagonal + 1))
        column = diagonal - row
        a, b, c = restored[row + 1, column], restored[row, column + 1], restored[row, column]
        kind = kinds[row][:, np.newaxis]
        guess = a + b - c
        to_a, to_b, to_c = np.abs(guess - a), np.abs(guess - b), np.abs(guess - c)
        paeth = np.where((to_a <= to_b) & (to_a <= to_c), a, np.where(to_b <= to_c, b, c))
        predictor = np.select([kind == 1, kind == 2, kind == 3, kind == 4],
                              [a, b, (a + b) >> 1, paeth], 0)
        restored[row + 1, column + 1] = (source[row, column] + predictor) & 0xFF
    return restored[1:, 1:].astype(np.uint8).reshape(height, width * bpp)


def _unfilter_rows(filtered: np.ndarray, kinds: np.ndarray, bpp: int) -> np.ndarray:
    """``_unfilter`` when no row uses Average or Paeth (as convcli's own files): row by row,
    each row one vectorised step (uint8 arithmetic wraps modulo 256, as PNG wants)."""
    restored = np.empty_like(filtered)
    above = np.zeros(filtered.shape[1], np.uint8)
    for index, kind in enumerate(kinds):
        row = filtered[index]
        if kind == 1:                                 # Sub: a running sum per byte position
            row = np.cumsum(row.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:                               # Up
            row = row + above
        restored[index] = above = row
    return restored


def encode_png(pixels: np.ndarray) -> bytes:
    """A PNG of (H, W) or (H, W, C) uint8 or uint16 pixels, C = 1 (L), 2 (LA), 3 (RGB), 4 (RGBA).

    Every row uses PNG's "Up" filter (the byte-wise difference from the row above, one
    vectorised subtraction) and zlib level 1 with run-length matching, as OpenCV's writer
    does by default: on photos about 2x faster than Pillow's writer for the same file size
    (7.6 vs 17 ms for 512x512 RGB), and Pillow cannot write 16-bit colour at all.
    """
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    height, width, channels = pixels.shape
    depth = 8 if pixels.dtype == np.uint8 else 16
    rows = np.ascontiguousarray(pixels, ">u2" if depth == 16 else np.uint8).view(np.uint8)
    rows = rows.reshape(height, -1)
    # Filtered and compressed a few MB of rows at a time, each block's output its own IDAT
    # chunk (PNG allows any number), so neither the filtered image nor the compressed
    # stream is ever held twice; the one copy is the final join.
    block = max(1, FILTER_BLOCK_BYTES // (1 + rows.shape[1]))
    raw = np.empty((min(block, height), 1 + rows.shape[1]), np.uint8)
    raw[:, 0] = PNG_FILTER_UP
    compressor = zlib.compressobj(PNG_COMPRESSION, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    header = struct.pack(">IIBBBBB", width, height, depth, COLOUR_TYPES[channels], 0, 0, 0)
    parts = [SIGNATURE, _chunk(b"IHDR", header)]
    for top in range(0, height, block):
        bottom = min(top + block, height)
        filtered = raw[:bottom - top]
        if top == 0:
            filtered[0, 1:] = rows[0]
        else:
            filtered[0, 1:] = rows[top] - rows[top - 1]       # wraps modulo 256, as PNG wants
        np.subtract(rows[top + 1:bottom], rows[top:bottom - 1], out=filtered[1:, 1:])
        compressed = compressor.compress(filtered)
        if compressed:                                # zlib may hold its output back
            parts.append(_chunk(b"IDAT", compressed))
    parts += [_chunk(b"IDAT", compressor.flush()), _chunk(b"IEND", b"")]
    return b"".join(parts)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return b"".join([struct.pack(">I", len(body)), kind, body,
                     struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))])
