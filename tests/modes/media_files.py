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
