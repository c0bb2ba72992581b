"""
Poster frames: the first frame of a stored video as a PNG or JPEG image, stored next to it through the same sink.

The frame is read from the stored object itself, after it verified (a rerun that finds the video makes its poster
from the store, after DashScope's link expired too). PyAV reads the object through :class:`StoredObjectReader`:
ranged reads of what the demuxer asks for (the ``moov`` box and the first frame's samples, usually well under a
MiB), pinned to the object's version, never the whole video; one frame is decoded. PyAV (``av``, the ``video``
extra) is imported inside the functions: a DAG file importing a transfer stays cheap.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError, WanRetryableError

if TYPE_CHECKING:
    from airflow_provider_wan.transfers.sinks import Sink, Stored

__all__ = [
    "POSTER_FORMATS",
    "PosterFormat",
    "StoredObjectReader",
    "check_poster",
    "poster_image",
    "poster_name",
    "require_pyav",
]

#: bytes per ranged read of the stored video: the demuxer's small reads become a few requests
READ_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class PosterFormat:
    #: file name extension of the poster object
    suffix: str
    content_type: str
    #: PyAV encoder and the pixel format it takes
    codec: str
    pix_fmt: str


POSTER_FORMATS = {
    "png": PosterFormat(".png", "image/png", "png", "rgb24"),
    # full-range YUV: what the MJPEG encoder wants for a JPEG file
    "jpeg": PosterFormat(".jpg", "image/jpeg", "mjpeg", "yuvj420p"),
}


def check_poster(poster: Any) -> str | None:
    """``poster`` checked: None, ``"png"`` or ``"jpeg"``; :class:`WanInvalidInputError` naming it for anything else."""
    if poster in (None, "", "None"):
        return None
    value = str(poster).strip().lower()
    if value not in POSTER_FORMATS:
        raise WanInvalidInputError(f"poster: {poster!r} is not a poster format; use 'png', 'jpeg' or None")
    return value


def require_pyav(poster: str) -> None:
    """
    Before any download: PyAV is installed where the task runs (a transfer must not copy a video, then fail on its
    poster). Checked at run time, not at parse time: the scheduler parsing the DAG needs no PyAV.
    """
    import importlib.util

    if importlib.util.find_spec("av") is None:
        raise WanInvalidInputError(
            f"poster: {poster!r} needs PyAV to decode the video, which is not installed on this worker; install "
            "airflow-provider-wan[video] (pip install 'av>=14'), or set poster=None. Nothing was downloaded"
        )


def poster_name(object_name: str, poster: str) -> str:
    """``wan/abc.mp4`` -> ``wan/abc.png`` (``.jpg`` for JPEG): the poster lies next to the video."""
    head, _, tail = object_name.rpartition("/")
    stem = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
    name = stem + POSTER_FORMATS[poster].suffix
    return f"{head}/{name}" if head else name


class StoredObjectReader(io.RawIOBase):
    """A seekable, read-only file over one stored object version: every read is a ranged read of the sink."""

    def __init__(self, sink: Sink, key: str, stored: Stored) -> None:
        super().__init__()
        self.sink = sink
        self.key = key
        self.stored = stored
        self.position = 0
        #: bytes read from the store in all (what the poster cost in egress)
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.stored.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        length = min(len(view), self.stored.size - self.position)
        if length <= 0:
            return 0
        data = self.sink.read_range(self.key, self.position, length, version=self.stored.version)
        if len(data) > length:
            # a store that ignored the range: these are not the bytes asked for, whatever they are
            raise WanRetryableError(
                f"poster: the store answered a read of {length} bytes from byte {self.position} of "
                f"{self.sink.uri(self.key)} with {len(data)} bytes"
            )
        view[: len(data)] = data
        self.position += len(data)
        self.fetched += len(data)
        return len(data)


def poster_image(source: Any, poster: str) -> tuple[bytes, int, int]:
    """
    The first frame of the video in ``source`` (a path or a seekable binary file), encoded as ``poster``; with its
    width and height in pixels. Only that frame is decoded.

    :raises WanFinalError: when the file holds no decodable video frame
    """
    import av

    fmt = POSTER_FORMATS[poster]
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.video:
                raise WanFinalError("poster: the stored file holds no video stream; set poster=None")
            frame = next(container.decode(container.streams.video[0]), None)
    except av.FFmpegError as exc:
        # the library's text may quote the source; our words and the error's class only
        raise WanFinalError(
            f"poster: the stored video could not be decoded ({type(exc).__name__}); set poster=None to skip it"
        ) from None
    if frame is None:
        raise WanFinalError("poster: the stored video holds no decodable frame; set poster=None")
    encoder: Any = av.CodecContext.create(fmt.codec, "w")  # a video encoder; typed as any codec
    encoder.width, encoder.height, encoder.pix_fmt = frame.width, frame.height, fmt.pix_fmt
    encoder.time_base = frame.time_base or Fraction(1, 25)
    image = frame.reformat(format=fmt.pix_fmt)
    data = b"".join(bytes(packet) for packet in [*encoder.encode(image), *encoder.encode(None)])
    return data, frame.width, frame.height
