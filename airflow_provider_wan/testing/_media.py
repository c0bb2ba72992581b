"""
The simulator's results: real H.264 MP4s (PyAV), cached, and deterministic pseudo-random payloads for benchmarks.

PyAV is an optional dependency (extra ``[simulator]``) imported only inside :func:`encode_mp4`. Without it the
simulator still starts and answers every API call; the first download of an MP4 fails with a 500 whose message
says to install ``airflow-provider-wan[simulator]`` (``payload_bytes`` mode does not need PyAV).
"""

from __future__ import annotations

import array
import asyncio
import fractions
import hashlib
import io
import math
import os
import struct
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

__all__ = ["MediaUnavailableError", "VideoCache", "encode_mp4", "payload_chunks", "payload_header"]

_AUDIO_RATE = 16_000
# a 1 MiB block per task, rotated differently for every 1 MiB chunk: see payload_chunks
PAYLOAD_BLOCK = 1 << 20


class MediaUnavailableError(RuntimeError):
    """PyAV (or its H.264/AAC encoders) is missing: the simulator cannot make MP4s."""


def encode_mp4(width: int, height: int, duration: float, audio: bool, fps: int = 8) -> bytes:
    """
    Encode an H.264 MP4 of ``width`` x ``height`` pixels lasting ``duration`` seconds at ``fps`` frames per second.

    A bright bar sweeps across a dark frame (so players show motion); with ``audio`` an AAC mono 440 Hz tone
    (16 kHz) runs for the same duration. x264 ``ultrafast`` at a high CRF keeps a 1080p, 15 s clip around a second
    of CPU and under a megabyte.
    """
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MediaUnavailableError(
            "the Wan simulator needs PyAV to produce MP4s: pip install 'airflow-provider-wan[simulator]' "
            "(or run it with payload_bytes / --payload-bytes)"
        ) from exc
    frames = max(1, round(duration * fps))
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width = width
        video.height = height
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "38"}
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=_AUDIO_RATE)
            sound.layout = "mono"
        bar = max(8, width // 10)
        for index in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            luma = frame.planes[0]
            x = (width - bar) * index // max(1, frames - 1)
            row = b"\x28" * x + b"\xdc" * bar + b"\x28" * (luma.line_size - x - bar)
            luma.update(row * height)
            for chroma in frame.planes[1:]:
                chroma.update(b"\x80" * (chroma.line_size * chroma.height))
            frame.pts = index
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            # one 1024-sample block of a 440 Hz tone, repeated: exact periodicity does not matter for a test tone
            tone = array.array(
                "h", (int(6000 * math.sin(2 * math.pi * 440 * k / _AUDIO_RATE)) for k in range(1024))
            ).tobytes()
            total = round(duration * _AUDIO_RATE)
            for pts in range(0, total, 1024):
                samples = min(1024, total - pts)
                chunk = av.AudioFrame(format="s16", layout="mono", samples=samples)
                chunk.planes[0].update(tone[: samples * 2])
                chunk.sample_rate = _AUDIO_RATE
                chunk.pts = pts
                chunk.time_base = fractions.Fraction(1, _AUDIO_RATE)
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return buffer.getvalue()


class VideoCache:
    """
    Encoded MP4s by (width, height, duration, audio, fps): a thousand tasks of one shape cost one encode.

    Encodes run in the loop's default thread executor, never on the event loop; concurrent requests for one shape
    share a single encode. Up to ``max_entries`` results stay in memory (least recently used dropped first); with a
    ``cache_dir`` they are also written there and read back by any simulator process using the same directory.
    """

    def __init__(self, max_entries: int = 24) -> None:
        self.max_entries = max_entries
        self.encodes = 0
        self._memory: OrderedDict[tuple[int, int, float, bool, int], bytes] = OrderedDict()
        self._inflight: dict[tuple[int, int, float, bool, int], asyncio.Future[bytes]] = {}

    async def get(
        self, width: int, height: int, duration: float, audio: bool, fps: int, cache_dir: str | None = None
    ) -> bytes:
        key = (width, height, float(duration), audio, fps)
        data = self._memory.get(key)
        if data is not None:
            self._memory.move_to_end(key)
            return data
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            data = await asyncio.get_running_loop().run_in_executor(None, self._load_or_encode, key, cache_dir)
        except BaseException as exc:
            future.set_exception(exc)
            # nobody else may be waiting: mark the exception retrieved so asyncio does not log it
            future.exception()
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(data)
        self._memory[key] = data
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)
        return data

    def _load_or_encode(self, key: tuple[int, int, float, bool, int], cache_dir: str | None) -> bytes:
        width, height, duration, audio, fps = key
        path = None
        if cache_dir:
            sound = "audio" if audio else "silent"
            path = Path(cache_dir) / f"wan-sim-{width}x{height}-{duration:g}s-{sound}-{fps}fps.mp4"
            if path.is_file():
                return path.read_bytes()
        data = encode_mp4(width, height, duration, audio, fps)
        self.encodes += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # write-then-rename: another simulator process may read the same file concurrently
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        return data

    def clear(self) -> None:
        self._memory.clear()


def payload_block(task_id: str) -> bytes:
    """The task's 1 MiB pseudo-random block: SHAKE-128 of its id."""
    return hashlib.shake_128(f"wan-simulator:{task_id}".encode()).digest(PAYLOAD_BLOCK)


def payload_header(total: int) -> bytes:
    """
    The first bytes of a ``total``-byte payload: ``ftyp``, an empty ``moov`` and the header of an ``mdat`` box holding
    the rest, so the payload is a structurally complete MP4 (clients walk the boxes to prove a download whole).
    """
    head = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 0x200) + b"isommp41" + struct.pack(">I", 8) + b"moov"
    rest = total - len(head)
    if rest < 16:
        return b""  # too small to be an MP4 (only tests of the payload itself ask for this)
    if rest < 1 << 32:
        return head + struct.pack(">I", rest) + b"mdat"
    return head + struct.pack(">I", 1) + b"mdat" + struct.pack(">Q", rest)


def payload_chunks(task_id: str, total: int, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """
    Bytes ``start`` to ``end`` (exclusive; default ``total``) of the task's ``total``-byte benchmark payload.

    Chunk ``k`` (1 MiB) is the task's block rotated by an offset derived from ``k``: deterministic (same bytes for
    the same task, whatever the range asked), incompressible within a chunk, and produced at memcpy speed, so a
    1 GiB download never holds more than two MiB in memory and costs little CPU. The first bytes are
    :func:`payload_header`'s: the payload is a structurally complete MP4.
    """
    end = total if end is None else min(end, total)
    if start >= end:
        return
    header = payload_header(total)
    if start < len(header):
        yield header[start : min(end, len(header))]
        start = len(header)
        if start >= end:
            return
    block = payload_block(task_id)
    first, last = start // PAYLOAD_BLOCK, (end - 1) // PAYLOAD_BLOCK
    for k in range(first, last + 1):
        shift = (k * 2_654_435_761) % PAYLOAD_BLOCK
        chunk = block[shift:] + block[:shift]
        chunk_start = k * PAYLOAD_BLOCK
        lo = max(start - chunk_start, 0)
        hi = min(end - chunk_start, PAYLOAD_BLOCK)
        yield chunk[lo:hi] if (lo, hi) != (0, PAYLOAD_BLOCK) else chunk
