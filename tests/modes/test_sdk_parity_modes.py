"""
Issue 12, acceptance 1: for every new mode, our operator's create request equals the official SDK's for the same
inputs (path, body and the headers that matter), with URLs and with local files; local files go through the same
temporary-upload flow on both sides (policy request per file, form upload of the same bytes, oss:// URL in the body,
``X-DashScope-OssResourceResolve: enable``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dashscope
import pytest
from dashscope import VideoSynthesis

from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.media import upload_all
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
from tests.modes.capture import UploadCaptureServer
from tests.modes.media_files import media_set

KEY = "sk-parity-modes"
IMG = "https://example.com/media/ref.png"
VID = "https://example.com/media/clip.mp4"
WAV = "https://example.com/media/voice.wav"
HEADERS_THAT_MATTER = ("authorization", "x-dashscope-async", "content-type", "x-dashscope-ossresourceresolve")

# (id, operator class, operator kwargs, SDK kwargs); m maps names to local paths (media_set)
Case = tuple[str, type, Callable[[dict[str, str]], dict[str, Any]], Callable[[dict[str, str]], dict[str, Any]]]
CASES: list[Case] = [
    (
        "wan2.7-t2v",
        WanTextToVideoOperator,
        lambda m: dict(
            model="wan2.7-t2v",
            prompt="a cat",
            resolution="720P",
            ratio="9:16",
            duration=8,
            audio_url=m["audio"],
            seed=3,
        ),
        lambda m: dict(
            model="wan2.7-t2v",
            prompt="a cat",
            resolution="720P",
            ratio="9:16",
            duration=8,
            audio_url=m["audio"],
            seed=3,
        ),
    ),
    (
        "wan2.7-i2v-first-last-audio",
        WanImageToVideoOperator,
        lambda m: dict(
            model="wan2.7-i2v",
            prompt="turn",
            img_url=m["first"],
            last_frame_url=m["last"],
            audio_url=m["audio"],
            resolution="720P",
            duration=5,
        ),
        lambda m: dict(
            model="wan2.7-i2v",
            prompt="turn",
            resolution="720P",
            duration=5,
            media=[
                {"type": "first_frame", "url": m["first"]},
                {"type": "last_frame", "url": m["last"]},
                {"type": "driving_audio", "url": m["audio"]},
            ],
        ),
    ),
    (
        "wan2.7-i2v-continuation",
        WanImageToVideoOperator,
        lambda m: dict(model="wan2.7-i2v", prompt="carry on", first_clip_url=m["clip"], duration=10),
        lambda m: dict(
            model="wan2.7-i2v", prompt="carry on", duration=10, media=[{"type": "first_clip", "url": m["clip"]}]
        ),
    ),
    (
        "wan2.7-r2v-voice",
        WanReferenceToVideoOperator,
        lambda m: dict(
            model="wan2.7-r2v",
            prompt="Image 1 talks to Video 1",
            reference_images=[m["ref1"]],
            reference_videos=[VID],
            reference_voices={m["ref1"]: m["voice"]},
            resolution="1080P",
            ratio="1:1",
            duration=6,
            audio=True,
        ),
        lambda m: dict(
            model="wan2.7-r2v",
            prompt="Image 1 talks to Video 1",
            resolution="1080P",
            ratio="1:1",
            duration=6,
            audio=True,
            media=[
                {"type": "reference_image", "url": m["ref1"], "reference_voice": m["voice"]},
                {"type": "reference_video", "url": VID},
            ],
        ),
    ),
    (
        "wan2.7-videoedit",
        WanVideoEditOperator,
        lambda m: dict(
            model="wan2.7-videoedit",
            prompt="make it night",
            video_url=m["clip"],
            reference_images=[m["ref1"]],
            audio_setting="origin",
            resolution="720P",
            ratio="16:9",
        ),
        lambda m: dict(
            model="wan2.7-videoedit",
            prompt="make it night",
            audio_setting="origin",
            resolution="720P",
            ratio="16:9",
            media=[{"type": "video", "url": m["clip"]}, {"type": "reference_image", "url": m["ref1"]}],
        ),
    ),
    (
        "wan3.0-video-references",
        WanVideoOperator,
        lambda m: dict(
            model="wan3.0-video",
            prompt="Image 1 and Image 2 dance to Audio 1",
            media=[
                {"type": "reference_image", "url": m["ref1"]},
                {"type": "reference_image", "url": m["ref2"]},
                {"type": "reference_video", "url": VID},
                {"type": "reference_audio", "url": m["voice"]},
            ],
            parameters={"resolution": "720P", "ratio": "adaptive", "duration": 12, "audio": True, "seed": -1},
        ),
        lambda m: dict(
            model="wan3.0-video",
            prompt="Image 1 and Image 2 dance to Audio 1",
            resolution="720P",
            ratio="adaptive",
            duration=12,
            audio=True,
            seed=-1,
            media=[
                {"type": "reference_image", "url": m["ref1"]},
                {"type": "reference_image", "url": m["ref2"]},
                {"type": "reference_video", "url": VID},
                {"type": "reference_audio", "url": m["voice"]},
            ],
        ),
    ),
    (
        # added with nothing but its schema row: placed, checked and sent like the SDK sends it
        "wan3.0-video-enable-thinking",
        WanVideoOperator,
        lambda m: dict(
            model="wan3.0-video", prompt="a heist in three shots", parameters={"enable_thinking": True, "duration": 20}
        ),
        lambda m: dict(model="wan3.0-video", prompt="a heist in three shots", enable_thinking=True, duration=20),
    ),
    (
        "wan3.0-video-prime-frames-auto-length",
        WanVideoOperator,
        lambda m: dict(
            model="wan3.0-video-prime",
            prompt="sunrise",
            media=[{"type": "first_frame", "url": m["first"]}, {"type": "last_frame", "url": m["last"]}],
            parameters={"duration": -1, "resolution": "1080P"},
        ),
        lambda m: dict(
            model="wan3.0-video-prime",
            prompt="sunrise",
            duration=-1,
            resolution="1080P",
            media=[{"type": "first_frame", "url": m["first"]}, {"type": "last_frame", "url": m["last"]}],
        ),
    ),
    (
        "wan2.6-r2v",
        WanReferenceToVideoOperator,
        lambda m: dict(
            model="wan2.6-r2v",
            prompt="character1 waves",
            reference_urls=[m["ref1"], VID],
            size="1280*720",
            duration=5,
            shot_type="multi",
            audio=True,
        ),
        lambda m: dict(
            model="wan2.6-r2v",
            prompt="character1 waves",
            reference_urls=[m["ref1"], VID],
            size="1280*720",
            duration=5,
            shot_type="multi",
            audio=True,
        ),
    ),
    (
        "wan2.6-r2v-flash-silent",
        WanReferenceToVideoOperator,
        lambda m: dict(model="wan2.6-r2v-flash", prompt="character1 runs", reference_urls=[IMG], audio=False),
        lambda m: dict(model="wan2.6-r2v-flash", prompt="character1 runs", reference_urls=[IMG], audio=False),
    ),
    (
        "vace-image-reference",
        WanVaceOperator,
        lambda m: dict(
            model="wan2.1-vace-plus",
            function="image_reference",
            prompt="a dog in a park",
            ref_images_url=[IMG, IMG.replace("ref", "bg")],
            parameters={"obj_or_bg": ["obj", "bg"]},
            size="1280*720",
        ),
        lambda m: dict(
            model="wan2.1-vace-plus",
            prompt="a dog in a park",
            size="1280*720",
            obj_or_bg=["obj", "bg"],
            extra_input={"function": "image_reference", "ref_images_url": [IMG, IMG.replace("ref", "bg")]},
        ),
    ),
    (
        "vace-video-repainting",
        WanVaceOperator,
        lambda m: dict(
            model="wan2.1-vace-plus",
            function="video_repainting",
            prompt="watercolor",
            video_url=VID,
            control_condition="depth",
            parameters={"strength": 0.6},
        ),
        lambda m: dict(
            model="wan2.1-vace-plus",
            prompt="watercolor",
            control_condition="depth",
            strength=0.6,
            extra_input={"function": "video_repainting", "video_url": VID},
        ),
    ),
    (
        "vace-video-edit",
        WanVaceOperator,
        lambda m: dict(
            model="wan2.1-vace-plus",
            function="video_edit",
            prompt="a red hat",
            video_url=VID,
            mask_image_url=IMG,
            parameters={"mask_frame_id": 1, "mask_type": "tracking", "expand_ratio": 0.05},
        ),
        lambda m: dict(
            model="wan2.1-vace-plus",
            prompt="a red hat",
            mask_type="tracking",
            expand_ratio=0.05,
            extra_input={"function": "video_edit", "video_url": VID, "mask_image_url": IMG, "mask_frame_id": 1},
        ),
    ),
    (
        "vace-video-extension-local-frame",
        WanVaceOperator,
        lambda m: dict(
            model="wan2.1-vace-plus", function="video_extension", prompt="the dog runs on", first_frame_url=m["first"]
        ),
        lambda m: dict(
            model="wan2.1-vace-plus",
            prompt="the dog runs on",
            first_frame_url=m["first"],
            extra_input={"function": "video_extension"},
        ),
    ),
    (
        "vace-video-outpainting",
        WanVaceOperator,
        lambda m: dict(
            model="wan2.1-vace-plus",
            function="video_outpainting",
            prompt="wider",
            video_url=VID,
            parameters={"top_scale": 1.5, "bottom_scale": 1.5, "left_scale": 1.2, "right_scale": 1.2},
        ),
        lambda m: dict(
            model="wan2.1-vace-plus",
            prompt="wider",
            top_scale=1.5,
            bottom_scale=1.5,
            left_scale=1.2,
            right_scale=1.2,
            extra_input={"function": "video_outpainting", "video_url": VID},
        ),
    ),
    (
        "s2v-local-audio",
        WanSpeechToVideoOperator,
        lambda m: dict(model="wan2.2-s2v", image_url=IMG, audio_url=m["audio"], resolution="720P"),
        lambda m: dict(
            model="wan2.2-s2v",
            task="image2video",
            audio_url=m["audio"],
            resolution="720P",
            extra_input={"image_url": IMG},
        ),
    ),
    (
        "animate-move",
        WanAnimateOperator,
        lambda m: dict(model="wan2.2-animate-move", image_url=IMG, video_url=VID, mode="wan-std"),
        lambda m: dict(
            model="wan2.2-animate-move",
            task="image2video",
            mode="wan-std",
            extra_input={"image_url": IMG, "video_url": VID},
        ),
    ),
    (
        "animate-mix",
        WanAnimateOperator,
        lambda m: dict(model="wan2.2-animate-mix", image_url=IMG, video_url=VID, mode="wan-pro", watermark=True),
        lambda m: dict(
            model="wan2.2-animate-mix",
            task="image2video",
            mode="wan-pro",
            watermark=True,
            extra_input={"image_url": IMG, "video_url": VID},
        ),
    ),
]

_OSS = re.compile(r"oss://dashscope-instant/capture/[0-9a-f]+/")


def _normalized(value: Any) -> Any:
    """oss:// URLs without their per-policy directory (random on both sides)."""
    if isinstance(value, str):
        return _OSS.sub("oss://UPLOADED/", value)
    if isinstance(value, dict):
        return {k: _normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def _strip_sdk_extras(body: dict[str, Any]) -> dict[str, Any]:
    # SDK 1.x always adds input.extend_prompt and input.function="video-synthesis", and sends prompt: null
    input_ = {
        k: v
        for k, v in body["input"].items()
        if k != "extend_prompt" and v is not None and not (k == "function" and v == "video-synthesis")
    }
    return {**body, "input": input_}


def _uploads(server: UploadCaptureServer) -> list[tuple[str, bytes, str]]:
    return sorted(
        (f["key"].decode().rsplit("/", 1)[1], f["file"], f["x-oss-content-type"].decode()) for f in server.uploads
    )


@pytest.mark.parametrize(("case", "operator_class", "ours", "theirs"), CASES, ids=[c[0] for c in CASES])
def test_create_request_matches_the_official_sdk(monkeypatch, tmp_path: Path, case, operator_class, ours, theirs):
    media = media_set(tmp_path)
    with UploadCaptureServer() as server:
        monkeypatch.setattr(dashscope, "base_http_api_url", server.base_url)
        response = VideoSynthesis.async_call(api_key=KEY, **copy.deepcopy(theirs(media)))
        assert response.status_code == 200, response
        [sdk] = server.creates
        sdk_policies, sdk_uploads = sorted(server.policies), _uploads(server)
        server.reset()

        monkeypatch.setenv(
            "AIRFLOW_CONN_WAN_PARITY",
            f'{{"conn_type": "wan", "password": "{KEY}", "extra": {{"base_url": "{server.base_url}"}}}}',
        )
        operator = operator_class(task_id="parity", wan_conn_id="wan_parity", **ours(media))
        endpoint, body = operator.build_request()
        hook = WanHook(wan_conn_id="wan_parity")
        # what submit_job does before the create
        upload_all(hook, operator.model, operator._local_media)
        hook.create_task(endpoint, body)
        [mine] = server.creates
        my_policies, my_uploads = sorted(server.policies), _uploads(server)

    assert mine["path"] == sdk["path"], "both must call the same endpoint"
    assert _normalized(mine["body"]) == _normalized(_strip_sdk_extras(sdk["body"]))
    for header in HEADERS_THAT_MATTER:
        assert mine["headers"].get(header) == sdk["headers"].get(header), header
    # the same files went through the same upload flow
    assert my_policies == sdk_policies
    assert my_uploads == sdk_uploads
    # and the comparison is not vacuous
    assert mine["body"]["model"] == ours(media)["model"]
    local = [p for p in media.values() if p in repr(ours(media))]
    assert len(my_uploads) == len(local)
    if local:
        assert mine["headers"]["x-dashscope-ossresourceresolve"] == "enable"
        assert "oss://" in repr(mine["body"])
