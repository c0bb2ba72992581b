"""The MP4 box walk (``transfers/mp4.py``): a pure module, fed real H.264 MP4s and hand-built box sequences."""

from __future__ import annotations

import io
import struct

import pytest

from airflow_provider_wan.transfers.mp4 import Mp4BoxWalker, mp4_problem, mp4_seconds


def box(kind: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def large_box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 1) + kind + struct.pack(">Q", 16 + len(body)) + body


FTYP = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
MOOV = box(b"moov", box(b"mvhd", bytes(100)))
MDAT = box(b"mdat", bytes(range(256)) * 40)
WHOLE = FTYP + MOOV + MDAT


@pytest.fixture(scope="module")
def real_mp4() -> bytes:
    from airflow_provider_wan.testing._media import encode_mp4

    return encode_mp4(160, 96, 1, False, fps=4)


def _fed_in(data: bytes, piece: int) -> Mp4BoxWalker:
    walker = Mp4BoxWalker()
    for start in range(0, len(data), piece):
        walker.feed(data[start : start + piece])
    return walker


def test_a_real_mp4_is_whole_however_it_is_cut_into_pieces(real_mp4: bytes) -> None:
    for piece in (1, 3, 7, 8, 16, 4096, len(real_mp4)):
        walker = _fed_in(real_mp4, piece)
        assert walker.problem(len(real_mp4)) is None, piece
    assert {"ftyp", "moov", "mdat"} <= set(_fed_in(real_mp4, 4096).types)


def test_every_truncation_of_a_real_mp4_is_caught(real_mp4: bytes) -> None:
    # every cut point near the boxes' boundaries and a spread of points inside them
    cuts = sorted({*range(0, 64), *range(len(real_mp4) - 64, len(real_mp4)), *range(0, len(real_mp4), 997)})
    for cut in cuts:
        assert mp4_problem(real_mp4[:cut]) is not None, cut


def test_hand_built_boxes_and_64_bit_sizes() -> None:
    assert mp4_problem(WHOLE) is None
    assert mp4_problem(FTYP + MOOV + large_box(b"mdat", bytes(1000))) is None
    # a leading free box is allowed; moov after mdat (no faststart) too
    assert mp4_problem(box(b"free") + FTYP + MDAT + MOOV) is None


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (WHOLE[:-1], "was cut"),
        (WHOLE + b"\x00\x00", "ends inside a box header"),
        (WHOLE + bytes(8), "does not start a box"),
        (FTYP + MDAT, "no moov"),
        (MOOV + MDAT, "not ftyp"),
        (MOOV + FTYP + MDAT, "not ftyp"),
        (b"", "no ftyp"),
        (b"<html>not found</html>" + bytes(10), "not ftyp"),
        (FTYP + MOOV + struct.pack(">I", 3) + b"mdat", "less than its own header"),
    ],
)
def test_broken_structures_are_named(data: bytes, words: str) -> None:
    problem = mp4_problem(data)
    assert problem is not None
    assert words in problem


def test_a_box_that_runs_to_the_end_of_the_file() -> None:
    # size 0: "this box extends to the end of the file" (allowed for the last box)
    data = FTYP + MOOV + struct.pack(">I", 0) + b"mdat" + bytes(500)
    assert mp4_problem(data) is None


def test_walked_length_must_equal_the_announced_length() -> None:
    walker = _fed_in(WHOLE, 100)
    assert walker.problem(len(WHOLE)) is None
    problem = walker.problem(len(WHOLE) + 10)
    assert problem is not None
    assert "walked" in problem


@pytest.mark.parametrize("seconds", [1, 3, 12])
def test_mp4_seconds_of_real_encodes(seconds: int) -> None:
    from airflow_provider_wan.testing._media import encode_mp4

    data = encode_mp4(64, 48, seconds, False, fps=4)
    assert mp4_seconds(io.BytesIO(data)) == pytest.approx(seconds, abs=0.3)


def mvhd(version: int, timescale: int, duration: int) -> bytes:
    if version == 1:
        return box(b"mvhd", bytes([1, 0, 0, 0]) + bytes(16) + struct.pack(">IQ", timescale, duration) + bytes(80))
    return box(b"mvhd", bytes(4) + bytes(8) + struct.pack(">II", timescale, duration) + bytes(80))


@pytest.mark.parametrize(
    ("data", "seconds"),
    [
        (FTYP + box(b"moov", mvhd(0, 1000, 7500)) + MDAT, 7.5),
        (FTYP + MDAT + box(b"moov", box(b"trak") + mvhd(0, 600, 24000)), 40.0),  # moov after the media
        (FTYP + large_box(b"mdat", bytes(64)) + box(b"moov", mvhd(1, 90000, 90000 * 31)), 31.0),
        (FTYP + MDAT, None),  # no moov
        (FTYP + box(b"moov", box(b"trak")), None),  # no mvhd
        (FTYP + box(b"moov", mvhd(0, 1000, 0)), None),  # fragmented: no declared duration
        (FTYP + box(b"moov", mvhd(0, 0, 10)), None),
        (FTYP + struct.pack(">I", 3) + b"junk", None),  # a size smaller than its header
        (b"", None),
    ],
)
def test_mp4_seconds_reads_only_the_movie_header(data: bytes, seconds: float | None) -> None:
    assert mp4_seconds(io.BytesIO(data)) == seconds


def test_mp4_seconds_of_an_unseekable_stream_is_unknown() -> None:
    class Pipe(io.RawIOBase):
        def seekable(self) -> bool:
            return False

    assert mp4_seconds(Pipe()) is None  # type: ignore[arg-type]
