"""
WanHook: DashScope's Wan video API from Airflow.

The sync path (a worker: :class:`WanHook`, ``requests``) and the async path (the triggerer:
:class:`WanAsyncClient`, ``aiohttp``) share everything but the transport: the requests are built by
:class:`ApiCall` factories, answers are read by :func:`read_answer` and :meth:`WanTask.from_response`, failures
are classified by :mod:`airflow_provider_wan.exceptions`, and both retry loops ask :meth:`RetryPolicy.delay_for`.

``aiohttp`` is imported only inside the async client: DAG files import operators, and importing an operator must
stay cheap.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_wan import __version__
from airflow_provider_wan.compat import HAS_DECLARATIVE_CONN_FIELDS, connection_form_widgets, ui_field_behaviour
from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanCreateOutcomeUnknownError,
    WanError,
    WanInvalidInputError,
    WanResultExpiredError,
    WanRetryableError,
    WanTaskCanceledError,
    WanTimeoutError,
    error_for_response,
    error_for_task_failure,
)
from airflow_provider_wan.models import API_KEY_ENV

if TYPE_CHECKING:
    import aiohttp
    import requests
    from airflow.providers.common.compat.sdk import Connection

#: Region -> DashScope native API base URL. The one place region URLs live.
REGIONS: dict[str, str] = {
    "singapore": "https://dashscope-intl.aliyuncs.com/api/v1",
    "beijing": "https://dashscope.aliyuncs.com/api/v1",
    "virginia": "https://dashscope-us.aliyuncs.com/api/v1",
}
DEFAULT_REGION = "singapore"
REGION_ENV = "DASHSCOPE_REGION"
BASE_URL_ENV = "DASHSCOPE_BASE_URL"
USER_AGENT = f"airflow-provider-wan/{__version__}"
#: DashScope's documented limit on GET /tasks: 20 queries per second per account.
DEFAULT_TASK_QUERY_QPS = 20.0


class TaskStatus(str, Enum):
    """``output.task_status`` of a DashScope task."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    #: the task does not exist, or its record expired (kept 24 hours)
    UNKNOWN = "UNKNOWN"

    def is_terminal(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.UNKNOWN)

    @classmethod
    def parse(cls, value: Any) -> TaskStatus:
        try:
            return cls(str(value).upper())
        except ValueError:
            # a status this version does not know is not terminal: keep polling rather than guess
            return cls.PENDING if value is None else cls.RUNNING


def redact_url(url: str | None) -> str | None:
    """A result URL without its query string: the signature is a bearer secret and must not reach logs or XCom."""
    if not url:
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass(frozen=True)
class WanTask:
    """A DashScope task as ``GET /tasks/{task_id}`` reports it."""

    task_id: str
    status: TaskStatus
    request_id: str | None = None
    #: signed download link, valid 24 hours: a secret, kept out of repr, logs and XCom
    video_url: str | None = field(default=None, repr=False)
    orig_prompt: str | None = None
    actual_prompt: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    submit_time: str | None = None
    scheduled_time: str | None = None
    end_time: str | None = None
    code: str | None = None
    message: str | None = None

    @classmethod
    def from_response(cls, body: Mapping[str, Any], task_id: str | None = None) -> WanTask:
        output = body.get("output")
        if not isinstance(output, Mapping):
            raise WanRetryableError(
                "DashScope answered without an 'output' object", request_id=body.get("request_id"), task_id=task_id
            )
        usage = body.get("usage")
        return cls(
            task_id=str(output.get("task_id") or task_id or ""),
            status=TaskStatus.parse(output.get("task_status")),
            request_id=body.get("request_id"),
            video_url=output.get("video_url") or None,
            orig_prompt=output.get("orig_prompt"),
            actual_prompt=output.get("actual_prompt"),
            usage=dict(usage) if isinstance(usage, Mapping) else {},
            submit_time=output.get("submit_time"),
            scheduled_time=output.get("scheduled_time"),
            end_time=output.get("end_time"),
            code=output.get("code") or None,
            message=output.get("message") or None,
        )

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> WanTask:
        """The task a :meth:`to_result` dict describes (its video URL stays without the signature)."""
        return cls.from_response(
            {"request_id": result.get("request_id"), "output": dict(result), "usage": result.get("usage")}
        )

    def raise_for_status(self) -> None:
        """Raise the provider's error for a task that ended without a video; return for any other status."""
        if self.status is TaskStatus.FAILED:
            raise error_for_task_failure(self.task_id, self.code, self.message, self.request_id)
        if self.status is TaskStatus.CANCELED:
            raise WanTaskCanceledError(
                f"DashScope task {self.task_id} was canceled", task_id=self.task_id, request_id=self.request_id
            )
        if self.status is TaskStatus.UNKNOWN:
            raise WanResultExpiredError(
                f"DashScope task {self.task_id} is UNKNOWN: it does not exist for this API key and region, or its "
                "record expired (DashScope keeps tasks and results for 24 hours). The video must be generated again.",
                task_id=self.task_id,
                request_id=self.request_id,
            )

    def to_result(self) -> dict[str, Any]:
        """The JSON-serializable result dict pushed to XCom (the video URL without its signature)."""
        return {
            "task_id": self.task_id,
            "task_status": self.status.value,
            "video_url": redact_url(self.video_url),
            "orig_prompt": self.orig_prompt,
            "actual_prompt": self.actual_prompt,
            "usage": dict(self.usage),
            "submit_time": self.submit_time,
            "scheduled_time": self.scheduled_time,
            "end_time": self.end_time,
            "code": self.code,
            "message": self.message,
            "request_id": self.request_id,
        }


@dataclass(frozen=True)
class Credentials:
    """Where and how to call DashScope. The key is kept out of repr."""

    api_key: str = field(repr=False)
    base_url: str
    region: str | None
    source: str

    def describe(self) -> str:
        where = f"region {self.region!r}" if self.region else "a custom base URL"
        return f"{where} ({self.base_url})"


def resolve_base_url(region: str | None, base_url: str | None) -> tuple[str, str | None]:
    """Base URL and region name: ``base_url`` wins; otherwise the region's documented endpoint."""
    if base_url:
        return base_url.rstrip("/"), (region.lower() if region else None)
    name = (region or DEFAULT_REGION).strip().lower()
    if name not in REGIONS:
        raise WanInvalidInputError(
            f"Unknown DashScope region {region!r}; valid regions: {', '.join(REGIONS)} "
            "(or set a base_url for a proxy, another endpoint or the simulator)"
        )
    return REGIONS[name], name


def credentials_from_connection(conn: Connection | None) -> Credentials:
    """Read key, region and base URL from a ``wan`` connection, or from the environment when ``conn`` is None."""
    if conn is None:
        api_key = os.environ.get(API_KEY_ENV, "")
        region = os.environ.get(REGION_ENV)
        base_url = os.environ.get(BASE_URL_ENV)
        source = f"environment ({API_KEY_ENV})"
    else:
        extra = conn.extra_dejson if conn.extra else {}
        api_key = conn.password or extra.get("api_key") or ""
        region = extra.get("region")
        base_url = extra.get("base_url") or conn.host or None
        source = f"connection {conn.conn_id!r}"
    if not api_key:
        raise WanInvalidInputError(
            f"No DashScope API key: set the password of the {source} "
            f"(or, without a connection, the {API_KEY_ENV} environment variable)"
        )
    url, region_name = resolve_base_url(region, base_url)
    _mask(api_key)
    return Credentials(api_key=api_key, base_url=url, region=region_name, source=source)


def _mask(secret: str) -> None:
    try:
        from airflow.providers.common.compat.sdk import mask_secret

        mask_secret(secret)
    except Exception:  # pragma: no cover - masking is best effort outside a task
        pass


# --- requests, shared by both transports -------------------------------------------------------------------------
@dataclass(frozen=True)
class ApiCall:
    """One DashScope request: what to send and what we are doing (for error messages)."""

    method: str
    path: str
    context: str
    json_body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    async_header: bool = False
    #: a create must not be resent once it may have reached the server
    creates_task: bool = False
    task_id: str | None = None

    def url(self, base_url: str) -> str:
        return f"{base_url}/{self.path}"

    def headers(self, credentials: Credentials) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {credentials.api_key}",
            "Accept": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
        }
        if self.json_body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        if self.async_header:
            headers["X-DashScope-Async"] = "enable"
        if self.json_body is not None and any(
            isinstance(v, str) and v.startswith("oss://") for v in (self.json_body.get("input") or {}).values()
        ):
            # DashScope's temporary-upload URLs resolve only with this header (the official SDK adds it too)
            headers["X-DashScope-OssResourceResolve"] = "enable"
        return headers

    @classmethod
    def create_task(cls, endpoint: str, body: dict[str, Any]) -> ApiCall:
        return cls(
            "POST",
            endpoint,
            f"creating a {body.get('model')} task",
            json_body=body,
            async_header=True,
            creates_task=True,
        )

    @classmethod
    def get_task(cls, task_id: str) -> ApiCall:
        return cls("GET", f"tasks/{_task_path(task_id)}", f"reading task {task_id}", task_id=task_id)

    @classmethod
    def cancel_task(cls, task_id: str) -> ApiCall:
        return cls("POST", f"tasks/{_task_path(task_id)}/cancel", f"canceling task {task_id}", task_id=task_id)

    @classmethod
    def list_tasks(cls, **filters: Any) -> ApiCall:
        params = {k: v for k, v in filters.items() if v is not None}
        return cls("GET", "tasks", "listing tasks", params=params)


def _task_path(task_id: str) -> str:
    if not task_id or "/" in task_id or "?" in task_id:
        raise WanInvalidInputError(f"Not a DashScope task id: {task_id!r}")
    return task_id


def read_answer(call: ApiCall, status: int, text: str, credentials: Credentials) -> dict[str, Any]:
    """The JSON body of a 2xx answer, or the provider's error for anything else."""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if 200 <= status < 300:
        if not isinstance(body, dict):
            # a garbled success is a transport problem: worth retrying for reads, unknown outcome for a create
            raise WanRetryableError(
                f"DashScope answered {call.context} with HTTP {status} but no JSON object: {text[:200]!r}",
                http_status=status,
                task_id=call.task_id,
            )
        return body
    error = error_for_response(status, body if body is not None else text, context=call.context, task_id=call.task_id)
    if isinstance(error, WanAuthError) and status == 401:
        raise WanAuthError(
            f"{error.message.rstrip('.')}. DashScope API keys are bound to the region they were created in "
            f"(a Beijing key fails on the Singapore endpoint); this call used {credentials.describe()} "
            f"with the key from {credentials.source}.",
            http_status=error.http_status,
            code=error.code,
            request_id=error.request_id,
            task_id=error.task_id,
        )
    raise error


@dataclass(frozen=True)
class RetryPolicy:
    """
    Bounded exponential backoff with full jitter, honouring ``Retry-After``.

    :param max_attempts: attempts in all, the first included (default 6)
    :param base_delay: seconds before the first retry, doubled each time (default 1.0)
    :param max_delay: cap of one wait in seconds (default 30.0); a longer ``Retry-After`` is capped too
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay

    def delay_for(self, call: ApiCall, attempt: int, failure: Failure) -> float | None:
        """Seconds to wait before resending ``call``, or None to give up and raise."""
        if attempt >= self.max_attempts:
            return None
        if call.creates_task and not failure.nothing_created:
            return None
        if not failure.retryable:
            return None
        return self.backoff(attempt, failure.retry_after)


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, in the terms the retry decision needs."""

    error: WanError
    retryable: bool
    #: True when the server cannot have made a task: refused connection, or an answer that says it refused
    nothing_created: bool
    retry_after: float | None = None

    @classmethod
    def from_error(cls, error: WanError, retry_after: float | None = None) -> Failure:
        # 429, and 503 with a DashScope code, are explicit refusals: turned away before any task existed, so even
        # a create may be resent. See create_may_have_succeeded for the answers after which it must not be.
        refused = error.http_status == 429 or (error.http_status == 503 and bool(error.code))
        return cls(error, isinstance(error, WanRetryableError), refused, retry_after)

    @classmethod
    def not_sent(cls, error: WanError) -> Failure:
        return cls(error, True, True)

    @classmethod
    def maybe_sent(cls, error: WanError) -> Failure:
        return cls(error, True, False)


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def create_may_have_succeeded(status: int, error: WanError) -> bool:
    """
    Whether a failed create answer leaves open that a task was made anyway.

    A DashScope error body (a ``code``) means DashScope itself refused: no task. A garbled 2xx, or a 502/504 or
    a 5xx without a DashScope body, comes from somewhere between us and DashScope, possibly after the backend
    accepted the task: sending the create again, now or through an Airflow retry, could pay twice.
    """
    if 200 <= status < 300:
        return True
    return status in (502, 504) or (status >= 500 and not error.code)


def outcome_unknown(call: ApiCall, credentials: Credentials, cause: str) -> WanCreateOutcomeUnknownError:
    """The error for a create that may have made a task: never resent, and it says how to find the task."""
    body = call.json_body or {}
    since = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() - 600 + 8 * 3600))
    return WanCreateOutcomeUnknownError(
        f"The create request for model {body.get('model')!r} was sent to {credentials.describe()} but {cause}. "
        "A task may have been created and billed, so it was NOT sent again. Find it with "
        f"GET {credentials.base_url}/tasks?model_name={body.get('model')}&start_time={since} "
        "(WanHook.list_tasks(model_name=..., start_time=...)), then wait for it with WanTaskSensor(wan_task_id=...) "
        "instead of resubmitting.",
    )


# --- the sync hook --------------------------------------------------------------------------------------------------
class WanHook(BaseHook):
    """
    Interact with Alibaba Cloud Model Studio's Wan video generation API (DashScope).

    Credentials come from a ``wan`` connection: the API key in the password, the region in the extra
    ``region`` (singapore, beijing, virginia; default singapore) and an optional ``base_url`` override (proxies,
    other endpoints, the simulator). When the connection does not exist, the ``DASHSCOPE_API_KEY``,
    ``DASHSCOPE_REGION`` and ``DASHSCOPE_BASE_URL`` environment variables are used instead.

    :param wan_conn_id: the Airflow connection id (default ``wan_default``)
    :param timeout: ``(connect, read)`` timeouts of one HTTP request in seconds (default ``(10, 60)``)
    :param retry_policy: backoff of transient failures (default :class:`RetryPolicy`)
    """

    conn_name_attr = "wan_conn_id"
    default_conn_name = "wan_default"
    conn_type = "wan"
    hook_name = "Alibaba Cloud Wan (DashScope)"

    def __init__(
        self,
        wan_conn_id: str = default_conn_name,
        *,
        timeout: tuple[float, float] = (10.0, 60.0),
        retry_policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wan_conn_id = wan_conn_id
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self._sleep = sleep

    if not HAS_DECLARATIVE_CONN_FIELDS:
        # Airflow < 3.2 asks the hook for its connection form; 3.2+ reads the same fields from the provider info
        # (and would warn that these methods are deprecated, so they exist only where they are asked for)
        @classmethod
        def get_connection_form_widgets(cls) -> dict[str, Any]:
            return connection_form_widgets()

        @classmethod
        def get_ui_field_behaviour(cls) -> dict[str, Any]:
            return ui_field_behaviour()

    # -- connection ---------------------------------------------------------------------------------------------
    @cached_property
    def credentials(self) -> Credentials:
        return credentials_from_connection(self._connection_or_none())

    def _connection_or_none(self) -> Connection | None:
        try:
            return self.get_connection(self.wan_conn_id)
        except AirflowNotFoundException:
            if not os.environ.get(API_KEY_ENV):
                raise WanInvalidInputError(
                    f"No DashScope API key: connection {self.wan_conn_id!r} does not exist and {API_KEY_ENV} is not set"
                ) from None
            self.log.info("Connection %r not found; using the %s environment variable", self.wan_conn_id, API_KEY_ENV)
            return None

    @property
    def region(self) -> str | None:
        return self.credentials.region

    @cached_property
    def session(self) -> requests.Session:
        """One pooled HTTP session per hook."""
        import requests
        from requests.adapters import HTTPAdapter

        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # -- transport ----------------------------------------------------------------------------------------------
    def _send(self, call: ApiCall) -> dict[str, Any]:
        import requests

        credentials = self.credentials
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(
                    call.method,
                    call.url(credentials.base_url),
                    params=call.params,
                    json=call.json_body,
                    headers=call.headers(credentials),
                    timeout=self.timeout,
                )
                try:
                    return read_answer(call, response.status_code, response.text, credentials)
                except WanError as error:
                    if call.creates_task and create_may_have_succeeded(response.status_code, error):
                        raise outcome_unknown(
                            call, credentials, f"its answer (HTTP {response.status_code}) did not say what happened"
                        ) from error
                    failure = Failure.from_error(error, retry_after_seconds(response.headers.get("Retry-After")))
            except requests.exceptions.ConnectionError as exc:
                if _never_sent(exc):
                    failure = Failure.not_sent(
                        WanRetryableError(f"Cannot connect to DashScope while {call.context}: {exc}")
                    )
                elif call.creates_task:
                    raise outcome_unknown(call, credentials, f"the connection failed before an answer ({exc})") from exc
                else:
                    failure = Failure.maybe_sent(
                        WanRetryableError(f"Connection to DashScope failed while {call.context}: {exc}")
                    )
            except requests.exceptions.Timeout as exc:
                if call.creates_task:
                    raise outcome_unknown(call, credentials, f"no answer came within {self.timeout[1]} s") from exc
                failure = Failure.maybe_sent(
                    WanRetryableError(f"DashScope did not answer within {self.timeout[1]} s while {call.context}")
                )
            except requests.exceptions.RequestException as exc:
                # the answer broke off half-way (reset mid-body, bad chunked encoding): the request was received
                if call.creates_task:
                    raise outcome_unknown(call, credentials, f"its answer broke off ({type(exc).__name__})") from exc
                failure = Failure.maybe_sent(
                    WanRetryableError(f"DashScope's answer broke off while {call.context}: {type(exc).__name__}")
                )
            delay = self.retry_policy.delay_for(call, attempt, failure)
            if delay is None:
                raise failure.error
            self.log.warning(
                "DashScope %s failed (%s); retry %d/%d in %.1f s",
                call.context,
                failure.error.code or failure.error.http_status or type(failure.error).__name__,
                attempt,
                self.retry_policy.max_attempts - 1,
                delay,
            )
            self._sleep(delay)

    # -- the API's nouns ----------------------------------------------------------------------------------------
    def create_task(self, endpoint: str, body: dict[str, Any]) -> WanTask:
        """
        Create a generation task (``POST .../video-synthesis`` with ``X-DashScope-Async: enable``).

        :param endpoint: the create path below the base URL (``models.Family.endpoint``)
        :param body: ``{"model", "input", "parameters"}``
        :return: the new task, PENDING
        """
        call = ApiCall.create_task(endpoint, body)
        answer = self._send(call)
        task = WanTask.from_response(answer)
        if not task.task_id:
            raise outcome_unknown(call, self.credentials, "its answer carried no task_id")
        return task

    def get_task(self, task_id: str) -> WanTask:
        """Read a task's status and, once SUCCEEDED, its result (``GET /tasks/{task_id}``)."""
        return WanTask.from_response(self._send(ApiCall.get_task(task_id)), task_id)

    def cancel_task(self, task_id: str) -> dict[str, Any]:
        """Cancel a task; DashScope cancels only tasks still PENDING (``POST /tasks/{task_id}/cancel``)."""
        return self._send(ApiCall.cancel_task(task_id))

    def list_tasks(
        self,
        *,
        page_no: int = 1,
        page_size: int = 10,
        status: str | None = None,
        model_name: str | None = None,
        start_time: str | None = None,
        end_time: str | None = None,
    ) -> dict[str, Any]:
        """
        List tasks (``GET /tasks``), newest first.

        :param start_time: ``YYYYMMDDhhmmss``, UTC+8, like DashScope's own timestamps
        :param end_time: ``YYYYMMDDhhmmss``, UTC+8
        """
        return self._send(
            ApiCall.list_tasks(
                page_no=page_no,
                page_size=page_size,
                status=status,
                model_name=model_name,
                start_time=start_time,
                end_time=end_time,
            )
        )

    def wait_for_task(
        self,
        task_id: str,
        *,
        poll_interval: float = 15.0,
        timeout: float | None = None,
        on_status: Callable[[WanTask, float], None] | None = None,
    ) -> WanTask:
        """
        Block until a task ends; return it when SUCCEEDED, raise the provider's error otherwise.

        :param poll_interval: seconds between two reads of the task (default 15, DashScope's suggestion)
        :param timeout: give up after this many seconds (default: wait as long as it takes); raises
            :class:`~airflow_provider_wan.exceptions.WanTimeoutError`, retryable: the task keeps running and an
            Airflow retry re-attaches to it
        :param on_status: called with the task and the elapsed seconds whenever the status changes
        """
        started = time.monotonic()
        last: TaskStatus | None = None
        while True:
            task = self.get_task(task_id)
            elapsed = time.monotonic() - started
            if task.status is not last:
                last = task.status
                if on_status is not None:
                    on_status(task, elapsed)
            if task.status.is_terminal():
                task.raise_for_status()
                return task
            if timeout is not None and elapsed + poll_interval > timeout:
                raise WanTimeoutError(
                    f"DashScope task {task_id} is still {task.status.value} after {elapsed:.0f} s (timeout "
                    f"{timeout:.0f} s); it was not canceled, and a retry of this Airflow task re-attaches to it",
                    task_id=task_id,
                )
            self._sleep(poll_interval)

    def test_connection(self) -> tuple[bool, str]:
        """Prove key and region with a free call (list one task); creates nothing and costs nothing."""
        try:
            self.list_tasks(page_size=1)
        except Exception as exc:
            return False, str(exc)
        return True, f"Connected to DashScope at {self.credentials.describe()}"


def _never_sent(exc: Exception) -> bool:
    """True when a requests ConnectionError happened while connecting, before any byte of the request left."""
    import urllib3.exceptions

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)):
            return True
        if isinstance(current, ConnectionRefusedError):
            return True
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return False


# --- the async client (triggerer) -----------------------------------------------------------------------------------
class RateLimiter:
    """
    Spacing of requests within one event loop: at most ``rate`` starts per second, first come first served.

    One instance per event loop is shared by every trigger in a triggerer, so a thousand concurrent triggers stay
    under DashScope's per-account limit on GET /tasks instead of setting off a storm of 429s.

    Waiters queue and a single pacer task releases them one at a time, at least ``1 / rate`` seconds apart *as
    measured when each is released*. Handing out start times in advance instead is not enough: waiters whose
    sleeps end late (a busy loop, a burst of new triggers) then go out together, and DashScope's sliding one-second
    window sees more than ``rate`` requests (benchmarks/triggerer_density.py: 48 429s per 1,000 polls at 20/s).
    Bound to the loop that first uses it.
    """

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._last = float("-inf")
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pacer: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        loop = asyncio.get_running_loop()
        if not self._waiters and loop.time() - self._last >= 1.0 / self.rate:
            self._last = loop.time()
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._pacer is None or self._pacer.done():
            self._pacer = loop.create_task(self._pace())
        await waiter

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            wait = self._last + 1.0 / self.rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            waiter = self._waiters.popleft()
            if waiter.done():  # its trigger was cancelled while queued: the slot goes to the next one
                continue
            self._last = loop.time()
            waiter.set_result(None)


_loop_state: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession, RateLimiter]] = {}
_loop_state_lock = threading.Lock()


def task_query_qps() -> float:
    """GET /tasks per second per process: ``[wan] task_query_qps`` in airflow.cfg (default 20, DashScope's limit)."""
    from airflow.providers.common.compat.sdk import conf

    return conf.getfloat("wan", "task_query_qps", fallback=DEFAULT_TASK_QUERY_QPS)


def _shared_for_this_loop() -> tuple[aiohttp.ClientSession, RateLimiter]:
    import aiohttp

    loop = asyncio.get_running_loop()
    with _loop_state_lock:
        state = _loop_state.get(id(loop))
        if state is None or state[0] is not loop or state[1].closed:
            # forget loops that are gone (inline triggers of `airflow dags test` each run in a loop of their own)
            for key in [k for k, (other, _, _) in _loop_state.items() if other.is_closed()]:
                del _loop_state[key]
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
                headers={"User-Agent": USER_AGENT},
            )
            state = (loop, session, RateLimiter(task_query_qps()))
            _loop_state[id(loop)] = state
    return state[1], state[2]


class WanAsyncClient:
    """
    The async twin of :class:`WanHook`'s task reads, for triggers.

    Shares request building, answer parsing, error mapping and the retry policy with the hook; owns only the
    transport: one aiohttp session and one rate limiter per event loop (so per triggerer process), not per poll.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        timeout: tuple[float, float] = (10.0, 30.0),
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.credentials = credentials
        self.timeout = timeout
        self.retry_policy = retry_policy or RetryPolicy()

    @classmethod
    async def for_connection(cls, wan_conn_id: str, **kwargs: Any) -> WanAsyncClient:
        """Credentials through the async connection lookup, with the sync lookup and the environment as fallbacks."""
        from airflow.providers.common.compat.connection import get_async_connection
        from asgiref.sync import sync_to_async

        conn: Connection | None
        try:
            conn = await get_async_connection(wan_conn_id)
        except AirflowNotFoundException:
            # inside `airflow dags test` the async lookup misses connections stored in the DB (Airflow 3.3.2)
            try:
                conn = await sync_to_async(BaseHook.get_connection)(wan_conn_id)
            except AirflowNotFoundException:
                if not os.environ.get(API_KEY_ENV):
                    raise WanInvalidInputError(
                        f"No DashScope API key: connection {wan_conn_id!r} does not exist and {API_KEY_ENV} is not set"
                    ) from None
                conn = None
        return cls(credentials_from_connection(conn), **kwargs)

    async def _send(self, call: ApiCall) -> dict[str, Any]:
        import aiohttp

        session, limiter = _shared_for_this_loop()
        credentials = self.credentials
        client_timeout = aiohttp.ClientTimeout(sock_connect=self.timeout[0], sock_read=self.timeout[1])
        attempt = 0
        while True:
            attempt += 1
            if call.method == "GET":
                await limiter.acquire()
            try:
                async with session.request(
                    call.method,
                    call.url(credentials.base_url),
                    params=call.params,
                    json=call.json_body,
                    headers=call.headers(credentials),
                    timeout=client_timeout,
                ) as response:
                    text = await response.text()
                    try:
                        return read_answer(call, response.status, text, credentials)
                    except WanError as error:
                        failure = Failure.from_error(error, retry_after_seconds(response.headers.get("Retry-After")))
            except aiohttp.ClientConnectorError as exc:
                failure = Failure.not_sent(
                    WanRetryableError(f"Cannot connect to DashScope while {call.context}: {exc}")
                )
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                failure = Failure.maybe_sent(
                    WanRetryableError(f"DashScope request failed while {call.context}: {exc!r}")
                )
            delay = self.retry_policy.delay_for(call, attempt, failure)
            if delay is None:
                raise failure.error
            await asyncio.sleep(delay)

    async def get_task(self, task_id: str) -> WanTask:
        return WanTask.from_response(await self._send(ApiCall.get_task(task_id)), task_id)

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        return await self._send(ApiCall.cancel_task(task_id))
