"""
WanTaskTrigger run directly in the test's event loop against the simulator (real HTTP on 127.0.0.1), with its
fault injection: one terminal event per run, transient failures ridden out, the deadline, cancels, and how
task_from_event turns each event back into the sync path's outcome.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanContentError,
    WanFinalError,
    WanInvalidInputError,
    WanResultExpiredError,
    WanRetryableError,
    WanTaskCanceledError,
    WanTaskRetryableFailure,
    WanTimeoutError,
)
from airflow_provider_wan.hooks import schedule
from airflow_provider_wan.hooks.wan import TaskStatus, WanHook, WanTask
from airflow_provider_wan.triggers.wan import EVENT_STATUSES, WanTaskTrigger, task_from_event
from tests.deferral.conftest import T2V_BODY, VIDEO_ENDPOINT

pytestmark = pytest.mark.usefixtures("close_wan_sessions")


def _create(**body_changes: Any) -> str:
    body = {**T2V_BODY, **body_changes}
    hook = WanHook()
    try:
        return hook.create_task(VIDEO_ENDPOINT, body).task_id
    finally:
        hook.close()


async def _run(trigger: WanTaskTrigger) -> list[dict[str, Any]]:
    """Every event the trigger yields until its run() returns (the contract says exactly one)."""
    return [event.payload async for event in trigger.run()]


def _trigger(task_id: str, *, deadline: float = 30.0, **kwargs: Any) -> WanTaskTrigger:
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("retry_delay", 0.05)
    return WanTaskTrigger(task_id=task_id, end_time=time.time() + deadline, **kwargs)


def _gets(sim: Any) -> dict[str, int]:
    """Responses of GET /tasks/{id} by status code."""
    return dict(sim.stats()["responses"].get("get_task", {}))


# --- serialization --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "interval",
    [0, -1.0, float("nan"), float("inf"), 31 * 24 * 3600.0, "15"],
    ids=["zero", "negative", "nan", "inf", "31-days", "text"],
)
def test_a_poll_interval_that_cannot_pace_the_reads_is_refused_when_built(interval: Any):
    # 0 read the task in a tight loop in the triggerer (the hook's pacer spared the account, not the event loop);
    # refused where the deferring task builds the trigger, with the operator's words
    with pytest.raises(WanInvalidInputError) as refused:
        _trigger("abc-123", poll_interval=interval)
    assert str(refused.value).startswith(
        f"poll_interval: must be a number of seconds above 0 and at most 2592000 (30 days), got {interval!r}; "
    )
    # a fraction of a second is a pace (the tests' simulator runs on it)
    assert _trigger("abc-123", poll_interval=0.1).poll_interval == 0.1


def test_serialize_round_trips_with_ids_and_intervals_only(wan_conn):
    # the operator's own read, as it hands it over: status and times only (never the signed URL, never a prompt)
    checked = WanTask(
        task_id="abc-123",
        status=TaskStatus.RUNNING,
        video_url="https://bucket.example/v.mp4?Signature=secret",
        orig_prompt="a lighthouse",
        submit_time="2027-01-15 08:00:00.000",
        scheduled_time="2027-01-15 08:00:01.000",
    )
    trigger = WanTaskTrigger(
        task_id="abc-123",
        wan_conn_id="wan_default",
        poll_interval=7,
        end_time=1.8e9,
        kind="wan2.5-t2v-preview/720P/5",
        checked=WanTaskTrigger.checked_read(checked, 1.7e9),
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_wan.triggers.wan.WanTaskTrigger"
    assert kwargs == {
        "task_id": "abc-123",
        "wan_conn_id": "wan_default",
        "poll_interval": 7.0,
        "end_time": 1.8e9,
        "cancel_on_timeout": True,
        "cancel_on_kill": True,
        "max_transient_failures": 10,
        "retry_delay": 1.0,
        "first_poll_at": None,
        "kind": "wan2.5-t2v-preview/720P/5",
        "checked": {
            "status": "RUNNING",
            "submit_time": "2027-01-15 08:00:00.000",
            "scheduled_time": "2027-01-15 08:00:01.000",
            "read_at": 1.7e9,
        },
    }
    assert wan_conn not in json.dumps(kwargs)
    assert "Signature" not in json.dumps(kwargs)
    assert "lighthouse" not in json.dumps(kwargs)
    again = WanTaskTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    # the triggerer overwrites BaseTrigger.task_id with the Airflow task id: the DashScope id must survive that
    again.task_id = "airflow_task"
    assert again.serialize()[1]["task_id"] == "abc-123"


# --- terminal outcomes ----------------------------------------------------------------------------------------------
async def test_success_is_one_event_with_the_result_and_no_signed_url(wan_conn, wan_simulator):
    task_id = _create()
    events = await _run(_trigger(task_id))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "success"
    assert event["task_id"] == task_id
    assert event["polls"] >= 2  # PENDING/RUNNING at least once, then SUCCEEDED
    assert event["result"]["task_status"] == "SUCCEEDED"
    # the simulator does sign its links (control), the event carries the URL without the signature
    signed = WanHook().get_task(task_id).video_url
    assert signed is not None
    assert "Signature=" in signed
    assert event["result"]["video_url"] == signed.split("?")[0]
    assert "Signature" not in json.dumps(event)
    assert wan_conn not in json.dumps(event)
    task = task_from_event(event)
    assert task.status is TaskStatus.SUCCEEDED
    assert task.task_id == task_id
    assert wan_simulator.stats()["tasks_created"] == 1


async def test_first_poll_waits_until_first_poll_at(wan_conn, wan_simulator):
    # the deferring operator has just read the task: the trigger's first read comes one interval later, not at once
    task_id = _create()
    started = time.time()
    [event] = await _run(_trigger(task_id, first_poll_at=started + 1.5))
    assert event["status"] == "success"
    assert time.time() - started >= 1.5
    assert event["polls"] == 1
    assert sum(_gets(wan_simulator).values()) == 1


async def test_a_known_kind_plans_the_first_read_from_the_operators_check(wan_conn, wan_simulator):
    # the triggerer has seen a task of this kind run 0.5 s: the first read is planned from the operator's check (a
    # PENDING task can be done a shortest run later), not one interval after it (first_poll_at, 60 s away here)
    kind = "wan2.5-t2v-preview/test-first-read/5"
    schedule.HISTORY.record(
        kind,
        WanTask(
            task_id="earlier",
            status=TaskStatus.SUCCEEDED,
            scheduled_time="2027-01-15 08:00:00.000",
            end_time="2027-01-15 08:00:00.500",
        ),
    )
    try:
        task_id = _create()
        checked_at = time.time()
        check = WanTask(task_id=task_id, status=TaskStatus.PENDING)
        trigger = _trigger(
            task_id,
            poll_interval=5,
            first_poll_at=checked_at + 60,
            kind=kind,
            checked=WanTaskTrigger.checked_read(check, checked_at),
        )
        [event] = await _run(trigger)
    finally:
        schedule.HISTORY.runs.pop(kind, None)
    assert event["status"] == "success"
    assert time.time() - checked_at < 10
    # the run was learned, and the wait holds no place in the triggerer's view of the queue any more
    assert kind not in schedule.HISTORY.waiting


async def test_first_poll_at_in_the_past_reads_at_once(wan_conn, wan_simulator):
    # a trigger resumed after a triggerer failover is past its first_poll_at: it reads at once
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    started = time.time()
    [event] = await _run(_trigger(task_id, first_poll_at=started - 60, poll_interval=5, deadline=0.4))
    assert event["status"] == "timeout"
    assert event["polls"] == 2  # at once, then at the deadline
    assert time.time() - started < 2


async def test_first_poll_at_past_the_deadline_still_reads_once(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    [event] = await _run(_trigger(task_id, first_poll_at=time.time() + 60, deadline=0.4, cancel_on_timeout=False))
    assert event["status"] == "timeout"
    assert event["polls"] == 1
    assert event["task_status"] == "PENDING"


async def test_429_with_retry_after_is_honoured(wan_conn, wan_simulator):
    task_id = _create()
    wan_simulator.inject_fault("error", route="get_task", status=429, code="Throttling.RateQuota", retry_after=2)
    started = time.monotonic()
    events = await _run(_trigger(task_id, retry_delay=0.05))
    elapsed = time.monotonic() - started
    assert [e["status"] for e in events] == ["success"]
    assert _gets(wan_simulator).get("429") == 1
    # own backoff would have waited 0.025-0.05 s; DashScope asked for 2 s and got them
    assert elapsed >= 2.0, elapsed


async def test_three_503s_then_success(wan_conn, wan_simulator):
    task_id = _create()
    wan_simulator.inject_fault("error", route="get_task", status=503, count=3)
    events = await _run(_trigger(task_id, max_transient_failures=3))
    assert [e["status"] for e in events] == ["success"]
    responses = _gets(wan_simulator)
    assert responses.get("503") == 3
    assert responses.get("200", 0) >= 1
    assert wan_simulator.stats()["tasks_created"] == 1


async def test_transient_failures_beyond_the_bound_are_one_error_event(wan_conn, wan_simulator):
    task_id = _create()
    wan_simulator.inject_fault("error", route="get_task", status=503, count=-1)
    events = await _run(_trigger(task_id, max_transient_failures=2))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "error"
    assert event["error"]["error_class"] == "WanRetryableError"
    assert event["error"]["http_status"] == 503
    # the first read and exactly two retries, then the bound was spent
    assert _gets(wan_simulator) == {"503": 3}
    with pytest.raises(WanRetryableError) as raised:
        task_from_event(event)
    assert not isinstance(raised.value, WanFinalError)


async def test_bad_key_is_a_final_error_event(monkeypatch, wan_simulator):
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(password="sk-not-a-valid-key"))
    events = await _run(_trigger("any-task-id"))
    assert [e["status"] for e in events] == ["error"]
    assert "sk-not-a-valid-key" not in json.dumps(events)
    with pytest.raises(WanAuthError):
        task_from_event(events[0])


async def test_failed_with_data_inspection_is_a_final_failed_event(wan_conn, wan_simulator):
    wan_simulator.inject_fault("task_fail", code="DataInspectionFailed")
    task_id = _create()
    events = await _run(_trigger(task_id))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "failed"
    assert event["error"]["code"] == "DataInspectionFailed"
    assert event["error"]["error_class"] == "WanContentError"
    assert event["result"]["task_status"] == "FAILED"
    assert "inappropriate content" in event["message"]
    with pytest.raises(WanContentError, match="inappropriate content") as raised:
        task_from_event(event)
    assert isinstance(raised.value, WanFinalError)
    assert raised.value.code == "DataInspectionFailed"
    assert raised.value.task_id == task_id


async def test_failed_with_internal_error_stays_retryable(wan_conn, wan_simulator):
    wan_simulator.inject_fault("task_fail", code="InternalError.Algo")
    task_id = _create()
    events = await _run(_trigger(task_id))
    assert [e["status"] for e in events] == ["failed"]
    with pytest.raises(WanTaskRetryableFailure) as raised:
        task_from_event(events[0])
    assert not isinstance(raised.value, WanFinalError)


async def test_unknown_is_an_expired_event(wan_conn, wan_simulator):
    wan_simulator.inject_fault("task_unknown")
    task_id = _create()
    events = await _run(_trigger(task_id))
    assert [e["status"] for e in events] == ["expired"]
    assert events[0]["result"]["task_status"] == "UNKNOWN"
    with pytest.raises(WanResultExpiredError, match="24 hours"):
        task_from_event(events[0])


async def test_canceled_task_is_a_canceled_event(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    WanHook().cancel_task(task_id)
    events = await _run(_trigger(task_id))
    assert [e["status"] for e in events] == ["canceled"]
    with pytest.raises(WanTaskCanceledError):
        task_from_event(events[0])


# --- the deadline ---------------------------------------------------------------------------------------------------
async def test_deadline_cancels_a_task_still_pending(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    events = await _run(_trigger(task_id, deadline=0.6))
    assert len(events) == 1
    event = events[0]
    assert event["status"] == "timeout"
    assert event["canceled"] is True
    assert event["task_status"] == "CANCELED"
    # the simulator saw the cancel and the task is CANCELED there
    assert wan_simulator.stats()["requests"].get("cancel") == 1
    assert {t["task_id"]: t["status"] for t in wan_simulator.tasks()}[task_id] == "CANCELED"
    with pytest.raises(WanTimeoutError, match="canceled"):
        task_from_event(event)


async def test_deadline_leaves_a_running_task_alone(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=0, generation_seconds=60)
    task_id = _create()
    events = await _run(_trigger(task_id, deadline=0.6))
    assert [e["status"] for e in events] == ["timeout"]
    assert events[0]["canceled"] is False
    assert events[0]["task_status"] == "RUNNING"
    assert "cancel" not in wan_simulator.stats()["requests"]
    with pytest.raises(WanTimeoutError, match="re-attaches"):
        task_from_event(events[0])


async def test_deadline_without_cancel_on_timeout(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    events = await _run(_trigger(task_id, deadline=0.3, cancel_on_timeout=False))
    assert [(e["status"], e["canceled"]) for e in events] == [("timeout", False)]
    assert "cancel" not in wan_simulator.stats()["requests"]


# --- on_kill --------------------------------------------------------------------------------------------------------
async def test_on_kill_cancels_a_pending_task(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    await _trigger(task_id).on_kill()
    assert {t["task_id"]: t["status"] for t in wan_simulator.tasks()}[task_id] == "CANCELED"


async def test_on_kill_respects_cancel_on_kill_false(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    await _trigger(task_id, cancel_on_kill=False).on_kill()
    assert {t["task_id"]: t["status"] for t in wan_simulator.tasks()}[task_id] == "PENDING"
    assert "cancel" not in wan_simulator.stats()["requests"]


async def test_on_kill_does_not_cancel_a_running_task(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=0, generation_seconds=60)
    task_id = _create()
    await _trigger(task_id).on_kill()
    assert {t["task_id"]: t["status"] for t in wan_simulator.tasks()}[task_id] == "RUNNING"
    assert "cancel" not in wan_simulator.stats()["requests"]


# --- task_from_event: validation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event", "match"),
    [
        (None, "no event"),
        ("success", "not a dict"),
        ({"status": "done", "task_id": "t"}, "unknown status 'done'"),
        ({"status": "success"}, "no task_id"),
        ({"status": "success", "task_id": "t"}, "no result"),
        ({"status": "success", "task_id": "t", "result": {"task_status": "RUNNING"}}, "not SUCCEEDED"),
        # another task's result under this task's id: its video is not this one's
        (
            {"status": "success", "task_id": "t1", "result": {"wan_task_id": "t2", "task_status": "SUCCEEDED"}},
            r"about another task \(t2\), not t1",
        ),
        ({"status": "failed", "task_id": "t1", "result": {"task_id": "t2", "task_status": "FAILED"}}, "another task"),
        # an id the transfer would put into GET /tasks/{id}
        ({"status": "success", "task_id": "../uploads", "result": {"task_status": "SUCCEEDED"}}, "no DashScope task"),
        # a garbled status is shown short
        ({"status": "x" * 1_000_000, "task_id": "t"}, "unknown status 'xxx"),
    ],
)
def test_task_from_event_rejects_bad_events(event, match):
    with pytest.raises(WanRetryableError, match=match) as raised:
        task_from_event(event)
    assert "Invalid event from WanTaskTrigger" in str(raised.value)
    assert len(str(raised.value)) < 1000


def test_event_statuses_are_the_documented_ones():
    assert frozenset({"success", "failed", "canceled", "expired", "timeout", "error"}) == EVENT_STATUSES


def test_a_garbled_error_event_fails_in_short_clean_words():
    # fields of any type and size (a user's hand-made event, another version's): they went into the exception as is
    event = {
        "status": "error",
        "task_id": "t1",
        "message": "boom\x00" + "m" * 1_000_000,
        "error": {
            "error_class": "WanAuthError",
            "message": "denied\x1b[2J" + "d" * 1_000_000,
            "http_status": "401",
            "code": ["x"] * 1000,
            "request_id": "r" * 1_000_000,
            "task_id": "t2",
        },
    }
    with pytest.raises(WanAuthError) as raised:
        task_from_event(event)
    error = raised.value
    assert error.message.startswith("denied [2J")
    assert len(str(error)) < 2500
    assert (error.http_status, error.code, error.task_id) == (None, None, "t1")
    assert len(error.request_id or "") == 100


def test_error_event_of_an_unknown_class_is_retryable():
    event = {"status": "error", "task_id": "t", "message": "boom", "error": {"error_class": "os.system"}}
    with pytest.raises(WanRetryableError, match="boom"):
        task_from_event(event)
