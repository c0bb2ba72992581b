"""
The simulator's state, without HTTP: tasks, their planned lifecycle, rate limits, armed faults and counters.

Statuses are never stored: each task's start and end instants are planned when it is created (queueing behind the
model's concurrency limit), and its status is read off the clock. So a thousand tasks cost a thousand small records
and no timers. Everything here runs on the server's event loop thread only, hence no locks.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_provider_wan.models import WanModel

from ._config import Fault, SimulatorConfig

__all__ = ["SimulatorState", "TaskRecord", "format_time"]

# DashScope reports task times in UTC+8 (Beijing), whatever the region.
UTC8 = timezone(timedelta(hours=8), "UTC+8")
# Purging expired tasks walks the oldest records; doing it at most this often keeps a burst of polls cheap.
_PURGE_INTERVAL = 1.0


def format_time(ts: float) -> str:
    """``YYYY-MM-DD HH:mm:ss.SSS`` in UTC+8, DashScope's task time format."""
    moment = datetime.fromtimestamp(ts, UTC8)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def parse_list_time(text: str) -> float:
    """``YYYYMMDDhhmmss`` (UTC+8, the task list's filter format) -> Unix seconds; ValueError if malformed."""
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC8).timestamp()


@dataclass(eq=False)
class TaskRecord:
    """One created task, with its planned lifecycle (Unix seconds) and what the result will be."""

    task_id: str
    model: WanModel
    #: the model name as sent (an alias stays an alias)
    model_name: str
    endpoint: str
    #: input and parameters as received (long data URIs shortened, see SimulatorState.create_task)
    input: dict[str, Any]
    parameters: dict[str, Any]
    created: float
    #: scaled durations fixed at creation: minimum PENDING time and RUNNING time
    pending_s: float
    generation_s: float
    #: the prompt after DashScope-style truncation, and its "extended" rewrite (None when not returned)
    prompt: str | None
    actual_prompt: str | None
    width: int
    height: int
    duration: int
    audio: bool
    size: str | None
    tier: str
    #: SUCCEEDED, FAILED or UNKNOWN: what the task turns into when it ends
    outcome: str = "SUCCEEDED"
    fail_code: str | None = None
    fail_message: str | None = None
    start: float = 0.0
    end: float = 0.0
    canceled_at: float | None = None
    #: the request's media the video shows (see _drawing.py); None: the plain moving-bar video
    drawing: Any = None
    #: seconds of input video the request gave (usage.input_video_duration on models that bill it)
    input_seconds: float = 0.0

    @property
    def slot_end(self) -> float:
        """When the task stops occupying a concurrency slot (an UNKNOWN task vanishes half-way through)."""
        if self.outcome == "UNKNOWN":
            return self.start + self.generation_s / 2
        return self.end

    def status(self, now: float) -> str:
        if self.canceled_at is not None:
            return "CANCELED"
        if now < self.start:
            return "PENDING"
        if now >= self.slot_end and self.outcome == "UNKNOWN":
            return "UNKNOWN"
        if now < self.end:
            return "RUNNING"
        return self.outcome


class SlidingWindow:
    """Admits at most ``limit`` events in any 1-second window (a refused event does not count)."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()

    def admit(self, now: float, limit: int) -> bool:
        while self._times and self._times[0] <= now - 1.0:
            self._times.popleft()
        if len(self._times) >= limit:
            return False
        self._times.append(now)
        return True


@dataclass
class Stats:
    """What was asked of the simulator, for tests to assert on (admin requests are not counted)."""

    requests: Counter[str] = field(default_factory=Counter)
    paths: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    by_route: dict[str, Counter[str]] = field(default_factory=dict)
    faults_fired: Counter[str] = field(default_factory=Counter)
    tasks_created: int = 0
    bytes_sent: int = 0

    def record(self, route: str, path_key: str, status: str) -> None:
        self.requests[route] += 1
        self.paths[path_key] += 1
        self.statuses[status] += 1
        self.by_route.setdefault(route, Counter())[status] += 1


class SimulatorState:
    """Tasks, limits, faults and counters of one simulator; the HTTP layer (server.py) drives it."""

    def __init__(self, config: SimulatorConfig, faults: Iterable[Fault] = ()) -> None:
        self.initial_config = config
        self.config = config
        self.tasks: dict[str, TaskRecord] = {}
        self.faults: list[Fault] = list(faults)
        self.stats = Stats()
        self._slots: dict[str, list[float]] = {}
        self._create_windows: dict[str, SlidingWindow] = {}
        self._query_windows: dict[str, SlidingWindow] = {}
        self._last_purge = 0.0

    # --- configuration -----------------------------------------------------------------------------------------
    def configure(self, **options: Any) -> SimulatorConfig:
        old = self.config
        self.config = SimulatorConfig.from_options(old, **options)
        if self.config.max_concurrent_tasks != old.max_concurrent_tasks:
            now = time.time()
            for group in {t.model.name for t in self.tasks.values()}:
                self._replan(group, now)
        return self.config

    def reset(self) -> None:
        """Back to the start-up configuration, with no task, no fault, no counter and no rate history."""
        self.config = self.initial_config
        self.tasks.clear()
        self.faults.clear()
        self.stats = Stats()
        self._slots.clear()
        self._create_windows.clear()
        self._query_windows.clear()

    # --- limits ------------------------------------------------------------------------------------------------
    def concurrency_limit(self, model: WanModel) -> int:
        """Tasks of ``model`` allowed to run at once; 0 = unlimited."""
        override = self.config.max_concurrent_tasks
        return model.max_concurrent_tasks if override is None else override

    def admit_create(self, model: WanModel, now: float) -> bool:
        override = self.config.create_rps
        limit = model.create_rps if override is None else override
        if not limit:
            return True
        return self._create_windows.setdefault(model.name, SlidingWindow()).admit(now, limit)

    def admit_query(self, api_key: str, now: float) -> bool:
        limit = self.config.task_query_qps
        if not limit:
            return True
        return self._query_windows.setdefault(api_key, SlidingWindow()).admit(now, limit)

    # --- faults ------------------------------------------------------------------------------------------------
    def take_fault(self, route: str, kinds: Iterable[str]) -> Fault | None:
        """The first armed fault of one of ``kinds`` for ``route``, consumed once (removed when spent)."""
        kinds = tuple(kinds)
        for fault in self.faults:
            if fault.matches(route, kinds):
                if fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                self.stats.faults_fired[fault.kind] += 1
                return fault
        return None

    def aged_by(self, task: TaskRecord, now: float) -> float:
        """
        Seconds the task's times are reported older than they are: while an ``expired`` download fault is armed,
        a finished task reads as ended ``link_ttl_seconds`` and an hour ago (an expired link belongs to a task that
        ended that long ago); else 0. Its link's ``Expires`` is not moved: the fault answers the 403.
        """
        if task.end > now or not any(fault.kind == "expired" for fault in self.faults):
            return 0.0
        return max(0.0, task.end - (now - self.config.link_ttl_seconds - 3600.0))

    # --- tasks -------------------------------------------------------------------------------------------------
    def create_task(
        self,
        *,
        model: WanModel,
        model_name: str,
        endpoint: str,
        input_: Mapping[str, Any],
        parameters: Mapping[str, Any],
        prompt: str | None,
        actual_prompt: str | None,
        width: int,
        height: int,
        duration: int,
        audio: bool,
        size: str | None,
        tier: str,
        now: float,
    ) -> TaskRecord:
        config = self.config
        task = TaskRecord(
            task_id=str(uuid.uuid4()),
            model=model,
            model_name=model_name,
            endpoint=endpoint,
            input=_shorten_data_uris(input_),
            parameters=dict(parameters),
            created=now,
            pending_s=config.pending_seconds * config.time_scale,
            generation_s=config.generation_seconds * config.time_scale,
            prompt=prompt,
            actual_prompt=actual_prompt,
            width=width,
            height=height,
            duration=duration,
            audio=audio,
            size=size,
            tier=tier,
        )
        fault = self.take_fault("create", ("task_fail", "task_unknown"))
        if fault is not None and fault.kind == "task_fail":
            task.outcome = "FAILED"
            task.fail_code = fault.code
            task.fail_message = fault.error_message()
        elif fault is not None:
            task.outcome = "UNKNOWN"
        self._plan(task, now)
        self.tasks[task.task_id] = task
        self.stats.tasks_created += 1
        return task

    def _plan(self, task: TaskRecord, now: float) -> None:
        """Give a new task its start/end: FIFO behind the model's running tasks (a heap of slot-free instants)."""
        earliest = task.created + task.pending_s
        limit = self.concurrency_limit(task.model)
        if not limit:
            free = earliest
        else:
            slots = self._slots.setdefault(task.model.name, [])
            # a lowered limit leaves more running tasks than slots: the next start waits for the surplus to end
            while len(slots) > limit:
                heapq.heappop(slots)
            free = now if len(slots) < limit else heapq.heappop(slots)
        task.start = max(earliest, free)
        task.end = task.start + task.generation_s
        if limit:
            heapq.heappush(self._slots[task.model.name], task.slot_end)

    def _replan(self, group: str, now: float) -> None:
        """Re-plan the not-yet-started tasks of one model (after a cancel or a change of the concurrency limit)."""
        live = [t for t in self.tasks.values() if t.model.name == group and t.canceled_at is None and t.slot_end > now]
        running = [t for t in live if t.start <= now]
        self._slots[group] = [t.slot_end for t in running]
        heapq.heapify(self._slots[group])
        for task in live:
            if task.start > now:
                self._plan(task, now)

    def get_task(self, task_id: str, now: float) -> TaskRecord | None:
        """The task, or None when it never existed or has expired (both read UNKNOWN)."""
        self.purge(now)
        task = self.tasks.get(task_id)
        if task is not None and now >= task.created + self.config.task_ttl_seconds:
            return None
        return task

    def cancel(self, task: TaskRecord, now: float) -> bool:
        """Cancel a PENDING task (True); any other status cannot be canceled (False)."""
        if task.status(now) != "PENDING":
            return False
        task.canceled_at = now
        task.end = now
        self._replan(task.model.name, now)
        return True

    def purge(self, now: float, force: bool = False) -> None:
        """Drop records older than the TTL. Records are in creation order, so this pops from the oldest end."""
        if not force and now - self._last_purge < _PURGE_INTERVAL:
            return
        self._last_purge = now
        horizon = now - self.config.task_ttl_seconds
        while self.tasks:
            oldest = next(iter(self.tasks.values()))
            if oldest.created > horizon:
                break
            del self.tasks[oldest.task_id]

    def live_tasks(self, now: float) -> list[TaskRecord]:
        self.purge(now, force=True)
        return list(self.tasks.values())


def _shorten_data_uris(value: Any) -> Any:
    """A copy of a JSON value with base64 data URIs cut short: 1,000 kf2v tasks must not keep 1,000 images."""
    if isinstance(value, str) and value.startswith("data:") and len(value) > 200:
        head, _, body = value.partition(",")
        return f"{head},<{len(body)} base64 characters>"
    if isinstance(value, Mapping):
        return {k: _shorten_data_uris(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shorten_data_uris(v) for v in value]
    return value
