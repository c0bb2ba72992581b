"""
When to read a task next: sparse while it cannot be done yet, dense around when it is likely to end.

A fixed ``poll_interval`` of 15 s spends four reads per minute of generation and still notices the end 7.5 s late on
average; the SDK's ``wait()`` reads every 5 s and notices it 2.5 s late, for three times the reads. Neither uses
what is known: a task of a given kind (model, resolution, duration) takes about as long as the last ones of that kind
did, and its ``scheduled_time`` says when it started running. So:

* no estimate yet (the first tasks of a kind in this process, a task without ``scheduled_time``): the configured
  interval, as before;
* PENDING: the task cannot end sooner than the shortest likely run after it starts, and it has not started, so the
  next read waits that long (queue position is not published; this bound is);
* RUNNING: expected end = ``scheduled_time`` + the mean run of its kind. Before the window of likely ends (mean +- 2
  standard deviations) opens, the next read is when it opens; inside it, each gap is half the distance to the
  expected end, but at least a quarter of a standard deviation (or a fifth of the configured interval, if less):
  densest where ends are likeliest, growing after it (a slow one) back to the configured interval.

Gaps are at least :data:`MIN_GAP` and at most :data:`MAX_GAP_FACTOR` times the configured interval; the estimate only
ever comes from tasks this process saw end (``end_time - scheduled_time``), the last :data:`HISTORY_SIZE` of each kind.
One schedule serves the worker's wait (:meth:`WanHook.wait_for_task`) and the trigger.
"""

from __future__ import annotations

import collections
import statistics
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_wan.hooks.wan import WanTask

#: shortest gap between two reads of one task, seconds
MIN_GAP = 1.0
#: near the expected end, reads come at least this many times per configured interval (however wide the spread)
DENSE_FRACTION = 5.0
#: longest gap, as a multiple of the configured interval (only taken while the task cannot be done yet)
MAX_GAP_FACTOR = 4.0
#: runs remembered per kind
HISTORY_SIZE = 50
#: below this many runs of a kind, the spread is taken as at least :data:`YOUNG_SPREAD` of the mean
CONFIDENT_AFTER = 5
YOUNG_SPREAD = 0.1
#: the spread is never taken as less than this fraction of the mean run (clock rounding, unseen variation)
MIN_SPREAD = 0.03
# DashScope reports task times in UTC+8 (Beijing), whatever the region.
_UTC8 = timezone(timedelta(hours=8))


def task_kind(model: str, resolution: Any = None, duration: Any = None) -> str:
    """The key runs are learned under: tasks of one kind take about as long as each other."""
    return f"{model}/{resolution or '-'}/{duration or '-'}"


def parse_task_time(text: str | None) -> float | None:
    """DashScope's ``YYYY-MM-DD HH:MM:SS.mmm`` (UTC+8) as Unix seconds; None when absent or unreadable."""
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=_UTC8).timestamp()
        except ValueError:
            continue
    return None


@dataclass
class RunHistory:
    """Seconds the tasks of each kind ran (``end_time - scheduled_time``), as this process saw them end."""

    runs: dict[str, collections.deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, kind: str, task: WanTask) -> None:
        start, end = parse_task_time(task.scheduled_time), parse_task_time(task.end_time)
        if start is None or end is None or end <= start:
            return
        with self._lock:
            self.runs.setdefault(kind, collections.deque(maxlen=HISTORY_SIZE)).append(end - start)

    def estimate(self, kind: str) -> tuple[float, float] | None:
        """Mean run and its spread (standard deviation, with floors) in seconds; None before the first run."""
        with self._lock:
            runs = list(self.runs.get(kind, ()))
        if not runs:
            return None
        mean = statistics.fmean(runs)
        spread = statistics.pstdev(runs) if len(runs) > 1 else 0.0
        floor = YOUNG_SPREAD if len(runs) < CONFIDENT_AFTER else MIN_SPREAD
        return mean, max(spread, floor * mean, MIN_GAP)


#: what this process has seen, shared by every trigger of a triggerer and every wait of a worker
HISTORY = RunHistory()


@dataclass
class PollSchedule:
    """
    Gaps between the reads of one task.

    :param interval: the configured ``poll_interval`` in seconds: used when nothing better is known, and the gap
        that slow tasks return to
    :param kind: :func:`task_kind` of the task (None: always ``interval``)
    :param history: where runs are learned (default: the process's :data:`HISTORY`)
    """

    interval: float
    kind: str | None = None
    history: RunHistory = field(default_factory=lambda: HISTORY)

    def next_gap(self, task: WanTask, now: float) -> float:
        """Seconds from ``now`` (Unix) until the next read of ``task``, which was just read and is not finished."""
        from airflow_provider_wan.hooks.wan import TaskStatus

        estimate = self.history.estimate(self.kind) if self.kind else None
        if estimate is None:
            return self.interval
        mean, spread = estimate
        shortest = max(0.0, mean - 2 * spread)
        if task.status is TaskStatus.PENDING:
            return self._clamp(shortest)
        started = parse_task_time(task.scheduled_time)
        if task.status is not TaskStatus.RUNNING or started is None:
            return self.interval
        to_end = started + mean - now
        window = 2 * spread
        if to_end > window:
            # it cannot be done before the window of likely ends opens: next read when it does
            return self._clamp(to_end - window)
        # in the window: gaps shrink towards the expected end and grow after it, so reads are densest where ends
        # are likeliest; a slow one backs off to the configured interval
        dense = min(spread / 4, self.interval / DENSE_FRACTION)
        return min(self.interval, max(MIN_GAP, dense, abs(to_end) / 2))

    def learn(self, task: WanTask) -> None:
        """Remember how long a SUCCEEDED task ran, for the next tasks of its kind."""
        if self.kind:
            self.history.record(self.kind, task)

    def _clamp(self, gap: float) -> float:
        return min(max(gap, MIN_GAP), self.interval * MAX_GAP_FACTOR)
