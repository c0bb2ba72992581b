"""Real media files for the mode tests: PNG frames, a WAV voice, an MP4 clip (PyAV)."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from tests.foundation.images import write_png


def write_wav(path: Path, seconds: float = 2.0, rate: int = 8000, pitch: float = 330.0) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        samples = (int(8000 * math.sin(2 * math.pi * pitch * k / rate)) for k in range(int(seconds * rate)))
        out.writeframes(b"".join(struct.pack("<h", v) for v in samples))
    return path


def write_mp4(path: Path, seconds: float = 2.0, width: int = 320, height: int = 240) -> Path:
    from airflow_provider_wan.testing._media import encode_mp4

    path.write_bytes(encode_mp4(width, height, seconds, audio=False, fps=8))
    return path


def media_set(folder: Path) -> dict[str, str]:
    """first/last frame PNGs, two reference PNGs, a voice WAV, an MP4 clip: name -> local path."""
    return {
        "first": str(write_png(folder / "first.png", 640, 480, (220, 40, 40))),
        "last": str(write_png(folder / "last.png", 640, 480, (40, 40, 220))),
        "ref1": str(write_png(folder / "ref1.png", 480, 480, (40, 200, 40))),
        "ref2": str(write_png(folder / "ref2.png", 480, 480, (200, 200, 40))),
        "voice": str(write_wav(folder / "voice.wav")),
        "audio": str(write_wav(folder / "audio.wav", seconds=4.0)),
        "clip": str(write_mp4(folder / "clip.mp4")),
    }


def encode_mp3(seconds: float, *, rate: int = 44100, xing: bool = True, id3: bool = True) -> bytes:
    """A real MP3 (PyAV's LAME), a tone lasting ``seconds``, with or without its Xing/Info header and ID3v2 tag."""
    options = {"write_xing": "1" if xing else "0", "id3v2_version": "4" if id3 else "0"}
    return _encode_tone("mp3", "libmp3lame", seconds, rate, "s16", 1152, options=options, bit_rate=64_000)


def encode_avi(seconds: float, *, fps: int = 8, width: int = 64, height: int = 48) -> bytes:
    """A real AVI (MPEG-4 Part 2 video) lasting ``seconds``."""
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="avi") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame(width, height, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([(index * 9) % 256]) * (plane.line_size * plane.height))
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def encode_adts_aac(seconds: float, rate: int = 44100) -> bytes:
    """A real AAC stream in ADTS frames (PyAV), what a ``.aac`` file holds: a tone lasting ``seconds``."""
    return _encode_tone("adts", "aac", seconds, rate, "fltp", 1024)


def _encode_tone(
    container_format: str,
    codec: str,
    seconds: float,
    rate: int,
    sample_format: str,
    frame_samples: int,
    *,
    options: dict[str, str] | None = None,
    bit_rate: int | None = None,
) -> bytes:
    """A 440 Hz mono tone lasting ``seconds``, encoded by PyAV in frames of ``frame_samples`` (s16 or fltp)."""
    import fractions
    import io

    import av

    pack = {"s16": lambda v: struct.pack("<h", int(6000 * v)), "fltp": lambda v: struct.pack("<f", 0.3 * v)}
    width = struct.calcsize({"s16": "<h", "fltp": "<f"}[sample_format])
    # one second of samples, twice over: a frame is a slice of it wherever it starts in the second
    second = b"".join(pack[sample_format](math.sin(2 * math.pi * 440 * k / rate)) for k in range(rate))
    tone = second + second
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        total = round(seconds * rate)
        for start in range(0, total, frame_samples):
            count = min(frame_samples, total - start)
            frame = av.AudioFrame(format=sample_format, layout="mono", samples=count)
            offset = start % rate
            frame.planes[0].update(tone[offset * width : (offset + count) * width])
            frame.sample_rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


class _PipeSink:
    """A write-only stream that cannot seek: what a muxer writing to a pipe or socket sees."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)

    def seekable(self) -> bool:
        return False


def encode_wav_to_pipe(seconds: float, rate: int = 8000) -> bytes:
    """
    A real WAV (PyAV's muxer, 16-bit mono) written where it cannot seek back: its RIFF and data chunk sizes stay at
    the placeholder 0xFFFFFFFF, as ``ffmpeg ... -f wav pipe:1`` leaves them.
    """
    import fractions

    import av

    sink = _PipeSink()
    with av.open(sink, "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        for start in range(0, round(seconds * rate), 1000):
            frame = av.AudioFrame(format="s16", layout="mono", samples=1000)
            frame.planes[0].update(bytes(2000))
            frame.sample_rate, frame.pts, frame.time_base = rate, start, fractions.Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return bytes(sink.data)
