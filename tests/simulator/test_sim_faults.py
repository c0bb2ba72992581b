"""Acceptance 3: every fault-injection mode, observed through real HTTP clients (requests and aiohttp)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import aiohttp
import pytest
import requests

from airflow_provider_wan.hooks.schedule import parse_task_time


# --- error ---------------------------------------------------------------------------------------------------------
def test_error_on_create_is_not_processed(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("error", route="create", status=503, code="ModelUnavailable", retry_after=2)
    response = api.create()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    body = response.json()
    assert set(body) == {"request_id", "code", "message"}
    assert body["code"] == "ModelUnavailable"
    assert body["message"] == "Model is unavailable, try again later."
    assert wan_simulator.tasks() == []  # a refused create makes no task
    assert api.create().status_code == 200  # count defaults to 1
    stats = wan_simulator.stats()
    assert stats["tasks_created"] == 1
    assert stats["faults_fired"] == {"error": 1}


def test_error_throttling_and_custom_message(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("error", route="create", status=429, code="Throttling", message="slow down", count=2)
    for _ in range(2):
        response = api.create()
        assert response.status_code == 429
        assert response.json()["code"] == "Throttling"
        assert response.json()["message"] == "slow down"
        assert "Retry-After" not in response.headers
    assert api.create().ok
    assert wan_simulator.stats()["throttled"] == 2


def test_error_on_get_task_then_recovery(api: Any, wan_simulator: Any) -> None:
    task_id = api.create_id()
    wan_simulator.inject_fault("error", route="get_task", status=500)
    failed = api.get(task_id)
    assert failed.status_code == 500
    assert failed.json()["code"] == "InternalError"
    assert api.get(task_id).status_code == 200


def test_error_on_cancel_and_list(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=30)
    task_id = api.create_id()
    wan_simulator.inject_fault("error", route="cancel", status=504)
    assert api.cancel(task_id).status_code == 504
    assert api.get(task_id).json()["output"]["task_status"] == "PENDING"  # not processed
    wan_simulator.inject_fault("error", route="list", status=502)
    assert api.list().status_code == 502
    assert api.list().status_code == 200


def test_fault_on_any_route_hits_the_next_api_request(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("error", route="any", status=500, count=2)
    assert api.list().status_code == 500
    assert api.get("x").status_code == 500
    assert api.get("x").status_code == 200
    assert wan_simulator.stats()["requests"] == {"list": 1, "get_task": 2}  # admin calls are never counted


def test_permanent_fault_until_cleared(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("error", route="get_task", status=503, count=-1)
    assert all(api.get("x").status_code == 503 for _ in range(5))
    assert wan_simulator.faults()[0]["count"] == -1
    assert wan_simulator.clear_faults() == 1
    assert api.get("x").status_code == 200


# a reset after the headers surfaces as ChunkedEncodingError in requests, before them as ConnectionError
RESET = (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)


# --- reset ---------------------------------------------------------------------------------------------------------
def test_reset_on_create_loses_the_answer_but_makes_the_task(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("reset", route="create")
    with pytest.raises(RESET):
        api.create()
    # the dangerous real-world case: the request was processed, only the answer was lost
    (task,) = wan_simulator.tasks()
    assert task["model"] == "wan2.5-t2v-preview"
    assert wan_simulator.stats()["responses"]["create"] == {"RST": 1}


def test_reset_on_get_task(api: Any, wan_simulator: Any) -> None:
    task_id = api.create_id()
    wan_simulator.inject_fault("reset", route="get_task")
    with pytest.raises(RESET):
        api.get(task_id)
    assert api.get(task_id).ok


async def test_reset_on_download_seen_by_aiohttp(api: Any, wan_simulator: Any) -> None:
    url = api.wait(api.create_id())["output"]["video_url"]
    wan_simulator.inject_fault("reset", route="download")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url) as response:
                await response.read()
        async with session.get(url) as response:
            assert response.status == 200
            assert len(await response.read()) == int(response.headers["Content-Length"])


# --- slow ----------------------------------------------------------------------------------------------------------
def test_slow_create_times_out_the_client_but_makes_the_task(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("slow", route="create", delay=1.0)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.create(timeout=0.3)
    assert time.monotonic() - started < 0.9
    assert len(wan_simulator.tasks()) == 1


def test_slow_get_task_answers_late(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("slow", route="get_task", delay=0.5)
    started = time.monotonic()
    response = api.get("some-task")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.5


# --- malformed -----------------------------------------------------------------------------------------------------
def test_malformed_get_task(api: Any, wan_simulator: Any) -> None:
    task_id = api.create_id()
    wan_simulator.inject_fault("malformed", route="get_task")
    response = api.get(task_id)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()
    assert api.get(task_id).json()["output"]["task_id"] == task_id


def test_malformed_create_still_makes_the_task(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("malformed", route="create")
    response = api.create()
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    assert len(wan_simulator.tasks()) == 1


# --- task outcomes -------------------------------------------------------------------------------------------------
def test_task_fail(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("task_fail", code="DataInspectionFailed", message="Output data may be unsafe.")
    failing = api.create_id()
    fine = api.create_id()
    body = api.wait(failing)
    output = body["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"] == "DataInspectionFailed"
    assert output["message"] == "Output data may be unsafe."
    assert "video_url" not in output
    assert "usage" not in body
    assert {"submit_time", "scheduled_time", "end_time"} <= set(output)
    assert api.wait(fine)["output"]["task_status"] == "SUCCEEDED"


def test_task_fail_default_code_and_message(api: Any, wan_simulator: Any) -> None:
    wan_simulator.inject_fault("task_fail", count=2)
    outputs = [api.wait(api.create_id())["output"] for _ in range(2)]
    assert [o["code"] for o in outputs] == ["InternalError", "InternalError"]
    assert outputs[0]["message"].startswith("An internal error has occured")


def test_task_unknown(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=0, generation_seconds=1.0)
    wan_simulator.inject_fault("task_unknown")
    task_id = api.create_id()
    assert api.get(task_id).json()["output"]["task_status"] == "RUNNING"
    time.sleep(0.6)  # an UNKNOWN-bound task vanishes half-way through its generation
    body = api.get(task_id).json()
    assert body["output"] == {"task_id": task_id, "task_status": "UNKNOWN"}
    time.sleep(0.5)
    assert api.get(task_id).json()["output"]["task_status"] == "UNKNOWN"  # and it stays lost


# --- downloads -----------------------------------------------------------------------------------------------------
async def test_truncated_download(api: Any, wan_simulator: Any) -> None:
    url = api.wait(api.create_id())["output"]["video_url"]
    wan_simulator.inject_fault("truncate", after_bytes=5000)
    received = 0
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
            announced = int(response.headers["Content-Length"])
            error = None
            try:
                while chunk := await response.content.read(1024):
                    received += len(chunk)
            except aiohttp.ClientPayloadError as exc:
                error = exc
        assert isinstance(error, aiohttp.ClientPayloadError)
        assert received == 5000 < announced
        async with session.get(url) as response:  # the next download is whole again
            assert len(await response.read()) == announced


def test_truncated_download_with_requests(api: Any, wan_simulator: Any) -> None:
    url = api.wait(api.create_id())["output"]["video_url"]
    wan_simulator.inject_fault("truncate", after_bytes=10_000)
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="10000 bytes read"):
        requests.get(url, timeout=10)


def test_expired_download_fault(api: Any, wan_simulator: Any) -> None:
    task_id = api.create_id()
    output = api.wait(task_id)["output"]
    url = output["video_url"]
    wan_simulator.inject_fault("expired")
    # while armed, the task of the expired link reads as ended more than a day ago, its times in order
    aged = api.get(task_id).json()["output"]
    ended = parse_task_time(aged["end_time"])
    assert ended is not None
    assert time.time() - ended > 24 * 3600
    assert aged["submit_time"] <= aged["scheduled_time"] <= aged["end_time"]
    response = requests.get(url, timeout=10)
    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert requests.get(url, timeout=10).status_code == 200
    assert api.get(task_id).json()["output"]["end_time"] == output["end_time"]  # spent: the true times again


def test_error_and_slow_on_download(api: Any, wan_simulator: Any) -> None:
    url = api.wait(api.create_id())["output"]["video_url"]
    wan_simulator.inject_fault("error", route="download", status=503)
    response = requests.get(url, timeout=10)
    assert response.status_code == 503
    assert "<Error>" in response.text  # OSS answers in XML
    wan_simulator.inject_fault("slow", route="download", delay=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url, timeout=0.3)


# --- the admin endpoints themselves --------------------------------------------------------------------------------
def admin(wan_simulator: Any, method: str, path: str, payload: Any = None) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(f"{wan_simulator.admin_url}/{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_faults_endpoint_lists_adds_and_clears(wan_simulator: Any) -> None:
    status, body = admin(
        wan_simulator,
        "POST",
        "faults",
        [{"kind": "error", "route": "create", "status": 429, "count": 3}, {"kind": "truncate", "after_bytes": 10}],
    )
    assert status == 200
    assert [f["kind"] for f in body["faults"]] == ["error", "truncate"]
    assert body["faults"][1]["route"] == "download"  # the kind's default route
    status, body = admin(wan_simulator, "GET", "faults")
    assert body["faults"][0] == {
        "id": body["faults"][0]["id"],
        "kind": "error",
        "route": "create",
        "count": 3,
        "status": 429,
        "code": "Throttling",
        "message": None,
        "retry_after": None,
    }
    assert admin(wan_simulator, "DELETE", "faults") == (200, {"cleared": 2})
    assert admin(wan_simulator, "GET", "faults") == (200, {"faults": []})


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "explode"},
        {"kind": "error", "route": "admin"},
        {"kind": "truncate", "route": "create"},
        {"kind": "malformed", "route": "download"},
        {"kind": "slow"},
        {"kind": "error", "count": 0},
        {"kind": "error", "status": 200},
        {"kind": "error", "colour": "red"},
    ],
)
def test_bad_faults_are_refused(wan_simulator: Any, fault: dict[str, Any]) -> None:
    status, body = admin(wan_simulator, "POST", "faults", fault)
    assert status == 400
    assert body["error"]
    assert wan_simulator.faults() == []


def test_reset_clears_tasks_counters_faults_and_config(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(generation_seconds=99)
    api.create_id()
    wan_simulator.inject_fault("error")
    wan_simulator.reset()
    stats = wan_simulator.stats()
    assert stats["tasks_created"] == 0
    assert stats["requests"] == {}
    assert wan_simulator.tasks() == []
    assert wan_simulator.faults() == []
    assert wan_simulator.config()["generation_seconds"] == 0.25  # the start-up value


def test_config_endpoint_validates(wan_simulator: Any) -> None:
    assert admin(wan_simulator, "POST", "config", {"time_scale": 0})[0] == 400
    assert admin(wan_simulator, "POST", "config", {"no_such_option": 1})[0] == 400
    assert admin(wan_simulator, "POST", "config", {"task_query_qps": "fast"})[0] == 400
    status, body = admin(wan_simulator, "POST", "config", {"task_query_qps": 7})
    assert status == 200
    assert body["task_query_qps"] == 7
    assert body["api_keys"] == 1  # keys are never echoed
