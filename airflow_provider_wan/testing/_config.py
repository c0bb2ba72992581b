"""
Settings and fault descriptions of the Wan simulator: plain data, shared by the server, the CLI and the runners.

Nothing here knows about models: every model rule comes from :mod:`airflow_provider_wan.models`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MODERATION_WORD",
    "DOWNLOAD_SHAPES",
    "ERROR_MESSAGES",
    "FAULT_KINDS",
    "ROUTES",
    "Fault",
    "SimulatorConfig",
]

#: The key the pytest plugin and ``wan-simulator`` (without ``--api-key``) accept.
DEFAULT_API_KEY = "sk-wan-simulator-test"
#: A prompt containing this word is refused with ``DataInspectionFailed``, as DashScope's moderation would.
DEFAULT_MODERATION_WORD = "forbidden-content"

#: Routes a fault can target. ``any`` matches every API route and downloads (never the admin endpoints).
ROUTES = ("create", "get_task", "cancel", "list", "download", "any")
_API_ROUTES = ("create", "get_task", "cancel", "list", "any")

#: fault kind -> routes it may target
FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "error": ROUTES,
    "reset": ROUTES,
    "slow": ROUTES,
    # a download is never JSON, so "not valid JSON" means nothing there
    "malformed": _API_ROUTES,
    "task_fail": ("create",),
    "task_unknown": ("create",),
    "truncate": ("download",),
    "expired": ("download",),
    **{kind: ("download",) for kind in ("no_length", "short_range", "changing_body", "drip")},
}
#: download faults that shape an answer (see ``_download_faults``); they combine with a truncate or reset
DOWNLOAD_SHAPES = ("no_length", "short_range", "changing_body", "drip")
#: API misbehaviours no well-behaved DashScope shows, for hardening clients (issue 10): see
#: :func:`_misbehaviour_fields` and ``server._misbehave``. ``drip`` is shared with the downloads (same fields).
API_MISBEHAVIOURS = ("answer", "redirect", "huge", "drip")
FAULT_KINDS.update({kind: _API_ROUTES for kind in API_MISBEHAVIOURS})
FAULT_KINDS["drip"] = ROUTES
# The route a kind gets when the fault does not name one.
_DEFAULT_ROUTE = {
    "task_fail": "create",
    "task_unknown": "create",
    "truncate": "download",
    "expired": "download",
    **dict.fromkeys(DOWNLOAD_SHAPES, "download"),
}

#: Default ``code`` of an ``error`` fault, by HTTP status (the codes of DashScope's error-code page).
_CODE_BY_STATUS = {
    400: "InvalidParameter",
    401: "InvalidApiKey",
    403: "AccessDenied",
    404: "NotFound",
    408: "RequestTimeOut",
    429: "Throttling",
    500: "InternalError",
    502: "BadGateway",
    503: "ModelUnavailable",
    504: "GatewayTimeout",
}

#: Messages DashScope sends with these codes (official error-code page), used when a fault gives none.
ERROR_MESSAGES = {
    "InvalidParameter": "Required parameter(s) missing or invalid, please check the request parameters.",
    "InvalidApiKey": "Invalid API-key provided.",
    "AccessDenied": "Access denied.",
    "Arrearage": "Access denied, please make sure your account is in good standing.",
    "NotFound": "Not found.",
    "RequestTimeOut": "Request timed out, please try again later.",
    "Throttling": "Requests throttling triggered.",
    "Throttling.RateQuota": "Requests rate limit exceeded, please try again later.",
    "Throttling.BurstRate": "Request rate increased too quickly, please try again later.",
    "Throttling.AllocationQuota": "Allocated quota exceeded, please increase your quota limit.",
    "InternalError": "An internal error has occured, try again later or contact service support.",
    "InternalError.Algo": "inference internal error",
    "InternalError.Timeout": "The task did not return a result within 3 hours.",
    "InternalError.Upload": "Failed to upload result.",
    "ModelServingError": "Too many requests. Your requests are being throttled due to system capacity limits.",
    "ModelUnavailable": "Model is unavailable, try again later.",
    "BadGateway": "Bad gateway, try again later.",
    "GatewayTimeout": "Gateway timeout, try again later.",
    "DataInspectionFailed": "Output data may contain inappropriate content.",
    "IPInfringementSuspect": "Input data is suspected of being involved in IP infringement.",
}

_fault_ids = itertools.count(1)


@dataclass
class Fault:
    """
    One armed fault. See :meth:`from_dict` for the JSON form accepted by ``POST /_sim/faults`` and ``--fault``.

    ``count`` is how many more times it fires; ``-1`` fires until the faults are cleared.
    """

    kind: str
    route: str
    count: int = 1
    #: ``error``: HTTP status, DashScope code, message and Retry-After (seconds) of the canned response
    status: int = 500
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    #: ``slow``: seconds the response is held back
    delay: float = 0.0
    #: ``truncate``: bytes of the body sent before the connection is cut
    after_bytes: int = 0
    #: API misbehaviours (``answer``, ``redirect``, ``drip``, ``huge``): see :func:`_misbehaviour_fields`
    body: Any = None
    raw: str | None = None
    location: str | None = None
    size: int = 0
    processed: bool = True
    id: int = field(default_factory=lambda: next(_fault_ids))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """
        Build a fault from its JSON form; raise ValueError on anything unknown or ill-typed.

        ``{"kind": "error", "route": "create", "count": 1, "status": 503, "code": "ModelUnavailable",
        "message": "...", "retry_after": 2}``; ``{"kind": "slow", "delay": 5}``;
        ``{"kind": "task_fail", "code": "DataInspectionFailed"}``; ``{"kind": "truncate", "after_bytes": 1000}``.
        Download shapes (they combine with a ``truncate`` or ``reset`` of the same answer):
        ``{"kind": "no_length", "after_bytes": 20000}`` (no Content-Length, no total in Content-Range or 416, the
        body ended cleanly after ``after_bytes`` when > 0); ``{"kind": "short_range", "after_bytes": 20000}`` (a 206
        without Content-Length nor total, ended cleanly after ``after_bytes``); ``{"kind": "changing_body"}`` (a 206
        answer from a changed file, If-Range ignored: other bytes, ETag and Last-Modified);
        ``{"kind": "drip", "delay": 0.5, "after_bytes": 1024}`` (``after_bytes`` bytes every ``delay`` seconds).
        ``route`` defaults to ``create`` for ``task_*``, ``download`` for ``truncate``/``expired``, else ``any``.
        """
        if not isinstance(data, Mapping):
            raise ValueError("a fault is a JSON object")
        unknown = set(data) - ({f.name for f in dataclasses.fields(cls)} - {"id"})
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        kind = data.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}, got {kind!r}")
        route = data.get("route") or _DEFAULT_ROUTE.get(kind, "any")
        if route not in FAULT_KINDS[kind]:
            raise ValueError(f"a {kind!r} fault can target {', '.join(FAULT_KINDS[kind])}, not {route!r}")
        count = _int(data, "count", 1)
        if count == 0 or count < -1:
            raise ValueError("count must be a positive number of responses, or -1 for 'until cleared'")
        status = _int(data, "status", 500)
        misbehaviour = _misbehaviour_fields(kind, data)
        if "status" in misbehaviour:
            status = misbehaviour.pop("status")
        elif not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), got {status}")
        code = data.get("code")
        message = data.get("message")
        for name, value in (("code", code), ("message", message)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
        if kind == "error" and code is None:
            code = _CODE_BY_STATUS.get(status, "InternalError" if status >= 500 else "InvalidParameter")
        if kind == "task_fail" and code is None:
            code = "InternalError"
        retry_after = data.get("retry_after")
        if retry_after is not None:
            retry_after = _float(data, "retry_after", 0.0)
        delay = _float(data, "delay", 0.0)
        after_bytes = _int(data, "after_bytes", 0)
        if delay < 0 or after_bytes < 0 or (retry_after is not None and retry_after < 0):
            raise ValueError("delay, retry_after and after_bytes cannot be negative")
        if kind in ("slow", "drip") and "delay" not in data:
            raise ValueError(f"a {kind!r} fault needs a delay (seconds)")
        return cls(
            kind=kind,
            route=route,
            count=count,
            status=status,
            code=code,
            message=message,
            retry_after=retry_after,
            delay=delay,
            after_bytes=after_bytes,
            **misbehaviour,
        )

    def matches(self, route: str, kinds: Iterable[str]) -> bool:
        return self.kind in kinds and self.route in (route, "any")

    def error_message(self) -> str:
        return self.message or ERROR_MESSAGES.get(self.code or "", "Simulated failure.")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # only the fields meaningful for this kind, so GET /_sim/faults reads like what was posted
        keep = {"id", "kind", "route", "count"} | {
            "error": {"status", "code", "message", "retry_after"},
            "slow": {"delay"},
            "task_fail": {"code", "message"},
            "truncate": {"after_bytes"},
            "no_length": {"after_bytes"},
            "short_range": {"after_bytes"},
            "drip": {"delay", "after_bytes"},
            **_MISBEHAVIOUR_KEYS,
        }.get(self.kind, set())
        return {k: v for k, v in data.items() if k in keep}


_MISBEHAVIOUR_KEYS = {
    "answer": {"status", "body", "raw", "processed"},
    "redirect": {"status", "location"},
    "huge": {"size", "processed"},
}


def _misbehaviour_fields(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """
    The fields of the API misbehaviours; ValueError when a field does not fit its kind.

    * ``answer``: any ``status`` (200-599, default 502) with any JSON ``body`` (``{"code": 502, "message":
      "Bad Gateway"}``, ``{"output": null}``...) or ``raw`` text sent byte for byte (each character one byte,
      Latin-1, so ``"\\u00ff"`` is the invalid UTF-8 byte 0xFF); ``processed`` (default true): a create makes its
      task first, as when a gateway loses DashScope's answer.
    * ``redirect``: a ``status`` 300-399 (default 302) to ``location``, not processed; ``location`` ``"loop"``
      (default) points at the request's own URL, anything else is sent as is (another host, a signed URL...).
    * ``huge``: processed, then a 200 JSON object of ``size`` bytes (default 64 MiB) instead of the answer.

    ``drip`` on an API route takes the download drip's fields: processed, then the real answer sent ``after_bytes``
    bytes (default 1 there) every ``delay`` seconds.
    """
    allowed = _MISBEHAVIOUR_KEYS.get(kind, set())
    stray = {"body", "raw", "location", "size", "processed"} & set(data) - allowed
    if stray:
        raise ValueError(f"a {kind!r} fault takes no {', '.join(sorted(stray))}")
    if kind not in _MISBEHAVIOUR_KEYS:
        return {}
    fields: dict[str, Any] = {}
    if kind in ("answer", "redirect"):
        low, high, default = (200, 599, 502) if kind == "answer" else (300, 399, 302)
        status = _int(data, "status", default)
        if not low <= status <= high:
            raise ValueError(f"an {kind!r} fault's status must be within {low}-{high}, got {status}")
        fields["status"] = status
    else:
        fields["status"] = 200
    if "processed" in data:
        if not isinstance(data["processed"], bool):
            raise ValueError("processed must be true or false")
        fields["processed"] = data["processed"]
    if kind == "answer":
        raw = data.get("raw")
        if raw is not None and (not isinstance(raw, str) or any(ord(c) > 255 for c in raw)):
            raise ValueError("raw must be a string of characters U+0000-U+00FF (one byte each)")
        if raw is not None and "body" in data:
            raise ValueError("an 'answer' fault takes a body or raw, not both")
        fields.update(body=data.get("body"), raw=raw)
    elif kind == "redirect":
        location = data.get("location", "loop")
        if not isinstance(location, str) or not location:
            raise ValueError("location must be a URL or 'loop'")
        fields["location"] = location
    else:
        fields["size"] = _int(data, "size", 64 * 1024 * 1024)
        if fields["size"] < 64:
            raise ValueError("a 'huge' answer is at least 64 bytes")
    return fields


def _int(data: Mapping[str, Any], name: str, default: int) -> int:
    value = data.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _float(data: Mapping[str, Any], name: str, default: float) -> float:
    value = data.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SimulatorConfig:
    """
    Run-time settings of the simulator. Every field can be changed while it runs (``POST /_sim/config``).

    Durations are seconds. ``time_scale`` multiplies the simulated task lifecycle (``pending_seconds`` and
    ``generation_seconds``) so a test can run a "5-minute" generation in milliseconds; TTLs, rate windows and fault
    delays are real seconds and are not scaled. A change applies to tasks created afterwards (queued tasks are
    re-planned when a concurrency limit changes).
    """

    #: Bearer keys accepted; any other gets 401 InvalidApiKey. All keys belong to one simulated account.
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    #: minimum time a task stays PENDING before it may start (default 1 s, scaled)
    pending_seconds: float = 1.0
    #: time a task stays RUNNING (default 5 s, scaled), whatever the video's duration
    generation_seconds: float = 5.0
    #: factor applied to pending_seconds and generation_seconds (default 1; 0.01 makes everything 100x faster)
    time_scale: float = 1.0
    #: tasks RUNNING at once per model; None (default) = the catalogue's max_concurrent_tasks, 0 = unlimited
    max_concurrent_tasks: int | None = None
    #: create requests per second per model (sliding 1 s window); None (default) = catalogue create_rps, 0 = unlimited
    create_rps: int | None = None
    #: GET /tasks/{id} + GET /tasks requests per second per API key (default 20, DashScope's limit); 0 = unlimited
    task_query_qps: int = 20
    #: seconds after submission a task record is kept; later it reads UNKNOWN and is purged (default 86400)
    task_ttl_seconds: float = 86400.0
    #: seconds a video_url stays valid after the task ends (default 86400); later it answers 403
    link_ttl_seconds: float = 86400.0
    #: a prompt or negative_prompt containing this word (case-insensitive) is refused with DataInspectionFailed
    moderation_word: str = DEFAULT_MODERATION_WORD
    #: serve this many deterministic pseudo-random bytes instead of an MP4 (transfer benchmarks); None = real MP4
    payload_bytes: int | None = None
    #: frames per second of the generated MP4s (default 8: cheap to encode, still a real H.264 stream)
    video_fps: int = 8
    #: directory where encoded MP4s are also cached (shared between simulator processes); None = memory only
    cache_dir: str | None = None
    #: print one line per request on stdout (method, path without query string, status, milliseconds)
    log_requests: bool = True
    #: draw the model and prompt on every video, text-only requests included (each distinct prompt is then one more
    #: encode; requests with media always get them drawn)
    draw_text: bool = False
    #: seconds an uploaded file stays resolvable as oss:// (default 172800, DashScope's 48 hours)
    upload_ttl_seconds: float = 172800.0
    #: seconds an upload policy stays valid (default 3600)
    upload_policy_ttl_seconds: float = 3600.0

    def __post_init__(self) -> None:
        problems = []
        if not self.api_keys or not all(isinstance(k, str) and k for k in self.api_keys):
            problems.append("api_keys must hold at least one non-empty key")
        for name in (
            "pending_seconds",
            "generation_seconds",
            "task_ttl_seconds",
            "link_ttl_seconds",
            "upload_ttl_seconds",
            "upload_policy_ttl_seconds",
        ):
            if getattr(self, name) < 0:
                problems.append(f"{name} cannot be negative")
        if self.time_scale <= 0:
            problems.append("time_scale must be positive")
        for name in ("max_concurrent_tasks", "create_rps", "payload_bytes"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} cannot be negative")
        if self.task_query_qps < 0:
            problems.append("task_query_qps cannot be negative")
        if not 1 <= self.video_fps <= 60:
            problems.append("video_fps must be within 1-60")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_options(cls, base: SimulatorConfig | None = None, **options: Any) -> SimulatorConfig:
        """A config from keyword options (JSON-ish values), checked and coerced; unknown names raise ValueError."""
        base = base or cls()
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(options) - set(fields)
        if unknown:
            raise ValueError(f"unknown simulator option(s): {', '.join(sorted(unknown))}; known: {', '.join(fields)}")
        changes: dict[str, Any] = {}
        for name, value in options.items():
            current = getattr(base, name)
            if name == "api_keys":
                changes[name] = (value,) if isinstance(value, str) else tuple(value)
            elif name in ("max_concurrent_tasks", "create_rps", "payload_bytes", "cache_dir") and value is None:
                changes[name] = None
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false, got {value!r}")
                changes[name] = value
            elif isinstance(current, float):
                changes[name] = _float(options, name, current)
            elif name in ("max_concurrent_tasks", "create_rps", "payload_bytes", "task_query_qps", "video_fps"):
                changes[name] = _int(options, name, 0)
            else:
                if not isinstance(value, str):
                    raise ValueError(f"{name} must be a string, got {value!r}")
                changes[name] = value
        return dataclasses.replace(base, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        # the admin endpoints are unauthenticated: never echo the keys themselves
        data["api_keys"] = len(self.api_keys)
        return data
