"""
Issue 10, acceptance 1 (transport half): each hostile answer through real HTTP (the simulator's fault injection on
127.0.0.1), with the promises checked at the simulator's counters and in every text that leaves the provider:

* one created task across all tries, Airflow retries included (``dag.test()``, ``retries=2``);
* no API key and no signed URL in any exception, trigger event, log line or XCom;
* deadlines are wall-clock totals: a server answering one byte a second holds neither ``wait_for_task``, nor the
  sensor, nor the trigger past its deadline;
* a redirect is never followed: nothing reaches the other host, least of all the key;
* the trigger gives exactly one event for every odd answer (or rides it out).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from airflow_provider_wan.exceptions import (
    WanCreateOutcomeUnknownError,
    WanFinalError,
    WanInvalidInputError,
    WanRetryableError,
    WanTimeoutError,
)
from airflow_provider_wan.hooks.wan import RetryPolicy, TaskStatus, WanHook
from airflow_provider_wan.sensors.wan import WanTaskSensor
from airflow_provider_wan.triggers.wan import EVENT_STATUSES, WanTaskTrigger, task_from_event
from tests.airflow_run import run_dag, write_dag
from tests.foundation.capture import CaptureServer
from tests.integration.conftest import BODY, ENDPOINT

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
SIGNATURE = "c2lnbmVkLXNlY3JldA"


def _assert_no_secret(key: str, *texts: str) -> None:
    for text in texts:
        assert key not in text, "the API key leaked"
        assert SIGNATURE not in text, "a signed URL leaked"
        assert "Signature=" not in text, "a signed URL leaked"


def _create_task(**hook_kwargs: Any) -> str:
    hook = WanHook(retry_policy=FAST, **hook_kwargs)
    try:
        return hook.create_task(ENDPOINT, BODY).task_id
    finally:
        hook.close()


# --- creates through real Airflow: one task across every try ----------------------------------------------------------
DAG_SOURCE = """
import datetime
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_wan.operators.wan import WanTextToVideoOperator

with DAG("{dag_id}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
    WanTextToVideoOperator(
        task_id="generate",
        model="wan2.5-t2v-preview",
        prompt="a lighthouse at dawn",
        retries=2,
        retry_delay=datetime.timedelta(seconds=0.2),
        poll_interval=0.2,
    )
"""

CREATE_SHAPES = {
    # a gateway's own error body: numeric code, after DashScope accepted (processed) the task
    "502_numeric_code": {"kind": "answer", "status": 502, "body": {"code": 502, "message": "Bad Gateway"}},
    "502_null_code": {"kind": "answer", "status": 502, "body": {"code": None, "message": None}},
    "500_internal_error": {"kind": "answer", "status": 500, "body": {"code": "InternalError", "message": "oops"}},
    "200_no_output": {"kind": "answer", "status": 200, "body": {"request_id": "r"}},
    "200_output_null": {"kind": "answer", "status": 200, "body": {"output": None}},
    "200_output_string": {"kind": "answer", "status": 200, "body": {"output": "PENDING"}},
    "redirect_loop": {"kind": "redirect", "location": "loop", "count": -1, "processed": False},
}


@pytest.mark.parametrize("shape", list(CREATE_SHAPES))
def test_create_answered_oddly_makes_one_task_across_airflow_retries(wan_conn, wan_simulator, capfd, shape):
    fault = dict(CREATE_SHAPES[shape])
    fault.pop("processed", None)
    wan_simulator.inject_fault(route="create", **fault)
    dag_id = f"hostile_create_{shape}"
    result = run_dag(write_dag(DAG_SOURCE.format(dag_id=dag_id), dag_id))
    out, err = capfd.readouterr()

    # final on the first try: retries=2 did not resend the create
    assert result.tasks["generate"] == ("failed", 1)
    # dag.test() writes the task's log to the console (no log files): the scan below reads it
    assert "WanCreateOutcomeUnknownError" in out + err
    stats = wan_simulator.stats()
    assert stats["requests"]["create"] == 1
    assert stats["tasks_created"] == (0 if shape == "redirect_loop" else 1)
    xcoms = json.dumps({f"{t}/{k}": v for (t, k), v in result.xcoms.items()}, default=str)
    _assert_no_secret(wan_conn, out + err, xcoms, json.dumps(result.rendered, default=str))


# --- redirects -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("route", ["create", "get_task", "list"])
def test_a_cross_host_redirect_is_not_followed(wan_conn, wan_simulator, route):
    with CaptureServer() as elsewhere:
        task_id = _create_task() if route == "get_task" else None
        location = f"{elsewhere.base_url}/steal?Expires=1&OSSAccessKeyId=LTAIx&Signature={SIGNATURE}"
        wan_simulator.inject_fault("redirect", route=route, status=307, location=location)
        hook = WanHook(retry_policy=FAST)
        expected = WanCreateOutcomeUnknownError if route == "create" else WanFinalError
        calls = {
            "create": lambda: hook.create_task(ENDPOINT, BODY),
            "get_task": lambda: hook.get_task(str(task_id)),
            "list": hook.list_tasks,
        }
        with pytest.raises(expected) as raised:
            calls[route]()
        hook.close()
        assert elsewhere.requests == [], "the request (and its key) went to another host"
    assert "127.0.0.1" in str(raised.value)
    _assert_no_secret(wan_conn, str(raised.value), json.dumps(raised.value.to_dict()))
    assert wan_simulator.stats()["requests"][route] == 1


# --- deadlines are wall-clock totals -------------------------------------------------------------------------------
def test_wait_for_task_is_not_held_by_a_slow_drip(wan_conn, wan_simulator):
    task_id = _create_task()
    wan_simulator.inject_fault("drip", route="get_task", delay=1.0, after_bytes=1, count=-1)
    hook = WanHook(retry_policy=FAST)
    started = time.monotonic()
    with pytest.raises(WanTimeoutError, match="did not end within the timeout") as raised:
        hook.wait_for_task(task_id, poll_interval=0.2, timeout=2.0)
    elapsed = time.monotonic() - started
    hook.close()
    assert elapsed < 3.0, f"held {elapsed:.1f} s past a 2 s timeout"
    assert raised.value.task_id == task_id
    assert wan_simulator.stats()["tasks_created"] == 1


def test_sensor_is_not_held_by_a_slow_drip(wan_conn, wan_simulator):
    task_id = _create_task()
    wan_simulator.inject_fault("drip", route="get_task", delay=1.0, after_bytes=1, count=-1)
    sensor = WanTaskSensor(task_id="wait", wan_task_id=task_id, poke_interval=0.2, timeout=2, mode="poke")
    started = time.monotonic()
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(context={})  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"held {elapsed:.1f} s past a 2 s timeout"


# --- the trigger: one event for every odd answer, no secret in it --------------------------------------------------
async def _events(trigger: WanTaskTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def _trigger(task_id: str, deadline: float = 30.0) -> WanTaskTrigger:
    return WanTaskTrigger(
        task_id=task_id, end_time=time.time() + deadline, poll_interval=0.2, retry_delay=0.01, max_transient_failures=2
    )


# (shape, faults on GET /tasks/{id}, expected event status, expected error class in the event, or None)
POLL_SHAPES = [
    (
        "502 numeric code, always",
        {"kind": "answer", "status": 502, "body": {"code": 502}, "count": -1},
        "error",
        "WanRetryableError",
    ),
    (
        "502 numeric code, once",
        {"kind": "answer", "status": 502, "body": {"code": 502, "message": None}},
        "success",
        None,
    ),
    ("200 output null, once", {"kind": "answer", "status": 200, "body": {"output": None}}, "success", None),
    (
        "200 output list, always",
        {"kind": "answer", "status": 200, "body": {"output": [1]}, "count": -1},
        "error",
        "WanRetryableError",
    ),
    (
        "200 task_status object",
        {"kind": "answer", "status": 200, "body": {"output": {"task_status": {"x": 1}}}},
        "success",
        None,
    ),
    ("invalid UTF-8, once", {"kind": "answer", "status": 200, "raw": "\u00ff\u00fe\u00fd"}, "success", None),
    ("deep nesting, once", {"kind": "answer", "status": 200, "raw": "[" * 100_000}, "success", None),
    ("huge body, once", {"kind": "huge", "size": 6 * 1024 * 1024}, "success", None),
    ("redirect loop", {"kind": "redirect", "location": "loop", "count": -1}, "error", "WanFinalError"),
    (
        "redirect with a signed URL",
        {"kind": "redirect", "location": f"http://127.0.0.1:9/x?Signature={SIGNATURE}", "count": -1},
        "error",
        "WanFinalError",
    ),
    (
        "401 with a numeric code",
        {"kind": "answer", "status": 401, "body": {"code": 401}, "count": -1},
        "error",
        "WanAuthError",
    ),
    ("reset, always", {"kind": "reset", "count": -1}, "error", "WanRetryableError"),
]


@pytest.mark.usefixtures("close_wan_sessions")
@pytest.mark.parametrize(("shape", "fault", "status", "error_class"), POLL_SHAPES, ids=[s[0] for s in POLL_SHAPES])
async def test_trigger_gives_one_event_for_every_odd_answer(wan_conn, wan_simulator, shape, fault, status, error_class):
    wan_simulator.configure(generation_seconds=0.3, pending_seconds=0.1)
    task_id = _create_task()
    wan_simulator.inject_fault(route="get_task", **fault)
    events = await _events(_trigger(task_id))
    assert len(events) == 1
    (event,) = events
    assert event["status"] in EVENT_STATUSES
    assert event["status"] == status, event
    text = json.dumps(event)  # also proves the event is JSON (it is stored in the metadata DB)
    _assert_no_secret(wan_conn, text)
    if error_class is not None:
        assert event["error"]["error_class"] == error_class
        with pytest.raises(WanRetryableError if error_class == "WanRetryableError" else WanFinalError):
            task_from_event(event)
    else:
        assert task_from_event(event).status is TaskStatus.SUCCEEDED
    assert wan_simulator.stats()["tasks_created"] == 1


@pytest.mark.usefixtures("close_wan_sessions")
async def test_trigger_is_not_held_by_a_slow_drip(wan_conn, wan_simulator):
    task_id = _create_task()
    wan_simulator.inject_fault("drip", route="get_task", delay=1.0, after_bytes=1, count=-1)
    started = time.monotonic()
    events = await _events(_trigger(task_id, deadline=2.0))
    elapsed = time.monotonic() - started
    assert [e["status"] for e in events] == ["timeout"]
    # the deadline, plus at most the last read's grace (one poll interval here)
    assert elapsed < 3.0, f"held {elapsed:.1f} s past a 2 s deadline"
    assert events[0]["task_status"] is None
    with pytest.raises(WanTimeoutError):
        task_from_event(events[0])


@pytest.mark.usefixtures("close_wan_sessions")
async def test_trigger_with_an_unusable_base_url_gives_an_error_event(monkeypatch, wan_simulator_api_key):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_DEFAULT",
        json.dumps({"conn_type": "wan", "password": wan_simulator_api_key, "extra": {"base_url": "ftp://x/api"}}),
    )
    events = await _events(_trigger("0b7c8f6e-1234-4c5d-9e8f-aaaaaaaaaaaa"))
    assert [e["status"] for e in events] == ["error"]
    assert events[0]["error"]["error_class"] == "WanInvalidInputError"
    _assert_no_secret(wan_simulator_api_key, json.dumps(events))


# --- base_url is checked at connection time ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "base_url",
    ["127.0.0.1:8089/api/v1", "ftp://host/api/v1", "http://host /api/v1", "http://host/api\n/v1", "http:///api/v1"],
)
def test_an_unusable_base_url_is_refused_before_any_request(
    monkeypatch, wan_simulator, wan_simulator_api_key, base_url
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_ODD",
        json.dumps({"conn_type": "wan", "password": wan_simulator_api_key, "extra": {"base_url": base_url}}),
    )
    hook = WanHook(wan_conn_id="wan_odd", retry_policy=FAST)
    with pytest.raises(WanInvalidInputError, match="base_url") as raised:
        hook.create_task(ENDPOINT, BODY)
    assert "billed" not in str(raised.value)
    assert "e.g. 'https://dashscope-intl.aliyuncs.com/api/v1'" in str(raised.value)
    assert wan_simulator.stats()["requests"].get("create", 0) == 0


# --- the simulator survives odd characters in what it stores --------------------------------------------------------
@pytest.mark.parametrize("prompt", ["lone \ud800 surrogate", "a NUL \x00 here", "bidi \u202e and \x1b escape"])
def test_simulator_lists_and_reads_tasks_with_odd_prompts(wan_conn, wan_simulator, prompt):
    import requests

    headers = {"Authorization": f"Bearer {wan_conn}", "X-DashScope-Async": "enable"}
    body = {**BODY, "input": {"prompt": prompt}}
    created = requests.post(f"{wan_simulator.base_url}/{ENDPOINT}", json=body, headers=headers, timeout=10)
    assert created.status_code == 200
    task_id = created.json()["output"]["task_id"]
    for url in (
        f"{wan_simulator.base_url}/tasks/{task_id}",
        f"{wan_simulator.base_url}/tasks",
        f"{wan_simulator.admin_url}/tasks",
    ):
        answer = requests.get(url, headers=headers, timeout=10)
        assert answer.status_code == 200, url
        assert answer.json()


@pytest.mark.parametrize("extra", [{"region": 5}, {"base_url": ["http://x"]}, {"workspace_id": 7}, {"api_key": {}}])
def test_an_odd_connection_extra_is_a_clear_error(monkeypatch, wan_simulator, extra):
    monkeypatch.setenv("AIRFLOW_CONN_WAN_ODD", json.dumps({"conn_type": "wan", "extra": extra}))
    hook = WanHook(wan_conn_id="wan_odd", retry_policy=FAST)
    (name,) = extra
    with pytest.raises(WanInvalidInputError, match=f"'{name}'.*must be a string"):
        hook.create_task(ENDPOINT, BODY)
    assert wan_simulator.stats()["requests"].get("create", 0) == 0
