"""
The retry-safety record of a submit operator: which request it sent, when, and which DashScope task that made.

A create is paid for, so the record is written *before* anything else can fail:

1. before the ``POST``: the request's fingerprint and a "create in flight" mark with the time it was sent;
2. after the answer: the DashScope task id beside the fingerprint;
3. only then XCom and the wait.

A later try of the same task instance (an Airflow retry, or a clear and re-run) reads it back:

* same fingerprint and a known task id: re-attach to that task (no second create), unless DashScope says it ended
  without a video (FAILED, CANCELED) or has forgotten it (UNKNOWN, past its 24 hours); a task UNKNOWN within its
  24 hours is :func:`unknown_task_error`, final: it may live where the connection no longer points;
* same fingerprint, in flight, no task id: the earlier try died between sending the create and storing its answer,
  so a task may exist and be billed: :func:`outcome_unknown_error`, final, never a blind second create;
* another fingerprint (the prompt, seed, size... changed, or the ``take`` was raised): a new task.

Two stores keep it, chosen by feature detection (:func:`record_store`): Airflow 3.3's task state store
(``context["task_state_store"]``) when the context has one, else an Airflow Variable per task instance (Airflow 2.11
to 3.2, where XCom cannot serve: Airflow clears a task's XComs before each try). Both live in the metadata database,
so they survive a retry, a worker crash and a clear.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

from airflow_provider_wan.exceptions import WanCreateOutcomeUnknownError, WanFinalError

__all__ = [
    "RECORD_KEY",
    "VARIABLE_PREFIX",
    "CreateRecord",
    "RecordStore",
    "TaskStateStoreRecords",
    "VariableRecords",
    "outcome_unknown_error",
    "record_store",
    "request_fingerprint",
    "unknown_task_error",
]

#: the task state store key (Airflow >= 3.3)
RECORD_KEY = "wan_create"
#: Variable keys of the fallback store start with this (Airflow < 3.3)
VARIABLE_PREFIX = "wan_create_record"
#: Airflow's limit on Variable key length
_VARIABLE_KEY_MAX = 250
#: how long after the create was sent a task may have appeared (the hook's connect + read timeouts, its resends,
#: and DashScope's own clock skew, rounded up generously)
_WINDOW_AFTER_SECONDS = 600
#: how long *before* the worker's clock says the create was sent DashScope may have stamped the task: a worker
#: clock running fast. The window is the list a user searches before raising take; missing the task there means
#: paying for it twice, so a worker up to 10 minutes fast still finds it
_WINDOW_BEFORE_SECONDS = 600
#: DashScope keeps a task, and its result, this long after it was submitted (then the task reads UNKNOWN); a video
#: link refused sooner than this after the task's end is no expiry (transfers/download.py)
TASK_RETENTION_SECONDS = 24 * 3600
#: DashScope's list_tasks takes times as YYYYMMDDhhmmss in UTC+8
_DASHSCOPE_UTC_OFFSET_SECONDS = 8 * 3600


def request_fingerprint(model: str, endpoint: str, body: Mapping[str, Any], take: int = 1) -> str:
    """
    sha256 (hex) of the request as it goes out: model, endpoint and the final body (after templating and image
    resolution), as canonical JSON (sorted keys, no spaces, ASCII escapes), plus the operator's ``take``.
    """
    canonical = json.dumps(
        {"model": model, "endpoint": endpoint.strip("/"), "body": body, "take": take},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class CreateRecord:
    """
    What one try knew about its create. Holds no request text (the body may hold a prompt nobody should read in
    the Airflow UI, and megabytes of inline images): the fingerprint stands for it.

    The facts of the create are recorded with it and reported by every later step (the wait, the deferred resume, a
    retry that re-attaches) as they were when it was sent: the estimate the budget was checked against, and where
    the task was made. Nothing read after the video is paid for (a price table or a connection edited meanwhile) can
    change or fail them.

    :param fingerprint: :func:`request_fingerprint` of the request
    :param model: the model name sent
    :param sent_at: epoch seconds when the create was about to be sent (the "in flight" mark)
    :param task_id: the DashScope task id, None while the create is in flight
    :param estimated_cost_usd: the cost estimate of the request when it was sent; None when unknown
    :param region: the DashScope region it was sent to (``custom`` for a base URL of one's own); None when unknown
    :param namespace: the OpenLineage namespace of the API it was sent to (``dashscope://<host>``); None when
        unknown
    """

    fingerprint: str
    model: str
    sent_at: float
    task_id: str | None = None
    estimated_cost_usd: float | None = None
    region: str | None = None
    namespace: str | None = None

    @property
    def in_flight(self) -> bool:
        return self.task_id is None

    def forgotten(self, now: float) -> bool:
        """Whether DashScope has forgotten the task by ``now`` (epoch seconds): its 24 hours are over."""
        return now - self.sent_at >= TASK_RETENTION_SECONDS

    def with_task(self, task_id: str) -> CreateRecord:
        return replace(self, task_id=task_id)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> CreateRecord | None:
        """
        The record a store held, or None for nothing or anything unreadable (never raises). A reported fact that is
        unreadable (or absent, in a record written before it was kept) reads as None, and the record still counts:
        dropping it would create, and pay for, a second task.
        """
        if not isinstance(value, Mapping):
            return None
        fingerprint, model, sent_at, task_id = (value.get(k) for k in ("fingerprint", "model", "sent_at", "task_id"))
        if not (isinstance(fingerprint, str) and isinstance(model, str)):
            return None
        if not isinstance(sent_at, (int, float)) or isinstance(sent_at, bool):
            return None
        if task_id is not None and not (isinstance(task_id, str) and task_id):
            return None
        cost = value.get("estimated_cost_usd")
        if not (isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost) and cost >= 0):
            cost = None
        region, namespace = (value.get(k) for k in ("region", "namespace"))
        return cls(
            fingerprint=fingerprint,
            model=model,
            sent_at=float(sent_at),
            task_id=task_id,
            estimated_cost_usd=None if cost is None else float(cost),
            region=region if isinstance(region, str) and region else None,
            namespace=namespace if isinstance(namespace, str) and namespace else None,
        )


class RecordStore(Protocol):
    """Where a task instance's :class:`CreateRecord` lives between tries."""

    #: for the logs: which store this is
    description: str

    def get(self) -> CreateRecord | None: ...

    def put(self, record: CreateRecord) -> None: ...

    def delete(self) -> None: ...


class TaskStateStoreRecords:
    """The record in Airflow 3.3's task state store (kept ``[state_store] default_retention_days``, default 30)."""

    description = "the task state store"

    def __init__(self, accessor: Any) -> None:
        self._accessor = accessor

    def get(self) -> CreateRecord | None:
        return CreateRecord.from_json(self._accessor.get(RECORD_KEY))

    def put(self, record: CreateRecord) -> None:
        self._accessor.set(RECORD_KEY, record.to_json())

    def delete(self) -> None:
        self._accessor.delete(RECORD_KEY)


class VariableRecords:
    """
    The record in an Airflow Variable named ``wan_create_record/<dag_id>/<task_id>/<run_id>/<map_index>`` (or
    ``wan_create_record/<sha256>`` when that would pass Airflow's 250-character limit). Airflow never deletes
    Variables by itself: :mod:`airflow_provider_wan.record_cleanup` deletes old ones.
    """

    description = "an Airflow Variable"

    def __init__(self, dag_id: str, task_id: str, run_id: str, map_index: int) -> None:
        self.key = variable_key(dag_id, task_id, run_id, map_index)

    def get(self) -> CreateRecord | None:
        from airflow.providers.common.compat.sdk import Variable

        # the default as the second positional argument: Airflow 2 calls it default_var, the Task SDK default
        return CreateRecord.from_json(Variable.get(self.key, None, deserialize_json=True))

    def put(self, record: CreateRecord) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.set(
            self.key,
            record.to_json(),
            description="airflow-provider-wan retry-safety record (DashScope task of this task instance)",
            serialize_json=True,
        )

    def delete(self) -> None:
        from airflow.providers.common.compat.sdk import Variable

        Variable.delete(self.key)


def variable_key(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    """The Variable that holds one task instance's record."""
    key = f"{VARIABLE_PREFIX}/{dag_id}/{task_id}/{run_id}/{map_index}"
    if len(key) <= _VARIABLE_KEY_MAX:
        return key
    return f"{VARIABLE_PREFIX}/{hashlib.sha256(key.encode()).hexdigest()}"


def record_store(context: Mapping[str, Any]) -> RecordStore:
    """
    The task state store when the context has one (Airflow >= 3.3), else an Airflow Variable keyed by the task
    instance. Feature detection, not a version check: a 3.3 context without the store gets the Variable too.
    """
    accessor = context.get("task_state_store")
    if accessor is not None:
        return TaskStateStoreRecords(accessor)
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return VariableRecords(ti.dag_id, ti.task_id, ti.run_id, -1 if map_index is None else int(map_index))


def _dashscope_time(epoch: float) -> str:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch + _DASHSCOPE_UTC_OFFSET_SECONDS))


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def outcome_unknown_error(record: CreateRecord, *, store: str) -> WanCreateOutcomeUnknownError:
    """
    The final error for a record still "in flight": an earlier try sent this very request and died before it could
    store DashScope's answer. Says where to look for the task, and how to create a new one anyway.
    """
    start, end = record.sent_at - _WINDOW_BEFORE_SECONDS, record.sent_at + _WINDOW_AFTER_SECONDS
    return WanCreateOutcomeUnknownError(
        f"An earlier try of this task sent the same create request for model {record.model!r} at "
        f"{_utc(record.sent_at)} and stopped before DashScope's answer was stored in {store} (execution_timeout, "
        "a killed worker, a lost connection...). A task may have been created and billed, so the request was NOT "
        f"sent again. Look for a {record.model} task created between {_utc(start)} and {_utc(end)} in the DashScope "
        f"console, or with WanHook.list_tasks(model_name={record.model!r}, start_time={_dashscope_time(start)!r}, "
        f"end_time={_dashscope_time(end)!r}) (times in UTC+8), or in that try's log ('Created DashScope task ...' "
        "when the answer came but could not be stored), and wait for it with WanTaskSensor(wan_task_id=...). "
        "To create a new task for this request anyway, raise the operator's take (e.g. take=2)."
    )


def unknown_task_error(record: CreateRecord, *, asked: str, now: float) -> WanFinalError:
    """
    The final error for a recorded task DashScope answers UNKNOWN for within its 24 hours: it was not forgotten, so it
    lives where this try did not ask (the connection now names another region, workspace or key), or DashScope does
    not show it yet. Creating it again would pay twice for one video.

    :param asked: where this try read the task (:meth:`~airflow_provider_wan.hooks.wan.Credentials.describe`)
    :param now: epoch seconds of the read
    """
    made_at = record.namespace or "a place the record does not say (it predates the provider keeping it)"
    if record.region and record.region != "custom":
        made_at = f"region {record.region!r} ({made_at})"
    return WanFinalError(
        f"DashScope task {record.task_id}, made by an earlier try for this same request at {_utc(record.sent_at)} "
        f"({(now - record.sent_at) / 60:.0f} minutes ago, within the 24 hours DashScope keeps a task), is UNKNOWN "
        f"to DashScope: it was made at {made_at} and this try asked {asked}. The connection may now name another "
        "region, workspace or API key than the one that made it. It was NOT created again, which would pay twice "
        "for one video: point the connection back to where the task was made and clear this task to re-attach to "
        "it, or wait for it there with WanTaskSensor(wan_task_id=...). To pay for a new video of this request "
        "anyway, raise the operator's take (e.g. take=2).",
        task_id=record.task_id,
    )
