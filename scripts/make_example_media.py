"""
Make the short clip and the voice the example DAGs ship with (``dags/assets/clip.mp4`` and ``voice.wav``).

The clip is the simulator's moving-bar video (2 s, 640x360, H.264; needs PyAV); the voice is a 2 s, 8 kHz mono
WAV of two tones, written with the standard library. Re-run after changing them: ``python
scripts/make_example_media.py``.
"""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

from airflow_provider_wan.testing._media import encode_mp4

ASSETS = Path(__file__).resolve().parent.parent / "dags" / "assets"
RATE = 8000


def main() -> None:
    (ASSETS / "clip.mp4").write_bytes(encode_mp4(640, 360, 2.0, audio=False, fps=8))
    with wave.open(str(ASSETS / "voice.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        tone = (int(8000 * math.sin(2 * math.pi * (330 if k < RATE else 440) * k / RATE)) for k in range(2 * RATE))
        out.writeframes(b"".join(struct.pack("<h", v) for v in tone))


if __name__ == "__main__":
    main()
