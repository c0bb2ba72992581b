"""
Issue 12, acceptance 3: invalid inputs of the new modes fail before any request reaches DashScope (the simulator's
counters stay at 0, uploads included), with a message naming the parameter, the model and what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.operators.wan import (
    WanAnimateOperator,
    WanImageToVideoOperator,
    WanReferenceToVideoOperator,
    WanSpeechToVideoOperator,
    WanTextToVideoOperator,
    WanVaceOperator,
    WanVideoEditOperator,
    WanVideoOperator,
)
from tests.foundation.images import write_png
from tests.modes.media_files import encode_avi, encode_mp3, write_mp4, write_wav

T2V, I2V, R2V, EDIT = WanTextToVideoOperator, WanImageToVideoOperator, WanReferenceToVideoOperator, WanVideoEditOperator
VACE, S2V, ANIMATE, ANY = WanVaceOperator, WanSpeechToVideoOperator, WanAnimateOperator, WanVideoOperator
IMG, VID, WAV = "https://example.com/a.png", "https://example.com/a.mp4", "https://example.com/a.wav"


def _ref(n: int) -> list[dict[str, str]]:
    return [{"type": "reference_image", "url": f"https://example.com/{i}.png"} for i in range(n)]


def _files(tmp: Path) -> dict[str, Callable[[], str]]:
    """The local files the cases name, each made when a case uses it."""

    def big() -> str:
        path = tmp / "big.png"
        path.write_bytes(write_png(tmp / "seed.png", 400, 400).read_bytes() + b"\0" * (21 * 1024 * 1024))
        return str(path)

    def data(name: str, content: Callable[[], bytes]) -> Callable[[], str]:
        def make() -> str:
            (tmp / name).write_bytes(content())
            return str(tmp / name)

        return make

    return {
        "@png": lambda: str(write_png(tmp / "frame.png", 640, 480)),
        "@tiny": lambda: str(write_png(tmp / "tiny.png", 100, 100)),
        "@big": big,
        "@long_wav": lambda: str(write_wav(tmp / "long.wav", seconds=40)),
        "@wav": lambda: str(write_wav(tmp / "voice.wav", seconds=2)),
        "@mp4": lambda: str(write_mp4(tmp / "clip.mp4")),
        "@long_mp4": lambda: str(write_mp4(tmp / "long.mp4", seconds=40, width=64, height=48)),
        "@short_mp4": lambda: str(write_mp4(tmp / "short.mp4", seconds=1, width=64, height=48)),
        "@long_mp3": data("long.mp3", lambda: encode_mp3(40)),
        "@long_mp3_no_header": data("long-cbr.mp3", lambda: encode_mp3(40, xing=False, rate=16000)),
        "@short_mp3_voice": data("short.mp3", lambda: encode_mp3(0.5)),
        "@long_avi": data("long.avi", lambda: encode_avi(31)),
    }


# (id, operator class, parameters, fragments besides the model's name: the parameter, then what is allowed)
CASES: list[tuple[str, type, dict[str, Any], tuple[str, ...]]] = [
    # --- wan2.7-t2v
    ("t27-size", T2V, dict(model="wan2.7-t2v", prompt="p", size="1280*720"), ("size", "resolution", "720P, 1080P")),
    ("t27-resolution", T2V, dict(model="wan2.7-t2v", prompt="p", resolution="480P"), ("resolution", "720P, 1080P")),
    ("t27-ratio", T2V, dict(model="wan2.7-t2v", prompt="p", ratio="21:9"), ("ratio", "16:9, 9:16, 1:1, 4:3, 3:4")),
    ("t27-duration", T2V, dict(model="wan2.7-t2v", prompt="p", duration=16), ("duration", "2-15")),
    ("t27-shot-type", T2V, dict(model="wan2.7-t2v", prompt="p", shot_type="multi"), ("shot_type", "wan2.6-t2v")),
    ("t27-prompt", T2V, dict(model="wan2.7-t2v", prompt="p" * 5001), ("prompt", "5000")),
    ("t27-audio-ogg", T2V, dict(model="wan2.7-t2v", prompt="p", audio_url="https://x.org/a.ogg"), ("audio_url", "WAV")),
    ("t27-audio-40s", T2V, dict(model="wan2.7-t2v", prompt="p", audio_url="@long_wav"), ("audio_url", "3-30 s")),
    (
        "t27-audio-mp3-40s",
        T2V,
        dict(model="wan2.7-t2v", prompt="p", audio_url="@long_mp3"),
        ("audio_url", "long.mp3 lasts 40.0 s", "3-30 s"),
    ),
    (
        "t27-audio-mp3-without-xing-40s",
        T2V,
        dict(model="wan2.7-t2v", prompt="p", audio_url="@long_mp3_no_header"),
        ("audio_url", "long-cbr.mp3 lasts 40.0 s", "3-30 s"),
    ),
    # --- wan2.7-i2v
    ("i27-nothing", I2V, dict(model="wan2.7-i2v", prompt="p"), ("media", "first_frame or first_clip")),
    (
        "i27-clip-and-frame",
        I2V,
        dict(model="wan2.7-i2v", img_url=IMG, first_clip_url=VID),
        ("media", "first_clip and first_frame cannot be combined"),
    ),
    (
        "i27-clip-and-audio",
        I2V,
        dict(model="wan2.7-i2v", first_clip_url=VID, audio_url=WAV),
        ("media", "first_clip and driving_audio"),
    ),
    ("i27-last-alone", I2V, dict(model="wan2.7-i2v", last_frame_url=IMG), ("media", "needs a first_frame")),
    ("i27-clip-is-png", I2V, dict(model="wan2.7-i2v", first_clip_url="@png"), ("first_clip", "MP4, MOV")),
    (
        "i27-clip-1s",
        I2V,
        dict(model="wan2.7-i2v", first_clip_url="@short_mp4"),
        ("first_clip", "lasts 1.0 s", "2-10 s"),
    ),
    ("i27-frame-21mb", I2V, dict(model="wan2.7-i2v", img_url="@big"), ("first_frame", "20 MB")),
    ("i27-duration", I2V, dict(model="wan2.7-i2v", img_url=IMG, duration=20), ("duration", "2-15")),
    (
        "i26-last-frame",
        I2V,
        dict(model="wan2.6-i2v", img_url=IMG, last_frame_url=IMG),
        ("last_frame_url", "wan2.7-i2v"),
    ),
    ("i27-template", I2V, dict(model="wan2.7-i2v", img_url=IMG, template="flying"), ("template", "wan2.1-i2v-turbo")),
    # --- wan2.7-r2v
    ("r27-no-reference", R2V, dict(model="wan2.7-r2v", prompt="p"), ("media", "reference_image or reference_video")),
    ("r27-six", R2V, dict(model="wan2.7-r2v", prompt="p", reference_images=[IMG] * 6), ("media", "at most 5")),
    (
        "r27-video-12s",
        R2V,
        dict(model="wan2.7-r2v", prompt="p", reference_videos=[VID], duration=12),
        ("duration", "2-10"),
    ),
    (
        "r27-voice-of-nothing",
        R2V,
        dict(model="wan2.7-r2v", prompt="p", reference_images=[IMG], reference_voices={VID: WAV}),
        ("reference_voices", "reference images or videos"),
    ),
    (
        "r27-voice-is-video",
        R2V,
        dict(model="wan2.7-r2v", prompt="p", reference_images=[IMG], reference_voices={IMG: "@mp4"}),
        ("reference_voice", "WAV, MP3"),
    ),
    (
        "r27-voice-mp3-half-second",
        R2V,
        dict(model="wan2.7-r2v", prompt="p", reference_images=[IMG], reference_voices={IMG: "@short_mp3_voice"}),
        ("reference_voice", "short.mp3 lasts 0.5 s", "1-10 s"),
    ),
    (
        "r27-reference-urls",
        R2V,
        dict(model="wan2.7-r2v", prompt="p", reference_urls=[IMG]),
        ("reference_urls", "reference_images"),
    ),
    ("r27-no-prompt", R2V, dict(model="wan2.7-r2v", reference_images=[IMG]), ("prompt", "required")),
    ("r27-ratio", R2V, dict(model="wan2.7-r2v", prompt="p", reference_images=[IMG], ratio="2:1"), ("ratio", "16:9")),
    # --- wan2.6-r2v
    (
        "r26-reference-images",
        R2V,
        dict(model="wan2.6-r2v", prompt="p", reference_images=[IMG]),
        ("reference_images", "reference_urls"),
    ),
    ("r26-six", R2V, dict(model="wan2.6-r2v", prompt="p", reference_urls=[IMG] * 6), ("reference_urls", "1-5")),
    (
        "r26-duration",
        R2V,
        dict(model="wan2.6-r2v", prompt="p", reference_urls=[IMG], duration=15),
        ("duration", "2-10"),
    ),
    (
        "r26-resolution",
        R2V,
        dict(model="wan2.6-r2v", prompt="p", reference_urls=[IMG], resolution="720P"),
        ("resolution", "size", "1280*720"),
    ),
    # --- wan2.7-videoedit
    ("edit-wav", EDIT, dict(model="wan2.7-videoedit", prompt="p", video_url="@wav"), ("media[0] (video)", "MP4, MOV")),
    (
        "edit-40s",
        EDIT,
        dict(model="wan2.7-videoedit", prompt="p", video_url="@long_mp4"),
        ("media[0] (video)", "lasts 40.0 s", "1-30 s"),
    ),
    (
        "edit-five-images",
        EDIT,
        dict(model="wan2.7-videoedit", prompt="p", video_url=VID, reference_images=[IMG] * 5),
        ("media", "at most 4"),
    ),
    (
        "edit-audio-setting",
        EDIT,
        dict(model="wan2.7-videoedit", prompt="p", video_url=VID, audio_setting="keep"),
        ("audio_setting", "auto, origin"),
    ),
    (
        "edit-duration",
        EDIT,
        dict(model="wan2.7-videoedit", prompt="p", video_url=VID, duration=12),
        ("duration", "0, 2-10"),
    ),
    (
        "edit-data-uri-video",
        EDIT,
        dict(model="wan2.7-videoedit", prompt="p", video_url="data:video/mp4;base64,AAAA"),
        ("media[0] (video)", "http(s) URL"),
    ),
    # --- Wan 3.0
    (
        "w3-frame-and-reference",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=[{"type": "first_frame", "url": IMG}, *_ref(1)]),
        ("media", "first_frame and reference_image cannot be combined"),
    ),
    ("w3-eleven-images", ANY, dict(model="wan3.0-video", prompt="p", media=_ref(11)), ("media", "at most 10")),
    (
        "w3-duration",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=_ref(1), parameters={"duration": 31}),
        ("duration", "-1, 2-30"),
    ),
    (
        "w3-seed",
        ANY,
        dict(model="wan3.0-video-prime", prompt="p", media=_ref(1), seed=-2),
        ("seed", "[-1, 2147483647]"),
    ),
    (
        "w3-resolution",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=_ref(1), parameters={"resolution": "4K"}),
        ("resolution", "480P, 720P, 1080P"),
    ),
    (
        "w3-media-type",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=[{"type": "mask", "url": IMG}]),
        ("media[0].type", "first_frame, last_frame, reference_image"),
    ),
    (
        "w3-file-and-link",
        ANY,
        dict(
            model="wan3.0-video",
            prompt="p",
            media=[{"type": "file", "url": "https://x.org/a.pdf"}, {"type": "link", "url": "https://x.org"}],
        ),
        ("media", "file and link cannot be combined"),
    ),
    (
        "w3-link-not-http",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=[{"type": "link", "url": "/etc/hosts"}]),
        ("media[0] (link)", "http(s) URL"),
    ),
    (
        "w3-item-field",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=[{"type": "reference_image", "url": IMG, "voice": WAV}]),
        ("media[0].voice", "type, url, reference_voice"),
    ),
    (
        "w3-voice-not-taken",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=[{"type": "reference_image", "url": IMG, "reference_voice": WAV}]),
        ("media[0].reference_voice", "reference_image and reference_video items"),
    ),
    (
        "w3-unknown-field",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=_ref(1), parameters={"fps": 60}),
        ("parameters", "input_extra"),
    ),
    ("w3-no-prompt", ANY, dict(model="wan3.0-video", media=_ref(1)), ("prompt", "required")),
    (
        "w3-gs-malformed",
        ANY,
        dict(model="wan3.0-video", prompt="p", media=[{"type": "reference_image", "url": "gs://b"}]),
        ("reference_image", "gs://bucket/object"),
    ),
    (
        "w3-enable-thinking-not-bool",
        ANY,
        dict(model="wan3.0-video", prompt="p", parameters={"enable_thinking": "yes"}),
        ("enable_thinking", "true or false"),
    ),
    (
        "t27-enable-thinking",
        T2V,
        dict(model="wan2.7-t2v", prompt="p", parameters={"enable_thinking": True}),
        ("enable_thinking", "wan3.0-video, wan3.0-video-prime"),
    ),
    # --- VACE
    (
        "vace-function",
        VACE,
        dict(model="wan2.1-vace-plus", prompt="p", function="paint"),
        ("function", "image_reference"),
    ),
    (
        "vace-repaint-no-condition",
        VACE,
        dict(model="wan2.1-vace-plus", prompt="p", function="video_repainting", video_url=VID),
        ("control_condition", "required"),
    ),
    (
        "vace-strength",
        VACE,
        dict(
            model="wan2.1-vace-plus",
            prompt="p",
            function="video_repainting",
            video_url=VID,
            control_condition="depth",
            parameters={"strength": 2},
        ),
        ("strength", "[0, 1]"),
    ),
    (
        "vace-four-refs",
        VACE,
        dict(model="wan2.1-vace-plus", prompt="p", function="image_reference", ref_images_url=[IMG] * 4),
        ("ref_images_url", "1-3"),
    ),
    (
        "vace-two-masks",
        VACE,
        dict(
            model="wan2.1-vace-plus",
            prompt="p",
            function="video_edit",
            video_url=VID,
            mask_image_url=IMG,
            mask_video_url=VID,
        ),
        ("mask_video_url", "mask_image_url or mask_video_url"),
    ),
    (
        "vace-extension-empty",
        VACE,
        dict(model="wan2.1-vace-plus", prompt="p", function="video_extension"),
        ("first_clip_url", "first_frame_url"),
    ),
    (
        "vace-condition",
        VACE,
        dict(
            model="wan2.1-vace-plus", prompt="p", function="video_repainting", video_url=VID, control_condition="edges"
        ),
        ("control_condition", "posebodyface, posebody, depth, scribble"),
    ),
    # --- speech-to-video
    ("s2v-no-audio", S2V, dict(model="wan2.2-s2v", image_url=IMG), ("audio_url", "required")),
    (
        "s2v-resolution",
        S2V,
        dict(model="wan2.2-s2v", image_url=IMG, audio_url=WAV, resolution="1080P"),
        ("resolution", "480P, 720P"),
    ),
    (
        "s2v-duration",
        S2V,
        dict(model="wan2.2-s2v", image_url=IMG, audio_url=WAV, duration=10),
        ("duration", "is not supported by wan2.2-s2v; only"),
    ),
    # --- animate
    (
        "animate-mode",
        ANIMATE,
        dict(model="wan2.2-animate-move", image_url=IMG, video_url=VID, mode="fast"),
        ("mode", "wan-std, wan-pro"),
    ),
    (
        "animate-tiny",
        ANIMATE,
        dict(model="wan2.2-animate-mix", image_url="@tiny", video_url=VID),
        ("image_url", "[200, 4096]"),
    ),
    (
        "animate-avi-31s",
        ANIMATE,
        dict(model="wan2.2-animate-move", image_url=IMG, video_url="@long_avi"),
        ("video_url", "long.avi lasts 31.0 s", "2-30 s"),
    ),
    (
        "animate-prompt",
        ANIMATE,
        dict(model="wan2.2-animate-move", image_url=IMG, video_url=VID, prompt="dance"),
        ("prompt", "not"),
    ),
    # --- a typed operator given another mode's model
    ("edit-with-i2v-model", EDIT, dict(model="wan2.7-i2v", prompt="p", video_url=VID), ("model", "wan2.7-videoedit")),
]


def _assert_nothing_sent(simulator: Any) -> None:
    stats = simulator.stats()
    assert simulator.tasks() == []
    assert stats["tasks_created"] == 0, stats
    assert sum(stats["requests"].values()) == 0, stats


@pytest.mark.parametrize(("case", "operator_class", "params", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_invalid_input_of_a_new_mode_fails_before_any_request(
    case, operator_class, params, fragments, tmp_path, monkeypatch, wan_simulator
):
    files = _files(tmp_path)

    def real(value: Any) -> Any:
        if isinstance(value, str):
            return files[value]() if value in files else value
        if isinstance(value, list):
            return [real(v) for v in value]
        if isinstance(value, dict):
            return {real(k): real(v) for k, v in value.items()}
        return value

    monkeypatch.setenv("AIRFLOW_CONN_WAN_INVALID_MODES", wan_simulator.connection_json())
    operator = operator_class(task_id=f"invalid-{case}", wan_conn_id="wan_invalid_modes", **real(params))
    with pytest.raises(WanInvalidInputError) as excinfo:
        operator.execute(context={})
    message = str(excinfo.value)
    for fragment in (params["model"], *fragments):
        assert fragment in message, f"{fragment!r} not in {message!r}"
    _assert_nothing_sent(wan_simulator)


def test_at_least_forty_new_invalid_inputs():
    assert len(CASES) >= 40
