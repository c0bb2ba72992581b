"""
Image headers: the format from the magic bytes and the sides from the header, without decoding anything.

:mod:`airflow_provider_wan.media` uses them to check local and GCS images before they are uploaded; the limits
themselves live in the request schema (:mod:`airflow_provider_wan.schema`).
"""

from __future__ import annotations

import struct


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic bytes (JPEG, PNG, BMP, WEBP, or another name / None)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"BM"):
        return "BMP"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[4:12] in (b"ftypavif", b"ftypheic", b"ftypmif1"):
        return "AVIF/HEIC"
    return None


def image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """Width and height read from the image header, None when the header cannot be read."""
    try:
        if fmt == "PNG":
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        if fmt == "BMP":
            width, height = struct.unpack("<ii", data[18:26])
            return int(width), abs(int(height))
        if fmt == "WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                width = int.from_bytes(data[24:27], "little") + 1
                height = int.from_bytes(data[27:30], "little") + 1
                return width, height
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
            return None
        if fmt == "JPEG":
            return _jpeg_size(data)
    except (struct.error, IndexError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        # start-of-frame markers carry the dimensions (C4, C8 and CC are other segments)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None
