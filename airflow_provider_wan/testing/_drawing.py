"""
Videos that show what was asked: the given first frame as frame 0, the last frame as the final frame, a continued
clip's frames at the start, reference images as thumbnails along the bottom, the given audio as the audio track.

The media come from the create request: ``oss://`` files in the simulator's temporary storage and ``data:`` URIs
(http(s) URLs are not fetched: the simulator has no network). A request without any of them gets the plain
moving-bar video of :mod:`._media`. PyAV decodes and encodes; it is imported inside the functions.
"""

from __future__ import annotations

import base64
import fractions
import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._font import text_band

__all__ = ["Drawing", "DrawingCache", "drawing_for", "encode_drawing", "input_video_seconds"]

_AUDIO_RATE = 16_000
Source = tuple[str, Any]  # ("file", Path) or ("data", bytes)


@dataclass(frozen=True)
class Drawing:
    """What a request asked to see: each entry a file path or bytes."""

    first: Source | None = None
    last: Source | None = None
    clip: Source | None = None
    audio: Source | None = None
    references: tuple[Source, ...] = field(default_factory=tuple)
    #: drawn in a band at the top of every generated frame: the model, then the prompt
    text: tuple[str, ...] = ()

    def key(self) -> str:
        digest = hashlib.sha1("\n".join(self.text).encode())
        for source in (self.first, self.last, self.clip, self.audio, *self.references):
            if source is None:
                digest.update(b"-")
            elif source[0] == "file":
                digest.update(str(source[1]).encode())  # stored uploads never change (no overwrite)
            else:
                digest.update(hashlib.sha1(source[1]).digest())
        return digest.hexdigest()


def input_video_seconds(input_: Mapping[str, Any], resolve: Callable[[str], Path | None]) -> float:
    """
    Seconds of the videos a request gives (reference videos, a source video, a clip) that the simulator can read:
    what DashScope reports as ``usage.input_video_duration``. Unreadable videos (http URLs) count 0.
    """
    import av

    urls = [i.get("url") for i in input_.get("media") or [] if isinstance(i, dict) and i.get("type") in _VIDEO_TYPES]
    urls += [u for u in input_.get("reference_urls") or [] if isinstance(u, str)]
    total = 0.0
    for url in urls:
        path = resolve(url) if isinstance(url, str) and url.startswith("oss://") else None
        if path is None:
            continue
        try:
            with av.open(str(path), mode="r") as container:
                if container.streams.video:
                    total += float(container.duration or 0) / 1_000_000
        except av.error.FFmpegError:
            continue
    return round(total, 1)


_VIDEO_TYPES = ("reference_video", "video", "first_clip")


def _read(source: Source) -> bytes:
    kind, value = source
    return Path(value).read_bytes() if kind == "file" else bytes(value)


def drawing_for(
    input_: Mapping[str, Any], resolve: Callable[[str], Path | None], text: tuple[str, ...] = (), always: bool = False
) -> Drawing | None:
    """
    The drawing a create request asks for; None when it carries no media the simulator can read (unless ``always``:
    then the text alone makes a drawing).
    """

    def source(url: Any) -> Source | None:
        if not isinstance(url, str):
            return None
        if url.startswith("oss://"):
            path = resolve(url)
            return ("file", path) if path is not None else None
        if url.startswith("data:") and ";base64," in url:
            try:
                return ("data", base64.b64decode(url.split(",", 1)[1]))
            except ValueError:
                return None
        return None

    media = [i for i in input_.get("media") or [] if isinstance(i, dict)]

    def first_of(*types: str) -> Source | None:
        for item in media:
            if item.get("type") in types:
                found = source(item.get("url"))
                if found is not None:
                    return found
        return None

    first = source(input_.get("img_url") or input_.get("first_frame_url") or input_.get("image_url")) or first_of(
        "first_frame"
    )
    last = source(input_.get("last_frame_url")) or first_of("last_frame")
    clip = source(input_.get("first_clip_url")) or first_of("first_clip", "video")
    voices = [source(i.get("reference_voice")) for i in media]
    audio = (
        source(input_.get("audio_url"))
        or first_of("driving_audio", "reference_audio")
        or next((v for v in voices if v is not None), None)
    )
    refs = [source(u) for u in [*(input_.get("ref_images_url") or []), *(input_.get("reference_urls") or [])]]
    refs += [source(i.get("url")) for i in media if i.get("type") == "reference_image"]
    references = tuple(r for r in refs if r is not None)
    if not always and not any((first, last, clip, audio, references)):
        return None
    return Drawing(first, last, clip, audio, references, text)


def _decode_image(data: bytes, width: int, height: int) -> Any:
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        frame = next(container.decode(video=0))
        return frame.reformat(width=width, height=height, format="yuv420p")


def _decode_clip(data: bytes, width: int, height: int, limit: int) -> list[Any]:
    import av

    frames = []
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(video=0):
            frames.append(frame.reformat(width=width, height=height, format="yuv420p"))
            if len(frames) >= limit:
                break
    return frames


def _decode_audio(data: bytes, seconds: float) -> list[Any]:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=_AUDIO_RATE)
    out = []
    total = 0
    with av.open(io.BytesIO(data), mode="r") as container:
        for frame in container.decode(audio=0):
            for resampled in resampler.resample(frame):
                out.append(resampled)
                total += resampled.samples
            if total >= seconds * _AUDIO_RATE:
                break
    return out


def _paste(target: list[bytearray], line_sizes: list[int], thumb: Any, x: int, y: int) -> None:
    """Copy a yuv420p frame into planes at (x, y) (even coordinates)."""
    for index, plane in enumerate(thumb.planes):
        scale = 1 if index == 0 else 2
        data = bytes(plane)
        width = thumb.width // scale
        for row in range(thumb.height // scale):
            start = (y // scale + row) * line_sizes[index] + x // scale
            target[index][start : start + width] = data[row * plane.line_size : row * plane.line_size + width]


def _tone(seconds: float) -> list[Any]:
    """A 440 Hz tone, for a model that makes sound when the request gave none."""
    import array
    import math

    import av

    block = array.array("h", (int(6000 * math.sin(2 * math.pi * 440 * k / _AUDIO_RATE)) for k in range(1024))).tobytes()
    frames = []
    for _ in range(0, round(seconds * _AUDIO_RATE), 1024):
        chunk = av.AudioFrame(format="s16", layout="mono", samples=1024)
        chunk.planes[0].update(block)
        chunk.sample_rate = _AUDIO_RATE
        frames.append(chunk)
    return frames


def encode_drawing(width: int, height: int, duration: float, fps: int, drawing: Drawing, sound: bool) -> bytes:
    """An H.264 (+ AAC when ``sound`` or audio was given) MP4 showing the drawing's media (module docstring)."""
    import av

    count = max(1, round(duration * fps))
    first = _decode_image(_read(drawing.first), width, height) if drawing.first else None
    last = _decode_image(_read(drawing.last), width, height) if drawing.last else None
    clip = _decode_clip(_read(drawing.clip), width, height, max(1, count // 2)) if drawing.clip else []
    thumb_w, thumb_h = (width // 5) & ~1, (height // 5) & ~1
    thumbs = [_decode_image(_read(r), thumb_w, thumb_h) for r in drawing.references[:4]]
    audio = _decode_audio(_read(drawing.audio), duration) if drawing.audio else (_tone(duration) if sound else [])
    band, band_height = text_band(list(drawing.text), width) if drawing.text else (b"", 0)
    band_height = min(band_height, height // 2)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "23"}
        track = None
        if audio:
            track = container.add_stream("aac", rate=_AUDIO_RATE)
            track.layout = "mono"
        bar = max(8, width // 10)
        for index in range(count):
            if index < len(clip):
                source = clip[index]
            elif index == 0 and first is not None:
                source = first
            elif index == count - 1 and last is not None:
                source = last
            else:
                source = None
            frame = av.VideoFrame(width, height, "yuv420p")
            sizes = [p.line_size for p in frame.planes]
            if source is not None:
                planes = [bytearray(bytes(p)) for p in source.planes]
                sizes = [p.line_size for p in source.planes]
            else:
                x = (width - bar) * index // max(1, count - 1)
                luma = bytearray((b"\x28" * x + b"\xdc" * bar + b"\x28" * (sizes[0] - x - bar)) * height)
                planes = [luma, *(bytearray(b"\x80" * (p.line_size * p.height)) for p in frame.planes[1:])]
                for slot, thumb in enumerate(thumbs):
                    _paste(planes, sizes, thumb, (slot * (thumb_w + 8)) & ~1, (height - thumb_h - 8) & ~1)
                # the request in words: model and prompt (not on a given frame, which must stay as given)
                for row in range(band_height):
                    planes[0][row * sizes[0] : row * sizes[0] + width] = band[row * width : (row + 1) * width]
            out = av.VideoFrame(width, height, "yuv420p")
            for plane, data, size in zip(out.planes, planes, sizes, strict=True):
                rows = plane.height
                if size == plane.line_size:
                    plane.update(bytes(data[: size * rows]))
                else:  # repack rows to this frame's stride
                    plane.update(b"".join(_row(data, size, plane.line_size, r) for r in range(rows)))
            out.pts = index
            for packet in video.encode(out):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if track is not None:
            pts = 0
            limit = round(duration * _AUDIO_RATE)
            for chunk in audio:
                if pts >= limit:
                    break
                chunk.pts = pts
                chunk.time_base = fractions.Fraction(1, _AUDIO_RATE)
                pts += chunk.samples
                for packet in track.encode(chunk):
                    container.mux(packet)
            for packet in track.encode():
                container.mux(packet)
    return buffer.getvalue()


def _row(data: bytearray, stride: int, target: int, row: int) -> bytes:
    line = bytes(data[row * stride : row * stride + min(stride, target)])
    return line + b"\x80" * (target - len(line))


class DrawingCache:
    """Encoded drawings by their inputs and shape (a handful per test run)."""

    def __init__(self, max_entries: int = 8) -> None:
        self.max_entries = max_entries
        self._memory: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()

    async def get(self, width: int, height: int, duration: float, fps: int, drawing: Drawing, sound: bool) -> bytes:
        import asyncio

        key = (width, height, float(duration), fps, drawing.key(), sound)
        data = self._memory.get(key)
        if data is None:
            loop = asyncio.get_running_loop()
            data = await loop.run_in_executor(None, encode_drawing, width, height, duration, fps, drawing, sound)
            self._memory[key] = data
            while len(self._memory) > self.max_entries:
                self._memory.popitem(last=False)
        return data
