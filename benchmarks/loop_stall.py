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
* ``per trigger``: the lookup the provider made before, once per trigger (the same ``_look_up`` without the cache).

The connection comes from ``AIRFLOW_CONN_WAN_DEFAULT`` (the cheapest backend: no database, no secrets manager); a
database or a remote secrets backend makes each lookup slower, and the uncached figure larger. Measured over the
first 10 s after the start (the triggers' first reads and the lookups), and the whole run: the longest and the 99th
percentile lateness.

    python benchmarks/loop_stall.py [--triggers 1000]

Runtime: about 2 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
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
from triggerer_density import Heartbeat, _create_tasks

CODES = ("cached", "per trigger")
GENERATION = 30.0


async def _child_main(code: str, ids: list[str]) -> dict[str, Any]:
    from airflow_provider_wan.hooks import wan as hook_module
    from airflow_provider_wan.triggers.wan import WanTaskTrigger

    if code == "per trigger":

        async def for_connection(cls: Any, wan_conn_id: str, **kwargs: Any) -> Any:
            return cls(await hook_module._look_up(wan_conn_id), **kwargs)

        hook_module.WanAsyncClient.for_connection = classmethod(for_connection)  # type: ignore[assignment, method-assign]

    end_time = time.time() + 600
    triggers = [WanTaskTrigger(task_id=t, poll_interval=15.0, end_time=end_time) for t in ids]
    heartbeat = Heartbeat()
    beat = asyncio.create_task(heartbeat.run())
    await asyncio.sleep(0.5)  # the heartbeat runs before the triggers start
    began = time.monotonic()
    offset = len(heartbeat.lateness)

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
    lateness = heartbeat.lateness[offset:]
    # lateness samples are ~10 ms apart when the loop is free: the first 10 s are the first ~1,000 samples or fewer
    first, elapsed = [], 0.0
    for late in lateness:
        elapsed += 0.010 + late
        if elapsed > 10.0:
            break
        first.append(late)
    everything = sorted(lateness)
    first.sort()
    return {
        "code": code,
        "triggers": len(ids),
        "succeeded": statuses.count("success"),
        "run_s": time.monotonic() - began,
        "stall_first_10s_ms": first[-1] * 1000 if first else 0.0,
        "p99_first_10s_ms": first[int(len(first) * 0.99)] * 1000 if first else 0.0,
        "stall_max_ms": everything[-1] * 1000,
        "p99_ms": everything[int(len(everything) * 0.99)] * 1000,
    }


def child(code: str, ids_path: str) -> int:
    ids = json.loads(Path(ids_path).read_text())
    print("RESULT " + json.dumps(asyncio.run(_child_main(code, ids))), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=1000, help="triggers started together (default 1000)")
    parser.add_argument("--codes", default=",".join(CODES), help="comma-separated: cached,per trigger")
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
            print(f"  {code}: longest stall {rows[-1]['stall_max_ms']:.0f} ms", flush=True)
    finally:
        sim.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(f"\n{args.triggers} WanTaskTriggers started in one loop iteration; connection from AIRFLOW_CONN_WAN_DEFAULT")
    print(
        "\n| connection lookup | triggers ok | longest stall, first 10 s | p99, first 10 s | longest stall, whole run "
        "| p99, whole run | run |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['code']} | {r['succeeded']}/{r['triggers']} | {r['stall_first_10s_ms']:.0f} ms | "
            f"{r['p99_first_10s_ms']:.1f} ms | {r['stall_max_ms']:.0f} ms | {r['p99_ms']:.1f} ms | {r['run_s']:.0f} s |"
        )
    cached = next((r for r in rows if r["code"] == "cached"), None)
    if cached is not None:
        ok = cached["succeeded"] == cached["triggers"] and cached["stall_max_ms"] < 50
        print(
            f"\ngoal: {cached['triggers']} triggers starting together, longest loop stall < 50 ms: "
            f"{'met' if ok else 'MISSED'} ({cached['stall_max_ms']:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
