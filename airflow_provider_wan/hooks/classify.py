"""
The one classifier: any DashScope answer (status, headers, body bytes) or transport failure -> our errors.

Both transports (:class:`~airflow_provider_wan.hooks.wan.WanHook` with ``requests``, the triggers'
:class:`~airflow_provider_wan.hooks.wan.WanAsyncClient` with ``aiohttp``) only move bytes: they hand what came back,
or which :class:`TransportFault` stopped them, to :func:`classify_answer` or :func:`classify_transport`, and get back
either the answer's JSON object or a :class:`Failure` for the retry policy. So both classify every answer the same
way, by construction.

It never raises, and it returns nothing but our error classes, whatever the body: any JSON type in any field, invalid
JSON or UTF-8, deep nesting, bodies cut at :data:`MAX_ANSWER_BYTES`. Error text is our own words plus fields made
safe by :func:`airflow_provider_wan.redact.clean_text`; never the text of a client library's exception.

The lost-create rule lives here too: a create is final-and-unknown (:class:`WanCreateOutcomeUnknownError`, never
resent, not even by an Airflow retry) unless the answer is a well-formed 2xx with a string task id, or an error that
proves DashScope made no task: a 4xx carrying a DashScope error code, a 429, or a 503 carrying a DashScope code.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanCreateOutcomeUnknownError,
    WanError,
    WanFinalError,
    WanInvalidInputError,
    WanRetryableError,
    WanTimeoutError,
    dashscope_code,
    error_for_response,
)
from airflow_provider_wan.redact import clean_text, url_host

if TYPE_CHECKING:
    from airflow_provider_wan.hooks.wan import ApiCall, Credentials

__all__ = [
    "MAX_ANSWER_BYTES",
    "TASK_ID_PATTERN",
    "Failure",
    "TransportFault",
    "classify_answer",
    "classify_transport",
    "outcome_unknown",
    "proves_nothing_created",
    "proxy_certificate_refused",
    "proxy_refused",
    "refused_proxy_certificate",
    "retry_after_seconds",
]

#: Largest answer read, in bytes (decoded). DashScope's biggest, a page of 100 listed tasks with long prompts, is
#: far below; anything beyond is not DashScope talking and is not read further.
MAX_ANSWER_BYTES = 4 * 1024 * 1024
#: Longest Retry-After honoured, in seconds (the retry policy caps it further).
_MAX_RETRY_AFTER = 3600.0
#: What a DashScope task id looks like (a UUID in practice); also keeps ids safe inside a URL path.
TASK_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


class TransportFault(str, Enum):
    """Why a transport got no whole answer. Each transport maps its client library's exceptions to one of these."""

    #: nothing left this machine: connection refused, name not resolved, connect timeout
    NOT_CONNECTED = "not_connected"
    #: the request went out, and no whole answer came within the per-request time limit
    TIMEOUT = "timeout"
    #: the caller's own deadline (a wait's or a trigger's) passed while the request was under way
    DEADLINE = "deadline"
    #: the request went out, and the connection dropped or the answer broke off (reset, bad framing, ...)
    BROKEN = "broken"
    #: the URL cannot be sent at all (no http(s) scheme, bad host): a configuration error
    INVALID_URL = "invalid_url"
    #: the server's TLS certificate failed the check: nothing was sent, and the same certificate fails again
    CERTIFICATE = "certificate"


#: why a server was refused when its certificate was (the API's, a result link's, an upload host's)
CERTIFICATE_REFUSED = (
    "its TLS certificate was not accepted (it does not name that host, has expired, or no authority this machine "
    "trusts signed it; behind a proxy that inspects TLS, trust the proxy's CA with REQUESTS_CA_BUNDLE)"
)


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, in the terms the retry decision needs."""

    error: WanError
    #: worth another attempt of the same request (still bounded by the retry policy)
    retryable: bool
    #: True when the server cannot have made a task: nothing was sent, or its answer says it refused
    nothing_created: bool
    retry_after: float | None = None


def retry_after_seconds(value: Any) -> float | None:
    """
    Seconds of a ``Retry-After`` header, in either form RFC 9110 allows: delta-seconds (``"5"``) or an HTTP-date
    (``"Mon, 30 Nov 2026 19:20:03 GMT"``, the seconds from now to it); None when absent or neither. Between 0 and
    :data:`_MAX_RETRY_AFTER`.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    seconds: float | None
    try:
        seconds = float(value.strip())
    except ValueError:
        seconds = _seconds_until(value.strip())
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), _MAX_RETRY_AFTER)


def _seconds_until(http_date: str) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
        if when.tzinfo is None:  # "-0000": RFC 5322's unknown zone; HTTP-dates are GMT
            when = when.replace(tzinfo=datetime.timezone.utc)
        return when.timestamp() - time.time()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def proves_nothing_created(status: int, code: str | None) -> bool:
    """
    Whether an error answer to a create proves DashScope made no task.

    DashScope itself refused when it sends one of its error codes with a 4xx, or with a 503 (overloaded model);
    a 429 is a refusal wherever it comes from. Anything else (a 500, a gateway's 502/504, a 4xx without a
    DashScope code, which may come from a proxy in front of a backend that did accept) proves nothing.
    """
    if status == 429:
        return True
    return code is not None and (400 <= status < 500 or status == 503)


def outcome_unknown(
    call: ApiCall,
    credentials: Credentials,
    cause: str,
    *,
    http_status: int | None = None,
    code: str | None = None,
    request_id: str | None = None,
) -> WanCreateOutcomeUnknownError:
    """The error for a create that may have made a task: never resent, and it says how to find the task."""
    model = clean_text((call.json_body or {}).get("model"), 100)
    since = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() - 600 + 8 * 3600))
    return WanCreateOutcomeUnknownError(
        f"The create request for model {model!r} was sent to {credentials.describe()} but {cause}. "
        "A task may have been created and billed, so it was NOT sent again. Find it with "
        f"GET {credentials.base_url}/tasks?model_name={model}&start_time={since} "
        "(WanHook.list_tasks(model_name=..., start_time=...)), then wait for it with WanTaskSensor(wan_task_id=...) "
        "instead of resubmitting.",
        http_status=http_status,
        code=code,
        request_id=request_id,
    )


def proxy_refused(call: ApiCall, credentials: Credentials, proxy: str, status: int, *, tunnel: bool = False) -> Failure:
    """
    The :class:`Failure` of a call a proxy would not pass on: it answered the call itself with 407 (Proxy
    Authentication Required), or (``tunnel``) answered the ``CONNECT`` of an https call with anything but 200, so no
    tunnel was opened and not one byte of the call left for DashScope. Either way DashScope never saw the call: a
    create made no task. Final, but for a proxy that could not reach the host (5xx), which may pass.

    :param proxy: the proxy's URL; only its scheme, host and port are named (never its login, path or query)
    :param status: what the proxy answered
    """
    api = urlsplit(credentials.base_url)
    if tunnel:
        target = f"{api.hostname}:{api.port or (443 if api.scheme == 'https' else 80)}"
        what = f"refused to open a tunnel (CONNECT) to {target} while {call.context}, with HTTP {status}"
        outcome = "nothing was sent to DashScope"
    else:
        what = f"refused {call.context} with HTTP {status}"
        outcome = "nothing reached DashScope"
    if status == 407:
        why = (
            "it wants a login, or refused the one given: put the proxy's login in its URL "
            "(http://user:password@host:port) in HTTPS_PROXY or HTTP_PROXY, for the workers and the triggerers alike"
        )
    elif status >= 500:
        why = "it could not reach that host (a fault on its side, or a name it cannot resolve)"
    else:
        why = (
            "its rules do not let this call through: ask its administrator, or name the host in NO_PROXY if DashScope "
            "is reachable without the proxy"
        )
    text = f"The proxy at {url_host(proxy)} {what}: {outcome} at {credentials.describe()}. {why[0].upper()}{why[1:]}."
    if call.creates_task:
        text += " No task was created (nothing was billed): the create may be sent again once the proxy lets it pass."
    retryable = status >= 500
    cls = WanRetryableError if retryable else WanFinalError
    return Failure(cls(text, http_status=status, task_id=call.task_id), retryable=retryable, nothing_created=True)


def refused_proxy_certificate(proxy: str, context: str) -> str:
    """
    The words of anything refused at the TLS handshake with an ``https://`` proxy itself, whose certificate failed
    the check: an API call (:func:`proxy_certificate_refused`), a video copy, an upload. The caller adds what did not
    happen.

    :param proxy: the proxy's URL; only its scheme, host and port are named (never its login, path or query)
    :param context: what was being done ("reading task ..."), in our words
    """
    return (
        f"Refused the proxy at {url_host(proxy)} while {context}: its TLS certificate was not accepted (it does not "
        "name the proxy's host, has expired, or no authority this machine trusts signed it; trust the authority that "
        "signed it with REQUESTS_CA_BUNDLE, for the workers and the triggerers alike)."
    )


def proxy_certificate_refused(call: ApiCall, credentials: Credentials, proxy: str) -> Failure:
    """
    The :class:`Failure` of a call refused at the TLS handshake with an ``https://`` proxy itself: the proxy's
    certificate, not DashScope's, failed the check. Nothing was sent to the proxy (no CONNECT, no login), let alone to
    DashScope: a create made no task. Final, as a refused DashScope certificate is (:attr:`TransportFault.CERTIFICATE`):
    the same certificate is refused again.

    :param proxy: the proxy's URL; only its scheme, host and port are named (never its login, path or query)
    """
    text = f"{refused_proxy_certificate(proxy, call.context)} Nothing reached DashScope at {credentials.describe()}."
    if call.creates_task:
        text += " No task was created (nothing was billed): the create may be sent again once the proxy is trusted."
    error = WanFinalError(text, task_id=call.task_id)
    return Failure(error, retryable=False, nothing_created=True)


def _parse(body: bytes) -> tuple[Any, str | None]:
    """(JSON value, None), or (None, what is wrong with the body, in our words)."""
    if not body:
        return None, "an empty body"
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "a body that is not UTF-8"
    try:
        return json.loads(text), None
    except RecursionError:
        return None, "a body nested too deeply"
    except ValueError:
        return None, "a body that is not JSON"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "number", float: "number"}.get(type(value), "value")


def _shape_problem(call: ApiCall, value: Any) -> str | None:
    """What a 2xx answer lacks for ``call``, or None when it is well formed."""
    if not isinstance(value, dict):
        return f"a JSON {_json_type(value)}, not an object"
    if call.answer == "object":
        return None
    output = value.get("output")
    if not isinstance(output, dict):
        return "no 'output' object" if output is None else f"an 'output' that is a JSON {_json_type(output)}"
    if call.answer == "created":
        task_id = output.get("task_id")
        if not isinstance(task_id, str) or not TASK_ID_PATTERN.fullmatch(task_id):
            return "no task_id" if task_id in (None, "") else "a task_id that is not a DashScope task id"
    if call.answer == "task":
        # a cache or proxy that mixed answers up: another task's record (its status, its video) is not this one's
        # (a task_id of another JSON type reads as absent, like any field of the wrong type)
        task_id = output.get("task_id")
        if isinstance(task_id, str) and task_id not in ("", call.task_id):
            return f"an answer about another task ({clean_text(task_id, 80)})"
    return None


def _without_key(value: Any, credentials: Credentials) -> Any:
    """
    The parsed answer with every copy of our API key replaced, in every string (object keys too): a gateway or proxy
    quoting the key it refused must not put it into an error, a log, a trigger event or XCom. DashScope's own ``sk-``
    keys are caught by their shape (:mod:`airflow_provider_wan.redact`); a key of another shape only by its value,
    here, where it is known. Replaced once parsed, not in the bytes: JSON may spell the key in many ways (``\\/`` for
    a ``/``, as PHP writes it, or any character as ``\\uXXXX``). Iterative: the nesting JSON allows is no limit here.
    """
    key = credentials.api_key
    if len(key) < 4:
        return value

    def scrubbed(text: str) -> str:
        return text.replace(key, "***") if key in text else text

    if isinstance(value, str):
        return scrubbed(value)
    pending = [value] if isinstance(value, dict | list) else []
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            node[:] = [scrubbed(item) if isinstance(item, str) else item for item in node]
            pending.extend(item for item in node if isinstance(item, dict | list))
            continue
        items = [(scrubbed(name), scrubbed(item) if isinstance(item, str) else item) for name, item in node.items()]
        node.clear()
        node.update(items)
        pending.extend(item for _, item in items if isinstance(item, dict | list))
    return value


def classify_answer(
    call: ApiCall,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    *,
    truncated: bool = False,
    proxy: str | None = None,
) -> dict[str, Any] | Failure:
    """
    The JSON object of a good answer, or the :class:`Failure` any other answer means.

    :param call: the request that was answered
    :param status: the HTTP status
    :param headers: the answer's headers (``Retry-After`` and ``Location`` are read; case-insensitive mappings
        welcome, a plain dict must use those spellings)
    :param body: the body bytes as read, at most :data:`MAX_ANSWER_BYTES`
    :param truncated: the body went on beyond the cap and was not read further
    :param proxy: the URL of the proxy the call went through (None: straight to the API); a 407 to a plain-http
        call it passed on is its own refusal
    """
    # an https call goes through the proxy's tunnel: what comes back is the API's answer, never the proxy's
    if status == 407 and proxy is not None and urlsplit(credentials.base_url).scheme == "http":
        return proxy_refused(call, credentials, proxy, status)
    value, problem = _parse(body) if not truncated else (None, f"a body over {MAX_ANSWER_BYTES} bytes")
    value = _without_key(value, credentials)
    if 300 <= status < 400:
        return _redirect(call, status, headers, credentials)
    if 200 <= status < 300:
        problem = problem or _shape_problem(call, value)
        if problem is None and isinstance(value, dict):
            return value
        if call.creates_task:
            # what the answer does say (a code, a request_id) goes with it: the request_id is what DashScope's
            # support needs to tell whether the create made a task
            said = value if isinstance(value, dict) else {}
            return _final(
                outcome_unknown(
                    call,
                    credentials,
                    f"its answer (HTTP {status}) had {problem}",
                    http_status=status,
                    code=dashscope_code(said.get("code")),
                    request_id=clean_text(said.get("request_id"), 100),
                )
            )
        # a garbled success is a transport problem (a proxy, a cut): worth another read
        garbled = WanRetryableError(
            f"DashScope answered {call.context} with HTTP {status} but {problem}",
            http_status=status,
            task_id=call.task_id,
        )
        return Failure(garbled, retryable=True, nothing_created=False)
    described = value if isinstance(value, dict) else (problem or f"a JSON {_json_type(value)}")
    error = error_for_response(status, described, context=call.context, task_id=call.task_id)
    if isinstance(error, WanAuthError) and status == 401:
        error = WanAuthError(
            f"{error.message.rstrip('.')}. DashScope API keys are bound to the region they were created in "
            f"(a Beijing key fails on the Singapore endpoint); this call used {credentials.describe()} "
            f"with the key from {credentials.source}.",
            http_status=error.http_status,
            code=error.code,
            request_id=error.request_id,
            task_id=error.task_id,
        )
    refused = proves_nothing_created(status, error.code)
    if call.creates_task and not refused:
        cause = f"its answer (HTTP {status}) did not say what happened"
        return _final(
            outcome_unknown(call, credentials, cause, http_status=status, code=error.code, request_id=error.request_id)
        )
    return Failure(
        error,
        retryable=isinstance(error, WanRetryableError),
        nothing_created=refused,
        retry_after=retry_after_seconds(headers.get("Retry-After")),
    )


def _redirect(call: ApiCall, status: int, headers: Mapping[str, str], credentials: Credentials) -> Failure:
    # DashScope never redirects its API. Following one would send the key to wherever the Location points (and
    # a loop would spin), so no redirect is followed; the error names only the target's host, never its query.
    target = url_host(headers.get("Location"))
    cause = f"it answered HTTP {status}, a redirect to {target}, which is not followed"
    if call.creates_task:
        return _final(outcome_unknown(call, credentials, cause))
    error = WanFinalError(
        f"DashScope at {credentials.describe()} answered {call.context} with HTTP {status}, a redirect to {target}. "
        "API calls carry the key and are never redirected, so it was not followed: check the base_url of the "
        f"{credentials.source}.",
        http_status=status,
        task_id=call.task_id,
    )
    return _final(error)


def _final(error: WanError) -> Failure:
    return Failure(error, retryable=False, nothing_created=False)


def classify_transport(
    call: ApiCall, fault: TransportFault, credentials: Credentials, *, seconds: float | None = None
) -> Failure:
    """
    The :class:`Failure` of an attempt that got no whole answer.

    :param fault: what stopped the transport
    :param seconds: the time limit that ran out, for TIMEOUT and DEADLINE (seconds)
    """
    limit = f"{seconds:g} s" if seconds is not None else "the time limit"
    if fault is TransportFault.INVALID_URL:
        error: WanError = WanInvalidInputError(
            f"Cannot send a request to {url_host(credentials.base_url)}: not a valid http(s) URL; check the base_url "
            f"of the {credentials.source}"
        )
        return Failure(error, retryable=False, nothing_created=True)
    if fault is TransportFault.CERTIFICATE:
        error = WanFinalError(
            f"Refused DashScope at {credentials.describe()} while {call.context}: {CERTIFICATE_REFUSED}. Nothing was "
            "sent",
            task_id=call.task_id,
        )
        return Failure(error, retryable=False, nothing_created=True)
    if fault is TransportFault.NOT_CONNECTED:
        error = WanRetryableError(f"Cannot connect to DashScope at {credentials.describe()} while {call.context}")
        return Failure(error, retryable=True, nothing_created=True)
    if call.creates_task:
        cause = {
            TransportFault.TIMEOUT: f"no answer came within {limit}",
            TransportFault.DEADLINE: "no answer came before the deadline",
            TransportFault.BROKEN: "the connection broke before a whole answer came",
        }[fault]
        return _final(outcome_unknown(call, credentials, cause))
    if fault is TransportFault.DEADLINE:
        error = WanTimeoutError(
            f"DashScope gave no whole answer before the deadline while {call.context}",
            task_id=call.task_id,
        )
        return _final(error)
    if fault is TransportFault.TIMEOUT:
        error = WanRetryableError(f"DashScope did not answer within {limit} while {call.context}", task_id=call.task_id)
    else:
        error = WanRetryableError(
            f"The connection to DashScope broke before a whole answer while {call.context}", task_id=call.task_id
        )
    return Failure(error, retryable=True, nothing_created=False)
