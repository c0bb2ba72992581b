"""The adaptive pacing rule of task reads (hooks/pacing.py), on a fake clock and a fake account window."""

from __future__ import annotations

import asyncio
import bisect
import collections
import heapq
import itertools
import random
from collections.abc import Sequence

import pytest

from airflow_provider_wan.hooks import pacing
from airflow_provider_wan.hooks.pacing import AsyncPacer, Pacer, SyncPacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class AccountWindow:
    """DashScope's GET limit as the simulator enforces it: at most ``limit`` admitted in any 1-second window."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.admitted: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> bool:
        while self.admitted and self.admitted[0] <= now - 1.0:
            self.admitted.popleft()
        if len(self.admitted) >= self.limit:
            return False
        self.admitted.append(now)
        return True


def share_an_account(processes: int, seconds: float, *, limit: int = 20, seed: int = 7) -> dict[str, object]:
    """
    ``processes`` pacers, each with reads always waiting, reading from one account: the sends and answers happen in
    fake time, with 5-55 ms of answer latency. Returns successes and 429s per process.
    """
    rnd = random.Random(seed)
    clock = FakeClock()
    start = clock.now
    pacers = [Pacer(limit, clock=clock) for _ in range(processes)]
    window = AccountWindow(limit)
    events: list[tuple[float, int, int]] = [(start + rnd.random() * 0.5, 0, i) for i in range(processes)]
    heapq.heapify(events)
    ok = [0] * processes
    throttled = [0] * processes
    while events:
        at, kind, i = heapq.heappop(events)
        if at > start + seconds:
            break
        clock.now = at
        pacer = pacers[i]
        if kind == 0:  # the process's next queued read
            slot = pacer.next_start()
            if slot > at:
                heapq.heappush(events, (slot + rnd.random() * 0.003, 0, i))
                continue
            pacer.start(held_back=True)
            answer = 1 if window.admit(at) else 2
            heapq.heappush(events, (at + 0.005 + rnd.random() * 0.05, answer, i))
            heapq.heappush(events, (at + 1e-6, 0, i))
        else:
            if kind == 1:
                ok[i] += 1
            else:
                throttled[i] += 1
            pacer.on_answer(throttled=kind == 2)
    return {"ok": ok, "throttled": throttled, "pacers": pacers}


def run_the_benchmark(
    processes: int,
    *,
    seed: int,
    pacer_class: type[Pacer] = Pacer,
    delays: Sequence[float] = (),
    ceilings: Sequence[float] = (),
) -> dict[str, float]:
    """
    benchmarks/fair_share.py on a fake clock: ``processes`` triggerers, 300 triggers each, all started together
    (or each ``delays[i]`` seconds after the first: a triggerer that starts later, whose generations end later too),
    each with a ceiling of 20/s (or ``ceilings[i]``: ``[wan] task_query_qps`` set per triggerer);
    a read every 15 s after the last answer, generations of 60 s; each process's reads queue behind its pacer and
    leave one at a time at its next slot, as in :class:`AsyncPacer`. Reads arrive 1-10 ms after release (5% of
    releases 0-100 ms late: a busy loop), answers 2-20 ms later; a 429 is retried after the retry policy's backoff
    (up to 6 attempts). Measured as the benchmark does: GETs, 429s, and successful GETs per second over the 0.1 s
    intervals in which some process had reads queued, as a share of the limit.
    """
    rnd = random.Random(seed)
    clock = FakeClock()
    start, limit, triggers = clock.now, 20, 300
    pacers = [pacer_class(ceilings[i] if ceilings else limit, clock=clock) for i in range(processes)]
    window = AccountWindow(limit)
    events: list[tuple[float, int, str, int, int]] = []
    order = itertools.count()

    def at(time: float, kind: str, process: int, trigger: int = 0) -> None:
        heapq.heappush(events, (time, next(order), kind, process, trigger))

    queues: list[collections.deque[int]] = [collections.deque() for _ in range(processes)]
    releasing = [False] * processes
    attempts: collections.Counter[int] = collections.Counter()
    finished = failed = gets = throttled = 0
    admitted: list[float] = []
    delays = list(delays) or [0.0] * processes
    for process in range(processes):
        for trigger in range(triggers):
            at(start + delays[process], "acquire", process, process * triggers + trigger)
    busy: list[tuple[float, bool]] = []
    next_sample = start
    while events and finished + failed < processes * triggers:
        now, _, kind, process, trigger = heapq.heappop(events)
        while next_sample <= now:
            busy.append((next_sample, any(queues)))
            next_sample += 0.1
        clock.now = now
        pacer = pacers[process]
        if kind == "acquire":
            if not queues[process] and pacer.next_start() <= now:
                pacer.start(held_back=False)
                at(now + rnd.uniform(0.001, 0.01), "arrive", process, trigger)
                continue
            queues[process].append(trigger)
            if not releasing[process]:
                releasing[process] = True
                at(max(now, pacer.next_start()), "release", process)
        elif kind == "release":
            if not queues[process]:
                releasing[process] = False
            elif pacer.next_start() > now:
                late = rnd.uniform(0.0, 0.004) + (rnd.uniform(0.0, 0.1) if rnd.random() < 0.05 else 0.0)
                at(pacer.next_start() + late, "release", process)
            else:
                pacer.start(held_back=True)
                at(now + rnd.uniform(0.001, 0.01), "arrive", process, queues[process].popleft())
                at(now, "release", process)
        elif kind == "arrive":
            gets += 1
            ok = window.admit(now)
            if ok:
                admitted.append(now)
            else:
                throttled += 1
            at(now + rnd.uniform(0.002, 0.02), "ok" if ok else "429", process, trigger)
        else:
            pacer.on_answer(throttled=kind == "429")
            if kind == "ok":
                attempts[trigger] = 0
                if now >= start + delays[process] + 60:
                    finished += 1
                else:
                    at(now + 15, "acquire", process, trigger)
            else:
                attempts[trigger] += 1
                if attempts[trigger] >= 6:
                    failed += 1
                else:
                    ceiling = min(30.0, 2.0 ** (attempts[trigger] - 1))
                    at(now + rnd.uniform(ceiling / 2, ceiling), "acquire", process, trigger)
    waiting = sum(1 for _, queued in busy if queued) * 0.1
    ok_waiting = sum(
        bisect.bisect_left(admitted, t + 0.1) - bisect.bisect_left(admitted, t) for t, queued in busy if queued
    )
    return {
        "finished": finished / (processes * triggers),
        "throttled": throttled / gets,
        "utilization": ok_waiting / waiting / limit,
    }


@pytest.mark.parametrize(
    "processes",
    [
        1,
        2,
        pytest.param(
            3,
            marks=pytest.mark.xfail(
                strict=True,
                reason="MISSED on the fake clock (benchmarks/RESULTS.md section 9): utilization averages about 88% "
                "with 3 processes: a process left with a smaller share finishes 10-20 s after the others and reads "
                "alone at that share until the quiet-time speed-up finds the room they left",
            ),
        ),
        4,
    ],
)
def test_the_fair_share_benchmark_on_a_fake_clock_meets_the_goals(processes):
    # issue 14, acceptance 1: 429s under 1% of GETs, successful GETs at least 90% of the limit while reads wait,
    # every trigger succeeding. Six seeds: each must stay under 1% and succeed; utilization on their mean
    runs = [run_the_benchmark(processes, seed=seed) for seed in range(1, 7)]
    assert [r["finished"] for r in runs] == [1.0] * 6, runs
    assert max(r["throttled"] for r in runs) < 0.01, runs
    assert sum(r["utilization"] for r in runs) / 6 >= 0.9, runs


@pytest.mark.xfail(
    strict=True,
    reason="MISSED on the fake clock (benchmarks/RESULTS.md section 9): a process starting later slow-starts into an "
    "account the others already fill, lands on the small share that got through, and the equal additive steps give it "
    "its share back too slowly: it finishes long after the others, reading alone at that share",
)
@pytest.mark.parametrize("processes", [2, 3, 4])
def test_the_fair_share_benchmark_with_processes_starting_up_to_5_s_apart(processes):
    # the same goals when the triggerers do not start in the same second (a fleet restarting, one joining late)
    runs = []
    for seed in range(1, 7):
        starts = random.Random(seed)
        runs.append(run_the_benchmark(processes, seed=seed, delays=[starts.uniform(0, 5) for _ in range(processes)]))
    assert [r["finished"] for r in runs] == [1.0] * 6, runs
    assert max(r["throttled"] for r in runs) < 0.01, runs
    assert sum(r["utilization"] for r in runs) / 6 >= 0.9, runs


@pytest.mark.parametrize("shares", [(10, 10), (7, 7, 6), (5, 5, 5, 5)])
def test_fixed_shares_that_add_up_to_the_limit_meet_the_goals(shares):
    # docs/scaling.rst: where the number of processes that read is known, [wan] task_query_qps per process set to
    # whole shares of 20 (the smallest at least 20 / N rounded down) meets acceptance 1's goals with no 429 at all:
    # each process sits at its ceiling and reads under its own window
    runs = [run_the_benchmark(len(shares), seed=seed, ceilings=shares) for seed in range(1, 7)]
    assert [r["finished"] for r in runs] == [1.0] * 6, runs
    assert max(r["throttled"] for r in runs) < 0.001, runs
    assert min(r["utilization"] for r in runs) >= 0.9, runs


def test_at_its_ceiling_a_process_makes_up_late_releases_and_no_second_holds_more():
    # a process alone at its ceiling, its reads released up to 4 ms late and 5% of them up to 100 ms late (a busy
    # loop). Even spacing loses every late release (about 9% of the limit); the own window makes them up
    rnd = random.Random(3)
    clock = FakeClock()
    pacer = Pacer(20, clock=clock)
    pacer.rate, pacer.slow_start = 20.0, False
    starts: list[float] = []
    end = clock.now + 60
    while clock.now < end:
        late = rnd.uniform(0, 0.004) + (rnd.uniform(0, 0.1) if rnd.random() < 0.05 else 0.0)
        clock.now = max(clock.now, pacer.next_start()) + late
        pacer.start(held_back=True)
        pacer.on_answer(throttled=False)
        starts.append(clock.now)
    assert len(starts) >= 0.96 * 20 * 60, len(starts) / 60
    # DashScope's sliding one-second window never holds more than the ceiling, and reads never bunch up
    assert max(i - bisect.bisect_right(starts, t - 1.0) + 1 for i, t in enumerate(starts)) <= 20
    assert min(b - a for a, b in itertools.pairwise(starts)) >= pacing.CATCH_UP_SPACING / 20


def test_the_fake_benchmark_fails_a_pacer_that_ignores_429s():
    # the benchmark above can fail: the code before the adaptive pacer (a fixed 20/s per process) floods the account
    class FixedRate(Pacer):
        def __init__(self, ceiling: float, **kwargs: object) -> None:
            super().__init__(ceiling, **kwargs)  # type: ignore[arg-type]
            self.rate = ceiling

        def on_answer(self, *, throttled: bool, retry_after: float | None = None) -> None:
            pass

    result = run_the_benchmark(2, seed=1, pacer_class=FixedRate)
    assert result["throttled"] > 0.2, result


@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_processes_sharing_an_account_stay_under_its_limit_and_use_it(processes):
    result = share_an_account(processes, seconds=180)
    ok, throttled = sum(result["ok"]), sum(result["throttled"])  # type: ignore[arg-type]
    assert throttled / (ok + throttled) < 0.012, (ok, throttled)
    # 20/s for 180 s, less the slow start and the sawtooth
    assert ok / 180 >= 0.9 * 20, ok / 180
    # nobody starves: every process gets at least a third of an equal share
    assert min(result["ok"]) / 180 >= 20 / processes / 3, result["ok"]  # type: ignore[type-var, operator]


def test_ceiling_is_never_exceeded_and_growth_needs_a_queue():
    clock = FakeClock()
    pacer = Pacer(8, clock=clock)
    assert pacer.rate == pytest.approx(2.0)  # START_FRACTION of the ceiling
    # answers without anything held back: the rate has nothing to learn
    for _ in range(50):
        clock.advance(0.5)
        pacer.start(held_back=False)
        pacer.on_answer(throttled=False)
    assert pacer.rate == pytest.approx(2.0)
    # held back: slow start doubles per second, up to the ceiling and no further
    for _ in range(200):
        clock.advance(0.1)
        pacer.start(held_back=True)
        pacer.on_answer(throttled=False)
    assert pacer.rate == 8


def test_a_429_cuts_once_per_overload_and_retry_after_holds_every_read():
    clock = FakeClock()
    pacer = Pacer(20, clock=clock)
    pacer.slow_start = False
    pacer.rate = 10.0
    pacer.start(held_back=True)
    pacer.on_answer(throttled=True)
    after_one = pacer.rate
    assert after_one == pytest.approx(10.0 * (1 - pacing.CUT))
    # more 429s of the same overload (within HOLD_SECONDS) are one signal
    clock.advance(0.3)
    pacer.on_answer(throttled=True)
    assert pacer.rate == after_one
    clock.advance(pacing.HOLD_SECONDS)
    pacer.on_answer(throttled=True, retry_after=7)
    assert pacer.rate < after_one
    assert pacer.next_start() == pytest.approx(clock.now + 7)
    # never below the floor
    pacer.rate = 0.21
    clock.advance(pacing.HOLD_SECONDS)
    pacer.on_answer(throttled=True)
    assert pacer.rate == pacing.FLOOR


def test_first_429_takes_the_share_that_got_through():
    clock = FakeClock()
    pacer = Pacer(20, clock=clock)
    pacer.rate = 20.0
    for _ in range(5):  # 5 of the last second's reads got through
        clock.advance(0.2)
        pacer.on_answer(throttled=False)
    pacer.on_answer(throttled=True)
    assert not pacer.slow_start
    assert pacer.rate == pytest.approx(pacing.DECREASE * 5)


@pytest.mark.parametrize("ceiling", [float("inf"), 1e300, 5000.0])
def test_a_ceiling_beyond_any_window_paces_nothing_but_honours_retry_after(ceiling):
    # [wan] task_query_qps = inf (or a huge number) is a float Airflow accepts: no limit, and never an error (it is
    # read after a worker's paid create)
    clock = FakeClock()
    pacer = Pacer(ceiling, clock=clock)
    pacer.rate, pacer.slow_start = ceiling, False
    for _ in range(3):
        assert pacer.next_start() <= clock.now + 1e-3
        pacer.start(held_back=True)
    pacer.on_answer(throttled=True, retry_after=4)
    assert pacer.next_start() == pytest.approx(clock.now + 4)


def test_zero_ceiling_switches_pacing_off():
    pacer = Pacer(0)
    assert not pacer.enabled
    assert pacer.next_start() == float("-inf")
    pacer.on_answer(throttled=True, retry_after=10)
    assert pacer.next_start() == float("-inf")


def test_sync_pacer_sleeps_until_the_next_slot():
    slept: list[float] = []
    clock = FakeClock()

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    pacer = SyncPacer(4, sleep=sleep)
    pacer.pacer.clock = clock
    pacer.acquire()
    pacer.acquire()
    assert slept == [pytest.approx(1.0)]  # 4/s x START_FRACTION = 1/s


async def test_async_pacer_releases_queued_reads_one_slot_apart():
    pacer = AsyncPacer(40)  # starts at 10/s
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def read() -> None:
        await pacer.acquire()
        times.append(loop.time())

    await asyncio.gather(*(read() for _ in range(5)))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # never closer than one slot (a late release does not let the next one catch up)
    assert min(gaps) >= 0.1 - 0.005, gaps
    assert pacer.pacer._held_back_at > 0  # the queue counts as held back: the rate may grow


async def test_async_pacer_skips_cancelled_waiters():
    pacer = AsyncPacer(4)
    await pacer.acquire()
    cancelled = asyncio.ensure_future(pacer.acquire())
    kept = asyncio.ensure_future(pacer.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.wait_for(kept, 3)
    assert kept.done()
    assert not kept.cancelled()


@pytest.mark.parametrize(
    ("configured", "expected"), [("5", 5.0), ("0", 0.0), ("fast", 20.0), ("", 20.0), ("nan", 20.0)]
)
def test_task_query_qps_that_is_no_number_is_the_default_with_a_warning(monkeypatch, caplog, configured, expected):
    # read after a paid create (a worker's first task read) or at a trigger's start: never an error
    from airflow_provider_wan.hooks.wan import task_query_qps

    monkeypatch.setenv("AIRFLOW__WAN__TASK_QUERY_QPS", configured)
    assert task_query_qps() == expected
    warned = any("task_query_qps is not a number" in r.getMessage() for r in caplog.records)
    assert warned is (expected == 20.0)
