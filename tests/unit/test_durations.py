"""How long audio and video files last, read from their headers (airflow_provider_wan/durations.py), on real encodes."""

from __future__ import annotations

import functools
import io
import struct
from pathlib import Path

import pytest

from airflow_provider_wan.durations import avi_seconds, media_seconds, mp3_seconds, wav_seconds
from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.media import check_local_media, sniff_media
from tests.modes.media_files import encode_adts_aac, encode_avi, encode_mp3, encode_wav_to_pipe, write_wav


class Pipe(io.RawIOBase):
    """A stream that cannot seek (a pipe, a socket): readers must go forward only."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        chunk = self._data.read(min(len(buffer), 1000))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("rate", [44100, 16000, 8000])
@pytest.mark.parametrize("seconds", [0.5, 3.0, 30.0])
def test_an_mp3_with_a_xing_and_lame_header_is_exact(rate: int, seconds: float) -> None:
    # PyAV's LAME writes an Info header (frame count) and a LAME tag (encoder delay and padding): nothing is guessed
    data = encode_mp3(seconds, rate=rate)
    assert mp3_seconds(io.BytesIO(data)) == pytest.approx(seconds, abs=1e-9)
    assert media_seconds("MP3", data[:10], lambda: io.BytesIO(data)) == (pytest.approx(seconds), pytest.approx(seconds))


@pytest.mark.parametrize("rate", [48000, 44100, 16000, 8000])
@pytest.mark.parametrize("seconds", [2.0, 30.0])
def test_an_mp3_without_a_header_is_walked_frame_by_frame(rate: int, seconds: float) -> None:
    # no Xing/Info header: every frame is counted (MPEG-1 at 32-48 kHz, MPEG-2 at 16-24, MPEG-2.5 at 8-12 kHz);
    # the encoder's delay and padding are in the count, so the range ends above the audio and starts below it
    data = encode_mp3(seconds, rate=rate, xing=False)
    counted = mp3_seconds(io.BytesIO(data))
    assert counted is not None
    assert seconds <= counted <= seconds + 2304 / rate
    shortest, longest = media_seconds("MP3", data[:10], lambda: io.BytesIO(data))  # type: ignore[misc]
    assert shortest <= seconds <= longest == counted
    # the same through a stream that cannot seek, and without the ID3 tag in front
    assert mp3_seconds(Pipe(data)) == counted  # type: ignore[arg-type]
    bare = encode_mp3(seconds, rate=rate, xing=False, id3=False)
    assert bare[:3] != b"ID3"
    assert mp3_seconds(io.BytesIO(bare)) == counted


def test_an_mp3_ending_in_an_id3v1_tag_is_walked_to_it_but_garbage_is_not_guessed() -> None:
    data = encode_mp3(4.0, xing=False)
    counted = mp3_seconds(io.BytesIO(data))
    assert mp3_seconds(io.BytesIO(data + b"TAG" + bytes(125))) == counted
    # bytes that are no frame where a frame should start: the length is unknown, not a guess
    assert mp3_seconds(io.BytesIO(data + b"\x00garbage" * 50)) is None
    # a file cut in the middle of its last frame still counts the frames it has
    assert mp3_seconds(io.BytesIO(data[:-100])) == counted


def test_what_is_not_an_mp3_has_no_mp3_length() -> None:
    assert mp3_seconds(io.BytesIO(b"")) is None
    assert mp3_seconds(io.BytesIO(bytes(100_000))) is None
    # one frame sync followed by nothing that fits: a sync alone is not a frame
    assert mp3_seconds(io.BytesIO(b"\x00" * 10 + b"\xff\xfb\x90\x64" + b"\x01" * 1000)) is None


@pytest.mark.parametrize("seconds", [1.0, 2.5, 31.0])
def test_an_avi_declares_its_length_in_its_first_bytes(seconds: float) -> None:
    data = encode_avi(seconds)
    assert avi_seconds(data[: 256 * 1024]) == pytest.approx(seconds)
    assert media_seconds("AVI", data, lambda: io.BytesIO(data)) == (pytest.approx(seconds), pytest.approx(seconds))


def test_an_avi_header_that_is_cut_or_missing_says_nothing() -> None:
    data = encode_avi(3.0)
    assert avi_seconds(data[:40]) is None
    assert avi_seconds(b"RIFF" + struct.pack("<I", 4) + b"WAVE") is None
    # the main header alone (no video stream header): frames x microseconds per frame
    hdrl = b"hdrl" + b"avih" + struct.pack("<I", 56) + struct.pack("<5I", 125_000, 0, 0, 0, 24) + bytes(36)
    only_main = b"RIFF" + struct.pack("<I", 12 + len(hdrl)) + b"AVI " + b"LIST" + struct.pack("<I", len(hdrl)) + hdrl
    assert avi_seconds(only_main) == pytest.approx(3.0)


def test_a_wav_declares_its_length(tmp_path: Path) -> None:
    data = write_wav(tmp_path / "a.wav", seconds=3.5).read_bytes()
    assert wav_seconds(data[:1000]) == pytest.approx(3.5)
    assert wav_seconds(data[:20]) is None


def test_local_media_are_refused_only_outside_the_range_they_certainly_lie_in(tmp_path: Path) -> None:
    # wan2.7-t2v takes audio of 3-30 s. A header-less MP3 of 30 s counts up to 2,304 samples more (30.1 s at
    # 16 kHz): it is taken, as DashScope takes it; one of 31 s is certainly too long, and says by how much
    def audio(name: str, content: bytes) -> dict[str, str]:
        (tmp_path / name).write_bytes(content)
        return {"audio_url": str(tmp_path / name)}

    taken = check_local_media(audio("edge.mp3", encode_mp3(30.0, rate=16000, xing=False)), "wan2.7-t2v")
    assert [(m.format, m.ref.parameter) for m in taken] == [("MP3", "audio_url")]
    assert check_local_media(audio("exact.mp3", encode_mp3(30.0)), "wan2.7-t2v")[0].format == "MP3"
    with pytest.raises(WanInvalidInputError, match=r"audio_url: long\.mp3 lasts (30\.9|31\.0) s; wan2\.7-t2v takes"):
        check_local_media(audio("long.mp3", encode_mp3(31.0, rate=16000, xing=False)), "wan2.7-t2v")
    with pytest.raises(WanInvalidInputError, match=r"lasts 30\.04 s"):
        check_local_media(audio("just-over.mp3", encode_mp3(30.04)), "wan2.7-t2v")


@pytest.mark.parametrize(
    ("header", "length", "samples", "rate"),
    [
        (bytes([0xFF, 0xE2, 0x18, 0xC0]), 72, 576, 8000),  # MPEG-2.5 Layer III, 8 kbit/s, 8 kHz, mono
        (bytes([0xFF, 0xF3, 0x48, 0xC0]), 144, 576, 16000),  # MPEG-2 Layer III, 32 kbit/s, 16 kHz
        (bytes([0xFF, 0xFB, 0x90, 0x00]), 417, 1152, 44100),  # MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
        (bytes([0xFF, 0xFD, 0x80, 0x00]), 417, 1152, 44100),  # MPEG-1 Layer II, 128 kbit/s (an MP2 named .mp3)
    ],
)
def test_frames_of_every_mpeg_version_are_counted(header: bytes, length: int, samples: int, rate: int) -> None:
    frame = header + bytes(length - 4)
    assert mp3_seconds(io.BytesIO(frame * 1000)) == pytest.approx(1000 * samples / rate)


def test_a_xing_header_left_unfilled_is_not_taken_for_zero_seconds() -> None:
    # an encoder writing to a pipe cannot seek back to fill in the frame count: the header says 0 frames. That is no
    # length (a real 30 s file refused as "0.0 s" would be a false refusal): the frames are counted instead
    data = bytearray(encode_mp3(30.0, id3=False))
    at = data.index(b"Info") + 8
    data[at : at + 4] = bytes(4)
    found = media_seconds("MP3", bytes(data[:10]), lambda: io.BytesIO(bytes(data)))
    assert found is not None
    shortest, longest = found
    assert shortest <= 30.0 <= longest <= 30.0 + 2 * 1152 / 44100


def test_an_aac_stream_is_not_sniffed_as_an_mp3() -> None:
    # ADTS frames share MPEG audio's sync bits but have layer bits 00; behind an ID3 tag too
    aac = encode_adts_aac(0.5)
    tag = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + bytes(10)
    assert sniff_media(aac, "voice.mp3") == "AAC"
    assert sniff_media(tag + aac, "voice.mp3") == "AAC"
    assert sniff_media(encode_mp3(0.5), "voice.aac") == "MP3"
    assert sniff_media(encode_mp3(0.5, id3=False), "voice.aac") == "MP3"


def test_a_cut_short_mp3_or_wav_is_measured_by_what_it_holds() -> None:
    # the headers still announce 10 s (Xing frame count; data chunk size); a fifth of the bytes is left
    mp3 = encode_mp3(10)
    cut = mp3[: len(mp3) // 5]
    shortest, longest = media_seconds("MP3", cut[:10], lambda: io.BytesIO(cut), len(cut))  # type: ignore[misc]
    assert 1.8 < shortest <= longest < 2.1
    wav = encode_wav_to_pipe(10)
    for data in (wav, wav[: len(wav) // 5]):
        seconds = len(data[wav.index(b"data") + 8 :]) / 16000
        assert media_seconds("WAV", data[:1000], functools.partial(io.BytesIO, data), len(data)) == (seconds, seconds)
