"""Acceptance 2: each documented error answers with its documented HTTP status and {request_id, code, message}."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

VIDEO = "services/aigc/video-generation/video-synthesis"
KF2V = "services/aigc/image2video/video-synthesis"


def assert_error(response: requests.Response, status: int, code: str, *, mentions: str | None = None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"request_id", "code", "message"}, body
    assert body["code"] == code
    assert body["request_id"]
    if mentions is not None:
        assert mentions in body["message"], body["message"]
    return str(body["message"])


# --- auth and protocol ---------------------------------------------------------------------------------------------
def test_missing_api_key_is_401(api: Any, wan_simulator: Any) -> None:
    response = api.create(headers={"X-DashScope-Async": "enable"})
    message = assert_error(response, 401, "InvalidApiKey")
    assert message == "Invalid API-key provided."
    assert wan_simulator.stats()["tasks_created"] == 0


def test_wrong_api_key_is_401_on_every_route(api: Any) -> None:
    wrong = {"Authorization": "Bearer sk-not-a-key", "X-DashScope-Async": "enable"}
    assert_error(api.create(headers=wrong), 401, "InvalidApiKey")
    assert_error(api.get("any-id", headers=wrong), 401, "InvalidApiKey")
    assert_error(api.session.get(f"{api.base_url}/tasks", headers=wrong), 401, "InvalidApiKey")
    assert_error(api.session.post(f"{api.base_url}/tasks/x/cancel", headers=wrong), 401, "InvalidApiKey")


def test_every_configured_key_is_accepted(wan_simulator: Any, api: Any) -> None:
    wan_simulator.configure(api_keys=["sk-first", "sk-second"])
    for key in ("sk-first", "sk-second"):
        assert api.create(headers={"Authorization": f"Bearer {key}", "X-DashScope-Async": "enable"}).ok
    assert_error(api.create(), 401, "InvalidApiKey")  # the start-up key was replaced


def test_synchronous_call_is_403(api: Any, wan_simulator: Any) -> None:
    response = api.create(headers={"Authorization": f"Bearer {api.api_key}"})
    message = assert_error(response, 403, "AccessDenied")
    assert message == "current user api does not support synchronous calls."
    assert wan_simulator.stats()["tasks_created"] == 0


def test_body_that_is_not_json_is_400(api: Any) -> None:
    response = api.session.post(f"{api.base_url}/{VIDEO}", data=b"model=wan", headers=api.headers())
    assert_error(response, 400, "InvalidParameter", mentions="JSON")


def test_unknown_path_answers_in_dashscope_shape(api: Any) -> None:
    response = api.session.post(f"{api.base_url}/services/aigc/nothing-here", headers=api.headers())
    assert_error(response, 404, "NotFound")


# --- model and parameters ------------------------------------------------------------------------------------------
def test_unknown_model_is_404_model_not_found(api: Any, wan_simulator: Any) -> None:
    message = assert_error(api.create(model="wan9.9-t2v-ultra"), 404, "ModelNotFound", mentions="wan9.9-t2v-ultra")
    assert message
    assert wan_simulator.tasks() == []


def test_missing_model_is_400(api: Any) -> None:
    response = api.session.post(f"{api.base_url}/{VIDEO}", json={"input": {"prompt": "x"}}, headers=api.headers())
    assert_error(response, 400, "BadRequest.EmptyModel", mentions="model")


def test_model_on_the_wrong_endpoint_is_400_url_error(api: Any) -> None:
    assert_error(api.create(endpoint=KF2V), 400, "InvalidParameter", mentions="url error, please check url!")
    response = api.create(
        model="wan2.2-kf2v-flash",
        input={"first_frame_url": "https://x/a.png", "last_frame_url": "https://x/b.png"},
        endpoint=VIDEO,
    )
    assert_error(response, 400, "InvalidParameter", mentions="url error")


FRAMES = {"first_frame_url": "https://example.com/first.png", "last_frame_url": "https://example.com/last.png"}

# (model, input, parameters, parameter named in the message): one per kind of invalid parameter
INVALID = {
    "size not allowed": ("wan2.5-t2v-preview", {"prompt": "a"}, {"size": "999*999"}, "size"),
    "size of another model": ("wan2.6-t2v", {"prompt": "a"}, {"size": "832*480"}, "size"),
    "resolution on t2v": ("wan2.5-t2v-preview", {"prompt": "a"}, {"resolution": "720P"}, "resolution"),
    "duration not allowed": ("wan2.5-t2v-preview", {"prompt": "a"}, {"duration": 7}, "duration"),
    "duration not an int": ("wan2.6-t2v", {"prompt": "a"}, {"duration": "5"}, "duration"),
    "kf2v duration fixed": ("wan2.2-kf2v-flash", FRAMES, {"duration": 10}, "duration"),
    "prompt missing": ("wan2.5-t2v-preview", {}, {}, "prompt"),
    "prompt not a string": ("wan2.5-t2v-preview", {"prompt": 42}, {}, "prompt"),
    "resolution not allowed": ("wan2.1-kf2v-plus", FRAMES, {"resolution": "480P"}, "resolution"),
    "size on kf2v": ("wan2.2-kf2v-flash", FRAMES, {"size": "1280*720"}, "size"),
    "first frame missing": ("wan2.2-kf2v-flash", {"last_frame_url": "https://e/x.png"}, {}, "first_frame_url"),
    "last frame missing": ("wan2.2-kf2v-flash", {"first_frame_url": "https://e/x.png"}, {}, "last_frame_url"),
    "frame not a URL": ("wan2.2-kf2v-flash", {**FRAMES, "first_frame_url": "/tmp/x.png"}, {}, "first_frame_url"),
    "image on t2v": ("wan2.5-t2v-preview", {"prompt": "a", "img_url": "https://e/x.png"}, {}, "img_url"),
    "template unsupported": ("wan2.2-kf2v-flash", {**FRAMES, "template": "solaron"}, {}, "template"),
    "shot_type unsupported": ("wan2.5-t2v-preview", {"prompt": "a"}, {"shot_type": "multi"}, "shot_type"),
    "shot_type value": ("wan2.6-t2v", {"prompt": "a"}, {"shot_type": "triple"}, "shot_type"),
    "shot_type without extend": (
        "wan2.6-t2v",
        {"prompt": "a"},
        {"shot_type": "multi", "prompt_extend": False},
        "shot_type",
    ),
    "audio unsupported": ("wan2.2-t2v-plus", {"prompt": "a"}, {"audio": True}, "audio"),
    "audio_url format": ("wan2.5-t2v-preview", {"prompt": "a", "audio_url": "https://e/a.ogg"}, {}, "audio_url"),
    "audio_url not http": ("wan2.5-t2v-preview", {"prompt": "a", "audio_url": "a.mp3"}, {}, "audio_url"),
    "seed out of range": ("wan2.5-t2v-preview", {"prompt": "a"}, {"seed": -1}, "seed"),
    "flag not boolean": ("wan2.5-t2v-preview", {"prompt": "a"}, {"watermark": "yes"}, "watermark"),
    "negative_prompt not a string": ("wan2.5-t2v-preview", {"prompt": "a", "negative_prompt": 1}, {}, "negative"),
}


@pytest.mark.parametrize(("model", "input_", "parameters", "parameter"), INVALID.values(), ids=INVALID.keys())
def test_invalid_parameter_is_400(
    api: Any, wan_simulator: Any, model: str, input_: dict[str, Any], parameters: dict[str, Any], parameter: str
) -> None:
    assert_error(api.create(model, input_, parameters), 400, "InvalidParameter", mentions=parameter)
    assert wan_simulator.stats()["tasks_created"] == 0


def test_input_that_is_not_an_object_is_400(api: Any) -> None:
    response = api.session.post(
        f"{api.base_url}/{VIDEO}", json={"model": "wan2.5-t2v-preview", "input": "a cat"}, headers=api.headers()
    )
    assert_error(response, 400, "InvalidParameter", mentions="input")


def test_several_problems_are_all_reported(api: Any) -> None:
    response = api.create("wan2.5-t2v-preview", {"prompt": "a"}, {"size": "1*1", "duration": 3, "seed": -5})
    message = assert_error(response, 400, "InvalidParameter")
    for parameter in ("size", "duration", "seed"):
        assert parameter in message


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_moderation_is_400_data_inspection_failed(api: Any, wan_simulator: Any, field: str) -> None:
    input_ = {"prompt": "a cat", field: "a cat and some Forbidden-Content here"}
    message = assert_error(api.create(input=input_), 400, "DataInspectionFailed")
    assert message == "Input data may contain inappropriate content."
    assert wan_simulator.stats()["tasks_created"] == 0


def test_moderation_word_is_configurable(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(moderation_word="banana")
    assert_error(api.create(input={"prompt": "a banana"}), 400, "DataInspectionFailed")
    assert api.create(input={"prompt": "forbidden-content"}).ok


# --- rate limits ---------------------------------------------------------------------------------------------------
def test_create_rate_limit_is_429_per_model(api: Any, wan_simulator: Any) -> None:
    # wan2.1-kf2v-plus: the catalogue's create_rps is 1
    frames = {"first_frame_url": "https://e/a.png", "last_frame_url": "https://e/b.png"}
    assert api.create("wan2.1-kf2v-plus", frames).ok
    message = assert_error(api.create("wan2.1-kf2v-plus", frames), 429, "Throttling.RateQuota")
    assert message == "Requests rate limit exceeded, please try again later."
    # another model has its own window
    assert api.create("wan2.5-t2v-preview").ok
    time.sleep(1.05)
    assert api.create("wan2.1-kf2v-plus", frames).ok
    stats = wan_simulator.stats()
    assert stats["tasks_created"] == 3
    assert stats["throttled"] == 1
    assert stats["responses"]["create"] == {"200": 3, "429": 1}


def test_create_rate_limit_uses_the_catalogue_value(api: Any) -> None:
    # wan2.5-t2v-preview: 5 creates per second
    codes = [api.create().status_code for _ in range(7)]
    assert codes.count(200) == 5
    assert codes[5:] == [429, 429]


def test_create_rate_limit_can_be_overridden(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(create_rps=0)
    assert all(api.create().ok for _ in range(12))


def test_task_query_rate_limit_is_429_per_api_key(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(task_query_qps=3, api_keys=[api.api_key, "sk-other"])
    task_id = api.create_id()
    codes = [api.get(task_id).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert_error(api.get(task_id), 429, "Throttling.RateQuota")
    assert_error(api.list(), 429, "Throttling.RateQuota")  # the list shares the window
    other = {"Authorization": "Bearer sk-other"}
    assert api.get(task_id, headers=other).status_code == 200
    time.sleep(1.05)
    assert api.get(task_id).status_code == 200
    assert wan_simulator.stats()["status_counts"]["429"] == 2


def test_default_task_query_limit_is_20_per_second(api: Any) -> None:
    codes = [api.get("some-id").status_code for _ in range(25)]
    assert codes.count(200) == 20
    assert set(codes[20:]) == {429}


# --- task states ---------------------------------------------------------------------------------------------------
def test_cancel_pending_task(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=30)
    task_id = api.create_id()
    response = api.cancel(task_id)
    assert response.status_code == 200
    assert set(response.json()) == {"request_id"}
    output = api.get(task_id).json()["output"]
    assert output["task_status"] == "CANCELED"
    assert "end_time" in output
    assert "video_url" not in output


def test_cancel_of_a_running_task_is_400_unsupported_operation(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=0, generation_seconds=30)
    task_id = api.create_id()
    assert api.get(task_id).json()["output"]["task_status"] == "RUNNING"
    assert_error(api.cancel(task_id), 400, "UnsupportedOperation", mentions="PENDING")
    assert api.get(task_id).json()["output"]["task_status"] == "RUNNING"


def test_cancel_of_a_finished_or_unknown_task_is_400(api: Any) -> None:
    task_id = api.create_id()
    assert api.wait(task_id)["output"]["task_status"] == "SUCCEEDED"
    assert_error(api.cancel(task_id), 400, "UnsupportedOperation")
    assert_error(api.cancel("no-such-task"), 400, "UnsupportedOperation")


def test_unknown_task_reads_unknown_with_200(api: Any) -> None:
    response = api.get("7f0c2f4e-0000-4000-8000-000000000000")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"request_id", "output"}
    assert body["output"] == {"task_id": "7f0c2f4e-0000-4000-8000-000000000000", "task_status": "UNKNOWN"}


def test_expired_task_reads_unknown_and_is_purged(api: Any, wan_simulator: Any) -> None:
    task_id = api.create_id()
    assert api.wait(task_id)["output"]["task_status"] == "SUCCEEDED"
    wan_simulator.configure(task_ttl_seconds=0.5)
    time.sleep(0.6)
    body = api.get(task_id).json()
    assert body["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}  # same shape as a never-existing id
    assert "usage" not in body
    assert wan_simulator.tasks() == []
    assert wan_simulator.stats()["tasks_live"] == 0


def test_expired_download_link_is_403(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(link_ttl_seconds=0)
    output = api.wait(api.create_id())["output"]
    time.sleep(1.05)  # Expires has one-second resolution
    response = requests.get(output["video_url"], timeout=10)
    assert response.status_code == 403
    assert response.headers["Content-Type"].startswith("application/xml")
    assert "<Code>AccessDenied</Code>" in response.text
    assert "Request has expired" in response.text


def test_tampered_download_link_is_403(api: Any) -> None:
    url = api.wait(api.create_id())["output"]["video_url"]
    base, _, query = url.partition("?")
    params = dict(part.split("=", 1) for part in query.split("&"))
    later = f"{base}?Expires={int(params['Expires']) + 3600}&OSSAccessKeyId=x&Signature={params['Signature']}"
    for bad in (later, base, url.replace(base.rsplit("/", 1)[1], "other.mp4")):
        response = requests.get(bad, timeout=10)
        assert response.status_code == 403
        assert "<Code>SignatureDoesNotMatch</Code>" in response.text
