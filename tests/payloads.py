"""Hostile request bodies shared by the unit and the end-to-end tests (pure functions of their inputs)."""

from __future__ import annotations

import random
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IHDR_SIZE = slice(16, 24)  # width, height: after the signature (8) and the IHDR chunk's length + type (8)
_IHDR_CRC = slice(29, 33)  # CRC of type + data (bytes 12..28)


def huge_png(png: bytes, width: int, height: int) -> bytes:
    """`png` (a valid PNG) with its IHDR rewritten to declare width x height pixels, CRC fixed: a
    decompression bomb's header on a file of a few hundred bytes."""
    if not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise ValueError("not a PNG starting with its IHDR chunk")
    data = bytearray(png)
    data[_IHDR_SIZE] = struct.pack(">II", width, height)
    data[_IHDR_CRC] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def truncated(data: bytes) -> bytes:
    """The first half of an encoded file."""
    return data[: len(data) // 2]


def random_image_bytes(size: int = 2048, seed: int = 0) -> bytes:
    """A PNG signature followed by `size` random bytes: looks like an image, decodes as none."""
    return PNG_SIGNATURE + random.Random(seed).randbytes(size)
