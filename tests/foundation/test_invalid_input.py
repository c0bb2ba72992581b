"""
Issue 3, acceptance 3: bad input fails before any request reaches DashScope (the simulator's counters stay at 0),
with a message that names the parameter and what is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.operators.wan import (
    WanImageToVideoOperator,
    WanKeyframeToVideoOperator,
    WanTextToVideoOperator,
)
from tests.foundation.images import png_bytes, write_png

T2V = WanTextToVideoOperator
I2V = WanImageToVideoOperator
KF2V = WanKeyframeToVideoOperator
URL = "https://example.com/frame.png"


def _image(kind: str, tmp: Path) -> str:
    if kind == "missing":
        return str(tmp / "does-not-exist.png")
    if kind == "oversized":
        path = tmp / "huge.png"
        path.write_bytes(png_bytes(400, 400) + b"\0" * (11 * 1024 * 1024))
        return str(path)
    if kind == "text":
        path = tmp / "notes.png"
        path.write_text("not an image at all")
        return str(path)
    if kind == "gif":
        path = tmp / "anim.gif"
        path.write_bytes(b"GIF89a" + b"\0" * 100)
        return str(path)
    if kind == "tiny":
        return str(write_png(tmp / "tiny.png", 100, 100))
    if kind == "giant":
        return str(write_png(tmp / "giant.png", 2400, 400))
    raise AssertionError(kind)


# (id, operator class, parameters, fragments the message must contain: the parameter, then what is allowed)
CASES: list[tuple[str, type, dict[str, Any], tuple[str, ...]]] = [
    ("size-not-for-model", T2V, dict(model="wan2.1-t2v-plus", prompt="p", size="832*480"), ("size", "1280*720")),
    ("size-malformed", T2V, dict(model="wan2.5-t2v-preview", prompt="p", size="1280x720"), ("size", "1280*720")),
    ("size-4k", T2V, dict(model="wan2.6-t2v", prompt="p", size="3840*2160"), ("size", "1920*1080")),
    ("duration-15-on-wan2.5", T2V, dict(model="wan2.5-t2v-preview", prompt="p", duration=15), ("duration", "5, 10")),
    ("duration-fixed-wan2.2", T2V, dict(model="wan2.2-t2v-plus", prompt="p", duration=10), ("duration", "5")),
    ("duration-16-on-wan2.6", T2V, dict(model="wan2.6-t2v", prompt="p", duration=16), ("duration", "2-15")),
    ("duration-bool", T2V, dict(model="wan2.6-t2v", prompt="p", duration=True), ("duration", "2-15")),
    (
        "shot-type-on-wan2.5",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", shot_type="multi"),
        ("shot_type", "wan2.6-t2v"),
    ),
    (
        "shot-type-without-prompt-extend",
        T2V,
        dict(model="wan2.6-t2v", prompt="p", shot_type="multi", prompt_extend=False),
        ("shot_type", "prompt_extend"),
    ),
    ("shot-type-value", T2V, dict(model="wan2.6-t2v", prompt="p", shot_type="triple"), ("shot_type", "single, multi")),
    ("audio-on-wan2.2", T2V, dict(model="wan2.2-t2v-plus", prompt="p", audio=True), ("audio", "wan2.5-t2v-preview")),
    (
        "audio-url-on-wan2.1",
        T2V,
        dict(model="wan2.1-t2v-turbo", prompt="p", audio_url="https://example.com/a.mp3"),
        ("audio_url", "wan2.6-t2v"),
    ),
    (
        "audio-url-not-http",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", audio_url="a.mp3"),
        ("audio_url", "WAV, MP3"),
    ),
    (
        "audio-url-ogg",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", audio_url="https://example.com/a.ogg"),
        ("audio_url", "WAV, MP3"),
    ),
    ("seed-negative", T2V, dict(model="wan2.5-t2v-preview", prompt="p", seed=-1), ("seed", "2147483647")),
    ("seed-too-big", T2V, dict(model="wan2.5-t2v-preview", prompt="p", seed=2**31), ("seed", "2147483647")),
    ("seed-not-int", T2V, dict(model="wan2.5-t2v-preview", prompt="p", seed="abc"), ("seed", "[0, 2147483647]")),
    (
        "watermark-not-bool",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", watermark="yes"),
        ("watermark", "true or false"),
    ),
    (
        "negative-prompt-501",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", negative_prompt="n" * 501),
        ("negative_prompt", "500"),
    ),
    ("prompt-801-on-wan2.2", T2V, dict(model="wan2.2-t2v-plus", prompt="p" * 801), ("prompt", "800")),
    ("prompt-1501-on-wan2.6", T2V, dict(model="wan2.6-t2v", prompt="p" * 1501), ("prompt", "1500")),
    ("prompt-missing", T2V, dict(model="wan2.5-t2v-preview"), ("prompt", "required")),
    ("prompt-blank", T2V, dict(model="wan2.5-t2v-preview", prompt="   "), ("prompt", "required")),
    ("model-of-other-family", T2V, dict(model="wan2.6-i2v", prompt="p"), ("model", "wan2.6-t2v")),
    ("model-empty", T2V, dict(model="", prompt="p"), ("model", "wan2.6-t2v")),
    (
        "input-extra-clash",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", input_extra={"prompt": "q"}),
        ("input_extra", "prompt"),
    ),
    ("budget", T2V, dict(model="wan2.6-t2v", prompt="p", duration=15, max_cost_usd=1.0), ("max_cost_usd", "$2.25")),
    (
        "kf2v-no-last-frame-no-template",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url=URL),
        ("last_frame_url", "template"),
    ),
    (
        "kf2v-template-unsupported",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url=URL, template="solaron"),
        ("template", "wan2.1-kf2v-plus"),
    ),
    (
        "kf2v-resolution",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url=URL, last_frame_url=URL, resolution="4K"),
        ("resolution", "480P, 720P, 1080P"),
    ),
    (
        "kf2v-plus-1080p",
        KF2V,
        dict(model="wan2.1-kf2v-plus", first_frame_url=URL, last_frame_url=URL, resolution="1080P"),
        ("resolution", "720P"),
    ),
    (
        "kf2v-duration",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url=URL, last_frame_url=URL, duration=10),
        ("duration", "5"),
    ),
    (
        "kf2v-audio",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url=URL, last_frame_url=URL, audio=True),
        ("audio", "wan2.6-t2v"),
    ),
    (
        "i2v-resolution",
        I2V,
        dict(model="wan2.2-i2v-plus", img_url=URL, resolution="720P"),
        ("resolution", "480P, 1080P"),
    ),
    ("i2v-duration", I2V, dict(model="wan2.1-i2v-plus", img_url=URL, duration=10), ("duration", "5")),
    (
        "i2v-size-instead-of-resolution",
        I2V,
        dict(model="wan2.5-i2v-preview", img_url=URL, parameters_extra={"size": "1280*720"}),
        ("size", "resolution"),
    ),
    ("i2v-image-unreadable", I2V, dict(model="wan2.5-i2v-preview", img_url="@missing"), ("img_url", "cannot read")),
    ("i2v-image-oversized", I2V, dict(model="wan2.5-i2v-preview", img_url="@oversized"), ("img_url", "10 MB")),
    (
        "i2v-image-not-an-image",
        I2V,
        dict(model="wan2.5-i2v-preview", img_url="@text"),
        ("img_url", "JPEG, PNG, BMP, WEBP"),
    ),
    ("i2v-image-gif", I2V, dict(model="wan2.5-i2v-preview", img_url="@gif"), ("img_url", "JPEG, PNG, BMP, WEBP")),
    ("i2v-image-too-small", I2V, dict(model="wan2.5-i2v-preview", img_url="@tiny"), ("img_url", "[360, 2000]")),
    ("i2v-image-too-wide", I2V, dict(model="wan2.5-i2v-preview", img_url="@giant"), ("img_url", "[360, 2000]")),
    (
        "kf2v-last-frame-unreadable",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url=URL, last_frame_url="@missing"),
        ("last_frame_url", "cannot read"),
    ),
    (
        "i2v-gs-uri-malformed",
        I2V,
        dict(model="wan2.5-i2v-preview", img_url="gs://bucket-only"),
        ("img_url", "gs://bucket/object"),
    ),
]


@pytest.fixture
def simulator_connection(monkeypatch, wan_simulator, wan_simulator_api_key):
    def connect(**extra: Any) -> str:
        monkeypatch.setenv("AIRFLOW_CONN_WAN_INVALID", wan_simulator.connection_json(**extra))
        return "wan_invalid"

    return connect


def _assert_nothing_sent(simulator) -> None:
    tasks = simulator.tasks()
    stats = simulator.stats()
    assert tasks == [], tasks
    assert stats["tasks_created"] == 0, stats
    assert sum(stats["requests"].values()) == 0, stats


@pytest.mark.parametrize(("case", "operator_class", "params", "fragments"), CASES, ids=[c[0] for c in CASES])
def test_invalid_input_fails_before_any_request(
    case, operator_class, params, fragments, tmp_path, wan_simulator, simulator_connection
):
    params = {
        k: (_image(v[1:], tmp_path) if isinstance(v, str) and v.startswith("@") else v) for k, v in params.items()
    }
    operator = operator_class(task_id=f"invalid-{case}", wan_conn_id=simulator_connection(), **params)
    with pytest.raises(WanInvalidInputError) as excinfo:
        operator.execute(context={})
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    _assert_nothing_sent(wan_simulator)


def test_unknown_region_fails_before_any_request(wan_simulator, monkeypatch, wan_simulator_api_key):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_BADREGION",
        json.dumps({"conn_type": "wan", "password": wan_simulator_api_key, "extra": {"region": "tokyo"}}),
    )
    operator = T2V(task_id="region", wan_conn_id="wan_badregion", model="wan2.5-t2v-preview", prompt="p")
    with pytest.raises(WanInvalidInputError, match=r"tokyo.*singapore, beijing, virginia"):
        operator.execute(context={})
    _assert_nothing_sent(wan_simulator)


def test_missing_api_key_fails_before_any_request(wan_simulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_NOKEY", json.dumps({"conn_type": "wan", "extra": {"base_url": wan_simulator.base_url}})
    )
    operator = T2V(task_id="nokey", wan_conn_id="wan_nokey", model="wan2.5-t2v-preview", prompt="p")
    with pytest.raises(WanInvalidInputError, match=r"No DashScope API key.*password"):
        operator.execute(context={})
    _assert_nothing_sent(wan_simulator)


def test_no_connection_and_no_environment_key(wan_simulator, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    operator = T2V(task_id="noconn", wan_conn_id="wan_absent", model="wan2.5-t2v-preview", prompt="p")
    with pytest.raises(WanInvalidInputError, match=r"wan_absent.*DASHSCOPE_API_KEY"):
        operator.execute(context={})
    _assert_nothing_sent(wan_simulator)
