"""WanHook against the simulator: regions, credentials, retries, and a create that is never resent blindly."""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanBillingError,
    WanCreateOutcomeUnknownError,
    WanInvalidInputError,
    WanResultExpiredError,
    WanRetryableError,
    WanTimeoutError,
)
from airflow_provider_wan.hooks.wan import REGIONS, RetryPolicy, TaskStatus, WanHook, resolve_base_url

BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a cat"}, "parameters": {"size": "832*480"}}
ENDPOINT = "services/aigc/video-generation/video-synthesis"
FAST = RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.5)


@pytest.fixture
def hook(monkeypatch, wan_simulator, wan_simulator_api_key):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_HOOKTEST",
        wan_simulator.connection_json(),
    )
    hook = WanHook(wan_conn_id="wan_hooktest", retry_policy=FAST, timeout=(2.0, 2.0))
    yield hook
    hook.close()


@pytest.mark.parametrize(("region", "url"), [(name, url) for name, (_, url) in REGIONS.items() if url])
def test_region_selects_the_documented_endpoint(region, url):
    assert resolve_base_url(region, None) == (url, region)
    assert resolve_base_url(region.upper(), None) == (url, region)


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("singapore", "ws-1.ap-southeast-1"),
        ("beijing", "ws-1.cn-beijing"),
        ("virginia", "ws-1.us-east-1"),
        ("hongkong", "ws-1.cn-hongkong"),
        ("frankfurt", "ws-1.eu-central-1"),
    ],
)
def test_workspace_id_selects_the_workspace_domain(region, host):
    assert resolve_base_url(region, None, "ws-1") == (f"https://{host}.maas.aliyuncs.com/api/v1", region)
    # base_url still wins
    assert resolve_base_url(region, "http://127.0.0.1:9/api/v1", "ws-1")[0] == "http://127.0.0.1:9/api/v1"


def test_frankfurt_needs_a_workspace_and_bad_workspace_ids_fail():
    with pytest.raises(WanInvalidInputError, match="workspace_id"):
        resolve_base_url("frankfurt", None)
    with pytest.raises(WanInvalidInputError, match="workspace_id"):
        resolve_base_url("singapore", None, "evil.example.com/x")


def test_base_url_wins_over_region():
    assert resolve_base_url("beijing", "http://127.0.0.1:9/api/v1/") == ("http://127.0.0.1:9/api/v1", "beijing")


@pytest.mark.parametrize(
    ("base_url", "warned"),
    [
        ("http://10.1.2.3:8080/api/v1", True),
        ("http://proxy.internal/api/v1", True),
        ("http://127.0.0.1:9/api/v1", False),
        ("http://localhost:9/api/v1", False),
        ("https://10.1.2.3/api/v1", False),
    ],
)
def test_a_plain_http_base_url_to_another_machine_is_warned_about(base_url, warned, caplog):
    # the key goes in a header: over plain http to another machine anyone on the network can read it
    with caplog.at_level("WARNING", logger="airflow_provider_wan.hooks.wan"):
        assert resolve_base_url("singapore", base_url)[0] == base_url
    warnings = [r.getMessage() for r in caplog.records if "unencrypted" in r.getMessage()]
    assert len(warnings) == (1 if warned else 0), warnings


def test_unknown_region_lists_valid_ones():
    with pytest.raises(WanInvalidInputError, match="singapore, beijing, virginia, hongkong, frankfurt"):
        resolve_base_url("tokyo", None)


def test_environment_fallback_without_connection(monkeypatch, wan_simulator, wan_simulator_api_key):
    monkeypatch.setenv("DASHSCOPE_API_KEY", wan_simulator_api_key)
    monkeypatch.setenv("DASHSCOPE_BASE_URL", wan_simulator.base_url)
    hook = WanHook(wan_conn_id="wan_not_defined")
    assert hook.credentials.source.startswith("environment")
    task = hook.create_task(ENDPOINT, BODY)
    assert hook.get_task(task.task_id).status in (TaskStatus.PENDING, TaskStatus.RUNNING, TaskStatus.SUCCEEDED)


def test_environment_region_fallback(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env")
    monkeypatch.setenv("DASHSCOPE_REGION", "beijing")
    monkeypatch.delenv("DASHSCOPE_BASE_URL", raising=False)
    assert WanHook(wan_conn_id="wan_not_defined").credentials.base_url == REGIONS["beijing"][1]


def test_create_get_and_wait(hook, wan_simulator):
    task = hook.create_task(ENDPOINT, BODY)
    assert task.status is TaskStatus.PENDING
    seen: list[TaskStatus] = []
    done = hook.wait_for_task(task.task_id, poll_interval=0.1, on_status=lambda t, _: seen.append(t.status))
    assert done.status is TaskStatus.SUCCEEDED
    assert done.video_url
    assert done.usage["video_duration"] == 5
    assert seen[-1] is TaskStatus.SUCCEEDED
    assert wan_simulator.stats()["tasks_created"] == 1


def test_wait_reads_the_task_once_more_at_its_timeout(hook, wan_simulator):
    # the next planned read (here poll_interval, 30 s; in a worker often the read plan's 1 s shortest gap) falls past
    # the timeout: the wait used to give up at once after its first read; now it sleeps to the deadline and reads
    # there, as the trigger does, and sees the task that ended meanwhile (1.6 s after the create, before the 2 s
    # timeout)
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=1.5)
    task = hook.create_task(ENDPOINT, BODY)
    seen: list[TaskStatus] = []
    started = time.monotonic()
    done = hook.wait_for_task(task.task_id, poll_interval=30, timeout=2.0, on_status=lambda t, _: seen.append(t.status))
    assert done.status is TaskStatus.SUCCEEDED
    assert seen[0] is not TaskStatus.SUCCEEDED, "the first read must find the task unfinished"
    assert wan_simulator.stats()["requests"]["get_task"] == 2, "one read at the start, one at the deadline"
    assert time.monotonic() - started >= 1.6


def test_wait_times_out_at_its_timeout_not_before(hook, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task = hook.create_task(ENDPOINT, BODY)
    started = time.monotonic()
    with pytest.raises(WanTimeoutError, match=r"still PENDING after 1 s \(timeout 1 s\)") as raised:
        hook.wait_for_task(task.task_id, poll_interval=30, timeout=1.0)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 10.0, f"gave up after {elapsed:.1f} s of a 1 s timeout (30 s between reads)"
    assert raised.value.task_id == task.task_id
    assert wan_simulator.stats()["requests"]["get_task"] == 2


@pytest.mark.parametrize("interval", [0, -2.5, float("nan")], ids=["zero", "negative", "nan"])
def test_wait_for_task_refuses_a_poll_interval_that_would_spin_before_reading(hook, wan_simulator, interval):
    task = hook.create_task(ENDPOINT, BODY)
    with pytest.raises(WanInvalidInputError) as refused:
        hook.wait_for_task(task.task_id, poll_interval=interval, timeout=5)
    message = str(refused.value)
    assert message.startswith("poll_interval: must be a number of seconds above 0 and at most 2592000 (30 days)")
    assert f"DashScope task {task.task_id} was not read" in message
    assert wan_simulator.stats()["requests"].get("get_task", 0) == 0


def test_two_503s_on_get_then_success_is_retried_inside_the_hook(hook, wan_simulator):
    task = hook.create_task(ENDPOINT, BODY)
    wan_simulator.inject_fault("error", route="get_task", count=2, status=503, code="ModelUnavailable")
    assert hook.get_task(task.task_id).task_id == task.task_id
    stats = wan_simulator.stats()
    assert stats["requests"]["get_task"] == 3
    assert stats["tasks_created"] == 1


def test_two_503s_on_create_then_success_makes_one_task(hook, wan_simulator):
    wan_simulator.inject_fault("error", route="create", count=2, status=503, code="ModelUnavailable")
    hook.create_task(ENDPOINT, BODY)
    stats = wan_simulator.stats()
    assert stats["requests"]["create"] == 3
    assert stats["tasks_created"] == 1


def test_429_retry_after_is_honoured(hook, wan_simulator):
    task = hook.create_task(ENDPOINT, BODY)
    wan_simulator.inject_fault(
        "error", route="get_task", count=1, status=429, code="Throttling.RateQuota", retry_after=0.4
    )
    started = time.monotonic()
    hook.get_task(task.task_id)
    assert time.monotonic() - started >= 0.4


def test_free_quota_exhausted_is_not_retried(hook, wan_simulator):
    wan_simulator.inject_fault(
        "error",
        route="create",
        count=1,
        status=429,
        code="Throttling.AllocationQuota",
        message="Free allocated quota exceeded.",
    )
    with pytest.raises(WanBillingError, match="Free allocated quota exceeded"):
        hook.create_task(ENDPOINT, BODY)
    assert wan_simulator.stats()["requests"]["create"] == 1


def test_500_on_create_is_an_unknown_outcome(hook, wan_simulator):
    # a 500 does not prove DashScope made no task (only a 4xx with its code, a 429 or a 503 with its code do):
    # final, so neither the hook nor an Airflow retry resends it
    wan_simulator.inject_fault("error", route="create", count=1, status=500, code="InternalError")
    with pytest.raises(WanCreateOutcomeUnknownError, match="HTTP 500"):
        hook.create_task(ENDPOINT, BODY)
    assert wan_simulator.stats()["requests"]["create"] == 1


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_error_on_create_is_an_unknown_outcome(hook, wan_simulator, status):
    # a gateway may answer after DashScope accepted the task: neither the hook nor an Airflow retry may resend
    wan_simulator.inject_fault("error", route="create", count=1, status=status)
    with pytest.raises(WanCreateOutcomeUnknownError, match=f"HTTP {status}"):
        hook.create_task(ENDPOINT, BODY)
    assert wan_simulator.stats()["requests"]["create"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"code": "InvalidParameter", "message": "bad size", "request_id": "req-200-code"},
        {"code": "InvalidParameter", "request_id": "req-200-code", "output": {"task_id": 42}},
    ],
    ids=["error-code-no-output", "numeric-task-id"],
)
def test_a_200_create_answer_without_a_task_id_is_unknown_and_keeps_its_request_id(hook, wan_simulator, body):
    # an HTTP 200 carrying an error code, or a task_id of another JSON type: DashScope may have made the task (the
    # simulator did), so never resent; its request_id is what DashScope's support can look the create up by
    wan_simulator.inject_fault("answer", route="create", status=200, body=body)
    with pytest.raises(WanCreateOutcomeUnknownError) as excinfo:
        hook.create_task(ENDPOINT, BODY)
    error = excinfo.value
    assert (error.http_status, error.code, error.request_id) == (200, "InvalidParameter", "req-200-code")
    assert "its answer (HTTP 200) had " in str(error)
    assert str(error).endswith("(code=InvalidParameter, http_status=200, request_id=req-200-code)")
    assert wan_simulator.stats()["requests"]["create"] == 1
    assert wan_simulator.stats()["tasks_created"] == 1


def test_retries_are_bounded(hook, wan_simulator):
    task = hook.create_task(ENDPOINT, BODY)
    wan_simulator.inject_fault("error", route="get_task", count=-1, status=503, code="ModelUnavailable")
    with pytest.raises(WanRetryableError, match="ModelUnavailable"):
        hook.get_task(task.task_id)
    assert wan_simulator.stats()["requests"]["get_task"] == FAST.max_attempts


def test_reset_after_a_create_was_sent_is_never_resent(hook, wan_simulator):
    wan_simulator.inject_fault("reset", route="create", count=1)
    with pytest.raises(WanCreateOutcomeUnknownError) as excinfo:
        hook.create_task(ENDPOINT, BODY)
    message = str(excinfo.value)
    assert "NOT sent again" in message
    assert "tasks?model_name=wan2.5-t2v-preview" in message
    stats = wan_simulator.stats()
    assert stats["requests"]["create"] == 1
    assert stats["tasks_created"] == 1  # the task exists: that is exactly why it must not be sent again


def test_read_timeout_on_create_is_never_resent(hook, wan_simulator):
    wan_simulator.inject_fault("slow", route="create", count=1, delay=3)
    with pytest.raises(WanCreateOutcomeUnknownError, match="no answer came within"):
        hook.create_task(ENDPOINT, BODY)
    # the simulator counts the request once its late answer is written, 3 s after the request came: wait for that,
    # not a fixed time (a loaded machine writes it later). A resent create would have been counted already: the fault
    # slows only the first answer, and the hook resends, if ever, before it gives up
    deadline = time.monotonic() + 10
    while "create" not in wan_simulator.stats()["requests"] and time.monotonic() < deadline:
        time.sleep(0.1)
    stats = wan_simulator.stats()
    assert stats["requests"]["create"] == 1
    assert stats["tasks_created"] == 1


def test_refused_connection_on_create_is_retried(monkeypatch, wan_simulator_api_key):
    # nothing listens on this port: the request never left, so resending is safe (and bounded)
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_CLOSED",
        json.dumps(
            {"conn_type": "wan", "password": wan_simulator_api_key, "extra": {"base_url": "http://127.0.0.1:9/api/v1"}}
        ),
    )
    attempts: list[float] = []
    hook = WanHook(wan_conn_id="wan_closed", retry_policy=FAST, sleep=attempts.append)
    with pytest.raises(WanRetryableError, match="Cannot connect"):
        hook.create_task(ENDPOINT, BODY)
    assert len(attempts) == FAST.max_attempts - 1


def test_malformed_json_on_get_is_retried(hook, wan_simulator):
    task = hook.create_task(ENDPOINT, BODY)
    wan_simulator.inject_fault("malformed", route="get_task", count=1)
    assert hook.get_task(task.task_id).task_id == task.task_id
    assert wan_simulator.stats()["requests"]["get_task"] == 2


def test_401_names_the_region_binding(monkeypatch, wan_simulator):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_WRONGKEY",
        wan_simulator.connection_json(password="sk-wrong", region="beijing"),
    )
    hook = WanHook(wan_conn_id="wan_wrongkey", retry_policy=FAST)
    with pytest.raises(WanAuthError) as excinfo:
        hook.create_task(ENDPOINT, BODY)
    message = str(excinfo.value)
    assert "InvalidApiKey" in message
    assert "bound to the region" in message
    assert "'beijing'" in message
    assert "sk-wrong" not in message
    assert wan_simulator.stats()["tasks_created"] == 0


def test_test_connection_creates_nothing(hook, wan_simulator):
    ok, message = hook.test_connection()
    assert ok, message
    stats = wan_simulator.stats()
    assert stats["tasks_created"] == 0
    assert stats["requests"]["list"] == 1


def test_test_connection_reports_a_bad_key(monkeypatch, wan_simulator):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_BAD",
        wan_simulator.connection_json(password="sk-bad"),
    )
    ok, message = WanHook(wan_conn_id="wan_bad", retry_policy=FAST).test_connection()
    assert not ok
    assert "InvalidApiKey" in message


def test_unknown_task_is_expired_not_an_http_error(hook):
    task = hook.get_task("00000000-0000-0000-0000-000000000000")
    assert task.status is TaskStatus.UNKNOWN
    assert task.status.is_terminal()
    with pytest.raises(WanResultExpiredError, match="24 hours"):
        task.raise_for_status()


def test_list_and_cancel(hook, wan_simulator):
    wan_simulator.configure(pending_seconds=30)
    task = hook.create_task(ENDPOINT, BODY)
    listing = hook.list_tasks(model_name="wan2.5-t2v-preview")
    assert task.task_id in json.dumps(listing)
    hook.cancel_task(task.task_id)
    assert hook.get_task(task.task_id).status is TaskStatus.CANCELED
