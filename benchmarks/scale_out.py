"""
Benchmark 8: a batch through a distributed deployment: CeleryExecutor, 2 Celery workers, 2 triggerers.

The deployment of ``tests/distributed.py``: api-server, scheduler (CeleryExecutor), dag-processor, two triggerers
and two Celery workers (``--worker-slots`` each, default 4), every one its own process, on a PostgreSQL metadata DB
and a Redis broker started on loopback from the Debian packages. One DAG run maps ``WanTextToVideoOperator``
(``deferrable=True``, ``poll_interval`` 15 s, ``retries=2``) over ``--videos`` prompts (default 200). The DashScope
simulator (own process) enforces the account's 20 ``GET /tasks`` per second and the model's 5 creates per second
(catalogue); its concurrency limit (5 running tasks per model) is off so the batch is about Airflow, not DashScope's
queue (``--concurrency 5`` turns it on: then the makespan is DashScope's). Generations last ``--generation-seconds``
(default 60), PENDING 0 s.

Measured: the DAG run's state and makespan (``end_date - start_date``), every task instance's state, tasks the
simulator created (exactly one per video: nothing paid twice), GET /tasks and their 429s, creates and their 429s,
worker-slot seconds (task instances sampled every 0.5 s, time in ``running`` summed), and which triggerers ran
triggers.

    python benchmarks/scale_out.py [--videos 200] [--generation-seconds 60] [--worker-slots 4]

Runtime: about 6 minutes for the defaults (1.5 of them starting the deployment).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe

if TYPE_CHECKING:
    from tests.distributed import DistributedStack

DAG_ID = "scale_out"


class SlotSampler(threading.Thread):
    """Task instance states every 0.5 s: seconds spent ``running`` (worker slots held) and the most deferred."""

    PERIOD = 0.5

    def __init__(self, stack: DistributedStack, run_id: str) -> None:
        super().__init__(name="slot-sampler", daemon=True)
        self.stack = stack
        self.run_id = run_id
        self.slot_seconds = 0.0
        self.max_deferred = 0
        self.max_running = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                rows = self.stack.query(
                    "SELECT state, COUNT(*) AS n FROM task_instance WHERE dag_id = ? AND run_id = ? GROUP BY state",
                    (DAG_ID, self.run_id),
                )
            except Exception:  # a query may meet a restarting DB connection; the next sample counts
                rows = []
            by_state = {r["state"]: int(r["n"]) for r in rows}
            self.slot_seconds += by_state.get("running", 0) * self.PERIOD
            self.max_deferred = max(self.max_deferred, by_state.get("deferred", 0))
            self.max_running = max(self.max_running, by_state.get("running", 0))
            self._stop_event.wait(self.PERIOD)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def _seconds(start: Any, end: Any) -> float:
    if isinstance(start, str):
        start, end = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return float((end - start).total_seconds())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=200, help="videos in the batch (default 200)")
    parser.add_argument("--generation-seconds", type=float, default=60.0, help="simulated generation (default 60)")
    parser.add_argument("--worker-slots", type=int, default=4, help="task slots per Celery worker (default 4)")
    parser.add_argument("--concurrency", type=int, default=0, help="DashScope running tasks per model (default off)")
    args = parser.parse_args()
    # the deployment lives with the tests (tests/distributed.py), one directory up
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.distributed import DistributedStack, batch_dag_source, missing_system_packages

    missing = missing_system_packages()
    if missing:
        print(f"missing Debian packages: {' '.join(missing)} (apt-get install them, or run scripts/test.sh)")
        return 2

    from airflow_provider_wan.testing import start_simulator_process

    print(describe(), flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    sim = start_simulator_process(
        pending_seconds=0.0,
        generation_seconds=args.generation_seconds,
        max_concurrent_tasks=args.concurrency,
        log_requests=False,
    )
    try:
        stack = DistributedStack(
            workers=2,
            worker_concurrency=args.worker_slots,
            triggerers=2,
            env={"AIRFLOW_CONN_WAN_DEFAULT": sim.connection_json()},
        )
        began = time.monotonic()
        with stack:
            print(f"deployment up in {time.monotonic() - began:.0f} s: {', '.join(stack.components)}", flush=True)
            stack.write_dag(f"{DAG_ID}.py", batch_dag_source(DAG_ID, args.videos, poll_interval=15.0))
            run_id = stack.run_dag(DAG_ID, timeout=180)
            sampler = SlotSampler(stack, run_id)
            sampler.start()
            try:
                state = stack.wait_for_run(DAG_ID, run_id, timeout=args.generation_seconds * 4 + args.videos * 5 + 600)
            finally:
                sampler.stop()
            run = stack.query(
                "SELECT start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
            )
            makespan = _seconds(run[0]["start_date"], run[0]["end_date"])
            tis = stack.task_instances(DAG_ID, run_id)
            states: dict[str, int] = {}
            for ti in tis:
                states[str(ti["state"])] = states.get(str(ti["state"]), 0) + 1
            tries = sum(int(ti["try_number"]) for ti in tis)
            triggerers = stack.query("SELECT COUNT(*) AS n FROM job WHERE job_type = 'TriggererJob'")
        stats = sim.stats()
    finally:
        sim.stop()
    responses = stats.get("responses", {})
    gets = stats["requests"].get("get_task", 0)
    get_429 = responses.get("get_task", {}).get("429", 0)
    creates = stats["requests"].get("create", 0)
    create_429 = responses.get("create", {}).get("429", 0)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(
        f"\n{args.videos} videos, one mapped WanTextToVideoOperator (deferrable, poll_interval 15 s); CeleryExecutor, "
        f"2 workers x {args.worker_slots} slots, 2 triggerers, PostgreSQL + Redis; generation "
        f"{args.generation_seconds:g} s; simulator: 20 GET/s per account, 5 creates/s per model, concurrency "
        f"{'off' if not args.concurrency else args.concurrency}"
    )
    print(
        "\n| run | task instances | tries | tasks created | makespan | worker-slot seconds | max running | "
        "max deferred | GET /tasks | GET 429s | creates | create 429s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {state} | {', '.join(f'{n} {s}' for s, n in sorted(states.items()))} | {tries} | "
        f"{stats['tasks_created']} | {makespan:.0f} s | {sampler.slot_seconds:.0f} | {sampler.max_running} | "
        f"{sampler.max_deferred} | {gets} | {get_429} ({get_429 / max(1, gets):.2%}) | {creates} | "
        f"{create_429} ({create_429 / max(1, creates):.2%}) |"
    )
    print(f"triggerer jobs registered: {triggerers[0]['n']}")
    all_429 = get_429 + create_429
    ok = (
        state == "success"
        and states == {"success": args.videos}
        and stats["tasks_created"] == args.videos
        and all_429 < 0.01 * (gets + creates)
    )
    print(
        f"\ngoal: all {args.videos} succeed, exactly {args.videos} tasks created, 429s < 1% of requests: "
        f"{'met' if ok else 'MISSED'} ({states}, {stats['tasks_created']} created, "
        f"{all_429 / max(1, gets + creates):.2%} 429s)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
