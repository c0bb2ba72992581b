"""
An attacker's review of the hook, the trigger and the sensor: answers and inputs nobody had listed, each served for
real on 127.0.0.1 (the simulator's fault injection, or a tiny server sending exactly the hostile answer), each with
the promise it broke.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanInvalidInputError,
    WanInvalidRequestError,
    WanRetryableError,
)
from airflow_provider_wan.hooks.wan import RetryPolicy, WanAsyncClient, WanHook
from airflow_provider_wan.triggers.wan import WanTaskTrigger
from tests.integration.conftest import BODY, ENDPOINT

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
#: a key without DashScope's ``sk-`` prefix (a workspace key, a proxy's own key): no pattern recognises it
PLAIN_KEY = "ws-live-0123456789abcdefXYZ"


def _connect(monkeypatch: pytest.MonkeyPatch, base_url: str, key: str = PLAIN_KEY) -> None:
    conn = {"conn_type": "wan", "password": key, "extra": {"base_url": base_url}}
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", json.dumps(conn))


def _create_task() -> str:
    hook = WanHook(retry_policy=FAST)
    try:
        return hook.create_task(ENDPOINT, BODY).task_id
    finally:
        hook.close()


# --- the API key echoed back by the server ---------------------------------------------------------------------------
ECHOES: dict[str, tuple[dict[str, Any], type[Exception]]] = {
    "401 message": (
        {"status": 401, "body": {"code": "InvalidApiKey", "message": f"Invalid API-key provided: {PLAIN_KEY}"}},
        WanAuthError,
    ),
    "403 in the code": ({"status": 403, "body": {"code": PLAIN_KEY, "message": "denied"}}, WanAuthError),
    "400 in the request id": (
        {"status": 400, "body": {"code": "InvalidParameter", "request_id": PLAIN_KEY}},
        WanInvalidRequestError,
    ),
}


@pytest.mark.parametrize("echo", list(ECHOES))
def test_an_api_key_the_server_echoes_never_reaches_an_error(monkeypatch, wan_simulator, echo):
    # a gateway or proxy that quotes the key it refused: DashScope's own keys start with sk- and are caught by their
    # shape, but a key of another shape was copied into the exception text and the trigger's event (the DB)
    _connect(monkeypatch, wan_simulator.base_url)
    answer, error_class = ECHOES[echo]
    wan_simulator.inject_fault("answer", route="list", **answer)
    hook = WanHook(retry_policy=FAST)
    with pytest.raises(error_class) as raised:
        hook.list_tasks()
    hook.close()
    assert PLAIN_KEY not in str(raised.value)
    assert PLAIN_KEY not in json.dumps(raised.value.to_dict())


#: a key of a gateway's own (base64: '/' and '+'), and how a gateway written in PHP quotes it by default ('\\/')
SLASHED_KEY = "gw/Live+0123456789/abcdefXYZ="


@pytest.mark.parametrize("escaped", ["\\/", "\\u002f"])
def test_an_api_key_echoed_with_json_escapes_never_reaches_an_error(monkeypatch, wan_simulator, escaped):
    # JSON may write '/' as '\/' (PHP's json_encode does by default) or any character as \uXXXX: the key was
    # replaced only as Python's json.dumps writes it, so the parsed message carried it into the exception text and
    # a trigger's event
    _connect(monkeypatch, wan_simulator.base_url, key=SLASHED_KEY)
    quoted = SLASHED_KEY.replace("/", escaped)
    raw = f'{{"code": "InvalidApiKey", "message": "Invalid API-key provided: {quoted}", "request_id": "{quoted}"}}'
    wan_simulator.inject_fault("answer", route="list", status=401, raw=raw)
    hook = WanHook(retry_policy=FAST)
    with pytest.raises(WanAuthError) as raised:
        hook.list_tasks()
    hook.close()
    assert SLASHED_KEY not in str(raised.value)
    assert SLASHED_KEY not in json.dumps(raised.value.to_dict())


@pytest.mark.usefixtures("close_wan_sessions")
async def test_an_api_key_echoed_in_a_task_read_stays_out_of_the_trigger_event(monkeypatch, wan_simulator):
    _connect(monkeypatch, wan_simulator.base_url, key=wan_simulator.api_key)
    task_id = _create_task()
    # the same answer, through the triggerer's transport, with a connection whose key has no sk- prefix
    _connect(monkeypatch, wan_simulator.base_url)
    wan_simulator.inject_fault(
        "answer", route="get_task", status=401, body={"code": "InvalidApiKey", "message": f"bad key {PLAIN_KEY}"}
    )
    trigger = WanTaskTrigger(task_id=task_id, end_time=9e9, poll_interval=0.1, retry_delay=0.01)
    events = [event.payload async for event in trigger.run()]
    assert [e["status"] for e in events] == ["error"]
    assert events[0]["error"]["error_class"] == "WanAuthError"
    assert PLAIN_KEY not in json.dumps(events)


# --- an answer about another task ------------------------------------------------------------------------------------
def test_a_read_answered_about_another_task_is_not_taken_for_it(wan_conn, wan_simulator):
    # a cache or proxy mixing answers up: GET /tasks/A answered with task B's SUCCEEDED record was taken as A's
    # result (another video under A's name, in XCom and in the bucket)
    task_id = _create_task()
    other = {
        "task_id": "0b7c8f6e-1234-4c5d-9e8f-aaaaaaaaaaaa",
        "task_status": "SUCCEEDED",
        "video_url": "https://x/v.mp4",
    }
    wan_simulator.inject_fault("answer", route="get_task", status=200, body={"output": other}, count=-1)
    hook = WanHook(retry_policy=FAST)
    with pytest.raises(WanRetryableError, match=f"reading task {task_id} .*another task") as raised:
        hook.get_task(task_id)
    hook.close()
    assert raised.value.task_id == task_id
    # retried like any garbled read (at least: a drip of an earlier test may still be counted here)
    assert wan_simulator.stats()["requests"]["get_task"] >= FAST.max_attempts


def test_a_read_answered_about_another_task_then_its_own_is_taken(wan_conn, wan_simulator):
    task_id = _create_task()
    other = {"task_id": "0b7c8f6e-1234-4c5d-9e8f-aaaaaaaaaaaa", "task_status": "SUCCEEDED"}
    wan_simulator.inject_fault("answer", route="get_task", status=200, body={"output": other})
    hook = WanHook(retry_policy=FAST)
    task = hook.get_task(task_id)
    hook.close()
    assert task.task_id == task_id
    assert wan_simulator.stats()["requests"]["get_task"] >= 2


# --- connection edge cases -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_a_base_url_with_an_impossible_port_says_so(monkeypatch, wan_simulator, port):
    # the message said "it does not start with http:// or https://" of a URL that does
    _connect(monkeypatch, f"https://dashscope-intl.aliyuncs.com:{port}/api/v1")
    hook = WanHook(retry_policy=FAST)
    with pytest.raises(WanInvalidInputError, match="port") as raised:
        hook.list_tasks()
    assert "does not start with" not in str(raised.value)
    assert wan_simulator.stats()["requests"].get("list", 0) == 0


# --- the trigger's own deadline bounds its cancel, and a kill ends soon -----------------------------------------------
def _pending_task(sim: Any) -> str:
    sim.configure(pending_seconds=600)  # stays PENDING: the deadline's cancel and a kill's cancel apply
    return _create_task()


@pytest.mark.usefixtures("close_wan_sessions")
async def test_the_cancel_at_the_deadline_cannot_hold_the_timeout_event(wan_conn, wan_simulator):
    # the cancel a "timeout" event makes first had no deadline of its own: a server trickling its answer held the
    # event for minutes (40 s an attempt, 11 attempts), past Airflow's own deferral timeout (5 minutes later), which
    # then failed the task without the event's account of the DashScope task
    task_id = _pending_task(wan_simulator)
    wan_simulator.inject_fault("drip", route="cancel", delay=1.0, after_bytes=1, count=-1)
    trigger = WanTaskTrigger(task_id=task_id, end_time=time.time() + 0.5, poll_interval=0.5, retry_delay=0.01)
    started = time.monotonic()
    events = await asyncio.wait_for(_events(trigger), 20)
    elapsed = time.monotonic() - started
    assert [e["status"] for e in events] == ["timeout"]
    # the deadline, then at most the grace of the read at the deadline (one poll interval here)
    assert elapsed < 0.5 + 0.5 + 1.0, f"the timeout event came {elapsed:.1f} s after the trigger started"
    assert events[0]["canceled"] is False
    assert events[0]["task_status"] == "PENDING"


@pytest.mark.usefixtures("close_wan_sessions")
@pytest.mark.parametrize("route", ["get_task", "cancel"])
async def test_on_kill_ends_soon_whatever_the_server_does(wan_conn, wan_simulator, route):
    task_id = _pending_task(wan_simulator)
    wan_simulator.inject_fault("drip", route=route, delay=1.0, after_bytes=1, count=-1)
    trigger = WanTaskTrigger(task_id=task_id, end_time=time.time() + 600, poll_interval=0.5, retry_delay=0.01)
    started = time.monotonic()
    await asyncio.wait_for(trigger.on_kill(), 20)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, f"on_kill took {elapsed:.1f} s"


async def _events(trigger: WanTaskTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


# --- Retry-After as an HTTP-date -------------------------------------------------------------------------------------
class _ThrottleOnceServer:
    """Answers its first request 429 with the ``Retry-After`` value ``retry_after()``, then as DashScope does."""

    def __init__(self, retry_after: Callable[[], str]) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.times: list[float] = []
        times = self.times

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                times.append(time.monotonic())
                if len(times) == 1:
                    body, status = {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded"}, 429
                else:
                    task_id = self.path.rsplit("/", 1)[-1] if "/tasks/" in self.path else "4f1d2c3b-aaaa-bbbb"
                    body, status = {"request_id": "r", "output": {"task_id": task_id, "task_status": "RUNNING"}}, 200
                payload = json.dumps(body).encode()
                self.send_response(status)
                if status == 429:
                    for value in retry_after().split("\n"):  # one header line per value
                        self.send_header("Retry-After", value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/api/v1"

    def __enter__(self) -> _ThrottleOnceServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _in_two_seconds() -> str:
    # an HTTP-date (RFC 9110 allows it beside delta-seconds) 3 s ahead, whole seconds: 2-3 s from now
    return email.utils.formatdate(time.time() + 3, usegmt=True)


def _twice_two_seconds() -> str:
    return "2\n2"


@pytest.mark.usefixtures("close_wan_sessions")
@pytest.mark.parametrize("transport", ["sync", "async"])
@pytest.mark.parametrize("retry_after", [_in_two_seconds, _twice_two_seconds], ids=["http-date", "sent-twice"])
async def test_a_retry_after_is_waited_out(monkeypatch, transport, retry_after):
    # "Retry-After: Mon, 30 Nov 2026 19:20:03 GMT" was taken for no Retry-After at all: the 429 was resent after the
    # backoff's first 0.01 s instead of after the 2 s the server asked for (and the pacer learned no hold either).
    # Sent twice (two header lines), the worker's transport read "2, 2" (requests joins them) as none, the
    # triggerer's read the first: the same answer classified differently
    slow = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=5.0)
    with _ThrottleOnceServer(retry_after) as server:
        _connect(monkeypatch, server.base_url)
        if transport == "sync":
            hook = WanHook(retry_policy=slow)
            hook.create_task(ENDPOINT, BODY)
            hook.close()
        else:
            client = await WanAsyncClient.for_connection("wan_default", retry_policy=slow)
            await client.get_task("4f1d2c3b-aaaa-bbbb")
    first, second = server.times
    assert second - first >= 1.5, f"resent {second - first:.2f} s after a 429 that asked for 2-3 s"


# --- what an answer's usage may carry on ---------------------------------------------------------------------------
SIGNED = "https://bucket.oss-ap-southeast-1.aliyuncs.com/v.mp4?Expires=1&OSSAccessKeyId=LTAIx&Signature=c2lnbmVk"


def test_usage_carries_no_signed_url_and_no_bulk_into_the_result(wan_conn, wan_simulator):
    # usage went on verbatim: into XCom (the operators' and the sensor's result), the trigger's event, the stored
    # object's metadata and OpenLineage. A signed URL in it was a readable link for anyone seeing those; a megabyte
    # of nested JSON went into the metadata DB
    import requests

    hook = WanHook(retry_policy=FAST)
    task_id = hook.wait_for_task(_create_task(), poll_interval=0.1, timeout=30).task_id
    answer = requests.get(
        f"{wan_simulator.base_url}/tasks/{task_id}",
        headers={"Authorization": f"Bearer {wan_simulator.api_key}"},
        timeout=10,
    ).json()
    answer["usage"] = {
        **answer["usage"],
        "note": f"see {SIGNED}",
        "links": [SIGNED] * 1000,
        "deep": {"a": {"b": SIGNED}},
        **{f"k{i}": i for i in range(100)},
    }
    wan_simulator.inject_fault("answer", route="get_task", status=200, body=answer)
    result = hook.get_task(task_id).to_result()
    hook.close()
    text = json.dumps(result)
    assert "Signature" not in text
    assert "LTAIx" not in text
    assert len(text) < 8 * 1024
    assert result["usage"]["video_duration"] == answer["usage"]["video_duration"]
    assert result["usage"]["note"].startswith("see https://bucket.oss-ap-southeast-1.aliyuncs.com/v.mp4")


# --- an API key as pasted -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_a_key_ending_in_a_line_break_creates_one_task(monkeypatch, wan_simulator, ending):
    # the HTTP client refused the header with the line break, and that read as "the create may have been created
    # and billed" (WanCreateOutcomeUnknownError), final, for a request that never left the machine
    _connect(monkeypatch, wan_simulator.base_url, key=wan_simulator.api_key + ending)
    hook = WanHook(retry_policy=FAST)
    assert hook.create_task(ENDPOINT, BODY).task_id
    hook.close()
    assert wan_simulator.stats()["tasks_created"] == 1


@pytest.mark.usefixtures("close_wan_sessions")
@pytest.mark.parametrize("transport", ["sync", "async"])
async def test_a_key_with_a_line_break_inside_is_refused_before_any_request(monkeypatch, wan_simulator, transport):
    _connect(monkeypatch, wan_simulator.base_url, key="sk-wan\r\nX-Injected: 1")

    async def call() -> None:
        if transport == "sync":
            WanHook(retry_policy=FAST).create_task(ENDPOINT, BODY)
        else:
            await (await WanAsyncClient.for_connection("wan_default", retry_policy=FAST)).get_task("4f1d2c3b-aaaa")

    with pytest.raises(WanInvalidInputError, match=r"API key .* whitespace or control characters") as raised:
        await call()
    assert "X-Injected" not in str(raised.value)
    assert wan_simulator.stats()["requests"] == {}
