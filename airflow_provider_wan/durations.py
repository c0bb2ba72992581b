"""
How long a local audio or video file lasts, read from its headers before anything is uploaded or paid for.

* WAV: the ``fmt`` byte rate and the ``data`` chunk size (the file's first bytes), or the bytes the file really holds
  when the chunk announces more (written to a pipe: 0xFFFFFFFF; cut short);
* AVI: the first video stream's header (``strh``: length x scale / rate), else the main header (``avih``: frames x
  microseconds per frame), both in the ``hdrl`` list at the start of the file;
* MP3: the frame count of a Xing/Info or VBRI header (less the encoder delay and padding of a LAME tag) unless the
  file is shorter than the stream the header announces (cut short), else every MPEG audio frame counted by walking
  the file from frame header to frame header (a 15 MB file is read once, in chunks);
* MP4/MOV: the movie header (:func:`airflow_provider_wan.transfers.mp4.mp4_seconds`, seeking over the boxes).

Every reader answers None when the file does not say plainly (a free-format MP3, a lost frame sync, an unusual
header): the check is then left to DashScope rather than refusing a file it would take.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import IO

__all__ = ["audio_stream_format", "avi_seconds", "id3_end", "media_seconds", "mp3_seconds", "wav_seconds"]


def media_seconds(
    fmt: str, head: bytes, opener: Callable[[], IO[bytes]], size: int | None = None
) -> tuple[float, float] | None:
    """
    How long a media file of format ``fmt`` (as sniffed) whose first bytes are ``head`` lasts: (at least, at most)
    seconds, the same number twice when the file says exactly; None when it does not say. ``size``: the file's
    bytes as counted, when known: a header announcing more (a file cut short, or a writer that could not go back to
    fill its sizes in) is then not taken at its word.
    """
    seconds: float | None = None
    if fmt == "WAV":
        seconds = wav_seconds(head, size)
    elif fmt == "AVI":
        seconds = avi_seconds(head)
    elif fmt == "MP3":
        with opener() as file:
            found = _mp3(file, size)
        if found is not None:
            seconds, uncertain = found
            return seconds - uncertain, seconds
    elif fmt in ("MP4", "MOV"):
        from airflow_provider_wan.transfers.mp4 import mp4_seconds

        with opener() as file:
            seconds = mp4_seconds(file)
    return None if seconds is None else (seconds, seconds)


def wav_seconds(head: bytes, size: int | None = None) -> float | None:
    """
    Duration of a PCM WAV from its header (fmt and data chunk sizes), None when the header is unusual. With the
    file's ``size`` in bytes, a data chunk announcing more than the file holds counts what it holds: a WAV written to
    a pipe says 0xFFFFFFFF, a truncated one its old length.
    """
    try:
        offset = 12
        byte_rate = None
        while offset + 8 <= len(head):
            chunk, length = head[offset : offset + 4], struct.unpack("<I", head[offset + 4 : offset + 8])[0]
            if chunk == b"fmt ":
                byte_rate = struct.unpack("<I", head[offset + 16 : offset + 20])[0]
            elif chunk == b"data":
                if size is not None and length > size - offset - 8:
                    length = max(0, size - offset - 8)
                return length / byte_rate if byte_rate else None
            offset += 8 + length + (length & 1)
    except struct.error:
        return None
    return None


# --- AVI --------------------------------------------------------------------------------------------------------------
def _riff_chunks(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """(id, payload start, payload size) of the chunks between ``start`` and ``end``, as far as ``data`` holds them."""
    chunks = []
    offset = start
    while offset + 8 <= min(end, len(data)):
        ident = data[offset : offset + 4]
        size = struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        chunks.append((ident, offset + 8, size))
        offset += 8 + size + (size & 1)
    return chunks


def avi_seconds(head: bytes) -> float | None:
    """Duration of an AVI from its ``hdrl`` list (in the first bytes of the file), None when it is not there."""
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    for ident, start, size in _riff_chunks(head, 12, len(head)):
        if ident != b"LIST" or head[start : start + 4] != b"hdrl":
            continue
        micro_per_frame = total_frames = 0
        for inner, at, length in _riff_chunks(head, start + 4, start + size):
            if inner == b"avih" and length >= 20 and at + 20 <= len(head):
                micro_per_frame, _, _, _, total_frames = struct.unpack("<5I", head[at : at + 20])
            elif inner == b"LIST" and head[at : at + 4] == b"strl":
                for item, pos, item_size in _riff_chunks(head, at + 4, at + length):
                    if item == b"strh" and item_size >= 36 and pos + 36 <= len(head) and head[pos : pos + 4] == b"vids":
                        scale, rate, _, frames = struct.unpack("<4I", head[pos + 20 : pos + 36])
                        if scale and rate and frames:
                            return frames * scale / rate
        if micro_per_frame and total_frames:
            return total_frames * micro_per_frame / 1_000_000
        return None
    return None


# --- MP3 --------------------------------------------------------------------------------------------------------------
#: kbit/s by (MPEG-1?, layer) and the header's bitrate index (0 = free format, 15 = invalid)
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
#: Hz by the header's version bits (3 = MPEG-1, 2 = MPEG-2, 0 = MPEG-2.5) and sample-rate index
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
#: what may follow the last frame
_TRAILERS = (b"TAG", b"APETAGEX", b"LYRICS")
_CHUNK = 256 * 1024


class _Frame:
    """One MPEG audio frame header."""

    __slots__ = ("length", "mono", "mpeg1", "rate", "samples")

    def __init__(self, header: bytes) -> None:
        b1, b2, b3 = header[1], header[2], header[3]
        if header[0] != 0xFF or b1 & 0xE0 != 0xE0:
            raise ValueError("no frame sync")
        version, layer_bits = (b1 >> 3) & 3, (b1 >> 1) & 3
        bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
        if version == 1 or layer_bits == 0 or rate_index == 3 or bitrate_index in (0, 15):
            raise ValueError("reserved or free-format header")
        layer = 4 - layer_bits
        self.mpeg1 = version == 3
        self.rate = _RATES[version][rate_index]
        self.mono = (b3 >> 6) == 3
        bitrate = _BITRATES[(self.mpeg1, layer)][bitrate_index] * 1000
        padding = (b2 >> 1) & 1
        if layer == 1:
            self.samples = 384
            self.length = (12 * bitrate // self.rate + padding) * 4
        else:
            self.samples = 1152 if self.mpeg1 or layer == 2 else 576
            self.length = self.samples // 8 * bitrate // self.rate + padding


class _Reader:
    """Reads forward through a file handle, keeping only the bytes not yet passed (compacted now and then)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.buffer = b""
        self.offset = 0  # of buffer[0] in the file

    def peek(self, at: int, count: int) -> bytes:
        """``count`` bytes from file offset ``at`` (never before an earlier ``at``), fewer at the end of the file."""
        start = at - self.offset
        if start >= len(self.buffer):
            skip = start - len(self.buffer)
            if skip and self.file.seekable():
                self.file.seek(at)
            elif skip:
                self.file.read(skip)
            self.buffer, self.offset, start = b"", at, 0
        if start + count > len(self.buffer):
            pieces = [self.buffer[start:]]
            have = len(pieces[0])
            while have < count:
                more = self.file.read(max(_CHUNK, count - have))
                if not more:
                    break
                pieces.append(more)
                have += len(more)
            self.buffer, self.offset, start = b"".join(pieces), at, 0
        return self.buffer[start : start + count]


#: no MPEG audio frame is longer (MPEG-1 Layer II at 384 kbit/s and 32 kHz: 1,728 bytes)
_MAX_FRAME = 3000
#: how far past an ID3 tag the first frame is looked for
_SEARCH = 64 * 1024


def _first_frame(window: bytes) -> tuple[int, _Frame] | None:
    """The first frame in ``window`` whose successor starts where its length says (a sync is not enough)."""
    for index in range(len(window) - 3):
        if window[index] != 0xFF:
            continue
        try:
            frame = _Frame(window[index : index + 4])
            following = window[index + frame.length : index + frame.length + 4]
            if len(following) == 4:
                _Frame(following)
            elif index + frame.length < len(window):
                continue
        except ValueError:
            continue
        return index, frame
    return None


def _header_frames(frame: _Frame, data: bytes) -> tuple[int, int, int | None] | None:
    """
    (audio frames, samples to trim, stream bytes if given) from a Xing/Info or VBRI header in the first frame, if it
    holds one.
    """
    at = 4 + ((32 if not frame.mono else 17) if frame.mpeg1 else (17 if not frame.mono else 9))
    if data[at : at + 4] in (b"Xing", b"Info"):
        if len(data) < at + 12:
            return None
        flags = struct.unpack(">I", data[at + 4 : at + 8])[0]
        if not flags & 1:
            return None
        frames = struct.unpack(">I", data[at + 8 : at + 12])[0]
        stream = struct.unpack(">I", data[at + 12 : at + 16])[0] if flags & 2 and len(data) >= at + 16 else None
        # the LAME tag follows the fields the flags announce (frames, bytes, 100-byte TOC, quality); 21 bytes in,
        # 12 bits of encoder delay and 12 of padding: samples that are not part of the audio
        lame = at + 12 + (4 if flags & 2 else 0) + (100 if flags & 4 else 0) + (4 if flags & 8 else 0)
        trim = 0
        if data[lame : lame + 4] in (b"LAME", b"Lavc", b"Lavf") and len(data) >= lame + 24:
            packed = int.from_bytes(data[lame + 21 : lame + 24], "big")
            trim = (packed >> 12) + (packed & 0xFFF)
        return frames, trim, stream
    if data[36:40] == b"VBRI" and len(data) >= 54:
        stream, frames = struct.unpack(">II", data[46:54])
        return frames, 0, stream
    return None


def mp3_seconds(file: IO[bytes]) -> float | None:
    """
    Duration of an MP3 (MPEG audio) file, None when its frames cannot be followed to its end. Without a Xing/Info
    or VBRI header this is every frame's samples, the encoder's delay and padding included (up to 2,304 samples).
    """
    found = _mp3(file)
    return None if found is None else found[0]


#: samples an encoder adds before and after the audio, at most (LAME: 576 + 529 of delay, padding to a frame)
_ENCODER_EXTRA = 2304


def id3_end(head: bytes) -> int:
    """Where the audio starts: after the ID3v2 tag ``head`` starts with (its first 10 bytes suffice), else 0."""
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    return 10 + size + (10 if head[5] & 0x10 else 0)


def audio_stream_format(data: bytes) -> str | None:
    """
    "MP3" when ``data`` starts with an MPEG audio frame header (free format included), "AAC" for an ADTS frame
    header (the same 12-bit sync, layer bits 00: a ``.aac`` file, which is not MPEG audio), else None.
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return None
    version, layer_bits = (data[1] >> 3) & 3, (data[1] >> 1) & 3
    if layer_bits == 0:
        return "AAC" if data[1] & 0xF0 == 0xF0 else None  # ADTS: a 12-bit sync
    if version == 1 or data[2] >> 4 == 15 or (data[2] >> 2) & 3 == 3:
        return None
    return "MP3"


def _mp3(file: IO[bytes], size: int | None = None) -> tuple[float, float] | None:
    """(seconds, how many of them may be the encoder's delay and padding) of an MP3 file of ``size`` bytes."""
    reader = _Reader(file)
    start = id3_end(reader.peek(0, 10))
    found = _first_frame(reader.peek(start, _SEARCH + _MAX_FRAME))
    if found is None:
        return None
    index, first = found
    offset = start + index
    declared = _header_frames(first, reader.peek(offset, first.length))
    if declared is not None:
        frames, trim, stream = declared
        # a file shorter than the stream the header announces was cut short (a partial download): its frames
        # are counted instead
        cut = stream is not None and size is not None and size - offset < stream
        if frames > 0 and not cut:
            return max(0, frames * first.samples - trim) / first.rate, 0.0
        # an encoder writing to a pipe cannot go back to fill the count in: 0 says nothing, so the frames are
        # counted, past the header's own frame (silence, not audio)
        offset += first.length
    # no header: count the frames; their samples include the encoder's delay and padding, unknown here
    samples = 0
    while True:
        header = reader.peek(offset, 8)
        if len(header) < 4:
            break
        try:
            frame = _Frame(header[:4])
        except ValueError:
            if header.startswith(_TRAILERS):
                break
            return None  # lost sync: not a plain run of frames
        if frame.rate != first.rate:
            return None
        samples += frame.samples
        offset += frame.length
    return samples / first.rate, min(samples, _ENCODER_EXTRA) / first.rate
