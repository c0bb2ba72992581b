"""Poll planning around the expected end (hooks/schedule.py): learned runs, PENDING bound, dense window."""

from __future__ import annotations

import pytest

from airflow_provider_wan.hooks.schedule import (
    MAX_GAP_FACTOR,
    MIN_GAP,
    PollSchedule,
    RunHistory,
    parse_task_time,
    task_kind,
)
from airflow_provider_wan.hooks.wan import TaskStatus, WanTask
from airflow_provider_wan.testing._state import format_time

KIND = task_kind("wan2.5-t2v-preview", "720P", 5)
T0 = 1_800_000_000.0


def _ended(started: float, ran: float) -> WanTask:
    return WanTask(
        task_id="t",
        status=TaskStatus.SUCCEEDED,
        scheduled_time=format_time(started),
        end_time=format_time(started + ran),
    )


def _running(started: float) -> WanTask:
    return WanTask(task_id="t", status=TaskStatus.RUNNING, scheduled_time=format_time(started))


def _learned(*runs: float) -> RunHistory:
    history = RunHistory()
    for ran in runs:
        history.record(KIND, _ended(T0 - 1000, ran))
    return history


def test_dashscope_times_are_utc8():
    assert parse_task_time("2027-01-15 08:00:00.000") == parse_task_time("2027-01-15 08:00:00")
    assert parse_task_time(format_time(T0 + 0.25)) == T0 + 0.25
    assert parse_task_time(None) is None
    assert parse_task_time("yesterday") is None


def test_without_an_estimate_the_configured_interval():
    schedule = PollSchedule(interval=15, kind=KIND, history=RunHistory())
    assert schedule.next_gap(_running(T0), T0 + 30) == 15
    assert PollSchedule(interval=15, kind=None).next_gap(_running(T0), T0 + 30) == 15


def test_learns_runs_of_its_kind_only():
    history = RunHistory()
    schedule = PollSchedule(interval=15, kind=KIND, history=history)
    schedule.learn(_ended(T0, 120))
    schedule.learn(WanTask(task_id="t", status=TaskStatus.SUCCEEDED))  # no times: nothing to learn
    assert history.estimate(KIND) == (120.0, 120 * 0.1)  # one run: a wide spread until more are seen
    assert history.estimate(task_kind("wan2.5-t2v-preview", "1080P", 5)) is None


def test_running_far_from_the_end_sleeps_until_the_window_opens():
    history = _learned(*[118, 120, 122, 119, 121, 120])  # mean 120, spread floored at 3% = 3.6 s
    schedule = PollSchedule(interval=15, kind=KIND, history=history)
    mean, spread = history.estimate(KIND)  # type: ignore[misc]
    # 20 s into a 120 s run: next read when the window (mean - 2 spreads) opens, capped at 4 x 15 s
    assert schedule.next_gap(_running(T0), T0 + 20) == 15 * MAX_GAP_FACTOR
    assert schedule.next_gap(_running(T0), T0 + 90) == pytest.approx(mean - 2 * spread - 90)
    # inside the window: densest at the expected end, half the distance to it elsewhere
    assert schedule.next_gap(_running(T0), T0 + mean) == pytest.approx(max(1.0, spread / 4))
    assert schedule.next_gap(_running(T0), T0 + mean - 1.5 * spread) == pytest.approx(0.75 * spread)
    assert schedule.next_gap(_running(T0), T0 + mean + 2 * spread) == pytest.approx(spread)
    # far past it: back towards the interval, never beyond
    assert schedule.next_gap(_running(T0), T0 + mean + 1000) == 15


def test_pending_waits_the_shortest_likely_run():
    schedule = PollSchedule(interval=15, kind=KIND, history=_learned(*[40] * 6))
    pending = WanTask(task_id="t", status=TaskStatus.PENDING)
    mean, spread = schedule.history.estimate(KIND)  # type: ignore[misc]
    assert schedule.next_gap(pending, T0) == pytest.approx(mean - 2 * spread)
    short = PollSchedule(interval=15, kind=KIND, history=_learned(0.5, 0.5))
    assert short.next_gap(pending, T0) == MIN_GAP


def test_sooner_notice_for_about_the_same_reads_as_a_fixed_interval():
    """Tasks among runs of 110-130 s: reads and the delay to notice them, against every-15-s polling."""
    history = _learned(*[110 + 20 * i / 9 for i in range(10)])
    totals = {"planned": [0, 0.0], "fixed": [0, 0.0]}
    for ran in (111.0, 115.0, 120.0, 125.0, 129.0):
        plans = {"planned": PollSchedule(interval=15, kind=KIND, history=history), "fixed": PollSchedule(interval=15)}
        for name, plan in plans.items():
            now, reads = T0 + 15, 1  # the first read, 15 s after the start
            while now < T0 + ran:
                now += plan.next_gap(_running(T0), now)
                reads += 1
            totals[name][0] += reads
            totals[name][1] += now - (T0 + ran)
    assert totals["planned"][0] <= totals["fixed"][0] + 5, totals
    assert totals["planned"][1] / 5 <= 2.5, totals
    assert totals["fixed"][1] / 5 >= 5, totals
