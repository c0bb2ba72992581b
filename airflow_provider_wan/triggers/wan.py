"""
WanTaskTrigger: waits for a DashScope task in the triggerer, so a deferred operator or sensor holds no worker slot.

The trigger only reads (``GET /tasks/{id}``) and, on a deadline or a user's kill, cancels a task that is still
PENDING. Polling has no other side effect, so a trigger may run again after a triggerer fails over, or on another
triggerer, without harm. It yields exactly one event; :func:`task_from_event` turns that event back into the
:class:`~airflow_provider_wan.hooks.wan.WanTask` or the exception the sync path (a worker polling) would have
produced, so both paths fail the same way.

Event contract (a JSON-safe dict; never an API key, never a signed URL)::

    {"status": "success",  "task_id", "message", "polls", "result": task.to_result()}
    {"status": "failed",   "task_id", "message", "polls", "result", "error": err.to_dict()}   # task FAILED
    {"status": "canceled", "task_id", "message", "polls", "result", "error"}
    {"status": "expired",  "task_id", "message", "polls", "result", "error"}   # UNKNOWN: gone or never existed
    {"status": "timeout",  "task_id", "message", "polls", "task_status", "canceled", "error"}   # task_status None:
                                                                  # the last read got no answer before the deadline
    {"status": "error",    "task_id", "message", "polls", "error"}   # transient failures exhausted, bad key, ...
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_wan import exceptions as wan_exceptions
from airflow_provider_wan.exceptions import (
    WanAuthError,
    WanError,
    WanRetryableError,
    WanTimeoutError,
    dashscope_code,
)
from airflow_provider_wan.hooks.classify import TASK_ID_PATTERN
from airflow_provider_wan.hooks.schedule import LAST_READ_GRACE_SECONDS, PollSchedule, check_wait_seconds
from airflow_provider_wan.hooks.wan import RetryPolicy, TaskStatus, WanAsyncClient, WanHook, WanTask
from airflow_provider_wan.redact import clean_text
from airflow_provider_wan.results import task_id_of

__all__ = [
    "DEFAULT_MAX_TRANSIENT_FAILURES",
    "DEFAULT_POLL_INTERVAL",
    "EVENT_STATUSES",
    "WanTaskTrigger",
    "task_from_event",
]

#: Seconds between two reads of a task: DashScope's own suggestion. A Wan video takes minutes, so this costs
#: about 4 reads per minute of generation, and one triggerer stays far below the 20 GET/s account limit with
#: 300 tasks in flight (the per-process rate limiter in the hook covers bigger fleets).
DEFAULT_POLL_INTERVAL = 15.0
#: Consecutive failed reads (timeouts, 429, 5xx, refused connections) tolerated before an "error" event. With the
#: hook's backoff (1 s doubling, capped at 30 s, jittered, Retry-After honoured) ten failures in a row span about
#: 1.5 to 3 minutes of outage: long enough to ride out a gateway hiccup, short enough to surface a real outage.
DEFAULT_MAX_TRANSIENT_FAILURES = 10
#: Cap of one backoff wait in seconds (DashScope's Retry-After is honoured up to this too).
MAX_BACKOFF_SECONDS = 30.0

#: Every status a WanTaskTrigger event can carry.
EVENT_STATUSES = frozenset({"success", "failed", "canceled", "expired", "timeout", "error"})
_TERMINAL_EVENT_STATUS = {
    TaskStatus.SUCCEEDED: "success",
    TaskStatus.FAILED: "failed",
    TaskStatus.CANCELED: "canceled",
    TaskStatus.UNKNOWN: "expired",
}

log = logging.getLogger(__name__)
#: the processes (os.getpid()) whose heap the first WanTaskTrigger.run() has frozen or chose not to; a forked child has
#: another pid, so it decides (and freezes) for itself
_heap_decided_in: set[int] = set()
_heap_lock = threading.Lock()


def freeze_heap_once() -> None:
    """
    Once per process, at the first WanTaskTrigger's start: ``gc.freeze()`` the heap
    (``[wan] freeze_heap_in_triggerer``, default True).

    Why: a triggerer's heap (Airflow, its modules, the triggers) is about 200,000 objects, and CPython 3.11 walks all of
    them in one full (generation 2) collection whenever the objects kept since the last one pass a quarter of it. A
    batch of triggers starting together creates that many: the walk stopped the triggerer's event loop for 130-160 ms
    on the benchmark machine (``benchmarks/RESULTS.md`` section 10c), holding every trigger of the process. Frozen
    objects are left out of every later collection, so those walk only what is newer. Airflow's DAG processor manager
    and its executors freeze their heaps the same way; its triggerer does not.

    Cost: the freeze itself takes well under a millisecond (a young-generation collection first, so that young garbage
    is not frozen: 0.2-0.4 ms measured); objects that existed at that moment and later become garbage *in a reference
    cycle* are never freed (objects freed by their reference count are freed as ever); none were in the benchmark.
    """
    pid = os.getpid()
    if pid in _heap_decided_in:
        return
    with _heap_lock:
        if pid in _heap_decided_in:
            return
        _heap_decided_in.add(pid)
    from airflow.providers.common.compat.sdk import conf

    try:
        freeze = conf.getboolean("wan", "freeze_heap_in_triggerer", fallback=True)
    except Exception:  # AirflowConfigException, which is no AirflowException on Airflow 3
        # not a boolean Airflow knows ("off", "no"...): most likely meant as off, and freezing is the unusual act
        log.warning("[wan] freeze_heap_in_triggerer is not true or false; the heap is not frozen")
        return
    if not freeze:
        return
    # young garbage (generations 0 and 1: a few thousand objects) is collected first rather than frozen; never a full
    # collection here, on the event loop: that walk is the very stall this avoids
    started = time.perf_counter()
    gc.collect(1)
    gc.freeze()
    # not gc.get_freeze_count() here: it walks the 200,000 frozen objects, 80-100 ms measured, on the event loop
    log.info(
        "Froze this process's heap in %.2f ms at the first WanTaskTrigger: the interpreter's full garbage "
        "collections skip what exists now and stop the event loop far less ([wan] freeze_heap_in_triggerer)",
        (time.perf_counter() - started) * 1000,
    )


class WanTaskTrigger(BaseTrigger):
    """
    Poll a DashScope task until it ends, the deadline passes or polling keeps failing; yield exactly one event.

    :param task_id: the DashScope task id (``output.task_id`` of the create call)
    :param wan_conn_id: the ``wan`` connection holding key and region (default ``wan_default``); the key itself is
        looked up where the trigger runs and never serialized
    :param poll_interval: seconds between two reads of the task (default 15, DashScope's suggestion; above 0 and at
        most 30 days, else :class:`~airflow_provider_wan.exceptions.WanInvalidInputError`)
    :param end_time: wall-clock deadline, Unix seconds (``time.time()``). Wall clock on purpose: the trigger is stored
        in the metadata database and may resume in another triggerer process or on another machine.
    :param cancel_on_timeout: when the deadline passes and the task is still PENDING (queued, not billed yet),
        cancel it before the "timeout" event (default True). A RUNNING task is never canceled (DashScope cannot).
    :param cancel_on_kill: cancel the task, if still PENDING, when a user kills the deferred Airflow task
        (default True). Sensors, which wait for somebody else's task, pass False.
    :param max_transient_failures: consecutive failed reads (timeouts, 429, 5xx) tolerated, with exponential
        backoff, before an "error" event (default 10; about 1.5-3 minutes of outage)
    :param first_poll_at: wall-clock time (Unix seconds) of the first read (default: at once). The deferring
        operator has just read the task, so reading again before one poll interval has passed only spends a
        request; a trigger resumed later (after a triggerer failover) is past this time and reads at once.
    :param retry_delay: seconds of the first backoff wait, doubled after each further failure up to 30 s
        (default 1.0); a longer Retry-After from DashScope wins
    :param kind: what kind of task it is (:func:`~airflow_provider_wan.hooks.schedule.task_kind`: model, resolution,
        duration). With it, reads are planned around when tasks of that kind ended in this triggerer
        (:class:`~airflow_provider_wan.hooks.schedule.PollSchedule`); without it (default), every ``poll_interval``
    :param checked: the deferring operator's own read of the task, as :meth:`checked_read` makes it (its status,
        ``submit_time``, ``scheduled_time`` and when it was read; default None). With ``kind``, the first read is
        planned from it like every later one, instead of one ``poll_interval`` after it (``first_poll_at``)
    """

    def __init__(
        self,
        *,
        task_id: str,
        wan_conn_id: str = WanHook.default_conn_name,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        end_time: float,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        max_transient_failures: int = DEFAULT_MAX_TRANSIENT_FAILURES,
        retry_delay: float = 1.0,
        first_poll_at: float | None = None,
        kind: str | None = None,
        checked: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Not ``self.task_id``: BaseTrigger owns that attribute and the triggerer overwrites it with the *Airflow*
        # task id when it attaches the task instance. The serialized kwarg keeps the API's name.
        self.wan_task_id = task_id
        self.wan_conn_id = wan_conn_id
        # refused here, where the deferring task builds the trigger, not in the triggerer's read loop it would spin
        self.poll_interval = check_wait_seconds("poll_interval", poll_interval, "the trigger was not started")
        self.end_time = float(end_time)
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.max_transient_failures = int(max_transient_failures)
        self.retry_delay = float(retry_delay)
        self.first_poll_at = None if first_poll_at is None else float(first_poll_at)
        self.kind = kind
        self.checked = dict(checked) if checked else None

    @staticmethod
    def checked_read(task: WanTask, read_at: float) -> dict[str, Any]:
        """What a deferring operator passes as ``checked``: status and times of its read, no URL, no prompt."""
        return {
            "status": task.status.value,
            "submit_time": task.submit_time,
            "scheduled_time": task.scheduled_time,
            "read_at": read_at,
        }

    def _checked_task(self) -> tuple[WanTask, float] | None:
        """The deferring operator's read (``checked``) and when it was made; None when absent or malformed."""
        checked = self.checked or {}
        read_at = checked.get("read_at")
        if isinstance(read_at, bool) or not isinstance(read_at, (int, float)):
            return None
        output = {
            "task_id": self.wan_task_id,
            "task_status": checked.get("status"),
            "submit_time": checked.get("submit_time"),
            "scheduled_time": checked.get("scheduled_time"),
        }
        return WanTask.from_response({"output": output}), float(read_at)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and kwargs: ids, intervals and the deadline only; no key, no URL."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "task_id": self.wan_task_id,
                "wan_conn_id": self.wan_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
                "max_transient_failures": self.max_transient_failures,
                "retry_delay": self.retry_delay,
                "first_poll_at": self.first_poll_at,
                "kind": self.kind,
                "checked": self.checked,
            },
        )

    async def _client(self) -> WanAsyncClient:
        # The hook's own retry loop is the one bound on consecutive transient failures: one read is retried with
        # backoff until it succeeds or the bound is spent, and a spent bound is the "error" event.
        policy = RetryPolicy(
            max_attempts=1 + max(0, self.max_transient_failures),
            base_delay=self.retry_delay,
            max_delay=MAX_BACKOFF_SECONDS,
        )
        return await WanAsyncClient.for_connection(self.wan_conn_id, retry_policy=policy)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until the task ends or the deadline passes; yield exactly one event, then return."""
        # before this process's first trigger allocates its long-lived state (client, schedule, coroutines)
        freeze_heap_once()
        task_id = self.wan_task_id
        polls = 0
        last: WanTask | None = None
        schedule = PollSchedule(interval=self.poll_interval, kind=self.kind)
        try:
            client = await self._client()
            checked = self._checked_task() if self.kind else None
            if checked is not None:
                # planned from the operator's own read, like every later read (min() with the deadline: a task is
                # always read at least once before a timeout event)
                await schedule.sleep(checked[0], checked[1], until=self.end_time)
            elif self.first_poll_at is not None:
                wait = min(self.first_poll_at, self.end_time) - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            while True:
                try:
                    task = await client.get_task(task_id, timeout=self._read_timeout())
                except WanTimeoutError:
                    # the deadline passed while DashScope answered slowly or kept failing: a timeout, not an error
                    yield TriggerEvent(self._unread_timeout_event(last, polls))
                    return
                except WanAuthError:
                    # the key this trigger started with may have been rotated since: the connection as it is now
                    # gets another read; the same key refused again is the (final) error event
                    renewed = await WanAsyncClient.renewed(self.wan_conn_id, client)
                    if renewed is None:
                        raise
                    self.log.info(
                        "DashScope refused the key of connection %r this trigger started with; the connection has "
                        "changed since, so DashScope task %s is read again with it",
                        self.wan_conn_id,
                        task_id,
                    )
                    client = renewed
                    continue
                polls += 1
                last = task
                read_at = time.time()
                remaining = self.end_time - read_at
                if task.status.is_terminal():
                    schedule.learn(task)
                    self.log.info("DashScope task %s is %s (poll %d)", task_id, task.status.value, polls)
                    yield TriggerEvent(_terminal_event(task, polls))
                    return
                if remaining <= 0:
                    yield TriggerEvent(await self._timeout_event(client, task, polls))
                    return
                self.log.info(
                    "DashScope task %s is %s (poll %d; next in %.1f s, deadline in %.0f s)",
                    task_id,
                    task.status.value,
                    polls,
                    min(schedule.next_gap(task, read_at), remaining),
                    remaining,
                )
                # the last sleep ends at the deadline, so a task that finishes just in time is still read once more
                await schedule.sleep(task, read_at, until=self.end_time)
        except WanError as error:
            # transient failures beyond the bound (WanRetryableError), a bad key or region, an unknown connection
            self.log.error("Waiting for DashScope task %s failed after %d polls: %s", task_id, polls, error)
            yield TriggerEvent(_error_event(task_id, polls, error))
        except Exception as exc:
            # never die without an event; and never put a library's text in it (an aiohttp repr holds the key)
            self.log.error(
                "Waiting for DashScope task %s failed after %d polls: unexpected %s", task_id, polls, type(exc).__name__
            )
            unexpected = WanRetryableError(
                f"Polling DashScope task {task_id} failed unexpectedly ({type(exc).__name__}); a retry of the Airflow "
                "task re-attaches to it",
                task_id=task_id,
            )
            yield TriggerEvent(_error_event(task_id, polls, unexpected))
        finally:
            # however the wait ended (an event, a cancel, a triggerer shutting down): no place in the queue any more
            schedule.forget()

    def _grace(self) -> float:
        """Seconds a call past the deadline, or one call of a kill, may take (see LAST_READ_GRACE_SECONDS)."""
        return min(self.poll_interval, LAST_READ_GRACE_SECONDS)

    def _read_timeout(self) -> float:
        return max(0.0, self.end_time - time.time()) + self._grace()

    def _unread_timeout_event(self, last: WanTask | None, polls: int) -> dict[str, Any]:
        task_id = self.wan_task_id
        status = last.status.value if last is not None else None
        message = (
            f"DashScope task {task_id} was not seen to end before the deadline: its last read got no whole answer "
            f"in time (last known status: {status or 'never read'}). It was not canceled; a retry of the Airflow task "
            "re-attaches to it"
        )
        self.log.warning(message)
        return {
            "status": "timeout",
            "task_id": task_id,
            "message": message,
            "polls": polls,
            "task_status": status,
            "canceled": False,
            "error": WanTimeoutError(message, task_id=task_id).to_dict(),
        }

    async def _timeout_event(self, client: WanAsyncClient, task: WanTask, polls: int) -> dict[str, Any]:
        task_id = self.wan_task_id
        canceled = False
        if task.status is TaskStatus.PENDING and self.cancel_on_timeout:
            # still queued: nothing generated and nothing billed yet, so stop it rather than pay for an orphan
            # bounded like the read at the deadline: a server trickling its answer cannot hold the event
            canceled = await self._cancel(client, timeout=self._read_timeout())
        if canceled:
            what = "was still PENDING and has been canceled; a retry submits a new task"
        else:
            what = (
                f"is still {task.status.value}; it was not canceled and a retry of the Airflow task re-attaches to it"
            )
        message = f"DashScope task {task_id} did not end before the deadline: it {what}"
        self.log.warning(message)
        error = WanTimeoutError(message, task_id=task_id, request_id=task.request_id)
        return {
            "status": "timeout",
            "task_id": task_id,
            "message": message,
            "polls": polls,
            "task_status": "CANCELED" if canceled else task.status.value,
            "canceled": canceled,
            "error": error.to_dict(),
        }

    async def _cancel(self, client: WanAsyncClient, *, timeout: float) -> bool:
        """
        Cancel the task within ``timeout`` seconds; False (logged) when DashScope refuses, e.g. because it started
        meanwhile, or gives no answer in time.
        """
        try:
            await client.cancel_task(self.wan_task_id, timeout=timeout)
        except WanError as error:
            self.log.warning("Could not cancel DashScope task %s: %s", self.wan_task_id, error)
            return False
        self.log.info("Canceled DashScope task %s (it was still PENDING)", self.wan_task_id)
        return True

    async def on_kill(self) -> None:
        """
        Cancel the task, if still PENDING, when a user kills the deferred Airflow task (Airflow 3.3+).

        Not called when the triggerer restarts or hands the trigger over: the task then simply keeps running.
        DashScope cannot cancel a RUNNING task; it finishes and is billed either way.
        """
        if not self.cancel_on_kill:
            return
        # the read and the cancel each get the grace of the read at the deadline: a kill ends soon, whatever the
        # server does (a read held for minutes would hold the kill)
        try:
            client = await self._client()
            task = await client.get_task(self.wan_task_id, timeout=self._grace())
        except WanError as error:
            self.log.warning("on_kill: could not read DashScope task %s: %s", self.wan_task_id, error)
            return
        if task.status is TaskStatus.PENDING:
            await self._cancel(client, timeout=self._grace())
        else:
            self.log.info(
                "on_kill: DashScope task %s is %s; only PENDING tasks can be canceled",
                self.wan_task_id,
                task.status.value,
            )


def _error_event(task_id: str, polls: int, error: WanError) -> dict[str, Any]:
    return {
        "status": "error",
        "task_id": task_id,
        "message": f"Polling DashScope task {task_id} failed: {error}",
        "polls": polls,
        "error": error.to_dict(),
    }


def _terminal_event(task: WanTask, polls: int) -> dict[str, Any]:
    status = _TERMINAL_EVENT_STATUS[task.status]
    event: dict[str, Any] = {
        "status": status,
        "task_id": task.task_id,
        "polls": polls,
        # to_result() drops the URL's query string: the signature is a bearer secret and events are stored in the DB
        "result": task.to_result(),
    }
    if status == "success":
        event["message"] = f"DashScope task {task.task_id} SUCCEEDED"
        return event
    try:
        task.raise_for_status()
    except WanError as error:
        event["message"] = error.message
        event["error"] = error.to_dict()
    return event


# --- the event, back in the worker ------------------------------------------------------------------------------
def _error_from_dict(data: Any, fallback_message: str, task_id: str | None) -> WanError:
    """Rebuild a provider error from ``WanError.to_dict()``: the same class, so final stays final."""
    data = data if isinstance(data, Mapping) else {}
    cls = getattr(wan_exceptions, str(data.get("error_class") or ""), None)
    if not (isinstance(cls, type) and issubclass(cls, WanError)):
        # an event from another provider version, or a garbled one: retryable, since a retry re-attaches
        cls = WanRetryableError
    # every field as the error classes hold it (a garbled event's may be anything, of any size); the task is the
    # event's own, already checked
    http_status = data.get("http_status")
    return cls(
        clean_text(data.get("message"), 2000) or fallback_message,
        http_status=http_status if isinstance(http_status, int) and not isinstance(http_status, bool) else None,
        code=dashscope_code(data.get("code")),
        request_id=clean_text(data.get("request_id"), 100),
        task_id=task_id,
    )


def _invalid(event: Any, why: str) -> WanRetryableError:
    # the status as a cleaned, short text: a garbled event's field may be anything, of any size
    status = clean_text(repr(event.get("status")), 80) if isinstance(event, Mapping) else None
    shown = f"a dict with status {status}" if isinstance(event, Mapping) else type(event).__name__
    return WanRetryableError(
        f"Invalid event from WanTaskTrigger ({why}; got {shown}). Expected a dict with 'status' in "
        f"{', '.join(sorted(EVENT_STATUSES))} and a 'task_id'. A retry of this Airflow task re-attaches to the "
        "DashScope task."
    )


def task_from_event(event: Any) -> WanTask:
    """
    Validate a :class:`WanTaskTrigger` event; return the SUCCEEDED task or raise what the sync path raises.

    ``failed`` raises :func:`~airflow_provider_wan.exceptions.error_for_task_failure`'s class for the task's code
    (``DataInspectionFailed`` final, ``InternalError*`` retryable), ``expired`` raises
    :class:`~airflow_provider_wan.exceptions.WanResultExpiredError`, ``canceled``
    :class:`~airflow_provider_wan.exceptions.WanTaskCanceledError`, ``timeout``
    :class:`~airflow_provider_wan.exceptions.WanTimeoutError` (retryable: a retry re-attaches) and ``error`` the
    error class the trigger met (an auth error stays final, exhausted transient failures stay retryable).

    :raises WanRetryableError: for a missing or malformed event, or one whose result is about another task
    """
    if not isinstance(event, Mapping):
        raise _invalid(event, "no event" if event is None else "not a dict")
    status = event.get("status")
    task_id = event.get("task_id")
    if status not in EVENT_STATUSES:
        raise _invalid(event, f"unknown status {clean_text(repr(status), 80)}")
    if not isinstance(task_id, str) or not TASK_ID_PATTERN.fullmatch(task_id):
        raise _invalid(event, "no task_id" if not task_id else "a task_id that is no DashScope task id")
    if status in ("success", "failed", "canceled", "expired"):
        result = event.get("result")
        if not isinstance(result, Mapping):
            raise _invalid(event, "no result")
        # the result names the task it describes: another task's result is not this one's video
        named = task_id_of(result)
        if named and named != task_id:
            raise _invalid(event, f"its result is about another task ({clean_text(named, 80)}), not {task_id}")
        task = WanTask.from_result({**result, "wan_task_id": task_id})
        expected = {"success": "SUCCEEDED", "failed": "FAILED", "canceled": "CANCELED", "expired": "UNKNOWN"}[status]
        if task.status.value != expected:
            raise _invalid(event, f"result says {task.status.value}, not {expected}")
        # the same raise_for_status the worker's wait uses: same classes, same messages
        task.raise_for_status()
        return task
    message = clean_text(event.get("message"), 2000) or f"WanTaskTrigger reported {status} for DashScope task {task_id}"
    if status == "timeout":
        raise WanTimeoutError(message, task_id=task_id)
    raise _error_from_dict(event.get("error"), message, task_id)
