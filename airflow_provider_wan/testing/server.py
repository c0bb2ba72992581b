"""
The simulator's HTTP layer: DashScope's routes under ``/api/v1``, signed video links under ``/_files`` and the
test-control endpoints under ``/_sim``.

DashScope routes (``Authorization: Bearer <key>``; creates also need ``X-DashScope-Async: enable``):

* ``POST /api/v1/services/aigc/video-generation/video-synthesis`` (t2v, i2v) and
  ``POST /api/v1/services/aigc/image2video/video-synthesis`` (kf2v) -> ``{request_id, output: {task_id, task_status}}``
* ``GET /api/v1/tasks/{task_id}``, ``POST /api/v1/tasks/{task_id}/cancel`` (PENDING only), ``GET /api/v1/tasks``
* ``GET|HEAD /_files/<task_id>.mp4?Expires=&OSSAccessKeyId=&Signature=`` (the ``video_url``; Range supported)

Test control, JSON in and out (``/_sim`` has NO authentication: a loopback test tool; never expose a simulator on a
shared network):

* ``GET /_sim/health`` -> ``{"ok": true}``
* ``GET /_sim/stats`` -> ``{requests: {route: n}, paths: {"METHOD /path": n}, status_counts: {"429": n, "RST": n},
  responses: {route: {status: n}}, throttled, tasks_created, tasks_live, tasks_by_status, faults_fired: {kind: n},
  faults_pending, bytes_sent, encodes, uploads: {policies, files, bytes}}``; routes are create, get_task, cancel,
  list, download, upload_policy, upload, other
* ``GET /_sim/tasks`` -> ``{tasks: [{task_id, model, status, endpoint, input, parameters, created (Unix s),
  submit_time, width, height, duration, audio}]}`` (never an API key; long data URIs shortened)
* ``POST /_sim/faults`` (one fault object or a list, see :meth:`Fault.from_dict`) -> ``{faults: [...]}``;
  ``GET /_sim/faults`` -> ``{faults: [...]}``; ``DELETE /_sim/faults`` -> ``{cleared: n}``
* ``POST /_sim/reset`` -> ``{"ok": true}``: no tasks, faults, counters or rate history; start-up settings back
* ``GET|POST /_sim/config`` -> the settings (``api_keys`` as a count); POST takes ``{option: value}`` (fields of
  :class:`SimulatorConfig`)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import socket
import struct
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from airflow_provider_wan.models import (
    Family,
    UsageStyle,
    get_model,
    output_dimensions,
    resolution_tier,
)
from airflow_provider_wan.schema import validate_request

from . import _uploads
from ._config import API_MISBEHAVIOURS, Fault, SimulatorConfig
from ._download_faults import changed_body, etag_of, http_date, take_shape
from ._drawing import DrawingCache, drawing_for, input_video_seconds
from ._media import MediaUnavailableError, VideoCache, payload_chunks
from ._state import SimulatorState, TaskRecord, format_time, parse_list_time

__all__ = ["API_PREFIX", "KF2V_PATH", "STATE_KEY", "VIDEO_PATH", "build_app", "extend_prompt", "start_site"]

API_PREFIX = "/api/v1"
VIDEO_PATH = f"{API_PREFIX}/services/aigc/video-generation/video-synthesis"
KF2V_PATH = f"{API_PREFIX}/services/aigc/image2video/video-synthesis"
# Largest create body: two 10 MB images as base64 data URIs, with room to spare.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Looks like an Alibaba Cloud AccessKey id, as in real OSS links.
OSS_ACCESS_KEY_ID = "LTAI5tWanSimulator"
_STREAM_CHUNK = 256 * 1024
_TASK_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")
_API_ROUTES = ("create", "get_task", "cancel", "list")
# What prompt_extend "adds": deterministic, so tests can assert on actual_prompt.
_PROMPT_EXTENSION = (
    "Cinematic composition, soft natural lighting, smooth and steady camera motion, rich detail, "
    "realistic textures, high-quality video."
)

STATE_KEY = web.AppKey("wan_simulator_state", SimulatorState)
_CACHE_KEY = web.AppKey("wan_simulator_video_cache", VideoCache)
_DRAWING_KEY = web.AppKey("wan_simulator_drawings", DrawingCache)
_SECRET_KEY = web.AppKey("wan_simulator_secret", bytes)
# What the request log and stats call a response that was cut ("RST", "200-truncated"); RequestKey is aiohttp >= 3.13.
_STATUS_KEY: Any = web.RequestKey("wan_sim_status", str) if hasattr(web, "RequestKey") else "wan_sim_status"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A DashScope-style error answer: ``{"request_id", "code", "message"}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def _request_id() -> str:
    return str(uuid.uuid4())


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    try:
        payload = json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # a stored prompt with a lone surrogate cannot be UTF-8: escaped (\ud800) it is still valid JSON
        payload = json.dumps(body).encode()
    return web.Response(
        body=payload,
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _error_response(error: ApiError) -> web.Response:
    body = {"request_id": _request_id(), "code": error.code, "message": error.message}
    return _json(body, error.status, error.headers)


def _oss_error(status: int, code: str, message: str, **extra: str) -> web.Response:
    """An error as OSS (the result bucket) answers it: XML, not DashScope JSON."""
    request_id = uuid.uuid4().hex[:24].upper()
    details = "".join(f"<{k}>{v}</{k}>" for k, v in extra.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId>"
        f"<HostId>wan-simulator.oss.local</HostId>{details}</Error>\n"
    )
    return web.Response(
        text=body, status=status, content_type="application/xml", headers={"x-oss-request-id": request_id}
    )


# --- routing table -------------------------------------------------------------------------------------------------
# (method, canonical path) -> route name used by faults and stats
_ROUTE_NAMES = {
    ("POST", VIDEO_PATH): "create",
    ("POST", KF2V_PATH): "create",
    ("GET", f"{API_PREFIX}/tasks/{{task_id}}"): "get_task",
    ("POST", f"{API_PREFIX}/tasks/{{task_id}}/cancel"): "cancel",
    ("GET", f"{API_PREFIX}/tasks"): "list",
    ("GET", "/_files/{name}"): "download",
    ("HEAD", "/_files/{name}"): "download",
    ("GET", f"{API_PREFIX}/uploads"): "upload_policy",
    ("POST", _uploads.UPLOAD_PATH): "upload",
}


def _classify(request: web.Request) -> tuple[str, str]:
    """(route name, "METHOD /canonical/path") of a request; unknown paths are "other", /_sim is "admin"."""
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    if canonical.startswith("/_sim"):
        return "admin", f"{request.method} {canonical}"
    route = _ROUTE_NAMES.get((request.method, canonical), "other")
    if route == "other":
        canonical = "(unmatched)"
    return route, f"{request.method} {canonical}"


# --- middleware: errors, faults, stats, request log -----------------------------------------------------------------
@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    started = time.perf_counter()
    route, path_key = _classify(request)
    status = "-"
    try:
        try:
            if route in _API_ROUTES or route == "download":
                response = await _apply_faults(request, handler, route)
            else:
                response = await handler(request)
        except ApiError as error:
            response = _error_response(error)
        except web.HTTPException as exc:
            if not request.path.startswith("/api/"):
                raise
            # aiohttp's own 404/405/413 answers, in DashScope's shape
            code = {404: "NotFound", 405: "MethodNotAllowed", 413: "BadRequest.TooLarge"}.get(exc.status, "Error")
            response = _error_response(ApiError(exc.status, code, exc.reason))
        status = request.get(_STATUS_KEY, str(response.status))
        return response
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    finally:
        if route != "admin":
            state.stats.record(route, path_key, status)
        if state.config.log_requests:
            elapsed = (time.perf_counter() - started) * 1000
            # never the query string (video links carry signatures) and never a header
            print(f"wan-simulator {request.method} {request.path} {status} {elapsed:.1f}ms", flush=True)


async def _apply_faults(request: web.Request, handler: Handler, route: str) -> web.StreamResponse:
    """Fire the first armed error/slow/reset/malformed fault for this route, if any, around the real handler."""
    state = request.app[STATE_KEY]
    # a download's reset happens inside download(), half-way through the body
    kinds = ("error", "slow") if route == "download" else ("error", "slow", "reset", "malformed", *API_MISBEHAVIOURS)
    fault = state.take_fault(route, kinds)
    if fault is None:
        return await handler(request)
    if fault.kind in API_MISBEHAVIOURS:
        return await _misbehave(request, handler, fault)
    if fault.kind == "error":
        # not processed at all: a throttled or failed create made no task
        code = fault.code or "InternalError"
        if route == "download":
            return _oss_error(fault.status, code, fault.error_message())
        headers = {} if fault.retry_after is None else {"Retry-After": f"{math.ceil(fault.retry_after)}"}
        return _error_response(ApiError(fault.status, code, fault.error_message(), headers))
    if fault.kind == "slow":
        if route == "download":
            await asyncio.sleep(fault.delay)
            return await handler(request)
        # processed first (a create makes its task), answered late: the client's read timeout fires first
        response = await _answer(request, handler)
        await asyncio.sleep(fault.delay)
        return response
    response = await _answer(request, handler)
    if fault.kind == "malformed":
        # processed (a create made its task), but the answer cannot be parsed
        return web.Response(
            text='{"request_id": "' + _request_id() + '", "output": {"task_id": ', content_type="application/json"
        )
    # reset: processed (a create made its task), then the connection dies mid-answer
    return await _reset_mid_response(request, response)


# --- API misbehaviours (issue 10): answers a client must survive -----------------------------------------------------
async def _misbehave(request: web.Request, handler: Handler, fault: Fault) -> web.StreamResponse:
    """Answer as a broken gateway, proxy or server would (see ``_config._misbehaviour_fields``)."""
    if fault.kind == "redirect":
        # not processed: the request only bounces
        location = str(request.rel_url) if fault.location == "loop" else str(fault.location)
        return web.Response(status=fault.status, headers={"Location": location})
    response = await _answer(request, handler) if fault.processed else None
    if fault.kind == "answer":
        payload = fault.raw.encode("latin-1") if fault.raw is not None else json.dumps(fault.body).encode()
        return web.Response(body=payload, status=fault.status, content_type="application/json")
    if fault.kind == "huge":
        return await _huge_answer(request, fault.size)
    body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b"{}"
    status = response.status if response is not None else 200
    return await _drip(request, status, body, fault.after_bytes or 1, fault.delay)


async def _huge_answer(request: web.Request, size: int) -> web.StreamResponse:
    """A 200 JSON object of exactly ``size`` bytes, streamed (the simulator never holds it)."""
    head, tail = b'{"request_id": "huge", "padding": "', b'"}'
    response = web.StreamResponse(status=200)
    response.content_type = "application/json"
    response.content_length = size
    await response.prepare(request)
    left = size - len(head) - len(tail)
    try:
        await response.write(head)
        while left > 0:
            step = min(left, _STREAM_CHUNK)
            await response.write(b"a" * step)
            left -= step
        await response.write(tail)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        request[_STATUS_KEY] = "200-abandoned"  # the client stopped reading: what a size cap does
    return response


async def _drip(request: web.Request, status: int, body: bytes, step: int, delay: float) -> web.StreamResponse:
    """The answer with its real Content-Length, sent ``step`` bytes every ``delay`` seconds."""
    response = web.StreamResponse(status=status)
    response.content_type = "application/json"
    response.content_length = len(body)
    await response.prepare(request)
    try:
        for offset in range(0, len(body), step):
            await response.write(body[offset : offset + step])
            await asyncio.sleep(delay)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        request[_STATUS_KEY] = f"{status}-abandoned"
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return _error_response(error)


async def _reset_mid_response(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Send the status line, headers and half the body, then reset the TCP connection (RST, not FIN)."""
    body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b""
    partial = web.StreamResponse(status=response.status, headers=response.headers)
    partial.content_length = len(body)
    await partial.prepare(request)
    await partial.write(body[: len(body) // 2])
    _abort(request, reset=True)
    request[_STATUS_KEY] = "RST"
    return partial


def _abort(request: web.Request, *, reset: bool) -> None:
    transport = request.transport
    if transport is None:
        return
    if reset:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # linger 0: close() sends RST, which the client sees as "connection reset by peer"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


# --- helpers of the API handlers -----------------------------------------------------------------------------------
def _authenticate(request: web.Request) -> str:
    state = request.app[STATE_KEY]
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or key not in state.config.api_keys:
        raise ApiError(401, "InvalidApiKey", "Invalid API-key provided.")
    return key


def _throttle_query(request: web.Request, api_key: str) -> None:
    if not request.app[STATE_KEY].admit_query(api_key, time.time()):
        raise ApiError(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, "BadRequest.TooLarge", f"Request body exceeds {MAX_BODY_BYTES} bytes.") from exc
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "InvalidParameter", f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidParameter", "The request body must be a JSON object.")
    return body


def extend_prompt(prompt: str | None) -> str:
    """The deterministic "prompt_extend" rewrite returned as ``actual_prompt``."""
    base = (prompt or "").strip()
    return f"{base} {_PROMPT_EXTENSION}" if base else _PROMPT_EXTENSION


def _contains_word(text: Any, word: str) -> bool:
    return bool(word) and isinstance(text, str) and word.lower() in text.lower()


# --- API handlers --------------------------------------------------------------------------------------------------
async def create_task(request: web.Request) -> web.Response:
    """POST a create request on either synthesis endpoint."""
    state = request.app[STATE_KEY]
    now = time.time()
    _authenticate(request)
    if request.headers.get("X-DashScope-Async", "").strip().lower() != "enable":
        raise ApiError(403, "AccessDenied", "current user api does not support synchronous calls.")
    body = await _read_json(request)
    model_name = body.get("model")
    if not isinstance(model_name, str) or not model_name:
        raise ApiError(400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.')
    model = get_model(model_name)
    if model is None:
        raise ApiError(404, "ModelNotFound", f"Model not exist: {model_name!r} is not a model of this service.")
    input_ = body.get("input") if body.get("input") is not None else {}
    parameters = body.get("parameters") if body.get("parameters") is not None else {}
    if not isinstance(input_, dict) or not isinstance(parameters, dict):
        raise ApiError(400, "InvalidParameter", "input and parameters must be JSON objects.")
    if not state.admit_create(model, now):
        raise ApiError(429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
    endpoint = request.path[len(API_PREFIX) + 1 :]
    # SDK 1.x adds input.extend_prompt and input.function: validate_request ignores fields it does not know
    problems = validate_request(model, input_, parameters, endpoint=endpoint)
    refused = [str(p) for p in problems if not p.truncation]
    if refused:
        raise ApiError(400, "InvalidParameter", "; ".join(refused))
    stored = _resolve_uploads(request, input_, now)
    # DashScope silently truncates over-long texts (validate_request flags them as truncation problems)
    prompt = input_.get("prompt")
    if isinstance(prompt, str):
        prompt = prompt[: model.prompt_max_chars]
    negative = input_.get("negative_prompt")
    if isinstance(negative, str):
        negative = negative[: model.negative_prompt_max_chars]
    word = state.config.moderation_word
    if _contains_word(prompt, word) or _contains_word(negative, word):
        raise ApiError(400, "DataInspectionFailed", "Input data may contain inappropriate content.")
    extend = parameters.get("prompt_extend", True)
    size = parameters.get("size")
    resolution = parameters.get("resolution")
    if model.family is Family.TEXT_TO_VIDEO:
        size = size or model.default_size
    width, height = output_dimensions(model, size, resolution, parameters.get("ratio"))
    audio_flag = parameters.get("audio")
    audio = bool(input_.get("audio_url")) or (model.supports_audio and audio_flag is not False)
    task = state.create_task(
        model=model,
        model_name=model_name,
        endpoint=endpoint,
        input_=input_,
        parameters=parameters,
        prompt=prompt,
        actual_prompt=extend_prompt(prompt) if extend and model.returns_actual_prompt else None,
        width=width,
        height=height,
        duration=_duration(parameters.get("duration"), model.default_duration),
        audio=audio,
        size=size,
        tier=resolution_tier(model, size, resolution),
        now=now,
    )
    text = (f"{model_name} {width}x{height} {task.duration}s", *([prompt] if isinstance(prompt, str) else []))
    task.drawing = drawing_for(input_, stored.get, text, always=state.config.draw_text)
    if model.bills_input_video and stored:
        task.input_seconds = input_video_seconds(input_, stored.get)
    return _json({"request_id": _request_id(), "output": {"task_id": task.task_id, "task_status": "PENDING"}})


def _duration(asked: Any, default: int) -> int:
    # -1 (the model picks) and 0 (as long as the source) come out as the model's default length
    return asked if isinstance(asked, int) and asked > 0 else default


def _resolve_uploads(request: web.Request, input_: dict[str, Any], now: float) -> dict[str, Any]:
    """oss:// URL -> stored file path for every upload a create refers to; 400 as DashScope when one cannot be read."""
    from airflow_provider_wan.schema import media_references

    urls = [ref.value for ref in media_references(input_) if ref.value.startswith("oss://")]
    if not urls:
        return {}
    if request.headers.get("X-DashScope-OssResourceResolve", "").strip().lower() != "enable":
        raise ApiError(
            400, "InvalidParameter", "oss:// URLs resolve only with the header X-DashScope-OssResourceResolve: enable"
        )
    found = {}
    for url in urls:
        stored = _uploads.resolve_oss(request.app, url, now)
        if isinstance(stored, str):
            raise ApiError(400, "InvalidParameter", stored)
        found[url] = stored.path
    return found


async def upload_policy(request: web.Request) -> web.Response:
    """GET /uploads?action=getPolicy&model=M: a post policy for DashScope's temporary storage."""
    _authenticate(request)
    if request.query.get("action") != "getPolicy":
        raise ApiError(400, "InvalidParameter", "action must be getPolicy.")
    model = request.query.get("model")
    if not model:
        raise ApiError(400, "InvalidParameter", 'Required parameter "model" missing.')
    config = request.app[STATE_KEY].config
    policy = _uploads.make_policy(request, model, time.time(), config.upload_policy_ttl_seconds)
    return _json({"request_id": _request_id(), "data": policy})


async def upload_file(request: web.Request) -> web.Response:
    """POST /_oss: the upload host (OSS post-object form)."""
    return await _uploads.upload(request, request.app[STATE_KEY].config.upload_ttl_seconds)


def _video_url(request: web.Request, task: TaskRecord) -> str:
    state = request.app[STATE_KEY]
    expires = int(task.end + state.config.link_ttl_seconds)
    signature = _sign(request.app[_SECRET_KEY], task.task_id, expires)
    query = f"Expires={expires}&OSSAccessKeyId={OSS_ACCESS_KEY_ID}&Signature={quote(signature, safe='')}"
    return f"{request.scheme}://{request.host}/_files/{task.task_id}.mp4?{query}"


def _sign(secret: bytes, task_id: str, expires: int) -> str:
    digest = hmac.new(secret, f"GET\n{task_id}.mp4\n{expires}".encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _usage(task: TaskRecord) -> dict[str, Any]:
    """``usage`` of a SUCCEEDED task, in the shape of the model's generation (models.UsageStyle)."""
    style = task.model.usage_style
    if style is UsageStyle.WAN26:
        usage: dict[str, Any] = {"duration": task.duration}
        if task.model.family is Family.TEXT_TO_VIDEO:
            usage["size"] = task.size
        usage.update(
            input_video_duration=task.input_seconds,
            output_video_duration=task.duration,
            video_count=1,
            SR=int(task.tier.rstrip("P")),
        )
        return usage
    if style is UsageStyle.MEDIA:
        return {
            "input_video_duration": task.input_seconds,
            "output_video_duration": task.duration,
            "duration": task.duration,
            "video_count": 1,
            "SR": int(task.tier.rstrip("P")),
            "ratio": task.parameters.get("ratio", "16:9"),
        }
    ratio = task.size if style is UsageStyle.SIZE_RATIO else "standard"
    return {"video_count": 1, "video_duration": task.duration, "video_ratio": ratio}


def _task_output(request: web.Request, task: TaskRecord, status: str) -> dict[str, Any]:
    # an armed ``expired`` fault reports the task as ended more than a day ago (see SimulatorState.aged_by)
    aged = request.app[STATE_KEY].aged_by(task, time.time())
    output: dict[str, Any] = {
        "task_id": task.task_id,
        "task_status": status,
        "submit_time": format_time(task.created - aged),
    }
    if status in ("RUNNING", "SUCCEEDED", "FAILED"):
        output["scheduled_time"] = format_time(task.start - aged)
    if status in ("SUCCEEDED", "FAILED", "CANCELED"):
        output["end_time"] = format_time(task.end - aged)
    if status == "SUCCEEDED":
        output["video_url"] = _video_url(request, task)
    if task.prompt is not None:
        output["orig_prompt"] = task.prompt
    if status == "SUCCEEDED" and task.actual_prompt is not None:
        output["actual_prompt"] = task.actual_prompt
    if status == "FAILED":
        output["code"] = task.fail_code
        output["message"] = task.fail_message
    return output


def _unknown(task_id: str) -> web.Response:
    return _json({"request_id": _request_id(), "output": {"task_id": task_id, "task_status": "UNKNOWN"}})


async def get_task(request: web.Request) -> web.Response:
    """GET /tasks/{task_id}: the task as of now; UNKNOWN for a task that never existed or has expired."""
    state = request.app[STATE_KEY]
    _throttle_query(request, _authenticate(request))
    now = time.time()
    task_id = request.match_info["task_id"]
    task = state.get_task(task_id, now)
    status = task.status(now) if task is not None else "UNKNOWN"
    if task is None or status == "UNKNOWN":
        return _unknown(task_id)
    body: dict[str, Any] = {"request_id": _request_id(), "output": _task_output(request, task, status)}
    if status == "SUCCEEDED":
        body["usage"] = _usage(task)
    return _json(body)


async def cancel_task(request: web.Request) -> web.Response:
    """POST /tasks/{task_id}/cancel: only PENDING tasks can be canceled."""
    state = request.app[STATE_KEY]
    _authenticate(request)
    now = time.time()
    task = state.get_task(request.match_info["task_id"], now)
    if task is None or not state.cancel(task, now):
        current = task.status(now) if task is not None else "UNKNOWN"
        raise ApiError(
            400,
            "UnsupportedOperation",
            f"Failed to cancel the task, please confirm if the task is in PENDING status (it is {current}).",
        )
    return _json({"request_id": _request_id()})


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(400, "InvalidParameter", f"{name} must be an integer in [{low}, {high}], got {text!r}.")
    return value


async def list_tasks(request: web.Request) -> web.Response:
    """
    GET /tasks: one page of tasks, newest first.

    Filters: ``status``, ``model_name``, ``start_time``/``end_time`` (``YYYYMMDDhhmmss``, UTC+8, on submit time);
    paging: ``page_no`` (from 1), ``page_size`` (1-100, default 10). The answer is flat:
    ``{"request_id", "page_no", "page_size", "total", "total_page", "tasks": [...], "data": [...]}``: ``tasks`` is
    what SDK 2.x reads; ``data`` carries the same list for clients written against the REST examples.
    """
    state = request.app[STATE_KEY]
    _throttle_query(request, _authenticate(request))
    now = time.time()
    page_no = _int_query(request, "page_no", 1, 1, 1_000_000)
    page_size = _int_query(request, "page_size", 10, 1, 100)
    wanted_status = request.query.get("status")
    if wanted_status is not None and wanted_status not in _TASK_STATUSES:
        raise ApiError(400, "InvalidParameter", f"status must be one of {', '.join(_TASK_STATUSES)}.")
    bounds = []
    for name in ("start_time", "end_time"):
        text = request.query.get(name)
        try:
            bounds.append(parse_list_time(text) if text else None)
        except ValueError as exc:
            raise ApiError(400, "InvalidParameter", f"{name} must look like YYYYMMDDhhmmss, got {text!r}.") from exc
    start, end = bounds
    model_name = request.query.get("model_name")
    selected = []
    for task in reversed(state.live_tasks(now)):
        status = task.status(now)
        if wanted_status and status != wanted_status:
            continue
        if model_name and model_name not in (task.model_name, task.model.name):
            continue
        if (start is not None and task.created < start) or (end is not None and task.created > end):
            continue
        selected.append((task, status))
    page = selected[(page_no - 1) * page_size : page_no * page_size]
    items = []
    for task, status in page:
        item = _task_output(request, task, status)
        item.pop("video_url", None)  # the list reports statuses; results come from GET /tasks/{id}
        item["model_name"] = task.model_name
        items.append(item)
    body = {
        "request_id": _request_id(),
        "page_no": page_no,
        "page_size": page_size,
        "total": len(selected),
        "total_page": math.ceil(len(selected) / page_size),
        "tasks": items,
        "data": items,
    }
    return _json(body)


def _parse_range(header: str, total: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=N-``, ``bytes=N-M`` or ``bytes=-K`` range; None if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.group(1) == match.group(2) == "":
        raise ValueError("unsupported Range")
    first_text, last_text = match.groups()
    if first_text == "":
        length = int(last_text)
        if length == 0:
            return None
        return max(total - length, 0), total - 1
    first = int(first_text)
    last = min(int(last_text), total - 1) if last_text else total - 1
    if first >= total or last < first:
        return None
    return first, last


async def download(request: web.Request) -> web.StreamResponse:
    """GET /_files/{task_id}.mp4?Expires&OSSAccessKeyId&Signature: the result, OSS-style (Range, 403 when expired)."""
    state = request.app[STATE_KEY]
    now = time.time()
    name = request.match_info["name"]
    task_id = name.removesuffix(".mp4")
    try:
        expires = int(request.query.get("Expires", ""))
    except ValueError:
        expires = -1
    expected = _sign(request.app[_SECRET_KEY], task_id, expires)
    if not name.endswith(".mp4") or not hmac.compare_digest(expected, request.query.get("Signature", "")):
        return _oss_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    if now > expires or state.take_fault("download", ("expired",)) is not None:
        return _oss_error(
            403,
            "AccessDenied",
            "Request has expired.",
            Expires=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(expires)),
            ServerTime=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)),
        )
    task = state.get_task(task_id, now)
    if task is None or task.status(now) != "SUCCEEDED":
        return _oss_error(404, "NoSuchKey", "The specified key does not exist.", Key=name)

    config = state.config
    chunks: Callable[[int, int], Iterator[bytes]]
    data: bytes | None = None
    if config.payload_bytes is not None:
        total = config.payload_bytes

        def chunks(first: int, stop: int) -> Iterator[bytes]:
            return payload_chunks(task_id, total, first, stop)

    else:
        try:
            if task.drawing is not None:
                data = await request.app[_DRAWING_KEY].get(
                    task.width, task.height, task.duration, config.video_fps, task.drawing, task.audio
                )
            else:
                data = await request.app[_CACHE_KEY].get(
                    task.width, task.height, task.duration, task.audio, config.video_fps, config.cache_dir
                )
        except MediaUnavailableError as exc:
            print(f"wan-simulator: {exc}", file=sys.stderr, flush=True)
            return web.Response(status=500, text=str(exc))
        total = len(data)

    status, first, last = 200, 0, total - 1
    range_header = request.headers.get("Range")
    wanted: tuple[int, int] | None = (first, last)
    if range_header:
        try:
            wanted = _parse_range(range_header, total)
            status = 206 if wanted is not None else 416
        except ValueError:
            pass  # multi-range or garbage: ignore it, as OSS does, and send everything
    shape = take_shape(state, status)
    if data is not None:
        if shape.change:
            data = changed_body(data, shape.change)
        body = data

        def chunks(first: int, stop: int) -> Iterator[bytes]:
            view = memoryview(body)
            for offset in range(first, stop, _STREAM_CHUNK):
                yield bytes(view[offset : min(offset + _STREAM_CHUNK, stop)])

    validators = {"Last-Modified": http_date(task.end + shape.change)}
    if data is not None:
        # OSS's ETag of a simple upload is the object's MD5; a client may check it. (Not sent for payloads:
        # hashing a gigabyte per request would defeat their purpose.)
        validators["ETag"] = etag_of(data)
    if wanted is None:
        total_text = "*" if shape.hide_length else str(total)
        return web.Response(status=416, headers={"Content-Range": f"bytes */{total_text}", **validators})
    first, last = wanted
    response = web.StreamResponse(status=status, headers=validators)
    response.content_type = "video/mp4"
    length = last - first + 1
    if shape.clean_cut is not None:
        length = min(length, shape.clean_cut)
        last = first + length - 1
    if shape.hide_length:
        response.enable_chunked_encoding()
    else:
        response.content_length = length
    response.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        response.headers["Content-Range"] = f"bytes {first}-{last}/{'*' if shape.hide_length else total}"
    cutter = state.take_fault("download", ("truncate", "reset"))
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    cut = None
    if cutter is not None:
        # always fewer bytes than announced; a reset strikes half-way
        cut = min(cutter.after_bytes, length - 1) if cutter.kind == "truncate" else length // 2
    sent = 0
    for chunk in chunks(first, last + 1):
        if shape.drip_delay:
            for offset in range(0, len(chunk), shape.drip_bytes):
                await response.write(chunk[offset : offset + shape.drip_bytes])
                sent += min(shape.drip_bytes, len(chunk) - offset)
                await asyncio.sleep(shape.drip_delay)
            continue
        if cut is not None and sent + len(chunk) >= cut:
            await response.write(chunk[: cut - sent])
            sent = cut
            break
        await response.write(chunk)
        sent += len(chunk)
    state.stats.bytes_sent += sent
    if cutter is not None:
        if cutter.kind == "truncate":
            _abort(request, reset=False)  # FIN after the queued bytes: a body shorter than announced
            request[_STATUS_KEY] = f"{status}-truncated"
        else:
            _abort(request, reset=True)
            request[_STATUS_KEY] = "RST"
        return response
    # a clean end, even when shaped shorter than asked: the client sees a complete answer
    await response.write_eof()
    return response


# --- admin endpoints (no auth: loopback test tool) -----------------------------------------------------------------
def _admin_error(message: str) -> web.Response:
    return _json({"error": message}, status=400)


async def _admin_json(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"not JSON: {exc}"}), content_type="application/json"
        ) from exc


async def admin_health(request: web.Request) -> web.Response:
    return _json({"ok": True})


async def admin_stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    stats = state.stats
    now = time.time()
    live = state.live_tasks(now)
    by_status: dict[str, int] = {}
    for task in live:
        status = task.status(now)
        by_status[status] = by_status.get(status, 0) + 1
    body = {
        "requests": dict(stats.requests),
        "paths": dict(stats.paths),
        "status_counts": dict(stats.statuses),
        "responses": {route: dict(counts) for route, counts in stats.by_route.items()},
        "throttled": stats.statuses.get("429", 0),
        "tasks_created": stats.tasks_created,
        "tasks_live": len(live),
        "tasks_by_status": by_status,
        "faults_fired": dict(stats.faults_fired),
        "faults_pending": len(state.faults),
        "bytes_sent": stats.bytes_sent,
        "encodes": request.app[_CACHE_KEY].encodes,
        "uploads": {
            "policies": request.app[_uploads.STORE_KEY].policies,
            "files": request.app[_uploads.STORE_KEY].uploads,
            "bytes": request.app[_uploads.STORE_KEY].bytes_stored,
        },
    }
    return _json(body)


async def admin_tasks(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    now = time.time()
    tasks = [
        {
            "task_id": t.task_id,
            "model": t.model_name,
            "status": t.status(now),
            "endpoint": t.endpoint,
            "input": t.input,
            "parameters": t.parameters,
            "created": t.created,
            "submit_time": format_time(t.created),
            "width": t.width,
            "height": t.height,
            "duration": t.duration,
            "audio": t.audio,
        }
        for t in state.live_tasks(now)
    ]
    return _json({"tasks": tasks})


async def admin_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.method == "DELETE":
        cleared = len(state.faults)
        state.faults.clear()
        return _json({"cleared": cleared})
    if request.method == "POST":
        data = await _admin_json(request)
        items = data if isinstance(data, list) else [data]
        try:
            added = [Fault.from_dict(item) for item in items]
        except ValueError as exc:
            return _admin_error(str(exc))
        state.faults.extend(added)
        return _json({"faults": [f.to_dict() for f in added]})
    return _json({"faults": [f.to_dict() for f in state.faults]})


async def admin_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    request.app[_uploads.STORE_KEY].clear()
    # the encodes stay cached (they are only a cost), but the counter restarts with the other counters
    request.app[_CACHE_KEY].encodes = 0
    return _json({"ok": True})


async def admin_config(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.method == "POST":
        data = await _admin_json(request)
        if not isinstance(data, dict):
            return _admin_error("config is a JSON object of options")
        try:
            state.configure(**data)
        except (TypeError, ValueError) as exc:
            return _admin_error(str(exc))
    return _json(state.config.to_dict())


# --- application ---------------------------------------------------------------------------------------------------
def build_app(config: SimulatorConfig, faults: list[Fault] | None = None) -> web.Application:
    """The aiohttp application of one simulator (its own state, video cache and link-signing secret)."""
    app = web.Application(middlewares=[_middleware], client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = SimulatorState(config, faults or [])
    app[_CACHE_KEY] = VideoCache()
    app[_DRAWING_KEY] = DrawingCache()
    app[_SECRET_KEY] = secrets.token_bytes(32)
    _uploads.add_upload_routes(app, upload_policy, upload_file)
    app.router.add_post(VIDEO_PATH, create_task)
    app.router.add_post(KF2V_PATH, create_task)
    app.router.add_get(f"{API_PREFIX}/tasks", list_tasks, allow_head=False)
    app.router.add_get(f"{API_PREFIX}/tasks/{{task_id}}", get_task, allow_head=False)
    app.router.add_post(f"{API_PREFIX}/tasks/{{task_id}}/cancel", cancel_task)
    app.router.add_get("/_files/{name}", download)  # HEAD too
    app.router.add_get("/_sim/health", admin_health)
    app.router.add_get("/_sim/stats", admin_stats)
    app.router.add_get("/_sim/tasks", admin_tasks)
    app.router.add_route("*", "/_sim/faults", admin_faults)
    app.router.add_post("/_sim/reset", admin_reset)
    app.router.add_route("*", "/_sim/config", admin_config)
    return app


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on host:port (0 = any free port); returns the runner (to clean up) and the bound port."""
    # a short shutdown grace: a 'slow' fault must not hold a test's teardown for a minute
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
