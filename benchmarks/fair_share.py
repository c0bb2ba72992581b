"""
Benchmark 6: fair share of one account's task-read limit across 1-4 triggerer processes.

Each triggerer process is a child process running ``--triggers`` (default 300) real
:class:`~airflow_provider_wan.triggers.wan.WanTaskTrigger` in one asyncio loop, as the triggerer's runner does,
all started in the same loop iteration (a triggerer starting up or taking over). 1, 2, 3 and 4 such processes read
tasks of one account from the DashScope simulator, which enforces DashScope's 20 ``GET /tasks`` per second itself
(sliding 1-second window, 429 above). Three codes, in the same run, against the same simulator:

* ``adaptive``: the provider as it is: each process's pacer (``hooks/pacing.py``) adapts to 429s and successes,
  ``[wan] task_query_qps`` = 20 as its ceiling;
* ``fixed``: the code before it: each process releases reads evenly spaced at a fixed 20/s whatever DashScope
  answers (the ``RateLimiter`` this replaced, reproduced here as a pacer that ignores answers);
* ``shares``: the provider as it is, with ``[wan] task_query_qps`` set per process to a whole share of 20 (7, 7
  and 6 for 3 processes), as docs/scaling.rst advises where the number of processes that read is known.

Reads are every 15 s (``poll_interval``; the triggers get no ``kind``, so this isolates the pacing: 300 triggers
per process then ask for 20 reads/s each), generations last 60 s (PENDING 0 s, no concurrency or create limit).
Measured (the simulator's counters read every 0.1 s by this process; each child samples its own queue every 0.1 s):

* GET /tasks sent, 429s among them;
* successful reads per second *while work waits*: over the 0.1 s intervals in which any process had reads queued
  behind its pacer, successful GETs / time, as a share of the 20/s limit;
* every trigger's event; the time from start to the last event;
* each process's successful reads (Jain's fairness index: 1 = equal shares).

    python benchmarks/fair_share.py [--processes 1,2,3,4] [--triggers 300] [--codes adaptive,fixed,shares]

Runtime: about 1.5 minutes per case (3 codes x 4 process counts: about 18 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from triggerer_density import StatsSampler, _create_tasks

LIMIT = 20
CODES = ("adaptive", "fixed", "shares")


# --- a triggerer process ----------------------------------------------------------------------------------------------
def _use_fixed_rate() -> None:
    """The code before the adaptive pacer: reads released at the ceiling, whatever DashScope answers."""
    from airflow_provider_wan.hooks import pacing
    from airflow_provider_wan.hooks import wan as hook_module

    class FixedRatePacer(pacing.Pacer):
        def __init__(self, ceiling: float, **kwargs: Any) -> None:
            super().__init__(ceiling, **kwargs)
            self.rate = ceiling

        def next_start(self) -> float:  # the RateLimiter's even spacing, not the pacer's own window at the ceiling
            return self._last_start + 1.0 / self.rate

        def on_answer(self, *, throttled: bool, retry_after: float | None = None) -> None:
            self.answered += 1
            self.throttled += throttled

    class FixedAsyncPacer(pacing.AsyncPacer):
        def __init__(self, ceiling: float) -> None:
            super().__init__(ceiling)
            self.pacer = FixedRatePacer(ceiling)

    hook_module.AsyncPacer = FixedAsyncPacer  # type: ignore[misc]


async def _triggerer(ids: list[str], poll_interval: float) -> dict[str, Any]:
    from airflow_provider_wan.hooks import wan as hook_module
    from airflow_provider_wan.triggers.wan import WanTaskTrigger

    end_time = time.time() + 1800
    triggers = [WanTaskTrigger(task_id=t, poll_interval=poll_interval, end_time=end_time) for t in ids]
    samples: list[tuple[float, int, float]] = []
    stop = False

    async def sample() -> None:
        while not stop:
            state = hook_module._loop_state.get(id(asyncio.get_running_loop()))
            if state is not None:
                pacer = state[2]
                samples.append((time.time(), len(pacer._waiters), pacer.pacer.rate))
            await asyncio.sleep(0.1)

    async def drive(trigger: WanTaskTrigger) -> str:
        events = [event.payload async for event in trigger.run()]
        return str(events[0]["status"]) if len(events) == 1 else f"{len(events)} events"

    sampler = asyncio.create_task(sample())
    started = time.time()
    statuses = await asyncio.gather(*(drive(t) for t in triggers))
    ended = time.time()
    stop = True
    await sampler
    state = hook_module._loop_state.pop(id(asyncio.get_running_loop()))
    await state[1].close()
    pacer = state[2].pacer
    return {
        "started": started,
        "ended": ended,
        "succeeded": statuses.count("success"),
        "other": sorted(set(statuses) - {"success"}),
        "answered": pacer.answered,
        "throttled": pacer.throttled,
        "samples": samples,
    }


def child(args: argparse.Namespace) -> int:
    if args.child == "fixed":
        _use_fixed_rate()
    from airflow_provider_wan.triggers.wan import WanTaskTrigger  # noqa: F401  (imports done before the start)

    print("READY", flush=True)
    # the parent creates the tasks once every process is ready, then sends each its ids: the go
    ids = json.loads(sys.stdin.readline())
    result = asyncio.run(_triggerer(ids, args.poll_interval))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --- the orchestrating process ------------------------------------------------------------------------------------
def run_case(sim: Any, code: str, processes: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    sim.reset()
    cmd = [sys.executable, __file__, "--child", code, "--poll-interval", str(args.poll_interval)]
    envs = [env] * processes
    if code == "shares":  # whole shares of the limit, the larger ones first: 7, 7, 6
        base, extra = divmod(LIMIT, processes)
        envs = [{**env, "AIRFLOW__WAN__TASK_QUERY_QPS": str(base + (i < extra))} for i in range(processes)]
    children = [
        subprocess.Popen(
            cmd, env=envs[i], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i in range(processes)
    ]
    sampler = StatsSampler(sim.admin_url)
    try:
        for proc in children:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line.startswith("READY"):
                raise RuntimeError(f"child did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        ids = _create_tasks(processes * args.triggers)
        sampler.start()
        time.sleep(0.3)
        for i, proc in enumerate(children):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(ids[i * args.triggers : (i + 1) * args.triggers]) + "\n")
            proc.stdin.flush()
        results = []
        for proc in children:
            out, err = proc.communicate(timeout=args.generation_seconds + 600)
            lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{code} child failed ({proc.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
            results.append(json.loads(lines[-1][len("RESULT ") :]))
    finally:
        for proc in children:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        sampler.stop()
    if args.dump:
        Path(args.dump).write_text(json.dumps({"children": results, "stats": sampler.samples}))
    return _summary(code, processes, results, sampler.samples, args)


def _summary(
    code: str,
    processes: int,
    results: list[dict[str, Any]],
    stats: list[tuple[float, int, int]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    start = min(r["started"] for r in results)
    end = max(r["ended"] for r in results)
    run = [s for s in stats if start - 0.2 <= s[0] <= end + 1.0]
    gets = run[-1][1] - run[0][1]
    throttled = run[-1][2] - run[0][2]
    # 0.1 s intervals of the simulator's counters in which some process had reads queued behind its pacer
    waiting_s = 0.0
    ok_waiting = 0
    queued = sorted((t, n) for r in results for t, n, _ in r["samples"])
    j = 0
    for (t0, n0, k0), (t1, n1, k1) in itertools.pairwise(run):
        while j < len(queued) and queued[j][0] < t0:
            j += 1
        k = j
        busy = False
        while k < len(queued) and queued[k][0] < t1:
            busy = busy or queued[k][1] > 0
            k += 1
        if busy:
            waiting_s += t1 - t0
            ok_waiting += (n1 - n0) - (k1 - k0)
    shares = [r["answered"] - r["throttled"] for r in results]
    jain = sum(shares) ** 2 / (len(shares) * sum(x * x for x in shares)) if any(shares) else 0.0
    return {
        "code": code,
        "processes": processes,
        "triggers": processes * args.triggers,
        "succeeded": sum(r["succeeded"] for r in results),
        "other": sorted({o for r in results for o in r["other"]}),
        "gets": gets,
        "throttled": throttled,
        "run_s": end - start,
        "waiting_s": waiting_s,
        "ok_rate_waiting": ok_waiting / waiting_s if waiting_s else 0.0,
        "shares": shares,
        "jain": jain,
    }


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\n{args.triggers} triggers per process, poll_interval {args.poll_interval:g} s, generation "
        f"{args.generation_seconds:g} s, simulator enforcing {LIMIT} GET/s per account"
    )
    print(
        "\n| processes | code | triggers ok | GET /tasks | 429s | 429 share | time with reads waiting | "
        "successful GET/s while waiting | of the limit | start to last event | successful reads per process | "
        "fairness (Jain) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['processes']} | {r['code']} | {r['succeeded']}/{r['triggers']} | {r['gets']} | {r['throttled']} | "
            f"{r['throttled'] / max(1, r['gets']):.1%} | {r['waiting_s']:.0f} s | {r['ok_rate_waiting']:.1f} | "
            f"{r['ok_rate_waiting'] / LIMIT:.0%} | {r['run_s']:.0f} s | {', '.join(map(str, r['shares']))} | "
            f"{r['jain']:.3f} |"
        )
    print()
    for r in rows:
        if r["code"] == "fixed":
            continue
        ok = (
            r["succeeded"] == r["triggers"]
            and r["throttled"] < 0.01 * r["gets"]
            and r["ok_rate_waiting"] >= 0.9 * LIMIT
        )
        print(
            f"goal, {r['processes']} process(es), {r['code']}: all succeed, 429s < 1% of GETs, successful GETs "
            f">= 90% of {LIMIT}/s while reads wait: {'met' if ok else 'MISSED'} ({r['succeeded']}/{r['triggers']}, "
            f"{r['throttled'] / max(1, r['gets']):.2%}, {r['ok_rate_waiting'] / LIMIT:.0%})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,2,3,4", help="comma-separated process counts (default 1,2,3,4)")
    parser.add_argument("--triggers", type=int, default=300, help="triggers per process (default 300)")
    parser.add_argument("--poll-interval", type=float, default=15.0, help="seconds between reads (default 15)")
    parser.add_argument("--generation-seconds", type=float, default=60.0, help="simulated generation (default 60)")
    parser.add_argument("--codes", default=",".join(CODES), help="comma-separated: adaptive,fixed,shares")
    parser.add_argument("--dump", help="write the last case's raw samples to this JSON file")
    parser.add_argument("--child", choices=CODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    from airflow_provider_wan.testing import start_simulator_process

    print(describe(), flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    home = tempfile.mkdtemp(prefix="wan-bench-share-")
    os.environ["AIRFLOW_HOME"] = home
    sim = start_simulator_process(
        pending_seconds=0.0,
        generation_seconds=args.generation_seconds,
        task_query_qps=LIMIT,
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
        for processes in (int(p) for p in args.processes.split(",")):
            for code in args.codes.split(","):
                row = run_case(sim, code, processes, args, env)
                rows.append(row)
                print(
                    f"  {processes} x {code}: {row['succeeded']}/{row['triggers']} ok, {row['gets']} GETs, "
                    f"{row['throttled']} x 429, {row['ok_rate_waiting']:.1f}/s while waiting, {row['run_s']:.0f} s",
                    flush=True,
                )
    finally:
        sim.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    _report(rows, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
