"""
Benchmark 7: 1,000 WanTaskTriggers starting in one loop iteration: the longest stall of the event loop.

A triggerer that starts (or takes over a failed one's triggers, or sees a big batch defer together) starts every
trigger's ``run()`` in the same loop iteration. Each needs the ``wan`` connection; looked up once per trigger,
1,000 lookups (each through a thread, then key masking and parsing) hold the loop for a long time, and every other
trigger of the process waits. The provider looks the connection up once per loop and connection id, shared by the
callers that arrive meanwhile and kept 30 s (``hooks/lookup.py``).

A child process (the measured one, nothing else in it) runs 1,000 triggers against the simulator (separate process,
its GET limit off, tasks RUNNING 30 s) with a heartbeat coroutine that sleeps 10 ms in a loop and records how late it
wakes, for two codes in the same run:

* ``cached``: the provider as it is;
* ``per trigger``: the lookup the provider made before, once per trigger (the same ``_look_up`` without the cache);
* ``cached + frozen heap``: the provider as it is, in a process whose heap was collected and frozen (``gc.freeze()``)
  before the start: not the provider's doing but a deployment's choice, to show what the full collections cost.

The connection comes from ``AIRFLOW_CONN_WAN_DEFAULT`` (the cheapest backend: no database, no secrets manager); a
database or a remote secrets backend makes each lookup slower, and the uncached figure larger. The child first imports
the triggerer's own module (``airflow.jobs.triggerer_job_runner``), so its modules and its heap (what a full garbage
collection walks) are a triggerer's. Measured over the first 10 s after the start (the triggers' first reads and the
lookups), and the whole run: the longest and the 99th percentile lateness, when the longest stall ended, and the
interpreter's full (generation 2) garbage collections during the run with their durations (``gc.callbacks``), since
those stop the loop too.

    python benchmarks/loop_stall.py [--triggers 1000]

Runtime: about 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe
from triggerer_density import _create_tasks

CODES = ("cached", "per trigger", "cached + frozen heap")
GENERATION = 30.0
HEARTBEAT = 0.010


class Heartbeat:
    """Sleeps 10 ms in a loop; records when each wake-up happened and how late it was (loop clock, seconds)."""

    def __init__(self) -> None:
        self.wakeups: list[tuple[float, float]] = []
        self._stop = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop:
            before = loop.time()
            await asyncio.sleep(HEARTBEAT)
            now = loop.time()
            self.wakeups.append((now, now - before - HEARTBEAT))

    def stop(self) -> None:
        self._stop = True


class FullCollections:
    """Generation-2 garbage collections: (start, seconds) on the monotonic clock (the loop's clock)."""

    def __init__(self) -> None:
        self.done: list[tuple[float, float]] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.monotonic()
        else:
            self.done.append((self._started, time.monotonic() - self._started))


async def _child_main(code: str, ids: list[str]) -> dict[str, Any]:
    # the triggerer's own modules first: a triggerer process has them loaded, and its heap is what a full garbage
    # collection walks
    import airflow.jobs.triggerer_job_runner  # noqa: F401

    from airflow_provider_wan.hooks import wan as hook_module
    from airflow_provider_wan.triggers.wan import WanTaskTrigger

    if code == "per trigger":

        async def for_connection(cls: Any, wan_conn_id: str, **kwargs: Any) -> Any:
            return cls(await hook_module._look_up(wan_conn_id), **kwargs)

        hook_module.WanAsyncClient.for_connection = classmethod(for_connection)  # type: ignore[assignment, method-assign]

    end_time = time.time() + 600
    triggers = [WanTaskTrigger(task_id=t, poll_interval=15.0, end_time=end_time) for t in ids]
    if code == "cached + frozen heap":
        # not the provider's doing, a deployment's choice (Airflow's scheduler does it before forking): what is
        # already there is left out of every later full collection, so those walk only what is new
        gc.collect()
        gc.freeze()
    heartbeat = Heartbeat()
    collections = FullCollections()
    gc.callbacks.append(collections)
    objects_before = len(gc.get_objects()) + gc.get_freeze_count()
    beat = asyncio.create_task(heartbeat.run())
    await asyncio.sleep(0.5)  # the heartbeat runs before the triggers start
    began = time.monotonic()
    offset = len(heartbeat.wakeups)

    async def drive(trigger: WanTaskTrigger) -> str:
        events = [event.payload async for event in trigger.run()]
        return str(events[0]["status"]) if len(events) == 1 else f"{len(events)} events"

    # every run() started in this one loop iteration, as the triggerer's runner does with a batch of new triggers
    tasks = [asyncio.ensure_future(drive(t)) for t in triggers]
    statuses = await asyncio.gather(*tasks)
    heartbeat.stop()
    await beat
    state = hook_module._loop_state.pop(id(asyncio.get_running_loop()), None)
    if state is not None:
        await state[1].close()
    gc.callbacks.remove(collections)
    wakeups = heartbeat.wakeups[offset:]
    worst_at, worst = max(wakeups, key=lambda w: w[1])
    first = sorted(late for at, late in wakeups if at - began <= 10.0)
    later = [late for at, late in wakeups if at - began > 10.0]
    everything = sorted(late for _, late in wakeups)
    full = [(at - began, seconds) for at, seconds in collections.done if at >= began]

    def during_full_collection(at: float, late: float) -> bool:
        woke_after = at - late - HEARTBEAT
        return any(start < at and start + seconds > woke_after for start, seconds in collections.done)

    outside_at, outside = max(
        ((at, late) for at, late in wakeups if not during_full_collection(at, late)), key=lambda w: w[1]
    )
    return {
        "code": code,
        "triggers": len(ids),
        "succeeded": statuses.count("success"),
        "run_s": time.monotonic() - began,
        "stall_first_10s_ms": first[-1] * 1000 if first else 0.0,
        "p99_first_10s_ms": first[int(len(first) * 0.99)] * 1000 if first else 0.0,
        "stall_max_ms": worst * 1000,
        "stall_after_10s_ms": max(later, default=0.0) * 1000,
        "stall_max_ended_s": worst_at - began,
        "p99_ms": everything[int(len(everything) * 0.99)] * 1000,
        "stall_outside_gc_ms": outside * 1000,
        "stall_outside_gc_ended_s": outside_at - began,
        "objects_before": objects_before,
        "full_gcs": [[round(at, 2), round(seconds * 1000, 1)] for at, seconds in full],
    }


def child(code: str, ids_path: str) -> int:
    ids = json.loads(Path(ids_path).read_text())
    print("RESULT " + json.dumps(asyncio.run(_child_main(code, ids))), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=1000, help="triggers started together (default 1000)")
    parser.add_argument("--codes", default=",".join(CODES), help="comma-separated, of: " + "; ".join(CODES))
    parser.add_argument("--child", choices=CODES, help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.ids)

    from airflow_provider_wan.testing import start_simulator_process

    print(describe(), flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    home = tempfile.mkdtemp(prefix="wan-bench-stall-")
    os.environ["AIRFLOW_HOME"] = home
    sim = start_simulator_process(
        pending_seconds=0.0,
        generation_seconds=GENERATION,
        task_query_qps=0,
        max_concurrent_tasks=0,
        create_rps=0,
        log_requests=False,
    )
    rows = []
    try:
        conn = sim.connection_json()
        os.environ["AIRFLOW_CONN_WAN_DEFAULT"] = conn
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        env.update(AIRFLOW_CONN_WAN_DEFAULT=conn, AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING", AIRFLOW_HOME=home)
        for code in args.codes.split(","):
            sim.reset()
            ids = _create_tasks(args.triggers)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump(ids, handle)
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", code, "--ids", handle.name],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=GENERATION + 300,
                    check=False,
                )
            finally:
                os.unlink(handle.name)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(
                    f"{code} child failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
                )
            rows.append(json.loads(lines[-1][len("RESULT ") :]))
            r = rows[-1]
            print(
                f"  {code}: longest stall {r['stall_max_ms']:.0f} ms, ending {r['stall_max_ended_s']:.2f} s after the "
                f"start; outside full collections {r['stall_outside_gc_ms']:.0f} ms, ending "
                f"{r['stall_outside_gc_ended_s']:.2f} s after the start; after the first 10 s "
                f"{r['stall_after_10s_ms']:.0f} ms; heap {r['objects_before']} objects; full "
                f"collections (s after the start, ms): {r['full_gcs']}",
                flush=True,
            )
    finally:
        sim.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"\n{args.triggers} WanTaskTriggers started in one loop iteration; connection from AIRFLOW_CONN_WAN_DEFAULT")
    print(
        "\n| connection lookup | triggers ok | longest stall, first 10 s | p99, first 10 s | longest stall, whole run "
        "| it ended | p99, whole run | full GCs: count, longest | longest stall outside full GCs | run |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gcs = r["full_gcs"]
        longest_gc = f"{max(ms for _, ms in gcs):.0f} ms" if gcs else "-"
        print(
            f"| {r['code']} | {r['succeeded']}/{r['triggers']} | {r['stall_first_10s_ms']:.0f} ms | "
            f"{r['p99_first_10s_ms']:.1f} ms | {r['stall_max_ms']:.0f} ms | {r['stall_max_ended_s']:.2f} s | "
            f"{r['p99_ms']:.1f} ms | {len(gcs)}, {longest_gc} | {r['stall_outside_gc_ms']:.0f} ms | "
            f"{r['run_s']:.0f} s |"
        )
    cached = next((r for r in rows if r["code"] == "cached"), None)
    if cached is not None:
        ok = cached["succeeded"] == cached["triggers"] and cached["stall_max_ms"] < 50
        print(
            f"\ngoal: {cached['triggers']} triggers starting together, longest loop stall < 50 ms: "
            f"{'met' if ok else 'MISSED'} ({cached['stall_max_ms']:.0f} ms; outside the interpreter's full garbage "
            f"collections {cached['stall_outside_gc_ms']:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
