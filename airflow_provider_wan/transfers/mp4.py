"""
Is this MP4 whole? A walk over the file's top-level ISO-BMFF boxes, fed as the bytes stream by.

Every MP4 is a sequence of boxes, each starting with its size (4 bytes, big-endian; ``1`` = a 64-bit size follows
the type, ``0`` = "to the end of the file") and a 4-character type. A file cut anywhere ends inside a box, so
"the sizes add up to the file's length" catches a truncation the transport did not notice, without a decoder and
in constant memory: the walker keeps only a box header (at most 16 bytes) between two feeds.

It also asks for what every playable MP4 has: ``ftyp`` before the media (``moov``/``mdat``), and a ``moov`` box.
It proves the container complete, not the video stream inside it.

:func:`mp4_seconds` reads the length an MP4 or MOV declares (``moov``/``mvhd``) by seeking from box header to box
header, so a media input's duration is checked before it is uploaded without reading the media data.
"""

from __future__ import annotations

import os
import struct
from typing import IO

__all__ = ["Mp4BoxWalker", "mp4_problem", "mp4_seconds"]

#: boxes allowed before ``ftyp`` (a few muxers write these first)
_BEFORE_FTYP = frozenset({b"free", b"skip", b"wide", b"uuid"})
#: top-level boxes remembered by type; the walk itself never stores more than this many
_MAX_TYPES = 64


class Mp4BoxWalker:
    """
    Streaming walk over top-level MP4 boxes.

    Call :meth:`feed` with consecutive pieces of the file, then :meth:`problem` with the file's length: None when
    the structure is complete, else one sentence saying what is wrong.
    """

    def __init__(self) -> None:
        #: bytes fed so far
        self.offset = 0
        #: offset where the next box header starts; None after a box that runs to the end of the file
        self._next_box: int | None = 0
        self._header = bytearray()
        self._error: str | None = None
        #: types of the top-level boxes, in order (the first ``_MAX_TYPES``)
        self.types: list[str] = []
        self._seen_media = False
        self._ftyp = False
        self._moov = False

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        size = len(view)
        pos = 0
        while pos < size and self._error is None and self._next_box is not None:
            at = self.offset + pos
            if at < self._next_box:
                pos += min(size - pos, self._next_box - at)
                continue
            need = 16 if len(self._header) >= 4 and self._header[:4] == b"\x00\x00\x00\x01" else 8
            take = min(need - len(self._header), size - pos)
            self._header += view[pos : pos + take]
            pos += take
            if len(self._header) == 8 and self._header[:4] == b"\x00\x00\x00\x01":
                continue  # a 64-bit size follows the type
            if len(self._header) == need:
                self._box(self.offset + pos - need)
        self.offset += size

    def _box(self, start: int) -> None:
        header = bytes(self._header)
        self._header.clear()
        kind = header[4:8]
        if not all(0x20 <= byte <= 0x7E for byte in kind):
            self._error = f"byte {start} does not start a box (type {kind!r}): not an MP4, or corrupt"
            return
        size = struct.unpack(">I", header[:4])[0]
        if size == 1:
            size = struct.unpack(">Q", header[8:16])[0]
        if size == 0:
            self._next_box = None  # the last box, up to the end of the file
        elif size < len(header):
            self._error = f"the {kind.decode()} box at byte {start} claims {size} bytes, less than its own header"
            return
        else:
            self._next_box = start + size
        if len(self.types) < _MAX_TYPES:
            self.types.append(kind.decode())
        if kind == b"ftyp":
            if self._seen_media:
                self._error = "ftyp comes after the media boxes"
            self._ftyp = True
        elif kind == b"moov":
            self._moov = True
        if kind not in _BEFORE_FTYP and kind != b"ftyp":
            self._seen_media = True
            if not self._ftyp:
                self._error = f"the file starts with a {kind.decode()} box, not ftyp"

    def broken(self, length: int | None) -> str | None:
        """
        What is already wrong, whatever bytes follow: a header that starts no box, ``ftyp`` missing or late, or (for
        a ``length``-byte file) a box running past its end. None when the bytes fed so far may still be an MP4.
        """
        if self._error is not None:
            return self._error
        if length is not None and self._next_box is not None and self._next_box > length:
            last = self.types[-1] if self.types else "last"
            return f"the {last} box ends at byte {self._next_box}, past the file's {length} bytes: it was cut"
        return None

    def problem(self, length: int) -> str | None:
        """None when the ``length``-byte file fed so far is a complete MP4 structure; else what is wrong."""
        if self._error is not None:
            return self._error
        if self.offset != length:
            return f"{self.offset} bytes were walked, not {length}"
        if self._header:
            return f"the file ends inside a box header at byte {length - len(self._header)}"
        if self._next_box is not None and self._next_box != length:
            return f"the last box ends at byte {self._next_box}, but the file has {length} bytes: it was cut"
        if not self._ftyp:
            return "no ftyp box: not an MP4"
        if not self._moov:
            return "no moov box: the MP4 has no index (cut, or never finished)"
        return None


def mp4_problem(data: bytes) -> str | None:
    """:meth:`Mp4BoxWalker.problem` of a whole file in memory."""
    walker = Mp4BoxWalker()
    walker.feed(data)
    return walker.problem(len(data))


def _box_header(file: IO[bytes], offset: int, end: int) -> tuple[bytes, int, int] | None:
    """(type, header length, box size) of the box at ``offset``; None when it is not a usable header."""
    file.seek(offset)
    header = file.read(16)
    if len(header) < 8:
        return None
    size, kind = struct.unpack(">I4s", header[:8])
    length = 8
    if size == 1:
        if len(header) < 16:
            return None
        size, length = struct.unpack(">Q", header[8:16])[0], 16
    elif size == 0:
        size = end - offset
    return (kind, length, size) if size >= length else None


def _find_box(file: IO[bytes], kind: bytes, start: int, end: int) -> tuple[int, int] | None:
    """(start of the body, end) of the first ``kind`` box among the boxes from ``start`` to ``end``."""
    offset = start
    while offset + 8 <= end:
        found = _box_header(file, offset, end)
        if found is None:
            return None
        box, length, size = found
        if box == kind:
            return offset + length, min(offset + size, end)
        offset += size
    return None


def mp4_seconds(file: IO[bytes]) -> float | None:
    """
    The duration an MP4 or MOV file declares in its movie header (``moov``/``mvhd``), in seconds.

    Only box headers and the ``mvhd`` body are read, wherever ``moov`` sits (before or after the media). None when
    the file cannot seek, has no ``moov``/``mvhd``, or declares no duration (fragmented MP4s may not): the caller
    then leaves the length to DashScope.
    """
    try:
        if not file.seekable():
            return None
        end = file.seek(0, os.SEEK_END)
        moov = _find_box(file, b"moov", 0, end)
        mvhd = moov and _find_box(file, b"mvhd", *moov)
        if not mvhd:
            return None
        file.seek(mvhd[0])
        body = file.read(32)
        if body[:1] == b"\x01" and len(body) >= 32:
            timescale, duration = struct.unpack(">IQ", body[20:32])
        elif body[:1] == b"\x00" and len(body) >= 20:
            timescale, duration = struct.unpack(">II", body[12:20])
        else:
            return None
    except (OSError, ValueError, struct.error):
        return None
    return duration / timescale if timescale and duration else None
