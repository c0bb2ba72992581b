"""
Issue 3, acceptance 2: for the same parameters, each operator's create request equals what the official
``dashscope`` SDK sends (body and the headers that matter), apart from the SDK's deprecated extras.
"""

from __future__ import annotations

from typing import Any

import dashscope
import pytest
from dashscope import VideoSynthesis

from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.operators.wan import (
    WanImageToVideoOperator,
    WanKeyframeToVideoOperator,
    WanTextToVideoOperator,
)
from tests.foundation.capture import CaptureServer

KEY = "sk-parity-test-key"
FIRST = "https://example.com/frames/first.png"
LAST = "https://example.com/frames/last.png"

CASES: list[tuple[str, type, dict[str, Any]]] = [
    (
        "t2v-wan2.6-all-parameters",
        WanTextToVideoOperator,
        dict(
            model="wan2.6-t2v",
            prompt="a cat on a skateboard",
            negative_prompt="blurry",
            size="1280*720",
            duration=10,
            prompt_extend=True,
            shot_type="multi",
            watermark=False,
            seed=42,
            audio_url="https://example.com/a.mp3",
        ),
    ),
    (
        "t2v-wan2.5",
        WanTextToVideoOperator,
        dict(model="wan2.5-t2v-preview", prompt="a fox detective", size="832*480", duration=5, audio=False),
    ),
    ("t2v-wan2.2-minimal", WanTextToVideoOperator, dict(model="wan2.2-t2v-plus", prompt="subway musician")),
    (
        "i2v-wan2.5",
        WanImageToVideoOperator,
        dict(
            model="wan2.5-i2v-preview",
            prompt="the cat turns its head",
            img_url=FIRST,
            resolution="720P",
            duration=10,
            audio=True,
            seed=7,
            watermark=True,
        ),
    ),
    (
        "i2v-wan2.1-template",
        WanImageToVideoOperator,
        dict(model="wan2.1-i2v-turbo", img_url=FIRST, template="flying", resolution="480P", duration=3),
    ),
    (
        "kf2v-flash",
        WanKeyframeToVideoOperator,
        dict(
            model="wan2.2-kf2v-flash",
            prompt="morph",
            first_frame_url=FIRST,
            last_frame_url=LAST,
            resolution="720P",
            prompt_extend=False,
            negative_prompt="blur",
        ),
    ),
    (
        "kf2v-plus-template",
        WanKeyframeToVideoOperator,
        dict(model="wan2.1-kf2v-plus", prompt="spin", first_frame_url=FIRST, template="solaron", seed=1),
    ),
]

# the SDK's deprecated extras, which our requests leave out on purpose
SDK_ONLY_INPUT = {"extend_prompt", "function"}
HEADERS_THAT_MATTER = ("authorization", "x-dashscope-async", "content-type")


def _sdk_request(base_url: str, params: dict[str, Any]) -> None:
    dashscope.base_http_api_url = base_url
    response = VideoSynthesis.async_call(api_key=KEY, **params)
    assert response.status_code == 200, response


def _strip_sdk_extras(body: dict[str, Any]) -> dict[str, Any]:
    input_ = {k: v for k, v in body["input"].items() if k not in SDK_ONLY_INPUT and v is not None}
    return {**body, "input": input_}


@pytest.mark.parametrize(("case", "operator_class", "params"), CASES, ids=[c[0] for c in CASES])
def test_create_request_matches_official_sdk(monkeypatch, case, operator_class, params):
    with CaptureServer() as server:
        monkeypatch.setenv(
            "AIRFLOW_CONN_WAN_PARITY",
            f'{{"conn_type": "wan", "password": "{KEY}", "extra": {{"base_url": "{server.base_url}"}}}}',
        )
        _sdk_request(server.base_url, params)
        operator = operator_class(task_id="parity", wan_conn_id="wan_parity", **params)
        endpoint, body = operator.build_request()
        WanHook(wan_conn_id="wan_parity").create_task(endpoint, body)

        sdk, ours = server.requests
    assert ours["path"] == sdk["path"], "both must call the same endpoint"
    assert ours["body"] == _strip_sdk_extras(sdk["body"])
    for header in HEADERS_THAT_MATTER:
        assert ours["headers"].get(header) == sdk["headers"].get(header), header
    # and the parity is not vacuous: the parameters we set really travelled
    assert ours["body"]["model"] == params["model"]
    assert ours["headers"]["authorization"] == f"Bearer {KEY}"
