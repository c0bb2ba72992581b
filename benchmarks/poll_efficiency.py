"""
Benchmark 5: poll efficiency. GET /tasks per completed video, and the delay between SUCCEEDED and its detection.

Three ways of waiting for the same videos, each against the DashScope simulator in its own process:

* ``provider, planned``: what a deferrable operator does: one status check before deferring, then the real
  :class:`~airflow_provider_wan.triggers.wan.WanTaskTrigger` with the operators' default ``poll_interval`` (15 s),
  the task's kind and the check's read (``checked``), so reads are planned around the expected end
  (``hooks/schedule.py``). The trigger starts 2 s after the check (the hand-over to the triggerer; ``--handoff``).
  The process starts knowing nothing: it learns from the videos of the batch that end first;
* ``provider, fixed 15 s``: the same, without the kind: a read every ``poll_interval`` (the code before planning);
* ``dashscope SDK wait()``: the official SDK's own loop (``dashscope`` 2.0.2, ``VideoSynthesis.wait``): first poll at
  once, then gaps of 1, 1, 2, 2, 2, 4, 4, 4, 5, 5, 5... s, capped at 5 s (facts section 4.4).

The batch (``--videos``, default 20, all submitted at once, ``wan2.5-t2v-preview`` 5 s videos) runs under
DashScope's concurrency limit for the model (5 at once; the simulator's default from the catalogue), so later videos
wait PENDING for earlier ones, as a real batch does. Generation times are drawn (seeded, the same for every
approach) around 30 s, 2 min and 5 min with a standard deviation of ``--spread`` (default 10%) of the mean, from a
normal distribution cut at 3 standard deviations (default) or a lognormal one (``--distribution lognormal``: a long
tail of slow runs): an assumption, since DashScope publishes no distribution, of a kind whose runs vary by a few
tens of seconds.

Time is compressed: the simulator's ``time_scale`` and every wait are multiplied by ``--scale`` (default 0.1: a
5-minute generation takes 30 s). The provider's intervals (``poll_interval``, the schedule's 1 s minimum gap) are
scaled alike; the SDK's sleeps are scaled by giving its module a ``time`` whose ``sleep`` multiplies by the scale (its
loop and its schedule run unchanged). Request counts are therefore those of real time, and delays are reported in
real-time seconds (measured delay / scale). The provider's per-process pacing is switched off
(``[wan] task_query_qps = 0``): at compressed time its spacing would be stretched 1/scale times; 20 videos read far
below 20/s anyway.

What compression does not scale: the time a read takes (HTTP round trip, JSON, the event loop or the SDK's thread
waking). It is counted 1/scale times in real-time terms, for every approach alike; ``--scale 1`` (real time) measures
without it. The script prints the median round trip of one GET (20 sequential reads through the sync hook) before
and after the rows, so the share of the delays it makes up can be judged.

Delay = when the waiting code returned SUCCEEDED minus the task's ``end_time`` as the simulator reports it (the moment
the task turned SUCCEEDED). For a deferred operator the Airflow resume comes on top (benchmark 1 measures it).

    python benchmarks/poll_efficiency.py [--scale 0.1] [--videos 20] [--spread 0.1] [--distribution normal]

Runtime: about 10 minutes for the defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe

BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a lighthouse at dawn"}, "parameters": {"duration": 5}}
ENDPOINT = "services/aigc/video-generation/video-synthesis"
APPROACHES = ("provider, planned", "provider, fixed 15 s", "dashscope SDK wait()")
DEFAULT_POLL_INTERVAL = 15.0
#: what the operator passes for this body (model, resolution, duration): see WanBaseVideoOperator.task_kind
KIND = "wan2.5-t2v-preview/-/5"
#: DashScope's running tasks per model and account for wan2.5-t2v-preview (the catalogue's, the simulator's default)
CONCURRENCY = 5
UTC8 = timezone(timedelta(hours=8))


def _end_time(text: str) -> float:
    """DashScope's ``end_time`` (``YYYY-MM-DD HH:MM:SS.mmm``, UTC+8) as Unix seconds."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC8).timestamp()


class ScaledTime:
    """The ``time`` module, except that ``sleep`` sleeps ``scale`` times as long: given to the SDK's loop."""

    def __init__(self, scale: float) -> None:
        self._scale = scale

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds * self._scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class Approach:
    """Starts one waiter per created task; ``join`` returns {task_id: (detected at, end_time text)}."""

    def __init__(self, name: str, scale: float, api_key: str, handoff: float) -> None:
        self.name = name
        self.scale = scale
        self.api_key = api_key
        self.handoff = handoff
        self.results: dict[str, tuple[float, str]] = {}
        self.errors: list[str] = []
        self._threads: list[threading.Thread] = []
        self._futures: list[Any] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        if name != "dashscope SDK wait()":
            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, name="trigger-loop", daemon=True)
            self._loop_thread.start()

    # -- one waiter per task ----------------------------------------------------------------------------------------
    async def _deferred(self, task_id: str) -> None:
        from airflow_provider_wan.hooks.wan import WanAsyncClient
        from airflow_provider_wan.triggers.wan import WanTaskTrigger

        # the operator's check before deferring (a finished task never reaches the triggerer)
        client = await WanAsyncClient.for_connection("wan_default")
        task = await client.get_task(task_id)
        checked = time.time()
        await asyncio.sleep(self.handoff * self.scale)
        # as the operator defers: the first read one interval after its own check
        trigger = WanTaskTrigger(
            task_id=task_id,
            poll_interval=DEFAULT_POLL_INTERVAL * self.scale,
            end_time=time.time() + 3600,
            first_poll_at=checked + DEFAULT_POLL_INTERVAL * self.scale,
            kind=KIND if self.name == "provider, planned" else None,
            # as the operator hands its check over (used only with a kind)
            checked=WanTaskTrigger.checked_read(task, checked),
        )
        async for event in trigger.run():
            detected = time.time()
            if event.payload["status"] != "success":
                self.errors.append(f"{task_id}: {event.payload}")
                return
            self.results[task_id] = (detected, event.payload["result"]["end_time"])

    def _sdk(self, task_id: str) -> None:
        from dashscope import VideoSynthesis

        response = VideoSynthesis.wait(task_id, api_key=self.api_key)
        detected = time.time()
        if response.status_code != 200 or response.output.task_status != "SUCCEEDED":
            self.errors.append(f"{task_id}: {response.status_code} {response.code} {response.message}")
            return
        self.results[task_id] = (detected, response.output["end_time"])

    def _guarded(self, target: Callable[[str], None], task_id: str) -> None:
        try:
            target(task_id)
        except Exception as exc:
            self.errors.append(f"{task_id}: {exc!r}")

    def start(self, task_id: str) -> None:
        if self._loop is not None:
            self._futures.append(asyncio.run_coroutine_threadsafe(self._deferred(task_id), self._loop))
            return
        thread = threading.Thread(target=self._guarded, args=(self._sdk, task_id), daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for future in self._futures:
            try:
                future.result(max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                self.errors.append(repr(exc))
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
            if thread.is_alive():
                self.errors.append(f"{thread.name} still waiting after {timeout:.0f} s")

    def close(self) -> None:
        loop = self._loop
        if loop is None:
            return

        async def close_session() -> None:
            from airflow_provider_wan.hooks import wan as hook_module

            state = hook_module._loop_state.pop(id(asyncio.get_running_loop()), None)
            if state is not None:
                await state[1].close()

        asyncio.run_coroutine_threadsafe(close_session(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(10)
        loop.close()


def generation_times(mean: float, args: argparse.Namespace) -> list[float]:
    """The batch's generation times: seeded draws, the same for every approach (see the module docstring)."""
    rnd = random.Random(f"{args.seed}-{mean}")
    sd = mean * args.spread
    if args.distribution == "lognormal":
        # the lognormal with this mean and standard deviation
        sigma = math.sqrt(math.log(1 + args.spread**2))
        return [rnd.lognormvariate(math.log(mean) - sigma**2 / 2, sigma) for _ in range(args.videos)]
    return [min(mean + 3 * sd, max(mean - 3 * sd, rnd.gauss(mean, sd))) for _ in range(args.videos)]


def round_trip_ms(sim: Any) -> float:
    """Median wall-clock milliseconds of one GET /tasks (20 in a row through the sync hook) on this machine now."""
    from airflow_provider_wan.hooks.wan import WanHook

    sim.reset()
    hook = WanHook()
    try:
        task_id = hook.create_task(ENDPOINT, BODY).task_id
        times = []
        for _ in range(20):
            began = time.perf_counter()
            hook.get_task(task_id)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        hook.close()
    return statistics.median(times)


def measure(sim: Any, approach: str, generation: float, args: argparse.Namespace) -> dict[str, Any]:
    from airflow_provider_wan.hooks import schedule
    from airflow_provider_wan.hooks.wan import WanHook

    sim.reset()
    schedule.HISTORY.runs.clear()  # every row starts knowing nothing
    schedule.HISTORY.waiting.clear()
    waiter = Approach(approach, args.scale, sim.api_key, args.handoff)
    hook = WanHook()
    try:
        for length in generation_times(generation, args):
            sim.configure(generation_seconds=length)
            waiter.start(hook.create_task(ENDPOINT, BODY).task_id)
        waves = -(-args.videos // CONCURRENCY)
        waiter.join(timeout=(generation * 1.5 * waves + 60) * args.scale + 60)
    finally:
        hook.close()
        waiter.close()
    stats = sim.stats()
    if waiter.errors or len(waiter.results) != args.videos:
        raise RuntimeError(f"{approach}, {generation:g} s: {len(waiter.results)} results, errors {waiter.errors[:5]}")
    delays = [(detected - _end_time(end)) / args.scale for detected, end in waiter.results.values()]
    return {
        "approach": approach,
        "generation": generation,
        "gets_per_video": stats["requests"].get("get_task", 0) / args.videos,
        "requests_per_video": sum(stats["requests"].values()) / args.videos,
        "delay_mean": statistics.mean(delays),
        "delay_max": max(delays),
        "delay_min": min(delays),
        "throttled": stats.get("throttled", 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.1, help="time compression factor (default 0.1)")
    parser.add_argument("--videos", type=int, default=20, help="videos per approach and length (default 20)")
    parser.add_argument("--spread", type=float, default=0.1, help="standard deviation / mean of runs (default 0.1)")
    parser.add_argument("--distribution", choices=("normal", "lognormal"), default="normal", help="of the runs")
    parser.add_argument("--generations", default="30,120,300", help="mean generation seconds (default 30,120,300)")
    parser.add_argument("--seed", default="wan", help="seed of the generation times (default 'wan')")
    parser.add_argument("--handoff", type=float, default=2.0, help="check-to-first-trigger-poll seconds (default 2)")
    args = parser.parse_args()
    generations = [float(g) for g in args.generations.split(",")]

    print(describe(), flush=True)
    home = tempfile.mkdtemp(prefix="wan-bench-poll-")
    os.environ["AIRFLOW_HOME"] = home
    # no client-side spacing at compressed time (see the module docstring); no log line per poll
    os.environ["AIRFLOW__WAN__TASK_QUERY_QPS"] = "0"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"

    import dashscope
    import dashscope.client.base_api as sdk_base_api

    from airflow_provider_wan.hooks import schedule
    from airflow_provider_wan.testing import start_simulator_process

    sim = start_simulator_process(
        pending_seconds=0.0,
        generation_seconds=30.0,
        time_scale=args.scale,
        task_query_qps=0,
        max_concurrent_tasks=CONCURRENCY,
        create_rps=0,
        log_requests=False,
    )
    real_time = sdk_base_api.time
    rows = []
    try:
        os.environ["AIRFLOW_CONN_WAN_DEFAULT"] = sim.connection_json()
        dashscope.base_http_api_url = sim.base_url
        sdk_base_api.time = ScaledTime(args.scale)  # type: ignore[assignment]
        schedule.MIN_GAP *= args.scale  # the schedule's floor is an interval too: compressed like the others
        print(
            f"scale {args.scale:g}, {args.videos} videos per row submitted at once, {CONCURRENCY} running at once, "
            f"generation times {args.distribution} (sd {args.spread:.0%} of the mean, seed {args.seed!r}), "
            f"simulator pid {sim.pid} (GET limit off), provider poll_interval {DEFAULT_POLL_INTERVAL:g} s "
            f"(operators' default), hand-over to the triggerer {args.handoff:g} s",
            flush=True,
        )
        before = round_trip_ms(sim)
        print(f"one GET round trip before: {before:.1f} ms (x{1 / args.scale:g} in real-time delays)", flush=True)
        for generation in generations:
            for approach in APPROACHES:
                row = measure(sim, approach, generation, args)
                rows.append(row)
                print(f"  {generation:>5.0f} s  {approach:<24} {row['gets_per_video']:.1f} GET/video", flush=True)
        after = round_trip_ms(sim)
        print(f"one GET round trip after: {after:.1f} ms", flush=True)
    finally:
        sdk_base_api.time = real_time
        sim.stop()
        shutil.rmtree(home, ignore_errors=True)

    print(
        "\n| generation | approach | GET /tasks per video | all requests per video | detection delay mean | min | max |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['generation'] / 60:g} min | {r['approach']} | {r['gets_per_video']:.1f} | "
            f"{r['requests_per_video']:.1f} | {r['delay_mean']:.1f} s | {r['delay_min']:.1f} s | "
            f"{r['delay_max']:.1f} s |"
        )
    by = {(r["generation"], r["approach"]): r for r in rows}
    print()
    met = True
    for generation in generations:
        ours = by[(generation, APPROACHES[0])]
        sdk = by[(generation, APPROACHES[2])]
        ok = ours["delay_mean"] <= sdk["delay_mean"] and ours["gets_per_video"] <= sdk["gets_per_video"] / 3
        met = met and ok
        print(
            f"{generation / 60:g} min: planned reads use {ours['gets_per_video'] / sdk['gets_per_video']:.0%} of the "
            f"SDK's GETs; mean detection delay {ours['delay_mean']:.1f} s against the SDK's {sdk['delay_mean']:.1f} s; "
            f"goal (delay <= the SDK's, GETs <= 1/3 of its): {'met' if ok else 'MISSED'}"
        )
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
