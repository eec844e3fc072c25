"""Image files of every kind the decoder meets, made in the tests.

PNGs are written by hand from the PNG specification (W3C, 3rd edition: signature, IHDR, PLTE,
tRNS, eXIf, IDAT with filter type 0 per row, IEND), so the files do not depend on the encoder of
the library under test. Other formats (JPEG, TIFF, GIF, BMP, WebP) come from Pillow's writers.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types (spec, 11.2.2 IHDR)
GRAY, RGB, PALETTE, GRAY_ALPHA, RGBA = 0, 2, 3, 4, 6


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(
    pixels: np.ndarray,
    colour_type: int,
    *,
    bit_depth: int = 8,
    palette: list[tuple[int, int, int]] | None = None,
    trns: bytes | None = None,
    exif: bytes | None = None,
) -> bytes:
    """A PNG of `pixels`: (H, W) or (H, W, C) unsigned integers at `bit_depth` (1, 8 or 16)."""
    height, width = pixels.shape[:2]
    if bit_depth == 16:
        rows = [row.astype(">u2").tobytes() for row in pixels]  # network byte order
    elif bit_depth == 1:
        rows = [np.packbits(row.astype(np.uint8)).tobytes() for row in pixels]
    else:
        rows = [row.astype(np.uint8).tobytes() for row in pixels]
    chunks = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))]
    if palette is not None:
        chunks.append(png_chunk(b"PLTE", bytes(v for colour in palette for v in colour)))
    if trns is not None:
        chunks.append(png_chunk(b"tRNS", trns))
    if exif is not None:
        chunks.append(png_chunk(b"eXIf", exif))
    chunks.append(png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + row for row in rows))))
    chunks.append(png_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def exif_orientation(value: int) -> bytes:
    """A little-endian TIFF-structured EXIF block holding only Orientation (tag 0x0112)."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, value, 0)  # SHORT, count 1, value left-justified
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


def huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels and whose data holds one row."""
    chunks = [
        png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, GRAY, 0, 0, 0)),
        png_chunk(b"IDAT", zlib.compress(b"\x00" + bytes(width))),
        png_chunk(b"IEND", b""),
    ]
    return PNG_SIGNATURE + b"".join(chunks)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise_rgb(seed: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """(H, W, 3) uint8 random pixels."""
    width, height = size
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
