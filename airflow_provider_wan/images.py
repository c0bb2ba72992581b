"""
Image inputs of the image-based operators: a local file or a ``gs://`` object becomes a base64 data URI.

DashScope accepts http(s) URLs and ``data:{mime};base64,...`` URIs. Local and GCS images are read and checked
here (format, size, dimensions) before anything is sent, so a bad image fails for free with a message that names
the parameter. The image limits themselves live in :mod:`airflow_provider_wan.models`.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.models import IMAGE_FORMATS, IMAGE_MAX_BYTES, IMAGE_MAX_SIDE, IMAGE_MIN_SIDE

#: the input fields that carry images
IMAGE_FIELDS = ("img_url", "first_frame_url", "last_frame_url")
#: references DashScope fetches or decodes itself; anything else is a local path or a gs:// object we read
_REMOTE_PREFIXES = ("http://", "https://", "data:", "oss://")

_MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "BMP": "image/bmp", "WEBP": "image/webp"}


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


def check_image(data: bytes, parameter: str, source: str) -> str:
    """Check an image against the API's limits; return its MIME type or raise naming ``parameter``."""
    if len(data) > IMAGE_MAX_BYTES:
        raise WanInvalidInputError(
            f"{parameter}: {source} is {len(data) / 1_048_576:.1f} MB; images may be at most "
            f"{IMAGE_MAX_BYTES // 1_048_576} MB"
        )
    fmt = sniff_format(data)
    if fmt not in IMAGE_FORMATS:
        raise WanInvalidInputError(
            f"{parameter}: {source} is {'not an image' if fmt is None else fmt}; allowed formats: "
            f"{', '.join(IMAGE_FORMATS)}"
        )
    size = image_size(data, fmt)
    if size is not None:
        width, height = size
        if not (IMAGE_MIN_SIDE <= width <= IMAGE_MAX_SIDE and IMAGE_MIN_SIDE <= height <= IMAGE_MAX_SIDE):
            raise WanInvalidInputError(
                f"{parameter}: {source} is {width}x{height} px; width and height must each be within "
                f"[{IMAGE_MIN_SIDE}, {IMAGE_MAX_SIDE}] px"
            )
    return _MIME[fmt]


def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def is_remote_image(value: str) -> bool:
    """True for references sent as they are (http(s), data: and oss:// URIs)."""
    return value.startswith(_REMOTE_PREFIXES)


def resolve_image(value: str | None, parameter: str, *, gcp_conn_id: str | None = None) -> str | None:
    """
    What to send for an image input: http(s), ``data:`` and ``oss://`` references pass through; a local path
    (or ``file://`` URL) or a ``gs://bucket/object`` is read, checked and returned as a data URI.
    """
    if value is None or value == "":
        return value
    if is_remote_image(value):
        return value
    if value.startswith("gs://"):
        bucket, _, name = value[len("gs://") :].partition("/")
        if not bucket or not name:
            raise WanInvalidInputError(f"{parameter}: {value!r} is not a gs://bucket/object URI")
        from airflow_provider_wan.gcs import storage_client

        blob = storage_client(gcp_conn_id).bucket(bucket).get_blob(name)
        if blob is None:
            raise WanInvalidInputError(f"{parameter}: GCS object {value} does not exist")
        if blob.size is not None and blob.size > IMAGE_MAX_BYTES:
            raise WanInvalidInputError(
                f"{parameter}: {value} is {blob.size / 1_048_576:.1f} MB; images may be at most "
                f"{IMAGE_MAX_BYTES // 1_048_576} MB"
            )
        data = blob.download_as_bytes()
    else:
        path = Path(value[len("file://") :] if value.startswith("file://") else value).expanduser()
        try:
            if path.stat().st_size > IMAGE_MAX_BYTES:
                raise WanInvalidInputError(
                    f"{parameter}: {path} is {path.stat().st_size / 1_048_576:.1f} MB; images may be at most "
                    f"{IMAGE_MAX_BYTES // 1_048_576} MB"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise WanInvalidInputError(
                f"{parameter}: cannot read local image {str(path)!r} ({exc.strerror or exc}); give an http(s) URL, "
                "a gs://bucket/object URI, a readable local path or a data: URI"
            ) from None
    return to_data_uri(data, check_image(data, parameter, value))
