"""
A 5x7 bitmap font and a text band for the simulator's videos: the model and the prompt drawn on the frames.

No imaging library: each glyph is seven rows of five bits; :func:`text_band` renders lines of text into the luma
(Y) bytes of a band as wide as the frame. Lower case is drawn as upper case; characters without a glyph as a box.
"""

from __future__ import annotations

import textwrap

__all__ = ["text_band"]

_GLYPHS: dict[str, tuple[int, ...]] = {
    "A": (14, 17, 17, 31, 17, 17, 17),
    "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14),
    "D": (30, 17, 17, 17, 17, 17, 30),
    "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16),
    "G": (14, 17, 16, 23, 17, 17, 15),
    "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14),
    "J": (7, 2, 2, 2, 2, 18, 12),
    "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31),
    "M": (17, 27, 21, 21, 17, 17, 17),
    "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14),
    "P": (30, 17, 17, 30, 16, 16, 16),
    "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17),
    "S": (15, 16, 16, 14, 1, 1, 30),
    "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14),
    "V": (17, 17, 17, 17, 17, 10, 4),
    "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17),
    "Y": (17, 17, 17, 10, 4, 4, 4),
    "Z": (31, 1, 2, 4, 8, 16, 31),
    "0": (14, 17, 19, 21, 25, 17, 14),
    "1": (4, 12, 4, 4, 4, 4, 14),
    "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14),
    "4": (2, 6, 10, 18, 31, 2, 2),
    "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14),
    "7": (31, 1, 2, 4, 8, 8, 8),
    "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12),
    ".": (0, 0, 0, 0, 0, 12, 12),
    ",": (0, 0, 0, 0, 12, 4, 8),
    "-": (0, 0, 0, 31, 0, 0, 0),
    ":": (0, 12, 12, 0, 12, 12, 0),
    "/": (1, 1, 2, 4, 8, 16, 16),
    "?": (14, 17, 1, 2, 4, 0, 4),
    "!": (4, 4, 4, 4, 4, 0, 4),
    "'": (4, 4, 8, 0, 0, 0, 0),
    "*": (0, 4, 21, 14, 21, 4, 0),
    "(": (2, 4, 8, 8, 8, 4, 2),
    ")": (8, 4, 2, 2, 2, 4, 8),
    " ": (0, 0, 0, 0, 0, 0, 0),
}
_BOX = (31, 17, 17, 17, 17, 17, 31)
_DARK, _LIGHT = 16, 235


def text_band(lines: list[str], width: int, max_lines: int = 4) -> tuple[bytes, int]:
    """
    Luma bytes (``width`` per row) of a dark band with ``lines`` drawn in light glyphs, wrapped to the width and
    cut to ``max_lines``; returns the bytes and the band's height in rows.
    """
    scale = max(1, width // 320)
    cell = 6 * scale
    per_line = max(1, (width - 2 * cell) // cell)
    wrapped: list[str] = []
    for line in lines:
        wrapped.extend(textwrap.wrap(line.upper(), per_line) or [""])
    wrapped = wrapped[:max_lines]
    row_height = 9 * scale
    height = row_height * len(wrapped) + 2 * scale
    band = bytearray([_DARK]) * (width * height)
    for number, line in enumerate(wrapped):
        top = scale + number * row_height
        for index, char in enumerate(line):
            glyph = _GLYPHS.get(char, _BOX)
            left = cell + index * cell
            for row, bits in enumerate(glyph):
                for column in range(5):
                    if bits & (16 >> column):
                        for dy in range(scale):
                            start = (top + row * scale + dy) * width + left + column * scale
                            band[start : start + scale] = bytes([_LIGHT]) * scale
    return bytes(band), height
