"""
The classifier alone (a pure module): every answer shape of issue 10 -> the right error class, the lost-create rule,
and never anything but our errors, whatever the body. Through real HTTP on both transports: tests/integration.
"""

from __future__ import annotations

import itertools
import json
import random

import pytest

from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanBillingError,
    WanContentError,
    WanCreateOutcomeUnknownError,
    WanError,
    WanFinalError,
    WanInvalidInputError,
    WanInvalidRequestError,
    WanModelNotFoundError,
    WanRetryableError,
    WanTimeoutError,
)
from airflow_provider_wan.hooks.classify import (
    MAX_ANSWER_BYTES,
    Failure,
    TransportFault,
    classify_answer,
    classify_transport,
    proves_nothing_created,
    retry_after_seconds,
)
from airflow_provider_wan.hooks.wan import ApiCall, Credentials

KEY = "sk-" + "unit-test-key-0123456789"
SIGNED = "https://bucket.oss-cn.example.com/v.mp4?Expires=1&OSSAccessKeyId=LTAIxyz&Signature=c2VjcmV0"
CREDENTIALS = Credentials(api_key=KEY, base_url="http://127.0.0.1:9/api/v1", region=None, source="connection 'x'")
CREATE = ApiCall.create_task("services/aigc/video-generation/video-synthesis", {"model": "wan2.5-t2v-preview"})
READ = ApiCall.get_task("0b7c8f6e-1234-4c5d-9e8f-aaaaaaaaaaaa")
LIST = ApiCall.list_tasks(page_size=1)
OK_TASK = {"request_id": "r1", "output": {"task_id": READ.task_id, "task_status": "PENDING"}}


def _body(value: object) -> bytes:
    return value if isinstance(value, bytes) else json.dumps(value).encode()


def _classify(call: ApiCall, status: int, body: object, headers: dict[str, str] | None = None, **kw: bool):
    return classify_answer(call, status, headers or {}, _body(body), CREDENTIALS, **kw)


# (case, status, body, class on a create, class on a read (None: the read succeeds))
TABLE = [
    ("2xx well formed", 200, OK_TASK, None, None),
    ("502 numeric code", 502, {"code": 502, "message": "Bad Gateway"}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("502 null code", 502, {"code": None, "message": None}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("504 list code", 504, {"code": ["x"], "message": {"a": 1}}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("500 with code", 500, {"code": "InternalError", "message": "m"}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("500 html", 500, b"<html>oops</html>", WanCreateOutcomeUnknownError, WanRetryableError),
    ("503 with code", 503, {"code": "ModelUnavailable", "message": "m"}, WanRetryableError, WanRetryableError),
    ("503 numeric code", 503, {"code": 503, "message": "down"}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("429 no body", 429, b"", WanRetryableError, WanRetryableError),
    ("429 throttling", 429, {"code": "Throttling.RateQuota", "message": "m"}, WanRetryableError, WanRetryableError),
    (
        "429 free quota",
        429,
        {"code": "Throttling.AllocationQuota", "message": "Free allocated quota exceeded."},
        WanBillingError,
        WanBillingError,
    ),
    ("400 invalid", 400, {"code": "InvalidParameter"}, WanInvalidRequestError, WanInvalidRequestError),
    ("400 moderation", 400, {"code": "DataInspectionFailed", "message": "m"}, WanContentError, WanContentError),
    ("401 key", 401, {"code": "InvalidApiKey", "message": "m"}, WanAuthError, WanAuthError),
    ("404 model", 404, {"code": "ModelNotFound", "message": "m"}, WanModelNotFoundError, WanModelNotFoundError),
    ("400 numeric code", 400, {"code": 400, "message": "bad"}, WanCreateOutcomeUnknownError, WanFinalError),
    ("413 html from a proxy", 413, b"<html>too large</html>", WanCreateOutcomeUnknownError, WanFinalError),
    ("2xx output missing", 200, {"request_id": "r"}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx output null", 200, {"output": None}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx output list", 200, {"output": [1, 2]}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx output string", 200, {"output": "ok"}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx task_id numeric", 200, {"output": {"task_id": 7}}, WanCreateOutcomeUnknownError, None),
    ("2xx task_id missing", 200, {"output": {"task_status": "PENDING"}}, WanCreateOutcomeUnknownError, None),
    ("2xx task_id with a slash", 200, {"output": {"task_id": "a/b"}}, WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx another task's id", 200, {"output": {"task_id": "t-2"}}, None, WanRetryableError),
    ("2xx JSON array", 200, [OK_TASK], WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx JSON null", 200, None, WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx empty", 200, b"", WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx invalid JSON", 200, b'{"output": {"task_id": ', WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx invalid UTF-8", 200, b'{"output": "\xff\xfe"}', WanCreateOutcomeUnknownError, WanRetryableError),
    ("2xx deep nesting", 200, b"[" * 200_000 + b"]" * 200_000, WanCreateOutcomeUnknownError, WanRetryableError),
    ("302 redirect", 302, b"", WanCreateOutcomeUnknownError, WanFinalError),
    ("301 redirect", 301, {"code": "Moved"}, WanCreateOutcomeUnknownError, WanFinalError),
]


@pytest.mark.parametrize(("case", "status", "body", "on_create", "on_read"), TABLE, ids=[r[0] for r in TABLE])
def test_answer_table(case, status, body, on_create, on_read):
    for call, expected in ((CREATE, on_create), (READ, on_read)):
        result = _classify(call, status, body)
        if expected is None:
            assert isinstance(result, dict), case
            continue
        assert isinstance(result, Failure), case
        assert type(result.error) is expected, (case, call.method, type(result.error))
        if expected is WanCreateOutcomeUnknownError:
            assert not result.retryable
            assert "NOT sent again" in result.error.message


def test_the_lost_create_rule():
    assert proves_nothing_created(429, None)
    assert proves_nothing_created(400, "InvalidParameter")
    assert proves_nothing_created(503, "ModelUnavailable")
    assert not proves_nothing_created(503, None)
    assert not proves_nothing_created(500, "InternalError")
    assert not proves_nothing_created(502, None)
    assert not proves_nothing_created(400, None)


def test_a_create_is_resent_only_after_a_proven_refusal():
    refused = _classify(CREATE, 503, {"code": "ModelUnavailable", "message": "m"})
    assert isinstance(refused, Failure)
    assert (refused.retryable, refused.nothing_created) == (True, True)
    unknown = _classify(CREATE, 502, {"code": 502, "message": "Bad Gateway"})
    assert isinstance(unknown, Failure)
    assert (unknown.retryable, unknown.nothing_created) == (False, False)
    assert unknown.error.http_status == 502


def test_a_too_large_body_is_not_parsed():
    body = json.dumps(OK_TASK).encode()
    for call, expected in ((CREATE, WanCreateOutcomeUnknownError), (READ, WanRetryableError)):
        result = classify_answer(call, 200, {}, body, CREDENTIALS, truncated=True)
        assert isinstance(result, Failure)
        assert type(result.error) is expected
        assert str(MAX_ANSWER_BYTES) in result.error.message


def test_retry_after_is_read_safely():
    assert _classify(READ, 429, b"", {"Retry-After": "3"}).retry_after == 3.0  # type: ignore[union-attr]
    for odd in (
        "nan",
        "inf",
        "-5",
        "soon",
        "",
        "1e400",
        "Mon, 99 Nov 2026 19:20:03 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ):
        value = retry_after_seconds(odd)
        assert value is None or 0.0 <= value <= 3600.0, odd


def test_retry_after_may_be_an_http_date():
    import email.utils
    import time

    ahead = retry_after_seconds(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert ahead is not None
    assert 28.0 <= ahead <= 30.0
    assert retry_after_seconds("Sun, 06 Nov 1994 08:49:37 GMT") == 0.0  # past: at once


def test_401_says_keys_are_bound_to_a_region_without_the_key():
    result = _classify(READ, 401, {"code": "InvalidApiKey", "message": f"bad key {KEY}"})
    assert isinstance(result, Failure)
    assert "bound to the region" in result.error.message
    assert KEY not in str(result.error)


@pytest.mark.parametrize(
    "field",
    [
        {"message": f"cannot fetch {SIGNED}"},
        {"message": "cannot fetch " + SIGNED.replace("?", "%3F").replace("=", "%3D").replace("&", "%26")},
        {"message": json.dumps({"url": SIGNED}).replace("/", "\\/")},
        {"message": f"Authorization: Bearer {KEY}"},
        {"request_id": SIGNED},
    ],
)
def test_error_text_never_holds_a_secret(field):
    body = {"code": "InvalidURL", "message": "m", **field}
    for call in (CREATE, READ):
        result = _classify(call, 400, body)
        assert isinstance(result, Failure)
        text = str(result.error) + json.dumps(result.error.to_dict())
        assert "c2VjcmV0" not in text
        assert KEY not in text


def test_redirects_name_the_host_only():
    headers = {"Location": "https://elsewhere.example:8443/steal?Signature=c2VjcmV0&key=" + KEY}
    for call in (CREATE, READ, LIST):
        result = _classify(call, 307, b"", headers)
        assert isinstance(result, Failure)
        assert not result.retryable
        text = str(result.error)
        assert "https://elsewhere.example:8443" in text
        assert "c2VjcmV0" not in text
        assert KEY not in text
        assert "steal" not in text


@pytest.mark.parametrize("fault", list(TransportFault))
def test_transport_faults(fault):
    on_create = classify_transport(CREATE, fault, CREDENTIALS, seconds=5.0)
    on_read = classify_transport(READ, fault, CREDENTIALS, seconds=5.0)
    if fault is TransportFault.INVALID_URL:
        assert type(on_create.error) is type(on_read.error) is WanInvalidInputError
        assert on_create.nothing_created
    elif fault is TransportFault.NOT_CONNECTED:
        # nothing left this machine: even a create may be sent again
        assert (on_create.retryable, on_create.nothing_created) == (True, True)
    elif fault is TransportFault.CERTIFICATE:
        # the TLS handshake failed, so nothing was sent; the same certificate would fail again
        for failure in (on_create, on_read):
            assert type(failure.error) is WanFinalError
            assert (failure.retryable, failure.nothing_created) == (False, True)
            assert "TLS certificate was not accepted" in str(failure.error)
    else:
        assert type(on_create.error) is WanCreateOutcomeUnknownError
        assert not on_create.retryable
        expected = WanTimeoutError if fault is TransportFault.DEADLINE else WanRetryableError
        assert type(on_read.error) is expected
        assert on_read.retryable is (fault is not TransportFault.DEADLINE)


_VALUES = [None, True, 0, -1, 1.5, 10**30, "", "x", "InvalidParameter", "\ud800", "\x00", SIGNED, [], [1], {}, {"a": 1}]


def test_any_json_type_in_any_field_gives_one_of_our_answers():
    rng = random.Random(10)
    fields = ("code", "message", "request_id", "output", "usage")
    combos = list(itertools.product(_VALUES, repeat=2))
    for status in (200, 201, 400, 401, 429, 500, 502, 503):
        for code, message in combos:
            body = {"code": code, "message": message}
            for name in fields:
                body[name] = rng.choice(_VALUES)
            for call in (CREATE, READ, LIST):
                result = _classify(call, status, body)
                if isinstance(result, Failure):
                    assert isinstance(result.error, WanError)
                    assert "c2VjcmV0" not in str(result.error)
                else:
                    assert isinstance(result, dict)


def test_odd_task_fields_read_as_absent():
    from airflow_provider_wan.hooks.wan import TaskStatus, WanTask

    task = WanTask.from_response(
        {
            "request_id": ["r"],
            "output": {
                "task_id": "t-1",
                "task_status": 3,
                "video_url": 5,
                "orig_prompt": "a\ud800b",
                "code": 500,
                "message": {"m": 1},
                "submit_time": None,
            },
            "usage": "lots",
        }
    )
    assert task.status is TaskStatus.RUNNING  # not a status we know: not terminal, keep polling
    assert (task.request_id, task.video_url, task.code, task.message, task.usage) == (None, None, None, None, {})
    assert task.orig_prompt is not None
    assert task.orig_prompt.encode("utf-8")  # no lone surrogate left to break a log or XCom


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ([1, 2], "a JSON array"),
        (b"<html>Bad Gateway</html>", "not JSON"),
        (b"", "an empty body"),
        (b"\xff", "not UTF-8"),
    ],
)
def test_an_error_body_that_is_not_an_object_is_described_not_quoted(body, said):
    result = _classify(READ, 502, body)
    assert isinstance(result, Failure)
    assert said in result.error.message
    assert "html" not in result.error.message.lower()
