"""
Pacing of task reads (``GET /tasks``): one rule for the worker (sync) and the triggerer (async).

DashScope allows 20 task queries per second per *account*, shared by every process that reads tasks: several
triggerers, every Celery worker running a non-deferrable operator or a poking sensor. No process knows how many
others there are, and there is nothing to ask. So each process adapts its own pace to what DashScope answers, the
way TCP shares a link without a coordinator (additive increase, multiplicative decrease):

* below its ceiling, reads leave at least ``1 / rate`` apart, never closer: DashScope counts in a *sliding*
  one-second window, and two reads bunched up after a late one (a busy loop) can tip a full window over;
* at its ceiling (a process alone, or one given a fixed share) a process reads under a window of its own instead: at
  most ``ceiling`` reads in any :data:`OWN_WINDOW_SECONDS`, at least :data:`CATCH_UP_SPACING` / ``ceiling`` apart.
  A read released late is then made up by the next ones, and no second holds more than the ceiling of the
  process's sends (arrivals jittered by more than the window's 15 ms margin can still put one more into the account's
  second). Even spacing loses every late release for good: one process alone read 91% of the limit on the fake
  clock that way, 96% with its own window (benchmarks/RESULTS.md section 9i). Below the ceiling the rate is not a
  whole number of reads per second, and a window of ``ceil(rate)`` reads would let each process put one read more
  than its share into a second;
* a process starts at :data:`START_FRACTION` of the ceiling and doubles each second it is held back (slow start).
  Its first 429 sets the rate to :data:`DECREASE` times what got through during the last second: the share it
  really has at that moment. Processes starting in the same instant still land on unequal shares: the first one
  refused lands while the others climb on into the room it leaves (three processes on the fake clock: 4.8, 6.7 and
  7.6 GET/s). A process starting even half a second after the others finds the account already full and lands on
  less;
* then, while reads are held back, the rate grows by the same small amount in every process
  (:data:`INCREASE_PER_SECOND` of the ceiling per second) and a 429 takes :data:`CUT` off it, at most once per
  :data:`HOLD_SECONDS` (one overload sends several 429s before the cut is felt; they are one signal). Equal steps up
  and proportional steps down pull every process towards an equal share, but slowly: the steps are small and 429s
  rare by design, so the shares set at the start mostly last a run of a few minutes, and a process left with less
  finishes after the others (benchmarks/RESULTS.md section 9 measures it);
* a 429 again within :data:`PERSIST_SECONDS` of a cut is an overload the cut did not end (a new process arriving, a
  storm): each such cut is twice the last, up to half the rate;
* after :data:`QUIET_SECONDS` without a 429 the increase speeds up, doubling every :data:`DOUBLING_SECONDS`: other
  processes have gone, and the room they left is found without waiting minutes;
* a ``Retry-After`` holds every read of the process until it has passed;
* ``[wan] task_query_qps`` stays the ceiling. A process that is not held back has nothing to learn and does not grow.

The steps are small because the sum of all processes' rates must stay just under the account's limit with few
429s: every overload costs one or two, and the sum reaches the limit as often as the processes together grow into
it. benchmarks/fair_share.py measures 1-4 processes against the simulator; tests/unit/test_pacing.py runs the rule
on a fake clock against a simulated account window with that benchmark's work.

:class:`Pacer` is the rule, with an injectable clock and no sleeping; :class:`SyncPacer` (threads, ``time.sleep``)
and :class:`AsyncPacer` (one event loop) only differ in how they wait for the next slot.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: growth per second while held back, as a fraction of the ceiling (0.003 GET/s per second at 20/s), the same in
#: every process whatever its share
INCREASE_PER_SECOND = 0.00015
#: on the first 429 the rate becomes this fraction of what got through in the last second
DECREASE = 0.95
#: after slow start, a 429 takes this fraction off the rate (multiplicative decrease)
CUT = 0.05
#: a 429 within this many seconds of the last cut doubles the next cut (the overload persists)
PERSIST_SECONDS = 2.5
#: after this many seconds without a 429 the increase speeds up (others have left: find the room sooner) ...
QUIET_SECONDS = 20.0
#: ... doubling every this many seconds
DOUBLING_SECONDS = 8.0
#: seconds after a cut during which further 429s are the same overload (DashScope counts in 1 s windows)
HOLD_SECONDS = 1.0
#: a new process starts at this fraction of the ceiling, then doubles per second while held back (slow start)
START_FRACTION = 0.25
#: the rate never drops below this (GET/s): a process keeps probing even after a long storm
FLOOR = 0.2
#: longest Retry-After honoured (seconds); longer values are capped: the retry policy's own cap is 30 s too
MAX_PAUSE = 30.0
#: at its ceiling a process reads at most ``ceiling`` times in any this many seconds: DashScope's window is 1 s, and
#: 15 ms covers reads that arrive a little closer together than they left
OWN_WINDOW_SECONDS = 1.015
#: ... and never closer than this fraction of ``1 / ceiling``: late reads are made up without a burst
CATCH_UP_SPACING = 0.7
#: a ceiling above this (``inf`` included) is no limit worth a window: reads are only spaced ``1 / ceiling`` apart
MAX_WINDOW_READS = 1000


class Pacer:
    """
    The pacing rule for one process, without any waiting: when may the next read start, and what the answers say.

    :param ceiling: upper bound in GET/s (``[wan] task_query_qps``); 0 or less switches pacing off
    :param clock: monotonic seconds (default :func:`time.monotonic`); tests pass a fake one
    """

    def __init__(self, ceiling: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ceiling = float(ceiling)
        self.clock = clock
        self.rate = max(FLOOR, self.ceiling * START_FRACTION) if self.ceiling > 0 else 0.0
        self.slow_start = True
        self.throttled = 0
        self.answered = 0
        self._cut_by = CUT
        self._last_start = float("-inf")
        self._paused_until = float("-inf")
        self._last_cut = float("-inf")
        self._held_back_at = float("-inf")
        self._last_grow = clock()
        #: monotonic times of reads that got through, the last second or so
        self._passed: collections.deque[float] = collections.deque()
        #: at the ceiling, the reads allowed in one own window (a whole number: the window counts reads); 0: no window
        self._window_reads = (
            max(1, math.ceil(self.ceiling - 1e-9)) if self.enabled and self.ceiling <= MAX_WINDOW_READS else 0
        )
        #: ... that window, at least OWN_WINDOW_SECONDS (longer for a ceiling that is no whole number)
        self._window = max(OWN_WINDOW_SECONDS, self._window_reads / self.ceiling) if self._window_reads else 1.0
        #: start times of the last ``_window_reads`` reads
        self._starts: collections.deque[float] = collections.deque(maxlen=max(1, self._window_reads))

    @property
    def enabled(self) -> bool:
        return self.ceiling > 0

    def next_start(self) -> float:
        """The earliest clock time the next read may start."""
        if not self.enabled:
            return float("-inf")
        if self.rate < self.ceiling or not self._window_reads:
            return max(self._last_start + 1.0 / self.rate, self._paused_until)
        slot = self._last_start + CATCH_UP_SPACING / self.ceiling
        if len(self._starts) == self._window_reads:
            slot = max(slot, self._starts[0] + self._window)
        return max(slot, self._paused_until)

    def start(self, *, held_back: bool) -> None:
        """Record that a read starts now; ``held_back`` when it (or another) had to wait for the pacer."""
        now = self.clock()
        if held_back:
            self._held_back_at = now
        # below the ceiling the next slot counts from now, even when this read left late: catching up would put two
        # reads closer than 1 / rate, and the account's sliding window may then hold one more than the rate. At the
        # ceiling the own window (next_start) bounds every second instead
        self._last_start = now
        self._starts.append(now)

    def on_answer(self, *, throttled: bool, retry_after: float | None = None) -> None:
        """Learn from one answer to a read: 429 (``throttled``, with its ``Retry-After``) or anything else."""
        if not self.enabled:
            return
        now = self.clock()
        self.answered += 1
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + min(retry_after, MAX_PAUSE))
        if throttled:
            self.throttled += 1
            self._cut(now)
        else:
            self._passed.append(now)
            self._grow(now)
        while self._passed and self._passed[0] <= now - 1.0:
            self._passed.popleft()

    def _cut(self, now: float) -> None:
        since_last = now - self._last_cut
        if since_last < HOLD_SECONDS:
            return
        self._last_cut = now
        if self.slow_start:
            # the first overload: what the account let through is the share this process really has
            got_through = sum(1 for t in self._passed if t > now - 1.0)
            self.rate = DECREASE * min(self.rate, float(got_through) or self.rate)
            self._cut_by = CUT
        else:
            self._cut_by = min(0.5, 2 * self._cut_by) if since_last < PERSIST_SECONDS else CUT
            self.rate *= 1.0 - self._cut_by
        self.rate = max(FLOOR, self.rate)
        self.slow_start = False
        self._last_grow = now
        log.info("DashScope throttled task reads (429): this process now reads at most %.2f per second", self.rate)

    def _grow(self, now: float) -> None:
        elapsed = now - self._last_grow
        self._last_grow = now
        if now - self._held_back_at > 1.0 or now - self._last_cut < HOLD_SECONDS:
            # not held back: the rate is not what limits us, so an answer says nothing about a higher one
            return
        if self.slow_start:
            self.rate *= 2.0 ** min(elapsed, 1.0)
        else:
            quiet = now - self._last_cut
            speed = 2.0 ** min(6.0, max(0.0, quiet - QUIET_SECONDS) / DOUBLING_SECONDS)
            self.rate += INCREASE_PER_SECOND * self.ceiling * speed * min(elapsed, 1.0)
        self.rate = min(self.rate, self.ceiling)


class SyncPacer:
    """A :class:`Pacer` for the threads of one worker process: :meth:`acquire` sleeps until the next slot."""

    def __init__(self, ceiling: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.pacer = Pacer(ceiling)
        self._sleep = sleep
        self._lock = threading.Lock()

    def acquire(self) -> None:
        held_back = False
        while True:
            with self._lock:
                wait = self.pacer.next_start() - self.pacer.clock()
                if wait <= 0:
                    self.pacer.start(held_back=held_back)
                    return
            held_back = True
            self._sleep(wait)

    def on_answer(self, *, throttled: bool, retry_after: float | None = None) -> None:
        with self._lock:
            self.pacer.on_answer(throttled=throttled, retry_after=retry_after)


class AsyncPacer:
    """
    A :class:`Pacer` for one event loop (a triggerer): waiters queue, and one releasing task lets them go one at a
    time, each at the pacer's next slot *as measured when it is released*.

    Handing out start times in advance is not enough: waiters whose sleeps end late (a busy loop, a burst of new
    triggers) would then go out together, and DashScope's sliding one-second window sees more than the rate
    (benchmarks/triggerer_density.py: 48 429s per 1,000 polls at 20/s). Bound to the loop that first uses it.
    """

    def __init__(self, ceiling: float) -> None:
        self.pacer = Pacer(ceiling)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._releaser: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        if not self.pacer.enabled:
            return
        if not self._waiters and self.pacer.next_start() <= self.pacer.clock():
            self.pacer.start(held_back=False)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._releaser is None or self._releaser.done():
            self._releaser = loop.create_task(self._release())
        await waiter

    async def _release(self) -> None:
        while self._waiters:
            wait = self.pacer.next_start() - self.pacer.clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue  # a 429 answered meanwhile may have moved the next slot
            waiter = self._waiters.popleft()
            if waiter.done():  # its trigger was cancelled while queued: the slot goes to the next one
                continue
            self.pacer.start(held_back=True)
            waiter.set_result(None)

    def on_answer(self, *, throttled: bool, retry_after: float | None = None) -> None:
        self.pacer.on_answer(throttled=throttled, retry_after=retry_after)


#: by process id: a forked worker (Celery's prefork pool) starts with a pacer of its own, not a copy of its parent's
_sync_pacers: dict[int, SyncPacer] = {}
_sync_pacers_lock = threading.Lock()


def sync_pacer(ceiling: Callable[[], float]) -> SyncPacer:
    """The process's one :class:`SyncPacer` (created on first use with ``ceiling()`` GET/s)."""
    pid = os.getpid()
    pacer = _sync_pacers.get(pid)
    if pacer is None:
        with _sync_pacers_lock:
            pacer = _sync_pacers.get(pid)
            if pacer is None:
                _sync_pacers.clear()
                pacer = _sync_pacers[pid] = SyncPacer(ceiling())
    return pacer
