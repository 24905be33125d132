"""A small PNG codec for what Pillow cannot do: 16-bit colour, and rows in file order.

Pillow reads 16-bit RGB, RGBA and gray+alpha PNGs at 8 bits per channel (and gray+alpha
as RGBA), and cannot write them at all. ``read_png16`` decodes those files exactly
(all five row filters, Adam7 interlacing, an RGB ``tRNS`` key); ``encode_png`` writes
8- or 16-bit PNGs (``PngEncoder``: a band of rows at a time); ``PngRowDecoder`` reads the
rows of a huge PNG in order, a band at a time (``stream``). Everything else goes through
Pillow. Format: the PNG specification,
https://www.w3.org/TR/png/ (chunks section 5, filters section 7.3 and 9, interlacing 8.2).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ._deflate import compressor, decompressor, error as DeflateError

__all__ = ["deep_colour_channels", "read_png16", "encode_png", "PngEncoder", "PngRowDecoder"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: L, LA, RGB, RGBA
CHANNELS = {colour: channels for channels, colour in COLOUR_TYPES.items()}
CHANNELS_OF_COLOUR = {**CHANNELS, 3: 1}          # palette: one index per pixel
DEEP_COLOUR_TYPES = (2, 4, 6)             # RGB, LA, RGBA: the ones Pillow reads at 8 bits
# Adam7 passes: (first row, first column, row step, column step).
ADAM7 = ((0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2), (0, 1, 2, 2),
         (1, 0, 2, 1))
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


class PngRowDecoder:
    """The rows of a non-interlaced 8- or 16-bit PNG file, top to bottom, a few at a time:
    ``next_rows(n)`` gives the next n rows unfiltered, (n, W * C * depth / 8) uint8 bytes as
    stored (16-bit samples big-endian). Reads and inflates only as far as those rows need, so
    memory stays at a band of rows whatever the image's size. ``restart()`` goes back to
    row 0. The chunks before the image data are read at once: ``width``, ``height``,
    ``depth``, ``colour`` (PNG's colour type), ``interlaced``, ``palette`` (PLTE, (n, 3)
    uint8 or None) and ``transparency`` (tRNS data or None). Raises ValueError on a file
    that is damaged or is not such a PNG.

    Our own because no maintained library reads a PNG's rows in order at C speed: Pillow,
    pyspng and imagecodecs decode whole images only; pypng reads rows in pure Python (12
    MB/s on a 4096x512 RGB photo Pillow wrote, against 264 MB/s here and Pillow's 169 for
    the whole); libvips would, as a large native dependency. The inflating is ISA-L's.
    """

    READ_BYTES = 1 << 20                                  # compressed bytes read per step

    def __init__(self, path):
        self._file = open(path, "rb")
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise
        self.row_bytes = self.width * CHANNELS_OF_COLOUR[self.colour] * self.depth // 8
        self.restart()

    def _read_header(self) -> None:
        if self._file.read(len(SIGNATURE)) != SIGNATURE:
            raise ValueError("not a PNG file")
        self.palette = self.transparency = None
        seen_header = False
        while True:
            length, kind = self._chunk_head()
            if kind == b"IDAT":
                break
            body = self._file.read(length)
            self._file.seek(4, 1)                         # the CRC
            if len(body) < length:
                raise ValueError(f"{kind.decode('latin-1')} chunk ends early")
            if kind == b"IHDR":
                (self.width, self.height, self.depth, self.colour, _, _,
                 interlace) = struct.unpack(">IIBBBBB", body[:13])
                self.interlaced = bool(interlace)
                seen_header = True
            elif kind == b"PLTE":
                self.palette = np.frombuffer(body, np.uint8)[:len(body) // 3 * 3].reshape(-1, 3)
            elif kind == b"tRNS":
                self.transparency = body
            elif kind == b"IEND":
                raise ValueError("no image data (IDAT)")
        if not seen_header:
            raise ValueError("no IHDR chunk")
        if self.colour not in CHANNELS_OF_COLOUR or self.depth not in (8, 16):
            raise ValueError(f"{self.depth}-bit samples of colour type {self.colour}: rows "
                             "are read of 8- and 16-bit gray, RGB, palette and alpha PNGs")
        self._first_data = self._file.tell() - 8          # the first IDAT's length field

    def _chunk_head(self) -> tuple[int, bytes]:
        head = self._file.read(8)
        if len(head) < 8:
            raise ValueError("the file ends before its image data")
        return struct.unpack(">I4s", head)

    def restart(self) -> None:
        """Back to the first row."""
        self._file.seek(self._first_data)
        self._left_in_chunk = 0                           # IDAT bytes not read yet
        self._data_ended = False                          # a chunk after the IDATs was met
        self._inflater = decompressor()
        self._pending = b""                               # compressed, not yet inflated
        self._inflated = bytearray()                      # inflated, not yet unfiltered
        self._above = np.zeros(self.row_bytes, np.uint8)
        self.next_row = 0

    def next_rows(self, count: int) -> np.ndarray:
        from .engine._pixel_loops import unfilter_rows

        count = min(count, self.height - self.next_row)
        wanted = count * (1 + self.row_bytes)
        while len(self._inflated) < wanted:
            self._inflate(wanted - len(self._inflated))
        taken = self._inflated[:wanted]
        del self._inflated[:wanted]
        filtered = np.frombuffer(taken, np.uint8).reshape(count, -1)
        rows = np.empty((count, self.row_bytes), np.uint8)
        bad = unfilter_rows(filtered, self._above, CHANNELS_OF_COLOUR[self.colour]
                            * max(1, self.depth // 8), rows)
        if bad >= 0:
            raise ValueError(f"unknown PNG filter type {filtered[bad, 0]} in row "
                             f"{self.next_row + bad}")
        if count:
            self._above = rows[-1].copy()
        self.next_row += count
        return rows

    def _inflate(self, most: int) -> None:
        """Inflate up to ``most`` more bytes into ``_inflated``, reading IDAT data as needed
        (at the end of the data, what the inflater still holds)."""
        at_end = False
        if not self._pending:
            self._pending = self._read_data()
            at_end = not self._pending
        try:
            inflated = self._inflater.decompress(self._pending, most)
        except DeflateError as error:
            raise ValueError(f"damaged image data ({error})") from None
        if at_end and not inflated:
            raise ValueError("image data ends early")
        self._inflated += inflated
        self._pending = self._inflater.unconsumed_tail

    def _read_data(self) -> bytes:
        """The next piece of IDAT data (b"" at the end of the image data)."""
        while not self._left_in_chunk:
            if self._data_ended:
                return b""
            if self._file.tell() != self._first_data:
                self._file.seek(4, 1)                     # the last chunk's CRC
            length, kind = self._chunk_head()
            if kind != b"IDAT":
                self._data_ended = True
                return b""
            self._left_in_chunk = length
        piece = self._file.read(min(self._left_in_chunk, self.READ_BYTES))
        if not piece:
            raise ValueError("the file ends inside its image data")
        self._left_in_chunk -= len(piece)
        return piece

    def close(self) -> None:
        self._file.close()


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
    encoder = PngEncoder(width, height, channels, 8 if pixels.dtype == np.uint8 else 16)
    return b"".join([encoder.header(), encoder.encode(pixels), encoder.finish()])


class PngEncoder:
    """A PNG written a band of rows at a time (what ``encode_png`` writes, in pieces):
    ``header()``, then ``encode(rows)`` for the rows top to bottom, then ``finish()``; each
    returns the bytes to write next. Memory: a few MB beyond the band being encoded."""

    def __init__(self, width: int, height: int, channels: int, depth: int):
        self.width, self.height, self.channels, self.depth = width, height, channels, depth
        self.rows_done = 0
        self._last_row: np.ndarray | None = None     # the row above the next band
        self._compressor = compressor()

    def header(self) -> bytes:
        header = struct.pack(">IIBBBBB", self.width, self.height, self.depth,
                             COLOUR_TYPES[self.channels], 0, 0, 0)
        return SIGNATURE + _chunk(b"IHDR", header)

    def encode(self, pixels: np.ndarray) -> bytes:
        """IDAT chunks for the next rows: (n, W) or (n, W, C) pixels of this PNG's depth."""
        rows = np.ascontiguousarray(pixels, ">u2" if self.depth == 16 else np.uint8)
        rows = rows.view(np.uint8).reshape(rows.shape[0], -1)
        if rows.shape[1] != self.width * self.channels * self.depth // 8:
            raise ValueError(f"rows of {rows.shape[1]} bytes in a PNG {self.width} wide")
        # Filtered and compressed a few MB of rows at a time, each block's output its own
        # IDAT chunk (PNG allows any number), so neither the filtered image nor the
        # compressed stream is ever held twice.
        block = max(1, FILTER_BLOCK_BYTES // (1 + rows.shape[1]))
        raw = np.empty((min(block, rows.shape[0]), 1 + rows.shape[1]), np.uint8)
        raw[:, 0] = PNG_FILTER_UP
        parts = []
        for top in range(0, rows.shape[0], block):
            bottom = min(top + block, rows.shape[0])
            filtered = raw[:bottom - top]
            above = rows[top - 1] if top else self._last_row
            if above is None:
                filtered[0, 1:] = rows[top]
            else:
                np.subtract(rows[top], above, out=filtered[0, 1:])   # wraps modulo 256
            np.subtract(rows[top + 1:bottom], rows[top:bottom - 1], out=filtered[1:, 1:])
            compressed = self._compressor.compress(filtered)
            if compressed:                                # zlib may hold its output back
                parts.append(_chunk(b"IDAT", compressed))
        if rows.shape[0]:
            self._last_row = rows[-1].copy()
        self.rows_done += rows.shape[0]
        return b"".join(parts)

    def finish(self) -> bytes:
        if self.rows_done != self.height:
            raise ValueError(f"{self.rows_done} rows encoded of a PNG {self.height} high")
        return _chunk(b"IDAT", self._compressor.flush()) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return b"".join([struct.pack(">I", len(body)), kind, body,
                     struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))])
