"""
Benchmark 1: worker-slot economy. N generations started together on a real Airflow stack with 2 worker slots.

A real scheduler (LocalExecutor, ``[core] parallelism`` = 2: two worker slots), triggerer, dag-processor and
api-server (``tests/stack.py``), and the DashScope simulator in its own process, all on 127.0.0.1. One DAG run holds
N independent ``WanTextToVideoOperator`` tasks; each generation takes 30 s (simulator ``generation_seconds=30``,
``pending_seconds=0``). The simulator's per-model concurrency limit (DashScope's 5 running tasks per model and
account) and its create-rate limit are switched off, so DashScope's queue is not the bottleneck: only Airflow's slots
are. The GET /tasks limit stays at DashScope's 20/s (N tasks polling every 5 s need N/5 per second).

The same DAG runs twice, in the same stack: ``deferrable=True`` (the worker submits, checks once and defers; the
triggerer polls; a slot is taken again only to resume) and ``deferrable=False`` (the worker polls, holding its slot
for the whole generation). Poll interval 5 s in both (``--poll-interval``).

Makespan = the DAG run's ``end_date - start_date`` from the metadata DB. Also printed: when the last of the N
DashScope tasks was created (how long submission took with 2 slots), the worker-slot seconds used (TI states sampled
every 0.5 s, time in ``running`` summed), and the most tasks deferred at once.

    python benchmarks/worker_slots.py [--videos 20] [--generation-seconds 30] [--poll-interval 5] [--slots 2]

Runtime: about 7 minutes for the defaults (stack start 20-40 s, deferrable ~1 min, worker-bound ~5.5 min).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.stack
from _machine import describe

from tests.stack import AirflowStack

MODES = ("deferrable", "worker")
MODEL = "wan2.5-t2v-preview"
GOAL_FACTOR = 1.5

DAG_TEMPLATE = """\
from __future__ import annotations

import pendulum
from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanTextToVideoOperator

with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False, max_active_tasks=64):
    for i in range({videos}):
        WanTextToVideoOperator(
            task_id=f"generate_{{i:02d}}",
            model={model!r},
            prompt=f"a lighthouse at dawn, take {{i}}",
            duration=5,
            deferrable={deferrable},
            poll_interval={poll_interval},
            timeout=1800,
        )
"""


def _ts(value: Any) -> float:
    """A timestamp column of the metadata DB (ISO text in sqlite) as Unix seconds."""
    text = str(value).replace(" ", "T")
    moment = datetime.fromisoformat(text)
    return moment.timestamp()


def run_mode(stack: AirflowStack, sim: Any, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    dag_id = f"wan_slots_{mode}"
    sim.reset()
    stack.wait_for_dag(dag_id, timeout=120)
    stack.unpause(dag_id)
    triggered = time.time()
    run_id = stack.trigger(dag_id)
    waves = -(-args.videos // args.slots)
    limit = waves * (args.generation_seconds + args.poll_interval + 30) + 180
    samples: list[tuple[float, dict[str, int]]] = []

    def finished() -> bool:
        dead = [c.name for c in stack.components.values() if not c.alive()]
        if dead:
            raise RuntimeError(f"Airflow component(s) exited: {dead}\n{stack.diagnostics()}")
        counts: dict[str, int] = {}
        for row in stack.task_instances(dag_id, run_id):
            counts[str(row["state"])] = counts.get(str(row["state"]), 0) + 1
        samples.append((time.monotonic(), counts))
        return stack.run_state(dag_id, run_id) in ("success", "failed")

    stack.wait_until(finished, timeout=limit, interval=0.5, what=f"run {dag_id}")
    done = time.time()
    run = stack.query(
        "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id)
    )[0]
    tis = stack.task_instances(dag_id, run_id)
    sim_tasks = {t["task_id"]: t for t in sim.tasks()}
    created = sorted(t["created"] for t in sim_tasks.values())
    # per Airflow task: from its DashScope task's end (created + generation: PENDING 0, no queue) to the TI's end,
    # i.e. detection by polling plus, when deferred, the resume in a worker slot
    lags = []
    for ti in tis:
        try:
            wan_id = stack.xcom(dag_id, run_id, ti["task_id"], key="wan_task_id")
        except KeyError:
            continue
        if wan_id in sim_tasks and ti["end_date"]:
            lags.append(_ts(ti["end_date"]) - (sim_tasks[wan_id]["created"] + args.generation_seconds))
    stats = sim.stats()
    slot_seconds = sum((t1 - t0) * c0.get("running", 0) for (t0, c0), (t1, _) in itertools.pairwise(samples))
    run_start = _ts(run["start_date"])
    return {
        "mode": mode,
        "state": run["state"],
        "ti_states": sorted({str(t["state"]) for t in tis}),
        "makespan": _ts(run["end_date"]) - run_start,
        "trigger_to_done": done - triggered,
        "first_created": created[0] - run_start if created else float("nan"),
        "last_created": created[-1] - run_start if created else float("nan"),
        "tasks_created": stats.get("tasks_created", 0),
        "lag_mean": statistics.mean(lags) if lags else float("nan"),
        "lag_max": max(lags) if lags else float("nan"),
        "get_task": stats["requests"].get("get_task", 0),
        "throttled": stats.get("throttled", 0),
        "slot_seconds": slot_seconds,
        "max_deferred": max((c.get("deferred", 0) for _, c in samples), default=0),
        "max_running": max((c.get("running", 0) for _, c in samples), default=0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=20, help="generations started together (default 20)")
    parser.add_argument("--generation-seconds", type=float, default=30.0, help="one generation (default 30)")
    parser.add_argument("--poll-interval", type=float, default=5.0, help="operator poll_interval (default 5)")
    parser.add_argument("--slots", type=int, default=2, help="worker slots, [core] parallelism (default 2)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: deferrable,worker")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]

    from airflow_provider_wan.testing import start_simulator_process

    print(describe(), flush=True)
    sim = start_simulator_process(
        pending_seconds=0.0,
        generation_seconds=args.generation_seconds,
        max_concurrent_tasks=0,
        create_rps=0,
        log_requests=False,
    )
    stack: AirflowStack | None = None
    results = []
    try:
        conn = sim.connection_json()
        stack = AirflowStack(env={"AIRFLOW_CONN_WAN_DEFAULT": conn}, parallelism=args.slots)
        started = time.monotonic()
        stack.start()
        print(
            f"stack healthy in {time.monotonic() - started:.1f} s: LocalExecutor, parallelism {args.slots} "
            f"(worker slots), triggerer, dag-processor, api-server; simulator pid {sim.pid}: PENDING 0 s, RUNNING "
            f"{args.generation_seconds:g} s, per-model concurrency and create-rate limits OFF, GET /tasks limit 20/s; "
            f"{args.videos} tasks per run, poll_interval {args.poll_interval:g} s",
            flush=True,
        )
        for mode in modes:
            source = DAG_TEMPLATE.format(
                dag_id=f"wan_slots_{mode}",
                videos=args.videos,
                model=MODEL,
                deferrable=mode == "deferrable",
                poll_interval=args.poll_interval,
            )
            stack.write_dag(f"wan_slots_{mode}.py", source)
        for mode in modes:
            result = run_mode(stack, sim, mode, args)
            results.append(result)
            print(
                f"  {mode}: run {result['state']} in {result['makespan']:.1f} s "
                f"(last DashScope task created at +{result['last_created']:.1f} s)",
                flush=True,
            )
    finally:
        if stack is not None:
            stack.stop()
        sim.stop()

    one = args.generation_seconds
    goal = GOAL_FACTOR * one
    print(
        f"\n{args.videos} generations of {one:g} s, {args.slots} worker slots, poll interval {args.poll_interval:g} s"
    )
    print(
        "\n| mode | run state | makespan (DAG run) | / one generation | trigger to done | last task created at | "
        "generation end to TI success: mean / max | worker-slot seconds | max deferred at once | GET /tasks | 429s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['mode']} | {r['state']} | {r['makespan']:.1f} s | {r['makespan'] / one:.2f}x | "
            f"{r['trigger_to_done']:.1f} s | +{r['last_created']:.1f} s | "
            f"{r['lag_mean']:.1f} s / {r['lag_max']:.1f} s | {r['slot_seconds']:.0f} | "
            f"{r['max_deferred']} | {r['get_task']} | {r['throttled']} |"
        )
    by_mode = {r["mode"]: r for r in results}
    ok = True
    if "deferrable" in by_mode:
        deferrable = by_mode["deferrable"]
        met = deferrable["state"] == "success" and deferrable["makespan"] <= goal
        ok = met
        print(
            f"\ngoal: deferrable makespan within {GOAL_FACTOR}x one generation ({goal:.0f} s): "
            f"{'met' if met else 'MISSED'} ({deferrable['makespan']:.1f} s, {deferrable['makespan'] / one:.2f}x)"
        )
    if "deferrable" in by_mode and "worker" in by_mode:
        ratio = by_mode["worker"]["makespan"] / by_mode["deferrable"]["makespan"]
        print(f"worker-bound / deferrable makespan: {ratio:.1f}x")
    return 0 if ok and all(r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
