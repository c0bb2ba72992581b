"""
Issue 3, acceptance 3: bad input fails before any request reaches DashScope (the simulator's counters stay at 0),
with a message that names the parameter and what is allowed.
"""

from __future__ import annotations

import base64
import json
import os
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
    # issue 10: special files are never read (a read of /dev/zero never ends, a FIFO blocks)
    if kind in ("dev-zero", "dev-urandom"):
        return "/dev/" + kind[4:]
    if kind == "symlink-to-zero":
        (tmp / "frame.png").symlink_to("/dev/zero")
        return str(tmp / "frame.png")
    if kind == "fifo":
        os.mkfifo(tmp / "frame.png")
        return str(tmp / "frame.png")
    if kind == "directory":
        (tmp / "frame.png").mkdir()
        return str(tmp / "frame.png")
    # data: URIs get the checks a file gets
    if kind == "data-oversized":
        return "data:image/png;base64," + base64.b64encode(png_bytes(400, 400) + b"\0" * (11 * 1024 * 1024)).decode()
    if kind == "data-malformed":
        return "data:image/png;base64,iVBORw0KGgo*AAAA"
    if kind == "data-wrong-mime":
        return "data:image/webp;base64," + base64.b64encode(png_bytes(400, 400)).decode()
    if kind == "data-garbage":
        return "data:image/png;base64," + base64.b64encode(b"garbage" * 100).decode()
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
    # --- issue 10 ----------------------------------------------------------------------------------------------
    ("i2v-dev-zero", I2V, dict(model="wan2.5-i2v-preview", img_url="@dev-zero"), ("img_url", "character device")),
    ("i2v-dev-urandom", I2V, dict(model="wan2.6-i2v", img_url="@dev-urandom"), ("img_url", "character device")),
    (
        "i2v-symlink-to-zero",
        I2V,
        dict(model="wan2.5-i2v-preview", img_url="@symlink-to-zero"),
        ("img_url", "character device", "JPEG, PNG, BMP, WEBP"),
    ),
    ("i2v-fifo", I2V, dict(model="wan2.5-i2v-preview", img_url="@fifo"), ("img_url", "FIFO", "regular")),
    (
        "kf2v-directory",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url=URL, last_frame_url="@directory"),
        ("last_frame_url", "directory", "regular"),
    ),
    ("i2v-data-oversized", I2V, dict(model="wan2.5-i2v-preview", img_url="@data-oversized"), ("img_url", "10 MB")),
    ("i2v-data-malformed", I2V, dict(model="wan2.5-i2v-preview", img_url="@data-malformed"), ("img_url", "base64")),
    (
        "i2v-data-wrong-mime",
        I2V,
        dict(model="wan2.5-i2v-preview", img_url="@data-wrong-mime"),
        ("img_url", "image/webp", "image/png"),
    ),
    (
        "kf2v-data-garbage",
        KF2V,
        dict(model="wan2.2-kf2v-flash", first_frame_url="@data-garbage", last_frame_url=URL),
        ("first_frame_url", "holds no image", "JPEG, PNG, BMP, WEBP"),
    ),
    (
        "prompt-lone-surrogate",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="a fox \ud83e in snow"),
        ("prompt", "surrogate", "wan2.5-t2v-preview"),
    ),
    ("prompt-nul", T2V, dict(model="wan2.6-t2v", prompt="a fox\x00"), ("prompt", "U+0000", "wan2.6-t2v", "newlines")),
    (
        "prompt-escape-sequence",
        I2V,
        dict(model="wan2.6-i2v", img_url=URL, prompt="\x1b[2Jfox"),
        ("prompt", "U+001B", "wan2.6-i2v"),
    ),
    (
        "negative-prompt-control",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", negative_prompt="blur\x07"),
        ("negative_prompt", "U+0007"),
    ),
    (
        "prompt-control-unknown-model",
        T2V,
        dict(model="wan9.0-t2v-future", prompt="fox\x00"),
        ("prompt", "U+0000", "wan9.0-t2v-future"),
    ),
    (
        "duration-fullwidth-digit",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", duration="５"),
        ("duration", "ASCII digits", "5, 10"),
    ),
    (
        "seed-arabic-indic-digit",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", seed="٣"),
        ("seed", "ASCII digits", "2147483647"),
    ),
    (
        "duration-non-ascii-unknown-model",
        T2V,
        dict(model="wan9.0-t2v-future", prompt="p", duration="١٠"),
        ("duration", "ASCII digits", "wan9.0-t2v-future"),
    ),
    ("model-case", T2V, dict(model="Wan2.5-T2V-Preview", prompt="p"), ("model", "did you mean 'wan2.5-t2v-preview'?")),
    ("model-space", T2V, dict(model="wan2.6-t2v ", prompt="p"), ("model", "did you mean 'wan2.6-t2v'?")),
    ("model-typo", T2V, dict(model="wan2.5-t2v-previw", prompt="p"), ("model", "did you mean 'wan2.5-t2v-preview'?")),
    (
        "budget-parameters-extra",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", parameters_extra={"duration": 10}, max_cost_usd=1.0),
        ("max_cost_usd", "$1.5000", "wan2.5-t2v-preview"),
    ),
    # extras are sent as given, so as JSON: NaN, infinity and what JSON cannot hold (a set; a datetime a native
    # template rendered) failed in Python's words, naming no field, and retryably
    (
        "input-extra-nan",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", input_extra={"strength": float("nan")}),
        ("input_extra", "strength", "JSON"),
    ),
    (
        "parameters-extra-infinity",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", parameters_extra={"mix": {"weight": float("inf")}}),
        ("parameters_extra", "mix", "JSON"),
    ),
    (
        "input-extra-set",
        T2V,
        dict(model="wan2.5-t2v-preview", prompt="p", input_extra={"tags": {"a", "b"}}),
        ("input_extra", "tags", "JSON"),
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
@pytest.mark.timeout(60)
def test_invalid_input_fails_before_any_request(
    case, operator_class, params, fragments, tmp_path, wan_simulator, simulator_connection
):
    params = {
        k: (_image(v[1:], tmp_path) if isinstance(v, str) and v.startswith("@") else v) for k, v in params.items()
    }
    operator = operator_class(task_id=f"invalid-{case}", wan_conn_id=simulator_connection(), **params)
    # the budget is checked once the retry-safety record says no earlier try made a task for this request
    store = _TaskStateStore()
    with pytest.raises(WanInvalidInputError) as excinfo:
        operator.execute(context={"task_state_store": store})
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    _assert_nothing_sent(wan_simulator)
    assert store.data == {}, "no create may be marked in flight"


def test_malformed_prices_fail_before_any_request(wan_simulator, simulator_connection, monkeypatch):
    monkeypatch.setenv("AIRFLOW__WAN__PRICES", '{"wan2.5-t2v-preview": {"720P": "cheap"}}')
    operator = T2V(task_id="prices", wan_conn_id=simulator_connection(), model="wan2.5-t2v-preview", prompt="p")
    with pytest.raises(WanInvalidInputError, match=r"prices: prices\['wan2.5-t2v-preview'\] must map tiers"):
        operator.execute(context={"task_state_store": _TaskStateStore()})
    _assert_nothing_sent(wan_simulator)


class _TaskStateStore:
    """Airflow 3.3's task state store accessor (get/set/delete) over a dict: what a first try's context holds."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


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


def test_a_truly_new_model_name_is_accepted_with_a_warning(wan_simulator, simulator_connection, capfd):
    operator = T2V(task_id="new-model", wan_conn_id=simulator_connection(), model="wan2.9-t2v", prompt="p")
    endpoint, body = operator.build_request()
    assert endpoint == "services/aigc/video-generation/video-synthesis"
    assert body["model"] == "wan2.9-t2v"
    out, err = capfd.readouterr()
    assert "Model 'wan2.9-t2v' is not in the provider's catalogue" in out + err
