"""
Issue 10, acceptance 3: the worker's transport (requests) and the triggerer's (aiohttp) classify the same table of
answers identically. Each row is served for real by the simulator's fault injection on 127.0.0.1, once to each
transport, with the same ApiCall; the outcome (error class, status, code, message), the requests the server saw and
the tasks it created must be the same, and the expected ones.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanError
from airflow_provider_wan.hooks.classify import MAX_ANSWER_BYTES
from airflow_provider_wan.hooks.wan import ApiCall, RetryPolicy, WanAsyncClient, WanHook
from tests.integration.conftest import BODY, ENDPOINT

pytestmark = pytest.mark.usefixtures("close_wan_sessions")

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
#: (connect, read) seconds: each attempt has connect + read = 2 s in all
TIMEOUT = (1.0, 1.0)
SIGNATURE = "c2lnbmVkLXNlY3JldA"
ELSEWHERE = f"http://127.0.0.1:9/steal?Expires=1&OSSAccessKeyId=LTAIx&Signature={SIGNATURE}"

UNKNOWN = "WanCreateOutcomeUnknownError"
RETRYABLE = "WanRetryableError"

# (id, route, faults armed before the call, expected outcome: "ok" or an error class name, requests, tasks created)
# Faults with count 1 hit the first attempt only; "answer", "drip" and "huge" process the request first (a create
# makes its task), as a gateway that lost DashScope's answer would.
TABLE: list[tuple[str, str, list[dict[str, Any]], str, int, int]] = [
    ("ok", "create", [], "ok", 1, 1),
    (
        "502 numeric code",
        "create",
        [{"kind": "answer", "status": 502, "body": {"code": 502, "message": "Bad Gateway"}}],
        UNKNOWN,
        1,
        1,
    ),
    (
        "502 null code",
        "create",
        [{"kind": "answer", "status": 502, "body": {"code": None, "message": None}}],
        UNKNOWN,
        1,
        1,
    ),
    ("500 InternalError", "create", [{"kind": "error", "status": 500, "code": "InternalError"}], UNKNOWN, 1, 0),
    (
        "503 DashScope code, then ok",
        "create",
        [{"kind": "error", "status": 503, "code": "ModelUnavailable"}],
        "ok",
        2,
        1,
    ),
    ("429, then ok", "create", [{"kind": "error", "status": 429, "code": "Throttling.RateQuota"}], "ok", 2, 1),
    (
        "400 InvalidParameter",
        "create",
        [{"kind": "error", "status": 400, "code": "InvalidParameter"}],
        "WanInvalidRequestError",
        1,
        0,
    ),
    ("2xx no output", "create", [{"kind": "answer", "status": 200, "body": {"request_id": "r"}}], UNKNOWN, 1, 1),
    ("2xx output null", "create", [{"kind": "answer", "status": 200, "body": {"output": None}}], UNKNOWN, 1, 1),
    ("2xx output list", "create", [{"kind": "answer", "status": 200, "body": {"output": ["t"]}}], UNKNOWN, 1, 1),
    (
        "2xx task_id number",
        "create",
        [{"kind": "answer", "status": 200, "body": {"output": {"task_id": 12}}}],
        UNKNOWN,
        1,
        1,
    ),
    ("2xx invalid JSON", "create", [{"kind": "malformed"}], UNKNOWN, 1, 1),
    (
        "2xx invalid UTF-8",
        "create",
        [{"kind": "answer", "status": 200, "raw": '{"output": {"task_id": "\u00ff"}}'}],
        UNKNOWN,
        1,
        1,
    ),
    (
        "2xx deep nesting",
        "create",
        [{"kind": "answer", "status": 200, "raw": "[" * 100_000 + "]" * 100_000}],
        UNKNOWN,
        1,
        1,
    ),
    ("huge body", "create", [{"kind": "huge", "size": MAX_ANSWER_BYTES + 4096}], UNKNOWN, 1, 1),
    ("redirect loop", "create", [{"kind": "redirect", "location": "loop"}], UNKNOWN, 1, 0),
    ("reset mid-answer", "create", [{"kind": "reset"}], UNKNOWN, 1, 1),
    ("slow drip", "create", [{"kind": "drip", "delay": 0.1, "after_bytes": 2}], UNKNOWN, 1, 1),
    ("ok", "get_task", [], "ok", 1, 1),
    (
        "502 numeric code, then ok",
        "get_task",
        [{"kind": "answer", "status": 502, "body": {"code": 502, "message": "x"}}],
        "ok",
        2,
        1,
    ),
    (
        "502 numeric code, always",
        "get_task",
        [{"kind": "answer", "status": 502, "body": {"code": 502}, "count": -1}],
        RETRYABLE,
        3,
        1,
    ),
    ("2xx output null, then ok", "get_task", [{"kind": "answer", "status": 200, "body": {"output": None}}], "ok", 2, 1),
    (
        "2xx output string, always",
        "get_task",
        [{"kind": "answer", "status": 200, "body": {"output": "x"}, "count": -1}],
        RETRYABLE,
        3,
        1,
    ),
    ("2xx invalid UTF-8, then ok", "get_task", [{"kind": "answer", "status": 200, "raw": "\u00ff\u00fe"}], "ok", 2, 1),
    ("huge body, then ok", "get_task", [{"kind": "huge", "size": MAX_ANSWER_BYTES + 4096}], "ok", 2, 1),
    ("redirect loop", "get_task", [{"kind": "redirect", "location": "loop", "count": -1}], "WanFinalError", 1, 1),
    (
        "redirect to another host",
        "get_task",
        [{"kind": "redirect", "status": 307, "location": ELSEWHERE}],
        "WanFinalError",
        1,
        1,
    ),
    (
        "2xx about another task, always",
        "get_task",
        [{"kind": "answer", "status": 200, "body": {"output": {"task_id": "other-task"}}, "count": -1}],
        RETRYABLE,
        3,
        1,
    ),
    ("slow drip, then ok", "get_task", [{"kind": "drip", "delay": 0.1, "after_bytes": 2}], "ok", 2, 1),
    (
        "401 InvalidApiKey",
        "get_task",
        [{"kind": "error", "status": 401, "code": "InvalidApiKey"}],
        "WanAuthError",
        1,
        1,
    ),
]


def _normalize(text: str) -> str:
    text = re.sub(r"start_time=\d{14}", "start_time=T", text)
    return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)


def _outcome(result: Any) -> tuple[Any, ...]:
    if isinstance(result, WanError):
        return (type(result).__name__, result.http_status, result.code, _normalize(result.message))
    # an answer's "usage" comes once the task has SUCCEEDED: whether it has depends on when each transport's read
    # landed (a slow machine), not on how the transport classified the answer
    return ("ok", sorted(key for key in result if key != "usage"))


def _arm(sim: Any, route: str, faults: list[dict[str, Any]]) -> str | None:
    """Reset the simulator, make the task a get_task row reads, arm the faults; return that task id."""
    sim.reset()
    task_id = None
    if route == "get_task":
        hook = WanHook(retry_policy=FAST)
        task_id = hook.create_task(ENDPOINT, BODY).task_id
        hook.close()
    for fault in faults:
        sim.inject_fault(**{"route": route, **fault})
    return task_id


async def _seen(sim: Any, route: str, requests: int) -> tuple[int, int]:
    """
    (requests on the route, tasks created), once the server has counted ``requests`` (it counts a request when its
    answer ends, and a cut drip ends only at its next write), or after 3 s. Sleeps in the event loop: aiohttp closes
    a dropped connection on the loop's next turns, as a triggerer's loop (never blocked) does at once.
    """
    deadline = time.monotonic() + 3.0
    while True:
        stats = sim.stats()
        seen = stats["requests"].get(route, 0), stats["tasks_created"]
        if seen[0] >= requests or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("case", "route", "faults", "expected", "requests", "tasks"), TABLE, ids=[f"{r[1]}: {r[0]}" for r in TABLE]
)
async def test_both_transports_classify_alike(wan_conn, wan_simulator, case, route, faults, expected, requests, tasks):
    outcomes = []
    for transport in ("sync", "async"):
        task_id = _arm(wan_simulator, route, faults)
        call = ApiCall.create_task(ENDPOINT, BODY) if route == "create" else ApiCall.get_task(str(task_id))
        result: Any
        if transport == "sync":
            hook = WanHook(retry_policy=FAST, timeout=TIMEOUT)
            try:
                result = hook._send(call)
            except WanError as error:
                result = error
            finally:
                hook.close()
        else:
            client = await WanAsyncClient.for_connection("wan_default", retry_policy=FAST, timeout=TIMEOUT)
            try:
                result = await client._send(call)
            except WanError as error:
                result = error
        seen = await _seen(wan_simulator, route, requests)
        text = str(result)
        assert wan_conn not in text, f"{transport}: the API key leaked"
        assert SIGNATURE not in text, f"{transport}: a signed URL leaked"
        outcomes.append((_outcome(result), seen))
    (sync_outcome, sync_seen), (async_outcome, async_seen) = outcomes
    assert sync_outcome == async_outcome, "the transports classify differently"
    assert sync_seen == async_seen, "the transports retry differently"
    assert sync_outcome[0] == expected
    # requests on the route for this call (a get_task row's own create is not on the get_task route)
    assert sync_seen[0] == requests
    assert sync_seen[1] == tasks, "a create was sent again"
