"""The poster module alone: its parameter check, its name, and that a frame costs a few ranged reads, not the video."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError, WanRetryableError
from airflow_provider_wan.testing._media import encode_mp4
from airflow_provider_wan.transfers.poster import (
    READ_BUFFER,
    StoredObjectReader,
    check_poster,
    poster_image,
    poster_name,
)
from airflow_provider_wan.transfers.sinks.local import LocalSink

MiB = 1024 * 1024


def test_poster_values() -> None:
    assert check_poster(None) is None
    assert check_poster("PNG") == "png"
    assert check_poster("jpeg") == "jpeg"
    with pytest.raises(WanInvalidInputError, match=r"poster: 'gif' is not a poster format; use 'png', 'jpeg' or None"):
        check_poster("gif")


def test_the_poster_lies_next_to_the_video() -> None:
    assert poster_name("wan/abc.mp4", "png") == "wan/abc.png"
    assert poster_name("abc.mp4", "jpeg") == "abc.jpg"
    assert poster_name("wan/v1.2/abc", "png") == "wan/v1.2/abc.png"


def test_a_frame_of_a_large_video_reads_a_few_ranges_not_the_file(tmp_path: Path) -> None:
    import av

    # a real H.264 MP4, then 32 MiB more of it in a trailing "free" box (valid MP4, skipped by players)
    video = encode_mp4(640, 360, 2, audio=False)
    padding = 32 * MiB
    path = tmp_path / "big.mp4"
    path.write_bytes(video + struct.pack(">I4s", padding + 8, b"free") + bytes(padding))
    sink = LocalSink("/")
    key = str(path).lstrip("/")
    stored = sink.stat(key)
    assert stored is not None
    reader = StoredObjectReader(sink, key, stored)
    data, width, height = poster_image(io.BufferedReader(reader, READ_BUFFER), "png")
    assert (width, height) == (640, 360)
    with av.open(io.BytesIO(data)) as image:
        frame = next(image.decode(video=0))
        assert (frame.width, frame.height) == (640, 360)
    # what PyAV asked for: the boxes' headers and the first frame's samples, a few buffers, not the 32 MiB
    assert reader.fetched <= 4 * READ_BUFFER < stored.size


def test_a_store_that_ignores_the_range_is_refused_not_decoded(tmp_path: Path) -> None:
    # a store (or proxy) answering a ranged read with the whole object: the reader must not hand those bytes on
    path = tmp_path / "v.mp4"
    path.write_bytes(encode_mp4(160, 96, 1, audio=False))

    class WholeObjectSink(LocalSink):
        def read_range(self, key: str, start: int, length: int, *, version: str | None) -> bytes:
            return self._path(key).read_bytes()

    sink = WholeObjectSink("/")
    key = str(path).lstrip("/")
    stored = sink.stat(key)
    assert stored is not None
    reader = StoredObjectReader(sink, key, stored)
    reader.seek(100)
    with pytest.raises(WanRetryableError, match=r"a read of 64 bytes from byte 100 of file:///.* with \d+ bytes"):
        reader.read(64)
