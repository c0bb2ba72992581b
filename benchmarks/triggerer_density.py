"""
Benchmark 2: triggerer density. N concurrent WanTaskTriggers in one event loop, beside the pattern other providers use.

The triggerer's runner runs every trigger's ``run()`` async generator as a task on one asyncio event loop. This script
does the same in a child process (the *measured* process: nothing else runs in it), for two patterns:

* ``provider``: :class:`~airflow_provider_wan.triggers.wan.WanTaskTrigger` as shipped: aiohttp, one session and one
  rate limiter per event loop (``[wan] task_query_qps``, default 20 GET/s, DashScope's per-account limit);
* ``to_thread``: the pattern of many providers' triggers: a sync hook per trigger (``WanHook``, requests, its own
  pooled session) and each poll a blocking call wrapped in ``asyncio.to_thread`` (the loop's default thread pool).

The DashScope simulator runs in a *separate* process, so its CPU is not counted, with its own rate limit switched off
(``task_query_qps=0``; ``--sim-qps 20`` turns DashScope's sliding-window limit on and counts its 429s): what bounds
the request rate is the client. The N tasks are created through the API first
(PENDING time 0, no concurrency limit); then the child starts N triggers at once and measures

* memory added by N live triggers: peak RSS while they run minus RSS just before they start (psutil);
* CPU seconds of the process from start to the last event (a 10 ms heartbeat's own cost, measured alone for 3 s
  beforehand, is subtracted);
* the longest event-loop stall: a heartbeat coroutine sleeps 10 ms in a loop and records how late it wakes;
* the GET /tasks rate the simulator saw, in sliding 1-second windows (the parent reads ``/_sim/stats`` every 0.1 s).

Log output is off (``WARNING``) in the measured process: the triggerer's one INFO line per poll is Airflow's cost,
the same for both patterns.

Timing: poll interval 60 s, generation 60 s. At 20 GET/s a round of 1,000 polls takes 50 s, and 1,000 triggers
polling every 60 s need 16.7 GET/s on average: feasible under the limit. Every trigger polls twice (the first poll
sees RUNNING, the second, 60 s later, SUCCEEDED), so a run takes about 110 s per pattern.

    python benchmarks/triggerer_density.py [--triggers 1000] [--poll-interval 60] [--generation-seconds 60]
                                           [--patterns provider,to_thread] [--sim-qps 0] [--client-qps Q]

Runtime: about 3.5 minutes for the defaults (provider ~2 min, to_thread ~1 min, plus task creation and start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe

PATTERNS = ("provider", "to_thread")
BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a lighthouse at dawn"}, "parameters": {"duration": 5}}
ENDPOINT = "services/aigc/video-generation/video-synthesis"
DASHSCOPE_QPS = 20
HEARTBEAT = 0.010
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- the measured process -----------------------------------------------------------------------------------------
def _to_thread_trigger_class() -> type:
    """The baseline trigger: a sync hook per trigger, each poll a blocking call in ``asyncio.to_thread``."""
    from airflow.triggers.base import BaseTrigger, TriggerEvent

    from airflow_provider_wan.hooks.wan import WanHook

    class ThreadedPollTrigger(BaseTrigger):
        def __init__(self, *, task_id: str, poll_interval: float, wan_conn_id: str = "wan_default") -> None:
            super().__init__()
            self.wan_task_id = task_id
            self.poll_interval = poll_interval
            self.wan_conn_id = wan_conn_id

        def serialize(self) -> tuple[str, dict[str, Any]]:
            return (
                f"{type(self).__module__}.{type(self).__qualname__}",
                {"task_id": self.wan_task_id, "poll_interval": self.poll_interval, "wan_conn_id": self.wan_conn_id},
            )

        async def run(self) -> AsyncIterator[TriggerEvent]:
            hook = WanHook(wan_conn_id=self.wan_conn_id)
            polls = 0
            try:
                while True:
                    task = await asyncio.to_thread(hook.get_task, self.wan_task_id)
                    polls += 1
                    if task.status.is_terminal():
                        yield TriggerEvent({"status": "success", "task_id": task.task_id, "polls": polls})
                        return
                    await asyncio.sleep(self.poll_interval)
            finally:
                hook.close()

    return ThreadedPollTrigger


class Heartbeat:
    """Sleeps 10 ms in a loop; records how late each wake-up is, and samples RSS every 0.25 s."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.lateness: list[float] = []
        #: seconds after the heartbeat started at which the longest stall ended
        self.worst_at = 0.0
        self.peak_rss = 0
        self._stop = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        ticks = 0
        began = loop.time()
        worst = 0.0
        while not self._stop:
            before = loop.time()
            await asyncio.sleep(HEARTBEAT)
            now = loop.time()
            late = now - before - HEARTBEAT
            self.lateness.append(late)
            if late > worst:
                worst, self.worst_at = late, now - began
            ticks += 1
            if ticks % 25 == 0:
                self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def stop(self) -> None:
        self._stop = True


def _cpu(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def _child_main(pattern: str, ids: list[str], poll_interval: float, limit_s: float) -> dict[str, Any]:
    import psutil

    from airflow_provider_wan.hooks import wan as hook_module
    from airflow_provider_wan.hooks.wan import WanAsyncClient, WanHook
    from airflow_provider_wan.triggers.wan import WanTaskTrigger

    process = psutil.Process()
    threaded = _to_thread_trigger_class()
    # warm-up outside the measurement: imports, the connection lookup, the first session and connection
    if pattern == "provider":
        client = await WanAsyncClient.for_connection("wan_default")
        await client.get_task(ids[0])
    else:
        hook = WanHook()
        await asyncio.to_thread(hook.get_task, ids[0])
        hook.close()

    # the heartbeat's own CPU, alone
    idle = Heartbeat()
    idle_task = asyncio.create_task(idle.run())
    cpu_before, started = _cpu(process), time.monotonic()
    await asyncio.sleep(3.0)
    idle.stop()
    await idle_task
    heartbeat_cpu_per_s = (_cpu(process) - cpu_before) / (time.monotonic() - started)

    triggers: list[Any]
    if pattern == "provider":
        end_time = time.time() + limit_s + 600
        triggers = [WanTaskTrigger(task_id=t, poll_interval=poll_interval, end_time=end_time) for t in ids]
    else:
        triggers = [threaded(task_id=t, poll_interval=poll_interval) for t in ids]

    async def drive(trigger: Any) -> dict[str, Any]:
        events = [event.payload async for event in trigger.run()]
        return {"events": events, "done": time.time()}

    heartbeat = Heartbeat()
    rss_before = process.memory_info().rss
    heartbeat.peak_rss = rss_before
    beat = asyncio.create_task(heartbeat.run())
    cpu_start, wall_start, mono_start = _cpu(process), time.time(), time.monotonic()
    try:
        results = await asyncio.wait_for(asyncio.gather(*(drive(t) for t in triggers)), timeout=limit_s)
    finally:
        elapsed = time.monotonic() - mono_start
        cpu = _cpu(process) - cpu_start
        heartbeat.stop()
        await beat
        if pattern == "provider":
            state = hook_module._loop_state.pop(id(asyncio.get_running_loop()), None)
            if state is not None:
                await state[1].close()
    rss_after = process.memory_info().rss
    statuses = [r["events"][0]["status"] if len(r["events"]) == 1 else f"{len(r['events'])} events" for r in results]
    lateness = sorted(heartbeat.lateness)
    return {
        "pattern": pattern,
        "triggers": len(ids),
        "succeeded": statuses.count("success"),
        "other": sorted(set(statuses) - {"success"}),
        "polls": sum(int(r["events"][0].get("polls", 0)) for r in results if r["events"]),
        "wall_start": wall_start,
        "wall_end": max(r["done"] for r in results),
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "heartbeat_cpu_s": heartbeat_cpu_per_s * elapsed,
        "rss_before": rss_before,
        "rss_peak": heartbeat.peak_rss,
        "rss_after": rss_after,
        "stall_max_ms": lateness[-1] * 1000,
        "stall_max_at_s": heartbeat.worst_at,
        "stall_p99_ms": lateness[int(len(lateness) * 0.99)] * 1000,
        "stalls_over_100ms": sum(1 for x in lateness if x > 0.1),
        "threads_end": process.num_threads(),
    }


def child(args: argparse.Namespace) -> int:
    ids = json.loads(Path(args.ids).read_text())
    result = asyncio.run(_child_main(args.child, ids, args.poll_interval, args.limit))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --- the orchestrating process ------------------------------------------------------------------------------------
class StatsSampler(threading.Thread):
    """Reads the simulator's request counters every 0.1 s: (wall time, GET /tasks/{id} count, 429 count)."""

    PERIOD = 0.1

    def __init__(self, admin_url: str) -> None:
        super().__init__(name="stats-sampler", daemon=True)
        self.admin_url = admin_url
        self.samples: list[tuple[float, int, int]] = []
        self._stop_event = threading.Event()

    def read(self) -> tuple[float, int, int]:
        with _OPENER.open(f"{self.admin_url}/stats", timeout=10) as response:
            stats = json.loads(response.read())
        return time.time(), int(stats["requests"].get("get_task", 0)), int(stats.get("throttled", 0))

    def run(self) -> None:
        next_at = time.monotonic()
        while not self._stop_event.is_set():
            with contextlib.suppress(OSError):
                self.samples.append(self.read())
            next_at += self.PERIOD
            self._stop_event.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(15)


def _rates(samples: list[tuple[float, int, int]], start: float, end: float) -> list[float]:
    """
    GET /tasks in every sliding 1-second window within [start - 1, end + 1]: for each sample, the requests counted
    since the sample taken 1 s before it (samples every 0.1 s, so windows overlap and a burst cannot fall between).
    """
    rates = []
    window = round(1.0 / StatsSampler.PERIOD)
    kept = [x for x in samples if start - 1.0 <= x[0] <= end + 1.0]
    for (t0, n0, _), (t1, n1, _) in zip(kept, kept[window:], strict=False):
        if t1 > t0:
            # counts per window, scaled to exactly 1 s (sampling jitter makes windows 0.95-1.05 s long)
            rates.append((n1 - n0) / (t1 - t0))
    return rates


def _create_tasks(count: int) -> list[str]:
    from concurrent.futures import ThreadPoolExecutor

    from airflow_provider_wan.hooks.wan import WanHook

    local = threading.local()

    def create(_: int) -> str:
        if not hasattr(local, "hook"):
            local.hook = WanHook()
        return str(local.hook.create_task(ENDPOINT, BODY).task_id)

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(create, range(count)))


def run_pattern(sim: Any, pattern: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    sim.reset()
    created = time.monotonic()
    ids = _create_tasks(args.triggers)
    print(f"  [{pattern}] created {len(ids)} tasks in {time.monotonic() - created:.1f} s", flush=True)
    limit = args.generation_seconds + 3 * args.poll_interval + 120
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(ids, handle)
        ids_path = handle.name
    sampler = StatsSampler(sim.admin_url)
    sampler.start()
    cmd = [sys.executable, __file__, "--child", pattern, "--ids", ids_path]
    cmd += ["--poll-interval", str(args.poll_interval), "--limit", str(limit)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=limit + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        sampler.stop()
        os.unlink(ids_path)
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{pattern} child failed ({proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    rates = _rates(sampler.samples, result["wall_start"], result["wall_end"])
    in_run = [s for s in sampler.samples if result["wall_start"] - 1 <= s[0] <= result["wall_end"] + 2]
    result["rate_peak"] = max(rates) if rates else 0.0
    result["rate_mean"] = result["polls"] / max(1e-9, result["wall_end"] - result["wall_start"])
    result["windows_over_limit"] = sum(1 for r in rates if r > DASHSCOPE_QPS * 1.05)
    result["windows"] = len(rates)
    result["seconds_over_limit"] = result["windows_over_limit"] * StatsSampler.PERIOD
    result["throttled"] = (in_run[-1][2] - in_run[0][2]) if len(in_run) > 1 else 0
    early = [x for x in in_run if x[0] <= result["wall_start"] + 5.0]
    result["throttled_first_5s"] = (early[-1][2] - in_run[0][2]) if len(early) > 1 else 0
    return result


def _report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    mib = 1024 * 1024
    print(
        f"\n{args.triggers} triggers, poll interval {args.poll_interval:g} s, "
        f"generation {args.generation_seconds:g} s (simulated, real time)"
    )
    print(
        "\n| pattern | triggers ok | GET polls | run s | memory added (peak RSS - before) | per trigger | "
        "CPU s | CPU ms/poll | peak GET/s (sliding 1 s window) | mean GET/s | time above 21/s | longest loop stall | "
        "p99 stall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        added = r["rss_peak"] - r["rss_before"]
        cpu = r["cpu_s"] - r["heartbeat_cpu_s"]
        print(
            f"| {r['pattern']} | {r['succeeded']}/{r['triggers']} | {r['polls']} | {r['elapsed_s']:.0f} | "
            f"{added / mib:.1f} MiB | {added / r['triggers'] / 1024:.1f} KiB | {cpu:.1f} | "
            f"{cpu / max(1, r['polls']) * 1000:.2f} | {r['rate_peak']:.1f} | {r['rate_mean']:.1f} | "
            f"{r['seconds_over_limit']:.1f} s | {r['stall_max_ms']:.0f} ms | {r['stall_p99_ms']:.1f} ms |"
        )
    print()
    for r in results:
        print(
            f"{r['pattern']}: RSS before {r['rss_before'] / mib:.1f} MiB, peak {r['rss_peak'] / mib:.1f} MiB, "
            f"after {r['rss_after'] / mib:.1f} MiB; heartbeat CPU subtracted {r['heartbeat_cpu_s']:.2f} s; "
            f"stalls > 100 ms: {r['stalls_over_100ms']} (longest {r['stall_max_ms']:.0f} ms, ending "
            f"{r['stall_max_at_s']:.1f} s after the start); threads at end {r['threads_end']}; "
            f"429 from the simulator: {r['throttled']} ({r['throttled_first_5s']} in the first 5 s)"
            + (f"; NOT success: {r['other']}" if r["other"] else "")
        )
    provider = next((r for r in results if r["pattern"] == "provider"), None)
    if provider is not None:
        ok = provider["succeeded"] == provider["triggers"] and provider["rate_peak"] <= DASHSCOPE_QPS * 1.05
        print(
            f"\ngoal: {provider['triggers']} WanTaskTriggers in one loop, every one succeeding, GET /tasks never above "
            f"{DASHSCOPE_QPS}/s in any 1 s window (5% sampling tolerance): {'met' if ok else 'MISSED'} "
            f"(peak {provider['rate_peak']:.1f}/s)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=1000, help="concurrent triggers (default 1000)")
    parser.add_argument("--poll-interval", type=float, default=60.0, help="seconds between polls (default 60)")
    parser.add_argument("--generation-seconds", type=float, default=60.0, help="simulated generation (default 60)")
    parser.add_argument("--patterns", default=",".join(PATTERNS), help="comma-separated: provider,to_thread")
    parser.add_argument(
        "--client-qps",
        type=float,
        default=None,
        help="[wan] task_query_qps for the provider's limiter (default: not set, i.e. the provider's default, 20)",
    )
    parser.add_argument(
        "--sim-qps",
        type=int,
        default=0,
        help="the simulator's own GET /tasks limit (default 0: off); 20 = DashScope's, counting the 429s it would send",
    )
    parser.add_argument("--child", choices=PATTERNS, help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=float, default=600.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from airflow_provider_wan.testing import start_simulator_process

    print(describe(), flush=True)
    # a throw-away AIRFLOW_HOME: nothing is read from or written to the user's
    home = tempfile.mkdtemp(prefix="wan-bench-density-")
    os.environ["AIRFLOW_HOME"] = home
    sim = start_simulator_process(
        pending_seconds=0.0,
        generation_seconds=args.generation_seconds,
        task_query_qps=args.sim_qps,
        max_concurrent_tasks=0,
        create_rps=0,
        log_requests=False,
    )
    try:
        conn = sim.connection_json()
        os.environ["AIRFLOW_CONN_WAN_DEFAULT"] = conn
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        # one INFO line per poll is the triggerer's logging cost, the same for both patterns: left out here
        env.update(AIRFLOW_CONN_WAN_DEFAULT=conn, AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING")
        if args.client_qps is not None:
            env["AIRFLOW__WAN__TASK_QUERY_QPS"] = str(args.client_qps)
        print(
            f"simulator: separate process (pid {sim.pid}), task_query_qps={args.sim_qps} "
            f"({'off' if args.sim_qps == 0 else 'sliding 1 s window, 429 above'}), no concurrency or create limit, "
            f"PENDING 0 s, RUNNING {args.generation_seconds:g} s; provider limiter: [wan] task_query_qps "
            f"{'default (20)' if args.client_qps is None else args.client_qps}",
            flush=True,
        )
        results = [run_pattern(sim, p, args, env) for p in args.patterns.split(",")]
    finally:
        sim.stop()
        shutil.rmtree(home, ignore_errors=True)
    _report(results, args)
    return 0 if all(r["succeeded"] == r["triggers"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
