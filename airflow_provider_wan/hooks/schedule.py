"""
When to read a task next: sparse while it cannot be done yet, at an even pace across the window where it is likely
to end, sparse again after it.

A fixed ``poll_interval`` of 15 s spends four reads per minute of generation and notices the end 7.5 s late on
average; the SDK's ``wait()`` reads every 5 s (after a denser first 20 s) and notices it about 2.5 s late, for three
times the reads. Neither uses what is known: a task of a given kind (model, resolution, duration) takes about as long
as the last ones of that kind did, and its ``scheduled_time`` says when it started running. So:

* no estimate yet (no task of the kind seen to end in this process, or a task without ``scheduled_time``): the
  configured interval. A trigger asleep on it is woken when a run of its kind is learned while the estimate is young
  (:meth:`PollSchedule.sleep`): the rest of a batch plans from the first of its videos to end;
* PENDING: DashScope publishes no queue position, but this process knows the tasks of the kind it waits for: when
  each was submitted (``submit_time``) and when the running ones started (``scheduled_time``). With the model's
  concurrency from the catalogue, the soonest the task can start is its place in DashScope's first-in, first-out
  queue if every task ahead ran the shortest likely run (mean - :data:`WINDOW_SPREADS` standard deviations); the next
  read is that start plus a shortest run: the soonest it can be done. Tasks this process does not see (other
  triggerers, other clients) only make the real start later, so the bound holds;
* RUNNING: the window of likely ends is ``scheduled_time`` + the mean run of the kind +- :data:`WINDOW_SPREADS`
  standard deviations. Before it opens, the next read is when it opens; inside it, a read every
  ``poll_interval / DENSE_FRACTION`` seconds (3 s at the default 15 s); after it closes (a slow one), each gap is a
  quarter of the time since it closed, back up to the configured interval.

Why an even pace, and why denser than the SDK's 5 s: ends are about equally likely across the middle of a
bell-shaped spread, so gaps that shrink towards the mean (the previous plan) left its flanks under-read; and the
first videos of a kind (nothing learned yet) and the few that end outside the window are noticed later than the
SDK would, which the window's reads must make up for on average. The constants were chosen on a model of a batch
(20 videos, 5 running at once, runs spread 10%, normal and lognormal, many seeds: ``tests/unit/test_schedule.py``
runs one); ``benchmarks/poll_efficiency.py`` measures the result against the SDK on the simulator.

Gaps are at least :data:`MIN_GAP` and at most :data:`MAX_GAP_FACTOR` times the configured interval; the estimate only
ever comes from tasks this process saw end (``end_time - scheduled_time``), the last :data:`HISTORY_SIZE` of each kind.
One schedule serves the worker's wait (:meth:`WanHook.wait_for_task`) and the trigger.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.models import get_model

if TYPE_CHECKING:
    from airflow_provider_wan.hooks.wan import WanTask

#: shortest gap between two reads of one task, seconds
MIN_GAP = 1.0
#: inside the window of likely ends, a read every ``poll_interval / DENSE_FRACTION`` seconds
DENSE_FRACTION = 5.0
#: the window of likely ends: the mean run +- this many standard deviations (95% of a normal spread)
WINDOW_SPREADS = 2.0
#: past the window, the next read comes after this fraction of the time since the window closed
LATE_GROWTH = 0.25
#: longest gap, as a multiple of the configured interval (only taken while the task cannot be done yet)
MAX_GAP_FACTOR = 8.0
#: runs remembered per kind
HISTORY_SIZE = 50
#: below this many runs of a kind, the spread is taken as at least :data:`YOUNG_SPREAD` of the mean, and every new
#: run wakes the sleeping triggers of the kind to plan again
CONFIDENT_AFTER = 10
YOUNG_SPREAD = 0.1
#: sleepers woken per event-loop iteration when a run is learned (each re-plans, which reads the kind's queue)
WAKE_BATCH = 50
#: the spread is never taken as less than this fraction of the mean run (clock rounding, unseen variation)
MIN_SPREAD = 0.03
# DashScope reports task times in UTC+8 (Beijing), whatever the region.
_UTC8 = timezone(timedelta(hours=8))
#: the longest ``timeout`` and poll interval taken, in seconds (30 days): far past any generation (DashScope keeps a
#: task's record 24 hours after it ends), and a deadline every Airflow version and database can store
MAX_WAIT_SECONDS = 30 * 24 * 3600.0
#: Most seconds past a wait's deadline the read at the deadline may take (and at most one poll interval). Every read
#: of a wait, in the triggerer or in the worker, is bounded by the deadline (a server trickling its answer byte by byte
#: cannot hold the wait), the last sleep ends at the deadline, and the read there gets this little more so that a task
#: finishing just in time is still seen. A trigger's cancel at the deadline and a kill's read and cancel get one grace
#: each.
LAST_READ_GRACE_SECONDS = 10.0


def check_wait_seconds(name: str, value: Any, then: str) -> float:
    """
    The one rule for a wait's ``timeout`` and for the seconds between two reads of a task (``poll_interval``,
    a sensor's ``poke_interval``): a number of seconds above 0 and at most :data:`MAX_WAIT_SECONDS`.

    Refused: 0 or less (a wait that can only time out; reads in a tight loop, which the hook's pacer keeps off the
    account but not off the worker or the triggerer), NaN (compares false to every bound), infinity and anything
    past 30 days (a deferral's deadline, now + timeout, overflows the database's dates). Fractions of a second are
    taken: DashScope suggests 15 s and the SDK's ``wait()`` reads every 1 to 5 s, but tests and demos poll the local
    simulator every 0.1 to 0.5 s.

    :param name: the parameter, as the user wrote it (the error names it)
    :param value: its value
    :param then: the end of the error's sentence: what was (not) done, or what to do instead
    :return: ``value`` as a float
    :raises WanInvalidInputError: naming ``name``, what is allowed and what was given
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_WAIT_SECONDS:
        raise WanInvalidInputError(
            f"{name}: must be a number of seconds above 0 and at most {MAX_WAIT_SECONDS:.0f} (30 days), got "
            f"{value!r}; {then}"
        )
    return float(value)


def task_kind(model: str, resolution: Any = None, duration: Any = None) -> str:
    """The key runs are learned under: tasks of one kind take about as long as each other."""
    return f"{model}/{resolution or '-'}/{duration or '-'}"


def kind_model(kind: str) -> str:
    """The model of a :func:`task_kind` (model names may hold a ``/``; resolution and duration do not)."""
    return kind.rsplit("/", 2)[0]


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
class _Waiting:
    """A task this process waits for, as last read: its place in DashScope's queue."""

    submitted: float
    started: float | None
    #: forgotten after this (Unix seconds): a wait that ended without saying so must not hold a place forever
    expires: float


@dataclass
class RunHistory:
    """
    Seconds the tasks of each kind ran (``end_time - scheduled_time``), as this process saw them end; and the tasks
    of each kind it waits for now (their queue).
    """

    runs: dict[str, collections.deque[float]] = field(default_factory=dict)
    waiting: dict[str, dict[str, _Waiting]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: sleeping triggers to wake when a young kind learns a run: kind -> futures (each with its own loop)
    _sleepers: dict[str, set[asyncio.Future[None]]] = field(default_factory=dict, repr=False)

    def record(self, kind: str, task: WanTask) -> None:
        start, end = parse_task_time(task.scheduled_time), parse_task_time(task.end_time)
        if start is None or end is None or end <= start:
            return
        with self._lock:
            runs = self.runs.setdefault(kind, collections.deque(maxlen=HISTORY_SIZE))
            runs.append(end - start)
            # a young estimate moves a lot with each run (the first one turns the fallback interval into a plan):
            # the tasks of the kind asleep on the old plan plan again; a confident one moves too little to matter
            sleepers = self._sleepers.pop(kind, set()) if len(runs) <= CONFIDENT_AFTER else set()
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for future in sleepers:
            by_loop.setdefault(future.get_loop(), []).append(future)
        for loop, futures in by_loop.items():
            loop.call_soon_threadsafe(_wake, futures)

    def estimate(self, kind: str) -> tuple[float, float] | None:
        """Mean run and its spread (standard deviation, with floors) in seconds; None before the first run."""
        with self._lock:
            runs = list(self.runs.get(kind, ()))
        if not runs:
            return None
        mean = statistics.fmean(runs)
        floor = YOUNG_SPREAD if len(runs) < CONFIDENT_AFTER else MIN_SPREAD
        return mean, max(statistics.stdev(runs) if len(runs) > 1 else 0.0, floor * mean, MIN_GAP)

    def see(self, kind: str, task: WanTask, now: float, keep: float) -> None:
        """Note a read of a task still waited for (for ``keep`` seconds at least)."""
        submitted = parse_task_time(task.submit_time)
        if submitted is None or not task.task_id:
            return
        entry = _Waiting(submitted, parse_task_time(task.scheduled_time), now + keep)
        with self._lock:
            self.waiting.setdefault(kind, {})[task.task_id] = entry

    def forget(self, kind: str, task_id: str) -> None:
        """The wait for ``task_id`` is over: it no longer holds a place in the queue."""
        with self._lock:
            waiting = self.waiting.get(kind)
            if waiting is not None:
                waiting.pop(task_id, None)
                if not waiting:
                    del self.waiting[kind]

    def earliest_start(self, kind: str, task: WanTask, now: float, shortest: float, slots: int) -> float:
        """
        The soonest a PENDING ``task`` can start: FIFO behind the tasks of its kind this process waits for, on
        ``slots`` running at once, every task ahead running ``shortest`` seconds. ``now`` when nothing is known.
        """
        submitted = parse_task_time(task.submit_time)
        if submitted is None or slots < 1:
            return now
        with self._lock:
            waiting = self.waiting.get(kind, {})
            for task_id in [t for t, e in waiting.items() if e.expires < now]:
                del waiting[task_id]
            others = [(e, t) for t, e in waiting.items() if t != task.task_id]
        running = [e.started for e, _ in others if e.started is not None]
        # the slots free up when the running tasks end, at the soonest a shortest run after they started
        free = [max(now, started + shortest) for started in running] + [now] * max(0, slots - len(running))
        heapq.heapify(free)
        ahead = sum(1 for e, t in others if e.started is None and (e.submitted, t) < (submitted, task.task_id))
        # the first tasks ahead one by one; past a few rounds of the slots a bound does (a big batch stays cheap):
        # of the rest and ours, some slot serves ceil((rest + 1) / slots), ours last, each a shortest run after the
        # previous one
        steps = min(ahead, 4 * slots)
        for _ in range(steps):
            heapq.heappush(free, heapq.heappop(free) + shortest)
        rest = ahead - steps
        return free[0] + (-(-(rest + 1) // slots) - 1) * shortest

    async def news(self, kind: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a run of ``kind`` that changes its young estimate; True if one came."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._sleepers.setdefault(kind, set()).add(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            with self._lock:
                waiting = self._sleepers.get(kind)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._sleepers[kind]
        return future.done() and not future.cancelled()


def _wake(futures: list[asyncio.Future[None]]) -> None:
    """Wake :data:`WAKE_BATCH` sleepers per loop iteration: a big batch re-plans without holding the loop."""
    for future in futures[:WAKE_BATCH]:
        if not future.done():
            future.set_result(None)
    if len(futures) > WAKE_BATCH:
        futures[0].get_loop().call_soon(_wake, futures[WAKE_BATCH:])


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
    _task_id: str = field(default="", init=False, repr=False)

    @property
    def dense_gap(self) -> float:
        """Seconds between two reads inside the window of likely ends."""
        return max(MIN_GAP, self.interval / DENSE_FRACTION)

    def next_gap(self, task: WanTask, now: float) -> float:
        """Seconds from ``now`` (Unix) to the next read of ``task``, which was read at ``now`` and is not finished."""
        from airflow_provider_wan.hooks.wan import TaskStatus

        if not self.kind:
            return self.interval
        self._task_id = task.task_id
        self.history.see(self.kind, task, now, keep=3 * self.interval * MAX_GAP_FACTOR)
        estimate = self.history.estimate(self.kind)
        if estimate is None:
            return self.interval
        mean, spread = estimate
        shortest = max(0.0, mean - WINDOW_SPREADS * spread)
        if task.status is TaskStatus.PENDING:
            model = get_model(kind_model(self.kind))
            slots = model.max_concurrent_tasks if model is not None else 0
            soonest_end = self.history.earliest_start(self.kind, task, now, shortest, slots) + shortest
            # never more often than inside the window: a PENDING task is further from its end than any in it
            return max(self.dense_gap, self._clamp(soonest_end - now))
        started = parse_task_time(task.scheduled_time)
        if task.status is not TaskStatus.RUNNING or started is None:
            return self.interval
        opens = started + mean - WINDOW_SPREADS * spread
        closes = started + mean + WINDOW_SPREADS * spread
        if now < opens:
            # it is unlikely to be done before the window opens: the next read when it does
            return self._clamp(opens - now)
        if now <= closes:
            return self.dense_gap
        # a slow one: gaps grow with how late it is, back up to the interval
        return min(self.interval, max(self.dense_gap, (now - closes) * LATE_GROWTH))

    def learn(self, task: WanTask) -> None:
        """The wait for ``task`` is over: remember how long it ran if it SUCCEEDED, for the next tasks of its kind."""
        from airflow_provider_wan.hooks.wan import TaskStatus

        if not self.kind:
            return
        self.forget()
        if task.status is TaskStatus.SUCCEEDED:
            self.history.record(self.kind, task)

    def forget(self) -> None:
        """The wait ended (any way): the task no longer holds a place in this process's view of the queue."""
        if self.kind and self._task_id:
            self.history.forget(self.kind, self._task_id)

    async def sleep(self, task: WanTask, read_at: float, until: float) -> None:
        """
        Sleep until the next read of ``task`` (read at ``read_at``, Unix seconds), and never past ``until``.

        While the kind's estimate is young, each run learned meanwhile (another task of the kind ended) re-plans
        the read from the same ``read_at``: the first video of a batch to end brings its siblings' reads forward from
        the fallback interval to their window, and moves its queued siblings' reads to when they could be done. A
        re-plan never sends a read by itself; it only moves the next one.
        """
        while True:
            wait = min(read_at + self.next_gap(task, read_at), until) - time.time()
            if wait <= 0:
                return
            if not self.kind:
                await asyncio.sleep(wait)
                return
            if not await self.history.news(self.kind, wait):
                return

    def _clamp(self, gap: float) -> float:
        return min(max(gap, MIN_GAP), self.interval * MAX_GAP_FACTOR)
