"""
Draw the two keyframes the example DAGs ship with (``dags/assets/first_frame.png`` and ``last_frame.png``).

A sunrise in two frames: the sun on the horizon, then high in the sky. 480x480 px (the Wan image inputs need each
side within [360, 2000] px), RGB, written with ``zlib`` and ``struct`` only, so no imaging library is needed.
Re-run after changing the drawing: ``python scripts/make_example_frames.py``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIDE = 480
ASSETS = Path(__file__).resolve().parent.parent / "dags" / "assets"


def png_bytes(width: int, height: int, rows: list[bytes]) -> bytes:
    """An 8-bit RGB PNG from ``height`` rows of ``width * 3`` bytes each."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    # filter type 0 (None) on every row; the drawing is flat enough for zlib to do well without filters
    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def sunrise(sun_height: float) -> list[bytes]:
    """Sky, sea and sun; ``sun_height`` is the sun's centre above the horizon as a fraction of the sky."""
    horizon = int(SIDE * 0.62)
    sun_x, sun_r = SIDE // 2, SIDE // 9
    sun_y = int(horizon - sun_height * horizon)
    rows = []
    for y in range(SIDE):
        row = bytearray()
        for x in range(SIDE):
            if y < horizon:
                t = y / horizon
                # deep blue at the top, warm orange at the horizon; warmer when the sun is low
                warmth = 1.0 - 0.6 * sun_height
                pixel = (int(40 + 200 * t * warmth), int(70 + 90 * t), int(150 - 60 * t * warmth))
                if (x - sun_x) ** 2 + (y - sun_y) ** 2 <= sun_r**2:
                    pixel = (255, 214, 90)
            else:
                t = (y - horizon) / (SIDE - horizon)
                pixel = (int(20 + 30 * (1 - t)), int(60 + 40 * (1 - t)), int(110 + 30 * (1 - t)))
                # the sun's reflection: a vertical band of light on the water
                if abs(x - sun_x) < sun_r * (1 - t) and (y // 6) % 2 == 0 and sun_y < horizon:
                    pixel = (230, 180, 90)
            row += bytes(pixel)
        rows.append(bytes(row))
    return rows


def main() -> None:
    ASSETS.mkdir(parents=True, exist_ok=True)
    for name, height in (("first_frame.png", 0.0), ("last_frame.png", 0.7)):
        path = ASSETS / name
        path.write_bytes(png_bytes(SIDE, SIDE, sunrise(height)))
        print(f"{path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
