"""Poll planning (hooks/schedule.py) on a fake clock: learned runs, queue place, window shape, wake-ups, budget."""

from __future__ import annotations

import asyncio
import heapq
import random
import statistics
import time

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.hooks.schedule import (
    DENSE_FRACTION,
    MAX_GAP_FACTOR,
    MAX_WAIT_SECONDS,
    WINDOW_SPREADS,
    PollSchedule,
    RunHistory,
    check_wait_seconds,
    kind_model,
    parse_task_time,
    task_kind,
)
from airflow_provider_wan.hooks.wan import TaskStatus, WanTask
from airflow_provider_wan.models import get_model
from airflow_provider_wan.testing._state import format_time

MODEL = "wan2.5-t2v-preview"
KIND = task_kind(MODEL, "720P", 5)
T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "taken"), [(0.1, 0.1), (15, 15.0), (MAX_WAIT_SECONDS, MAX_WAIT_SECONDS)], ids=["tenth", "int", "30-days"]
)
def test_a_wait_of_seconds_above_0_and_up_to_30_days_is_taken_as_a_float(value: float, taken: float):
    assert check_wait_seconds("poll_interval", value, "then") == taken
    assert isinstance(check_wait_seconds("poll_interval", value, "then"), float)


@pytest.mark.parametrize(
    "value",
    [0, 0.0, -0.0, -1, float("nan"), float("inf"), float("-inf"), MAX_WAIT_SECONDS + 1, True, "15", None],
    ids=["0", "0.0", "-0.0", "negative", "nan", "inf", "-inf", "past-30-days", "bool", "text", "none"],
)
def test_a_wait_that_is_no_pace_nor_a_storable_deadline_is_refused_by_name(value: object):
    with pytest.raises(WanInvalidInputError) as refused:
        check_wait_seconds("poke_interval", value, "the sensor read nothing")
    assert str(refused.value) == (
        f"poke_interval: must be a number of seconds above 0 and at most 2592000 (30 days), got {value!r}; the "
        "sensor read nothing"
    )


def _task(task_id: str, status: TaskStatus, submitted: float, started: float | None = None, ended: float | None = None):
    return WanTask(
        task_id=task_id,
        status=status,
        submit_time=format_time(submitted),
        scheduled_time=None if started is None else format_time(started),
        end_time=None if ended is None else format_time(ended),
    )


def _running(started: float, task_id: str = "t") -> WanTask:
    return _task(task_id, TaskStatus.RUNNING, started, started)


def _learned(*runs: float) -> RunHistory:
    history = RunHistory()
    for ran in runs:
        history.record(KIND, _task("old", TaskStatus.SUCCEEDED, T0 - 1000, T0 - 1000, T0 - 1000 + ran))
    return history


def test_dashscope_times_are_utc8_and_kinds_name_their_model():
    assert parse_task_time("2027-01-15 08:00:00.000") == parse_task_time("2027-01-15 08:00:00")
    assert parse_task_time(format_time(T0 + 0.25)) == T0 + 0.25
    assert parse_task_time(None) is None
    assert parse_task_time("yesterday") is None
    assert kind_model(KIND) == MODEL
    assert kind_model(task_kind("vendor/model-x")) == "vendor/model-x"


def test_without_an_estimate_the_configured_interval():
    schedule = PollSchedule(interval=15, kind=KIND, history=RunHistory())
    assert schedule.next_gap(_running(T0), T0 + 30) == 15
    assert PollSchedule(interval=15, kind=None).next_gap(_running(T0), T0 + 30) == 15


def test_learns_successful_runs_of_its_kind_only():
    history = RunHistory()
    schedule = PollSchedule(interval=15, kind=KIND, history=history)
    schedule.learn(_task("a", TaskStatus.SUCCEEDED, T0, T0, T0 + 120))
    schedule.learn(_task("b", TaskStatus.FAILED, T0, T0, T0 + 5))  # a failure says nothing about a run's length
    schedule.learn(WanTask(task_id="c", status=TaskStatus.SUCCEEDED))  # no times: nothing to learn
    assert history.estimate(KIND) == (120.0, 120 * 0.1)  # one run: a wide spread until more are seen
    assert history.estimate(task_kind(MODEL, "1080P", 5)) is None
    for ran in (100, 110, 130, 140, 120, 120, 120, 120, 120):
        schedule.learn(_task("d", TaskStatus.SUCCEEDED, T0, T0, T0 + ran))
    mean, spread = history.estimate(KIND)  # type: ignore[misc]
    assert mean == 120
    assert spread == pytest.approx(statistics.stdev([120, 100, 110, 130, 140, 120, 120, 120, 120, 120]))


def test_running_sparse_before_the_window_even_inside_it_widening_after():
    history = _learned(*[110, 115, 120, 125, 130] * 2)  # mean 120, spread about 7.5 s
    schedule = PollSchedule(interval=15, kind=KIND, history=history)
    mean, spread = history.estimate(KIND)  # type: ignore[misc]
    opens, closes = mean - WINDOW_SPREADS * spread, mean + WINDOW_SPREADS * spread
    dense = 15 / DENSE_FRACTION
    # before the window: one read when it opens (never more than 8 intervals away)
    assert schedule.next_gap(_running(T0), T0 + 20) == pytest.approx(opens - 20)
    long_runs = PollSchedule(interval=15, kind=KIND, history=_learned(*[1000.0] * 10))
    assert long_runs.next_gap(_running(T0), T0 + 20) == 15 * MAX_GAP_FACTOR
    # across the window: an even pace, denser than the SDK's 5 s
    gaps = [schedule.next_gap(_running(T0), T0 + at) for at in (opens, opens + 1, mean, closes - 1, closes)]
    assert gaps == [dense] * 5
    assert dense < 5
    # after it: a quarter of the time since it closed, back up to the interval
    assert schedule.next_gap(_running(T0), T0 + closes + 20) == pytest.approx(5.0)
    assert schedule.next_gap(_running(T0), T0 + closes + 1000) == 15
    # a status without a start (or one this version does not know) has no window: the interval
    assert schedule.next_gap(WanTask(task_id="t", status=TaskStatus.RUNNING), T0) == 15


def _pending(task_id: str, submitted: float) -> WanTask:
    return _task(task_id, TaskStatus.PENDING, submitted)


def test_pending_reads_wait_for_the_queue_ahead():
    runs = [40.0] * 10  # spread floored at 3%: shortest likely run 40 - 2 x 1.2 = 37.6 s
    history = _learned(*runs)
    mean, spread = history.estimate(KIND)  # type: ignore[misc]
    shortest = mean - WINDOW_SPREADS * spread
    slots = get_model(MODEL).max_concurrent_tasks  # type: ignore[union-attr]
    plans = {}

    def read(task: WanTask, now: float) -> float:
        plan = plans.setdefault(task.task_id, PollSchedule(interval=15, kind=KIND, history=history))
        return plan.next_gap(task, now)

    # nothing known ahead of it: the soonest it can end is a shortest run from now
    assert read(_pending("p0", T0), T0) == pytest.approx(shortest)
    # the model's slots are all taken by tasks that started at T0, and slots-1 more wait before ours
    for i in range(slots):
        read(_running(T0, f"r{i}"), T0)
    for i in range(slots - 1):
        read(_pending(f"q{i}", T0 + i), T0 + 1)
    # ours, submitted last, starts when the running ones free their slots and the queue ahead is through
    gap = read(_pending("ours", T0 + 10), T0 + 10)
    assert gap == pytest.approx(2 * shortest + shortest - 10)
    # a task ahead whose wait ended (forgotten) holds no place any more: ours moves up ...
    plans["r0"].forget()
    assert read(_pending("ours", T0 + 10), T0 + 10) < gap
    # ... and so does one nobody read for a long time (a wait that ended without saying so)
    later = T0 + 10 + 3 * 15 * MAX_GAP_FACTOR + 1
    assert read(_pending("ours", T0 + 10), later) == pytest.approx(shortest)


def test_a_long_queue_is_bounded_cheaply_and_never_later_than_its_exact_place():
    history, shortest, slots = RunHistory(), 30.0, 5
    started = [T0 - 10, T0 - 20, T0 - 25, T0 - 5, T0]  # the running ones free their slots at different times
    for i, start in enumerate(started):
        history.see(KIND, _running(start, f"r{i}"), T0, keep=1000)
    for i in range(200):
        history.see(KIND, _pending(f"q{i:03}", T0 + i), T0, keep=1000)
    for position in (0, 7, 19, 20, 21, 150, 199):
        exact = sorted(start + shortest for start in started)
        for _ in range(position):  # FIFO, every task ahead running the shortest run: one slot at a time
            heapq.heapreplace(exact, exact[0] + shortest)
        ours = history.earliest_start(KIND, _pending(f"q{position:03}", T0 + position), T0, shortest, slots)
        assert exact[0] - shortest <= ours <= exact[0], position


def test_pending_never_read_more_often_than_the_window():
    history = _learned(*[2.0] * 10)  # runs so short the shortest likely one is ~2 s
    schedule = PollSchedule(interval=15, kind=KIND, history=history)
    assert schedule.next_gap(_pending("p", T0), T0) == 15 / DENSE_FRACTION


def test_a_young_kind_wakes_its_sleepers_a_confident_one_does_not():
    async def scenario(history: RunHistory) -> float:
        # interval 3 s: asleep on the fallback (3 s) or, inside a window, reads 1 s apart; the deadline 2.5 s away
        sleeper = PollSchedule(interval=3, kind=KIND, history=history)
        started = time.time()
        sleeping = asyncio.create_task(sleeper.sleep(_running(started - 5, "sleeper"), started, until=started + 2.5))
        await asyncio.sleep(0.1)
        # a sibling ends after 6 s: the sleeper, 5 s into its run, is inside the window of likely ends now
        PollSchedule(interval=3, kind=KIND, history=history).learn(
            _task("sibling", TaskStatus.SUCCEEDED, started - 6, started - 6, started)
        )
        await sleeping
        return time.time() - started

    # young: woken, and the read is re-planned one dense gap (1 s) after the last one, before the deadline
    assert 0.9 <= asyncio.run(scenario(RunHistory())) < 1.5
    # confident (10 runs of 60 s): one more run is not worth a wake-up; it sleeps to the deadline
    assert asyncio.run(scenario(_learned(*[60.0] * 10))) >= 2.4


def test_a_big_batch_is_woken_fifty_per_loop_iteration():
    async def scenario() -> list[int]:
        history = RunHistory()
        sleepers = [asyncio.create_task(history.news(KIND, 30)) for _ in range(120)]
        await asyncio.sleep(0)  # all asleep
        history.record(KIND, _task("first", TaskStatus.SUCCEEDED, T0, T0, T0 + 30))
        done = []
        for _ in range(6):
            await asyncio.sleep(0)
            done.append(sum(s.done() for s in sleepers))
        assert all(s.result() for s in sleepers)
        return done

    done = asyncio.run(scenario())
    assert done[-1] == 120
    assert all(b - a <= 50 for a, b in zip([0, *done[:-1]], done, strict=True)), done


# --- a batch on a fake clock: the plan against the SDK's wait() ---------------------------------------------------
SDK_GAPS_FROM = (1, 1, 2, 2, 2, 4, 4, 4)  # dashscope/client/base_api.py wait(): x2 every 3 steps, capped at 5 s


def _sdk_reads(end: float) -> tuple[int, float]:
    """Reads and delay of ``VideoSynthesis.wait()`` for a task submitted at 0 that ends at ``end``."""
    now, reads = 0.0, 1
    while now < end:
        now += SDK_GAPS_FROM[reads - 1] if reads <= len(SDK_GAPS_FROM) else 5
        reads += 1
    return reads, now - end


def _batch(mean: float, seed: int) -> tuple[list[float], list[float]]:
    """20 videos submitted at once, 5 running at once (FIFO), runs normal with sd 10% of the mean."""
    rnd = random.Random(seed)
    slots = [0.0] * 5
    starts, ends = [], []
    for _ in range(20):
        run = min(1.3 * mean, max(0.7 * mean, rnd.gauss(mean, 0.1 * mean)))
        start = heapq.heappop(slots)
        starts.append(start)
        ends.append(start + run)
        heapq.heappush(slots, start + run)
    return starts, ends


def _planned(starts: list[float], ends: list[float]) -> tuple[float, float]:
    """GETs per video and mean delay of the deferrable path: the operator's check, then the plan (fresh process)."""
    history = RunHistory()
    plans = [PollSchedule(interval=15, kind=KIND, history=history) for _ in starts]

    def read(i: int, at: float) -> WanTask:
        submitted = T0 + i * 0.01
        if at < starts[i]:
            return _pending(str(i), submitted)
        if at < ends[i]:
            return _task(str(i), TaskStatus.RUNNING, submitted, T0 + starts[i])
        return _task(str(i), TaskStatus.SUCCEEDED, submitted, T0 + starts[i], T0 + ends[i])

    reads, delays = [1] * len(starts), [0.0] * len(starts)
    last: dict[int, tuple[float, WanTask]] = {}
    due: list[tuple[float, int, int]] = []
    version = [0] * len(starts)
    for i in range(len(starts)):
        check = read(i, i * 0.01)
        last[i] = (i * 0.01, check)
        heapq.heappush(due, (i * 0.01 + plans[i].next_gap(check, T0 + i * 0.01), 0, i))
    while due:
        now, seen, i = heapq.heappop(due)
        if seen != version[i]:
            continue  # re-planned meanwhile
        reads[i] += 1
        task = read(i, now)
        if task.status is TaskStatus.SUCCEEDED:
            delays[i] = now - ends[i]
            del last[i]
            young = len(history.runs.get(KIND, ())) < 10
            plans[i].learn(task)
            if young:  # what PollSchedule.sleep does: every sleeper of the kind plans again from its last read
                for j, (read_at, seen_task) in last.items():
                    version[j] += 1
                    heapq.heappush(due, (max(now, read_at + plans[j].next_gap(seen_task, T0 + read_at)), version[j], j))
            continue
        last[i] = (now, task)
        version[i] += 1
        heapq.heappush(due, (now + plans[i].next_gap(task, T0 + now), version[i], i))
    return statistics.fmean(reads), statistics.fmean(delays)


@pytest.mark.parametrize("mean", [30.0, 120.0, 300.0])
def test_a_batch_is_noticed_as_soon_as_by_the_sdk_with_a_third_of_its_reads(mean):
    """Acceptance 2 on a model of the benchmark: 16 seeded batches per length, planned vs the SDK's wait()."""
    ours, sdk = [], []
    for seed in range(16):
        starts, ends = _batch(mean, seed)
        ours.append(_planned(starts, ends))
        sdk_runs = [_sdk_reads(end) for end in ends]
        sdk.append((statistics.fmean(r for r, _ in sdk_runs), statistics.fmean(d for _, d in sdk_runs)))
    our_reads, our_delay = statistics.fmean(r for r, _ in ours), statistics.fmean(d for _, d in ours)
    sdk_reads, sdk_delay = statistics.fmean(r for r, _ in sdk), statistics.fmean(d for _, d in sdk)
    assert our_reads <= sdk_reads / 3, (our_reads, sdk_reads)
    assert our_delay <= sdk_delay, (our_delay, sdk_delay)
    # and far sooner than the fixed 15 s interval's 7.5 s on average
    assert our_delay < 3.0
