"""
WanHook: DashScope's Wan video API from Airflow.

The sync path (a worker: :class:`WanHook`, ``requests``) and the async path (the triggerer:
:class:`WanAsyncClient`, ``aiohttp``) share everything but the transport: the requests are built by
:class:`ApiCall` factories, every answer and transport failure is classified by
:mod:`airflow_provider_wan.hooks.classify` (which reads the code table of :mod:`airflow_provider_wan.exceptions`),
answers become tasks through :meth:`WanTask.from_response`, and both retry loops follow :class:`Attempts`.

``aiohttp`` is imported only inside the async client: DAG files import operators, and importing an operator must
stay cheap.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from airflow.providers.common.compat.sdk import AirflowNotFoundException, BaseHook

from airflow_provider_wan import __version__
from airflow_provider_wan.compat import HAS_DECLARATIVE_CONN_FIELDS, connection_form_widgets, ui_field_behaviour
from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanError,
    WanInvalidInputError,
    WanResultExpiredError,
    WanRetryableError,
    WanTaskCanceledError,
    WanTimeoutError,
    dashscope_code,
    error_for_task_failure,
)
from airflow_provider_wan.hooks.classify import (
    TASK_ID_PATTERN,
    Failure,
)
from airflow_provider_wan.hooks.lookup import LoopCache, import_off_loop
from airflow_provider_wan.hooks.pacing import AsyncPacer, SyncPacer, sync_pacer
from airflow_provider_wan.models import API_KEY_ENV
from airflow_provider_wan.redact import clean_text, redact_url
from airflow_provider_wan.results import WanTaskResult, task_id_of
from airflow_provider_wan.schema import plain_text

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import aiohttp
    import requests
    from airflow.providers.common.compat.sdk import Connection

#: Region -> (Alibaba Cloud region id, legacy DashScope base URL or None). The one place region URLs live. With a
#: workspace id the base URL is the workspace domain ``https://{workspace}.{region id}.maas.aliyuncs.com/api/v1``,
#: which Alibaba recommends (the legacy domains "will soon be deprecated"); Frankfurt has only workspace domains.
REGIONS: dict[str, tuple[str, str | None]] = {
    "singapore": ("ap-southeast-1", "https://dashscope-intl.aliyuncs.com/api/v1"),
    "beijing": ("cn-beijing", "https://dashscope.aliyuncs.com/api/v1"),
    "virginia": ("us-east-1", "https://dashscope-us.aliyuncs.com/api/v1"),
    "hongkong": ("cn-hongkong", "https://cn-hongkong.dashscope.aliyuncs.com/api/v1"),
    "frankfurt": ("eu-central-1", None),
}
DEFAULT_REGION = "singapore"
WORKSPACE_ENV = "DASHSCOPE_WORKSPACE_ID"
# a workspace id becomes a DNS label of the endpoint: nothing that could leave the host (the SDK's own check)
_WORKSPACE_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
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
            return cls(value.upper()) if isinstance(value, str) else (cls.PENDING if value is None else cls.RUNNING)
        except ValueError:
            # a status this version does not know is not terminal: keep polling rather than guess
            return cls.PENDING if value is None else cls.RUNNING


def _text(value: Any) -> str | None:
    """A string field as sent, without lone surrogates; None for any other JSON type."""
    if not isinstance(value, str) or not value:
        return None
    return value.encode("utf-8", "replace").decode("utf-8")


#: longest prompt kept from an answer, in characters: the models take at most 5,000 and DashScope's rewrite
#: (``actual_prompt``) is a few times the prompt it extends; anything longer is no prompt DashScope wrote, and would go
#: on whole into XCom, the trigger's event and the stored object's metadata
MAX_ANSWER_PROMPT_CHARS = 20_000


def _prompt(value: Any) -> str | None:
    """
    A prompt an answer echoes (``orig_prompt``, ``actual_prompt``), as plain text like the prompts sent
    (:func:`~airflow_provider_wan.schema.plain_text`: a NUL is refused by PostgreSQL's JSON columns, which hold XCom
    and trigger events) and at most :data:`MAX_ANSWER_PROMPT_CHARS` characters; None for any other JSON type.
    """
    if not isinstance(value, str) or not value:
        return None
    text = plain_text(value[: MAX_ANSWER_PROMPT_CHARS + 1])
    return text if len(text) <= MAX_ANSWER_PROMPT_CHARS else text[: MAX_ANSWER_PROMPT_CHARS - 1] + "…"


#: longest unsigned copy of a video_url a result holds, in characters: a result link is far shorter, a hostile one is
#: not held whole in XCom and trigger events
MAX_RESULT_LINK_CHARS = 2048
#: most fields of an answer's ``usage`` kept (DashScope sends a handful: video_count, video_duration, video_ratio...)
_MAX_USAGE_FIELDS = 32


def _usage(value: Any) -> dict[str, Any]:
    """
    An answer's ``usage``, fit to go on (XCom, trigger events, the stored object's metadata, lineage): numbers,
    booleans and nulls as sent, strings cleaned like every server-sent text (a signed URL loses its query), at most
    :data:`_MAX_USAGE_FIELDS` fields. Lists and objects are no usage figure and are left out.
    """
    if not isinstance(value, Mapping):
        return {}
    usage: dict[str, Any] = {}
    for key, item in value.items():
        name = clean_text(key, 64)
        if name is None or len(usage) >= _MAX_USAGE_FIELDS:
            continue
        if item is None or isinstance(item, bool | int) or (isinstance(item, float) and math.isfinite(item)):
            usage[name] = item
        elif isinstance(item, str):
            usage[name] = clean_text(item, 200) or ""
    return usage


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
        """
        The task an answer describes. Every field is checked for its type: a field of the wrong JSON type reads as
        absent, so an odd answer gives an odd task, never a crash.

        :raises WanRetryableError: when the answer has no ``output`` object (the classifier already retries those)
        """
        output = body.get("output")
        request_id = clean_text(body.get("request_id"), 100)
        if not isinstance(output, Mapping):
            raise WanRetryableError(
                "DashScope answered without an 'output' object", request_id=request_id, task_id=task_id
            )
        usage = body.get("usage")
        video_url = output.get("video_url")
        return cls(
            task_id=_text(output.get("task_id")) or task_id or "",
            status=TaskStatus.parse(output.get("task_status")),
            request_id=request_id,
            video_url=video_url if isinstance(video_url, str) and video_url else None,
            orig_prompt=_prompt(output.get("orig_prompt")),
            actual_prompt=_prompt(output.get("actual_prompt")),
            usage=_usage(usage),
            submit_time=clean_text(output.get("submit_time"), 40),
            scheduled_time=clean_text(output.get("scheduled_time"), 40),
            end_time=clean_text(output.get("end_time"), 40),
            code=dashscope_code(output.get("code")),
            message=clean_text(output.get("message")),
        )

    @classmethod
    def from_result(cls, result: Mapping[str, Any]) -> WanTask:
        """The task a :meth:`to_result` dict describes (its video URL stays without the signature)."""
        output = {**result, "task_id": task_id_of(result)}
        return cls.from_response(
            {"request_id": result.get("request_id"), "output": output, "usage": result.get("usage")}
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

    def to_result(self) -> WanTaskResult:
        """The task as the result contract says (:mod:`airflow_provider_wan.results`): the URL without its signature."""
        return {
            "wan_task_id": self.task_id,
            "task_status": self.status.value,
            # cut before parsing too (a query is still cut off whole: it starts before any part of it)
            "video_url": clean_text(
                redact_url((self.video_url or "")[: 4 * MAX_RESULT_LINK_CHARS]), MAX_RESULT_LINK_CHARS
            ),
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

    def location(self) -> tuple[str, str]:
        """What a result says of where its task lives: the region (``custom`` for a base URL of one's own) and the
        OpenLineage namespace of the API (``dashscope://<host>``, no user or password)."""
        from airflow_provider_wan.lineage import dashscope_namespace

        return self.region or "custom", dashscope_namespace(self.base_url)


def resolve_base_url(
    region: str | None, base_url: str | None, workspace_id: str | None = None
) -> tuple[str, str | None]:
    """
    Base URL and region name: ``base_url`` wins; then the region's workspace domain when a workspace id is given;
    else the region's legacy endpoint.

    :raises WanInvalidInputError: for an unknown region, or a ``base_url`` that is not a plain http(s) URL (no
        scheme, whitespace, no host, a query string): caught here, before any request, never mistaken later for a
        create that may have been billed
    """
    if base_url:
        return _checked_base_url(base_url), (region.lower() if region else None)
    name = (region or DEFAULT_REGION).strip().lower()
    if name not in REGIONS:
        raise WanInvalidInputError(
            f"Unknown DashScope region {region!r}; valid regions: {', '.join(REGIONS)} "
            "(or set a base_url for a proxy, another endpoint or the simulator)"
        )
    region_id, legacy = REGIONS[name]
    if workspace_id:
        if not _WORKSPACE_ID.fullmatch(workspace_id):
            raise WanInvalidInputError(
                f"workspace_id {workspace_id!r} is not a Model Studio workspace id (letters, digits, '_' and '-', "
                "at most 64 characters)"
            )
        return f"https://{workspace_id}.{region_id}.maas.aliyuncs.com/api/v1", name
    if legacy is None:
        raise WanInvalidInputError(
            f"Region {name!r} is served only on workspace domains: set workspace_id in the connection's extra "
            f"(or {WORKSPACE_ENV}), or a base_url"
        )
    return legacy, name


def _checked_base_url(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    problem = None
    if not isinstance(base_url, str) or any(c.isspace() or not c.isprintable() for c in url):
        problem = "it contains whitespace or control characters"
    else:
        try:
            parts: SplitResult | None = urlsplit(url)
        except ValueError:  # a bracketed host that is no IPv6 address
            parts = None
        if parts is None:
            problem = "its host is in brackets but is no IPv6 address"
        elif parts.scheme.lower() not in ("http", "https"):
            problem = "it does not start with http:// or https://"
        elif not _has_valid_port(parts):
            problem = "its port is not a number from 0 to 65535"
        elif not parts.hostname:
            problem = "it names no host"
        elif parts.query or parts.fragment or "@" in parts.netloc:
            problem = "it carries a query string, a fragment or user info"
    if problem:
        raise WanInvalidInputError(
            f"base_url {redact_url(url)!r} is not usable: {problem}. Expected e.g. "
            f"{REGIONS[DEFAULT_REGION][1]!r}, or leave it empty and set the region."
        )
    if parts is not None and parts.scheme.lower() == "http" and _address_kind(parts.hostname or "") != "this machine":
        # allowed (a proxy on a private network), but the key then crosses that network readable by anyone on it
        log.warning(
            "base_url %s is plain http to another machine: the API key crosses the network unencrypted. Use https, "
            "unless it is a proxy on a network you trust",
            redact_url(url),
        )
    return url


def _has_valid_port(parts: SplitResult) -> bool:
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError:
        return False
    return True


#: RFC 6598 shared address space: Alibaba Cloud's metadata service (100.100.100.200) and internal endpoints
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")


def _address_kind(host: str) -> str | None:
    """
    What internal place a URL's host (or an address connected to) names: "this machine", "a link-local address",
    "a private or reserved address", or None for a public address or any host name but ``localhost`` (names are
    not resolved here).
    """
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "this machine"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(name)
    except ValueError:
        try:
            # the shorthand forms the resolver takes too: 2130706433, 0x7f.1, 127.1 all mean 127.0.0.1
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except (OSError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "this machine"
    if address.is_link_local:
        return "a link-local address"
    if address in _SHARED_ADDRESS_SPACE:
        # neither private nor global to ipaddress, but inside a cloud: Alibaba Cloud's ECS metadata service is
        # 100.100.100.200, and its VPC-internal endpoints answer from this range
        return "a shared (carrier-grade NAT) address, where Alibaba Cloud's metadata service is"
    if address.is_private or address.is_reserved or address.is_multicast or address.is_unspecified:
        return "a private or reserved address"
    return None


def host_addresses(host: str) -> set[str]:
    """The addresses ``host`` resolves to on this machine; empty when it does not resolve (best effort)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    return {str(sockaddr[0]) for *_, sockaddr in found}


def _api_is_at(kind: str, base_url: str) -> bool:
    """Whether the API (``base_url``) is at an address of ``kind``: as written, or as its host name resolves."""
    try:
        api_host = urlsplit(base_url).hostname or ""
    except ValueError:
        return False
    if _address_kind(api_host) == kind:
        return True
    # an API named by a host name (a gateway, the simulator in a container next to the worker) is where it resolves
    return any(_address_kind(address) == kind for address in host_addresses(api_host)) if api_host else False


def link_problem(url: str, base_url: str, *, sends_data: bool = False) -> str | None:
    """
    Why a URL that an API answer names must not be contacted; None when it may be. Such links: a result's
    ``video_url`` (or where it redirects), which a transfer downloads, and an upload policy's ``upload_host``, to
    which a local media file is posted.

    Such a request runs with the worker's network reach, so a hostile or mixed-up answer must not turn it into a
    request to this machine, the cloud's metadata service (169.254.169.254, Alibaba Cloud's 100.100.100.200) or the
    private network: a link must be http(s) without user info, and may name such an address only when the API itself
    is at that kind of address (the simulator on 127.0.0.1 serves its videos and takes its uploads there). This looks
    at the link as written (an IP address, ``localhost``); a host name is judged by the address each connection
    actually reaches (:func:`link_address_problem`, applied by
    :func:`airflow_provider_wan.hooks.guard.guarded_session`), so a name resolving inside, or resolving outside for
    a check and inside for the connection, is refused too.

    :param url: the link
    :param base_url: the API's base URL (:attr:`Credentials.base_url`)
    :param sends_data: the request carries the user's data (an upload): then a plain ``http://`` link is refused
        while the API is ``https://``, as the data would cross the network unencrypted where the user chose
        encryption (default False: a result link is fetched as DashScope names it)
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "it is not a URL that can be read"
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        return "it is not an http(s) URL"
    if "@" in parts.netloc:
        return "it carries user info"
    if not host:
        return "it names no host"
    if sends_data and scheme == "http" and base_url.lower().startswith("https://"):
        return "it is plain http while the API is https, so the data would cross the network unencrypted"
    kind = _address_kind(host)
    if kind is None or _api_is_at(kind, base_url):
        return None
    return f"it points at {kind}, and the API is not there"


def link_address_problem(address: str, base_url: str) -> str | None:
    """
    Why a connection for a link (see :func:`link_problem`), made to ``address``, must not be used; None when it may
    be. The same rule as :func:`link_problem`, for the IP address a link's host name led to.

    :param address: the IP address connected to (or, behind a proxy, one the link's name resolves to)
    :param base_url: the API's base URL (:attr:`Credentials.base_url`)
    """
    kind = _address_kind(address)
    if kind is None or _api_is_at(kind, base_url):
        return None
    return f"its name led to {address}, {kind}, and the API is not there"


def credentials_from_connection(conn: Connection | None) -> Credentials:
    """Read key, region and base URL from a ``wan`` connection, or from the environment when ``conn`` is None."""
    if conn is None:
        api_key = os.environ.get(API_KEY_ENV, "")
        region = os.environ.get(REGION_ENV)
        base_url = os.environ.get(BASE_URL_ENV)
        workspace_id = os.environ.get(WORKSPACE_ENV)
        source = f"environment ({API_KEY_ENV})"
    else:
        extra = conn.extra_dejson if conn.extra else {}
        source = f"connection {conn.conn_id!r}"
        api_key = conn.password or _extra_text(extra, "api_key", source) or ""
        region = _extra_text(extra, "region", source)
        base_url = _extra_text(extra, "base_url", source) or conn.host or None
        workspace_id = _extra_text(extra, "workspace_id", source)
    # a key pasted from a file or a secret store often ends in a line break: no key has whitespace at its ends, and
    # sent as is it made the HTTP client refuse the header, which read as a create that may have been billed
    api_key = api_key.strip()
    if not api_key:
        raise WanInvalidInputError(
            f"No DashScope API key: set the password of the {source} "
            f"(or, without a connection, the {API_KEY_ENV} environment variable)"
        )
    if any(c.isspace() or not c.isprintable() for c in api_key):
        raise WanInvalidInputError(
            f"The DashScope API key of the {source} contains whitespace or control characters; "
            "a key is one word (sk-...). Nothing was sent."
        )
    url, region_name = resolve_base_url(region, base_url, workspace_id)
    _mask(api_key)
    return Credentials(api_key=api_key, base_url=url, region=region_name, source=source)


def _extra_text(extra: Any, name: str, source: str) -> str | None:
    """A string field of a connection's extra, or None; any other JSON type is a clear error, not a crash later."""
    value = extra.get(name) if isinstance(extra, dict) else None
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WanInvalidInputError(
            f"The extra field {name!r} of the {source} must be a string, not {type(value).__name__}"
        )
    return value


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
    #: what a good 2xx answer holds: "created" (an output with a task id), "task" (an output object), "object"
    answer: str = "object"

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
        if self.json_body is not None and _holds_oss_url(self.json_body.get("input")):
            # DashScope's temporary-upload URLs resolve only with this header (the official SDK adds it too)
            headers["X-DashScope-OssResourceResolve"] = "enable"
        return headers

    @classmethod
    def create_task(cls, endpoint: str, body: dict[str, Any]) -> ApiCall:
        return cls(
            "POST",
            endpoint,
            f"creating a {clean_text(body.get('model'), 100)} task",
            json_body=body,
            async_header=True,
            creates_task=True,
            answer="created",
        )

    @classmethod
    def get_task(cls, task_id: str) -> ApiCall:
        return cls("GET", f"tasks/{_task_path(task_id)}", f"reading task {task_id}", task_id=task_id, answer="task")

    @classmethod
    def cancel_task(cls, task_id: str) -> ApiCall:
        return cls("POST", f"tasks/{_task_path(task_id)}/cancel", f"canceling task {task_id}", task_id=task_id)

    @classmethod
    def list_tasks(cls, **filters: Any) -> ApiCall:
        params = {k: v for k, v in filters.items() if v is not None}
        return cls("GET", "tasks", "listing tasks", params=params)


def _holds_oss_url(value: Any) -> bool:
    """True when a JSON value holds an ``oss://`` string anywhere (media lists nest them)."""
    if isinstance(value, str):
        return value.startswith("oss://")
    if isinstance(value, Mapping):
        return any(_holds_oss_url(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_oss_url(v) for v in value)
    return False


def _task_path(task_id: str) -> str:
    if not isinstance(task_id, str) or not TASK_ID_PATTERN.fullmatch(task_id):
        raise WanInvalidInputError(f"Not a DashScope task id: {clean_text(repr(task_id), 80)}")
    return task_id


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + max(0.0, timeout)


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


class Attempts:
    """
    One request's attempts under a :class:`RetryPolicy` and an optional deadline: both transports ask it what to do
    after a failed attempt, so they retry alike.

    :param deadline: ``time.monotonic()`` by which everything must be over (None: only the policy bounds it)
    :param request_seconds: time limit of one attempt, connect to last byte (seconds)
    """

    def __init__(self, call: ApiCall, policy: RetryPolicy, request_seconds: float, deadline: float | None) -> None:
        self.call = call
        self.policy = policy
        self.request_seconds = request_seconds
        self.deadline = deadline
        self.number = 0

    def start(self) -> tuple[float, bool]:
        """Begin an attempt: (its time limit in seconds, whether that limit is the caller's deadline)."""
        self.number += 1
        if self.deadline is None:
            return self.request_seconds, False
        left = self.deadline - time.monotonic()
        return (max(left, 0.0), True) if left < self.request_seconds else (self.request_seconds, False)

    def delay_after(self, failure: Failure) -> float:
        """Seconds to wait before the next attempt; raises the failure's error when there is none."""
        delay = self.policy.delay_for(self.call, self.number, failure)
        if delay is None:
            raise failure.error
        if self.deadline is not None and time.monotonic() + delay >= self.deadline:
            if self.call.creates_task:
                raise failure.error
            raise WanTimeoutError(
                f"DashScope kept failing until the deadline while {self.call.context} (last: {failure.error.message})",
                task_id=self.call.task_id,
            ) from failure.error
        return delay


# --- the sync hook --------------------------------------------------------------------------------------------------
class WanHook(BaseHook):
    """
    Interact with Alibaba Cloud Model Studio's Wan video generation API (DashScope).

    Credentials come from a ``wan`` connection: the API key in the password, the region in the extra
    ``region`` (singapore, beijing, virginia; default singapore) and an optional ``base_url`` override (proxies,
    other endpoints, the simulator). When the connection does not exist, the ``DASHSCOPE_API_KEY``,
    ``DASHSCOPE_REGION`` and ``DASHSCOPE_BASE_URL`` environment variables are used instead.

    :param wan_conn_id: the Airflow connection id (default ``wan_default``)
    :param timeout: ``(connect, read)`` timeouts of one HTTP request in seconds (default ``(10, 60)``): at most
        ``connect`` to connect, at most ``read`` without a byte, and at most their sum in all, from connecting to the
        answer's last byte (a server trickling its answer cannot hold a request longer)
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

    def _renew_credentials(self, refused: Credentials) -> bool:
        """After DashScope refused ``refused``: read the connection again; True when its key or address changed."""
        del self.__dict__["credentials"]
        try:
            renewed = self.credentials
        except WanError:  # the connection is unusable now: the refusal stands
            self.__dict__["credentials"] = refused
            return False
        return renewed != refused

    @property
    def region(self) -> str | None:
        return self.credentials.region

    def reported_endpoint(self) -> tuple[str, str]:
        """
        Region (``custom`` for a base URL) and OpenLineage namespace of the connection as it is now, for a result
        whose create did not record them. Never raises: the video is ready, and a connection edited meanwhile (a key
        being rotated, say) costs these two facts, logged, not the task: ``("unknown", "dashscope")``.
        """
        try:
            return self.credentials.location()
        except WanError as error:
            self.log.warning("The connection %r cannot be read now (%s): region unknown", self.wan_conn_id, error)
            return "unknown", "dashscope"

    def price_overrides(self) -> dict[str, dict[str, float]]:
        """Prices replacing the catalogue's: ``[wan] prices`` in airflow.cfg, then the connection extra ``prices``."""
        from airflow.providers.common.compat.sdk import conf

        from airflow_provider_wan.models import price_overrides

        conn = self._connection_or_none()
        extra = conn.extra_dejson if conn is not None and conn.extra else {}
        try:
            return price_overrides(conf.get("wan", "prices", fallback=None), extra.get("prices"))
        except ValueError as exc:
            raise WanInvalidInputError(f"prices: {exc}") from None

    @cached_property
    def session(self) -> requests.Session:
        """One pooled HTTP session per hook."""
        from airflow_provider_wan.hooks import _sync_transport

        return _sync_transport.new_session()

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()
            del self.__dict__["session"]

    # -- transport ----------------------------------------------------------------------------------------------
    def _send(self, call: ApiCall, *, deadline: float | None = None) -> dict[str, Any]:
        """
        Send ``call`` with bounded retries; return the answer's JSON object or raise the provider's error.

        :param deadline: ``time.monotonic()`` by which to give up (raises
            :class:`~airflow_provider_wan.exceptions.WanTimeoutError`); None: only the retry policy bounds it
        """
        from airflow_provider_wan.hooks import _sync_transport

        credentials = self.credentials
        attempts = Attempts(call, self.retry_policy, sum(self.timeout), deadline)
        # task reads only: nothing is done between a (paid) create's answer and the return of its task id
        pacer = sync_pacer(task_query_qps) if call.method == "GET" else None
        while True:
            if pacer is not None:
                pacer.acquire()
            seconds, is_deadline = attempts.start()
            result = _sync_transport.exchange(
                self.session,
                call,
                credentials,
                connect_timeout=self.timeout[0],
                read_timeout=self.timeout[1],
                seconds=seconds,
                is_deadline=is_deadline,
            )
            if pacer is not None:
                _teach(pacer, call, result)
            if not isinstance(result, Failure):
                return result
            if isinstance(result.error, WanAuthError) and self._renew_credentials(credentials):
                # the connection's key changed since this hook read it (a wait or a poking sensor lasts hours): the
                # new one is tried at once; refused too, it is the error
                credentials = self.credentials
                continue
            delay = attempts.delay_after(result)
            self.log.warning(
                "DashScope %s failed (%s); retry %d/%d in %.1f s",
                call.context,
                result.error.code or result.error.http_status or type(result.error).__name__,
                attempts.number,
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
        # the classifier returns only a well-formed answer with a task id; anything else raised already
        return WanTask.from_response(self._send(ApiCall.create_task(endpoint, body)))

    def get_upload_policy(self, model: str) -> dict[str, Any]:
        """
        A temporary-storage upload policy for one file (``GET /uploads?action=getPolicy&model=...``), as the SDK
        gets it.

        Free; its fields (signature, policy) are short-lived credentials and are never logged.
        """
        params = {"action": "getPolicy", "model": model}
        call = ApiCall("GET", "uploads", f"getting an upload policy for {model}", params=params)
        data = self._send(call).get("data")
        if not isinstance(data, dict):
            raise WanRetryableError(f"DashScope answered the upload policy request for {model} without a policy")
        return data

    def get_task(self, task_id: str, *, timeout: float | None = None) -> WanTask:
        """
        Read a task's status and, once SUCCEEDED, its result (``GET /tasks/{task_id}``).

        :param timeout: give up after this many seconds in all, retries and slow answers included (default: only
            the retry policy and the per-request limit bound it); raises
            :class:`~airflow_provider_wan.exceptions.WanTimeoutError`
        """
        return WanTask.from_response(self._send(ApiCall.get_task(task_id), deadline=_deadline(timeout)), task_id)

    def cancel_task(self, task_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """
        Cancel a task; DashScope cancels only tasks still PENDING (``POST /tasks/{task_id}/cancel``).

        :param timeout: give up after this many seconds in all, retries included (default: only the retry policy and
            the per-request limit bound it); raises :class:`~airflow_provider_wan.exceptions.WanTimeoutError`
        """
        return self._send(ApiCall.cancel_task(task_id), deadline=_deadline(timeout))

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
        kind: str | None = None,
    ) -> WanTask:
        """
        Block until a task ends; return it when SUCCEEDED, raise the provider's error otherwise.

        :param poll_interval: seconds between two reads of the task (default 15, DashScope's suggestion; above 0 and at
            most 30 days, else :class:`~airflow_provider_wan.exceptions.WanInvalidInputError` before any read)
        :param timeout: give up after this many seconds (default: wait as long as it takes); raises
            :class:`~airflow_provider_wan.exceptions.WanTimeoutError`, retryable: the task keeps running and an
            Airflow retry re-attaches to it. The task is read once more at the timeout, a read that may take up to
            ``poll_interval`` more (10 s at most)
        :param on_status: called with the task and the elapsed seconds whenever the status changes
        :param kind: the task's :func:`~airflow_provider_wan.hooks.schedule.task_kind`: reads are then planned
            around when tasks of that kind ended in this process (:class:`~.schedule.PollSchedule`); default: every
            ``poll_interval``
        """
        from airflow_provider_wan.hooks.schedule import LAST_READ_GRACE_SECONDS, PollSchedule, check_wait_seconds

        interval = check_wait_seconds("poll_interval", poll_interval, f"DashScope task {task_id} was not read")
        schedule = PollSchedule(interval=interval, kind=kind)
        grace = min(interval, LAST_READ_GRACE_SECONDS)
        started = time.monotonic()
        last: TaskStatus | None = None
        try:
            while True:
                try:
                    # each read is bounded by what is left of the timeout, the read at the deadline by a grace past
                    # it (the trigger's rule): a server trickling its answer byte by byte cannot hold the wait, and a
                    # task that ends just in time is still seen
                    left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started)) + grace
                    task = self.get_task(task_id, timeout=left)
                except WanTimeoutError as error:
                    raise WanTimeoutError(
                        f"DashScope task {task_id} did not end within the timeout ({timeout:.0f} s; it was "
                        f"{last.value if last else 'not read yet'} and its last read did not complete); it was not "
                        "canceled, and a retry of this Airflow task re-attaches to it",
                        task_id=task_id,
                    ) from error
                elapsed = time.monotonic() - started
                if task.status is not last:
                    last = task.status
                    if on_status is not None:
                        on_status(task, elapsed)
                if task.status.is_terminal():
                    task.raise_for_status()
                    schedule.learn(task)
                    return task
                if timeout is not None and elapsed >= timeout:
                    raise WanTimeoutError(
                        f"DashScope task {task_id} is still {task.status.value} after {elapsed:.0f} s (timeout "
                        f"{timeout:.0f} s); it was not canceled, and a retry of this Airflow task re-attaches to it",
                        task_id=task_id,
                    )
                gap = schedule.next_gap(task, time.time())
                if timeout is not None:
                    # the last sleep ends at the deadline and the task is read once more there, as the trigger does: a
                    # read costs little, a retry a worker slot and retry_delay. (Giving up as soon as the planned read
                    # fell past the deadline ended waits early, by up to 8 poll intervals, and a wait shorter than
                    # the plan's 1 s shortest gap after its first read: every try of a retried task then gave up at
                    # once, and all of them could be spent before the video was done.)
                    gap = min(gap, timeout - elapsed)
                self._sleep(gap)
        finally:
            # a wait that ended in an error no longer holds a place in this process's view of the queue
            schedule.forget()

    def test_connection(self) -> tuple[bool, str]:
        """Prove key and region with a free call (list one task); creates nothing and costs nothing."""
        try:
            self.list_tasks(page_size=1)
        except WanError as error:
            return False, str(error)
        except Exception as exc:  # the connection form shows this: our words only, never a library's text
            return False, f"Could not test the connection ({type(exc).__name__})"
        return True, f"Connected to DashScope at {self.credentials.describe()}"


# --- the async client (triggerer) -----------------------------------------------------------------------------------
_loop_state: dict[int, tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession, AsyncPacer]] = {}
_loop_state_lock = threading.Lock()


def task_query_qps() -> float:
    """
    GET /tasks per second per process: ``[wan] task_query_qps`` in airflow.cfg (default 20, DashScope's limit).

    A value that is no number is a warning and the default, never an error: the option is read when a process first
    reads a task, which is after the (paid) create in a worker and whenever a triggerer (re)starts a trigger, so an
    error would fail a video already paid for, and every retry of it.
    """
    from airflow.providers.common.compat.sdk import conf

    try:
        qps = conf.getfloat("wan", "task_query_qps", fallback=DEFAULT_TASK_QUERY_QPS)
    except Exception:  # AirflowConfigException (no AirflowException on Airflow 3) or ValueError, by version
        qps = math.nan
    if math.isnan(qps):
        log.warning(
            "[wan] task_query_qps is not a number of reads per second; using the default, %g", DEFAULT_TASK_QUERY_QPS
        )
        return DEFAULT_TASK_QUERY_QPS
    return qps


def _shared_for_this_loop() -> tuple[aiohttp.ClientSession, AsyncPacer]:
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
            state = (loop, session, AsyncPacer(task_query_qps()))
            _loop_state[id(loop)] = state
    return state[1], state[2]


def _teach(pacer: SyncPacer | AsyncPacer, call: ApiCall, result: dict[str, Any] | Failure) -> None:
    """What DashScope answered a task read teaches the process's pace (hooks/pacing.py): 429, or an answer."""
    if call.method != "GET":
        return
    if not isinstance(result, Failure):
        pacer.on_answer(throttled=False)
    elif result.error.http_status == 429:
        pacer.on_answer(throttled=True, retry_after=result.retry_after)
    # other failures (timeouts, 5xx) say nothing about the account's read limit; the retry policy handles them


async def _look_up(wan_conn_id: str) -> Credentials:
    # the first lookup of a triggerer would import these on the loop's thread (~0.2 s measured with the triggerer's
    # modules loaded): in a thread instead, then the import statements only read sys.modules
    for module in ("asgiref.sync", "airflow.providers.common.compat.connection"):
        await import_off_loop(module)
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
    return credentials_from_connection(conn)


_credentials_by_conn_id: LoopCache[Credentials] = LoopCache()


class WanAsyncClient:
    """
    The async twin of :class:`WanHook`'s task reads, for triggers.

    Shares request building, answer parsing, error mapping and the retry policy with the hook; owns only the
    transport: one aiohttp session and one pacer (hooks/pacing.py) per event loop (so per triggerer process), not
    per poll.

    :param credentials: where and how to call DashScope (:func:`credentials_from_connection`)
    :param timeout: ``(connect, read)`` seconds, as for :class:`WanHook` (default ``(10, 30)``; their sum bounds a
        request in all)
    :param retry_policy: backoff of transient failures (default :class:`RetryPolicy`)
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
        """
        Credentials through the async connection lookup, with the sync lookup and the environment as fallbacks.

        One lookup per event loop and connection id at a time, reused for 30 s (:mod:`~.lookup`): a thousand
        triggers starting together do not stall the triggerer's loop with a thousand lookups.
        """
        return cls(await _credentials_by_conn_id.get(wan_conn_id, lambda: _look_up(wan_conn_id)), **kwargs)

    @classmethod
    async def renewed(cls, wan_conn_id: str, client: WanAsyncClient) -> WanAsyncClient | None:
        """
        After DashScope refused ``client``'s key: a client of the connection as it is now, or None when its key and
        address are the ones refused. A trigger runs for hours on the credentials it started with, and a key rotated
        meanwhile (the old one revoked) would otherwise fail every waiting task for good.
        """
        _credentials_by_conn_id.forget(wan_conn_id, client.credentials)
        fresh = await cls.for_connection(wan_conn_id, timeout=client.timeout, retry_policy=client.retry_policy)
        return None if fresh.credentials == client.credentials else fresh

    async def _send(self, call: ApiCall, *, deadline: float | None = None) -> dict[str, Any]:
        """The async twin of :meth:`WanHook._send` (``deadline`` on the ``time.monotonic()`` clock too)."""
        # imported in a thread first: aiohttp's import would hold the triggerer's loop, and every trigger in it,
        # for hundreds of ms; the import statement below then only reads sys.modules
        await import_off_loop("airflow_provider_wan.hooks._async_transport")
        from airflow_provider_wan.hooks import _async_transport

        session, limiter = _shared_for_this_loop()
        attempts = Attempts(call, self.retry_policy, sum(self.timeout), deadline)
        while True:
            if call.method == "GET":
                await limiter.acquire()
            seconds, is_deadline = attempts.start()
            result = await _async_transport.exchange(
                session,
                call,
                self.credentials,
                connect_timeout=self.timeout[0],
                read_timeout=self.timeout[1],
                seconds=seconds,
                is_deadline=is_deadline,
            )
            _teach(limiter, call, result)
            if not isinstance(result, Failure):
                return result
            await asyncio.sleep(attempts.delay_after(result))

    async def get_task(self, task_id: str, *, timeout: float | None = None) -> WanTask:
        """:meth:`WanHook.get_task`, async: ``timeout`` (seconds) bounds the read in all, retries included."""
        call = ApiCall.get_task(task_id)
        return WanTask.from_response(await self._send(call, deadline=_deadline(timeout)), task_id)

    async def cancel_task(self, task_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """:meth:`WanHook.cancel_task`, async: ``timeout`` (seconds) bounds the cancel in all, retries included."""
        return await self._send(ApiCall.cancel_task(task_id), deadline=_deadline(timeout))
