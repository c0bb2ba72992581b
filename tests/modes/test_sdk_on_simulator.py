"""
Issue 12, acceptance 2: the official SDK's ``VideoSynthesis.call`` with local files completes against the simulator
for wan2.7-i2v and wan3.0-video (the SDK uploads the files to the simulator's temporary storage); the video's first
frame is the given first frame, and its duration and size are what was asked.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import dashscope
import pytest
import requests
from dashscope import VideoSynthesis

from tests.foundation.images import write_png
from tests.modes.media_files import write_wav


def _gray(frame: Any) -> tuple[bytes, int]:
    plane = frame.reformat(format="gray").planes[0]
    return bytes(plane), plane.line_size


def mean_abs_diff(video: bytes, image: Path) -> float:
    """Mean absolute difference (0-255) of luma between the video's frame 0 and the image at the video's size."""
    with av.open(io.BytesIO(video)) as container:
        frame = next(container.decode(video=0))
    with av.open(str(image)) as picture:
        expected = next(picture.decode(video=0)).reformat(width=frame.width, height=frame.height)
    (got, got_stride), (want, want_stride) = _gray(frame), _gray(expected)
    total = 0
    for row in range(frame.height):
        a = got[row * got_stride : row * got_stride + frame.width]
        b = want[row * want_stride : row * want_stride + frame.width]
        total += sum(abs(x - y) for x, y in zip(a, b, strict=True))
    return total / (frame.width * frame.height)


def _probe(video: bytes) -> tuple[int, int, float, bool]:
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        return (
            stream.codec_context.width,
            stream.codec_context.height,
            float(container.duration or 0) / 1_000_000,
            bool(container.streams.audio),
        )


@pytest.fixture
def sdk(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(dashscope, "base_http_api_url", wan_simulator.base_url)
    monkeypatch.setattr(dashscope, "api_key", wan_simulator.api_key)
    return dashscope


@pytest.mark.parametrize(
    ("model", "extra", "size"),
    [
        ("wan2.7-i2v", {"resolution": "720P"}, (1280, 720)),
        ("wan3.0-video", {"resolution": "480P", "ratio": "16:9", "audio": False}, (832, 480)),
    ],
)
def test_sdk_call_with_local_files_completes(sdk, wan_simulator, tmp_path: Path, model, extra, size) -> None:
    # a first frame that is not flat: two colour bands, so a wrong frame 0 cannot match by luck
    first = write_png(tmp_path / "first.png", 640, 360, (230, 30, 30))
    band = write_png(tmp_path / "band.png", 640, 360, (20, 20, 200))
    media = [{"type": "first_frame", "url": str(first)}]
    if model == "wan2.7-i2v":
        media.append({"type": "driving_audio", "url": str(write_wav(tmp_path / "speech.wav", seconds=4))})
    response = VideoSynthesis.call(model=model, prompt="the red turns blue", media=media, duration=4, **extra)
    assert response.status_code == 200, response
    assert response.output.task_status == "SUCCEEDED"

    [task] = wan_simulator.tasks()
    assert task["input"]["media"][0]["url"].startswith("oss://dashscope-instant/")
    assert wan_simulator.stats()["requests"]["upload"] == len(media)
    video = requests.get(response.output.video_url, timeout=30).content
    width, height, duration, has_audio = _probe(video)
    assert (width, height) == size
    assert duration == pytest.approx(4, abs=0.5)
    # the given audio became the track (wan2.7-i2v); Wan 3.0 was asked for none
    assert has_audio is (model == "wan2.7-i2v")
    assert mean_abs_diff(video, first) < 12
    # and the check can fail: the other picture is far from frame 0
    assert mean_abs_diff(video, band) > 40


def test_wan3_usage_bills_the_input_video_seconds(sdk, wan_simulator, tmp_path: Path) -> None:
    from airflow_provider_wan.models import cost_from_usage
    from tests.modes.media_files import write_mp4

    clip = write_mp4(tmp_path / "dance.mp4", seconds=2.0)
    media = [
        {"type": "reference_image", "url": str(write_png(tmp_path / "me.png", 480, 480))},
        {"type": "reference_video", "url": str(clip)},
    ]
    response = VideoSynthesis.call(
        model="wan3.0-video", prompt="Image 1 dances like Video 1", media=media, duration=5, resolution="720P"
    )
    assert response.status_code == 200, response
    usage = dict(response.usage)
    assert usage["input_video_duration"] == pytest.approx(2.0, abs=0.3)
    assert usage["output_video_duration"] == 5
    # billed: output + input seconds at the 720P price
    assert cost_from_usage("wan3.0-video", usage) == pytest.approx(0.0588 * (5 + usage["input_video_duration"]))
