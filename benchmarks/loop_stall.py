"""
Benchmark 7: 1,000 WanTaskTriggers starting in one loop iteration: the longest stall of the event loop.

A triggerer that starts (or takes over a failed one's triggers, or sees a big batch defer together) starts every
trigger's ``run()`` in the same loop iteration. Two things used to hold its loop for long: the ``wan`` connection
looked up once per trigger (now once per loop and connection id, ``hooks/lookup.py``; section 10 of RESULTS.md) and
the interpreter's full (generation 2) garbage collection of the triggerer's whole heap (about 200,000 objects), which
the new triggers' objects set off. The provider now freezes the heap (``gc.freeze()``) once per process, when its
first trigger starts (``[wan] freeze_heap_in_triggerer``, on by default; ``triggers/wan.py`` ``freeze_heap_once``).

A child process (the measured one, nothing else in it) runs two bursts of triggers against the simulator (separate
process, its GET limit off, tasks RUNNING 30 s, as many running at once as one burst has): the first burst's 1,000
``run()`` calls start in one loop iteration; when they have all ended and 5 s have passed, a second burst of 1,000
starts the same way (after the freeze: its full collections walk only what was made since). A heartbeat coroutine
sleeps 10 ms in a loop and records how late it wakes. Two codes, in the same run, the same simulator:

* ``provider``: the provider as shipped (the heap frozen at the first trigger's start);
* ``provider, freeze off``: ``[wan] freeze_heap_in_triggerer = False`` (the behaviour before).

(The older ``per trigger`` code, the connection lookup without the cache, is gone: sections 10 and 10b measured it
against the cache; what is left to measure is the collection.)

The connection comes from ``AIRFLOW_CONN_WAN_DEFAULT`` (the cheapest backend: no database, no secrets manager). The
child first imports the triggerer's own module (``airflow.jobs.triggerer_job_runner``), so its modules and its heap
(what a full garbage collection walks) are a triggerer's. Per burst: the longest and the 99th percentile lateness over
its first 10 s and over the whole burst, when the longest stall ended, the interpreter's full collections during the
burst with their durations (``gc.callbacks``), and the longest stall outside them. Per code: how long the freeze took
(from the provider's log record), the objects frozen (counted before the second burst, outside the measured window:
counting them walks them all), the process's RSS after each burst, and at the end what the freeze keeps alive: after a
full ``gc.collect()``, ``gc.unfreeze()`` and a second one (with ``gc.DEBUG_SAVEALL``) count the objects that only the
freeze had kept (cyclic garbage among the frozen objects), their shallow size (``sys.getsizeof``: not what only they
referenced, a lower bound), and the RSS the process gave back once they were freed; and how long that first full
collection took (what a full collection costs at that point, with and without the freeze).

    python benchmarks/loop_stall.py [--triggers 1000] [--bursts 2] [--codes "provider;provider, freeze off"]

Runtime: about 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
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

CODES = ("provider", "provider, freeze off")
GENERATION = 30.0
HEARTBEAT = 0.010
#: seconds of quiet between the first burst's end and the second burst's start
BETWEEN_BURSTS = 5.0


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


class FreezeRecords(logging.Handler):
    """The provider's own log record of the freeze (the milliseconds it took)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.args: list[tuple[Any, ...]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Froze this process's heap") and isinstance(record.args, tuple):
            self.args.append(record.args)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _burst(ids: list[str], heartbeat: Heartbeat, collections: FullCollections) -> dict[str, Any]:
    """Start one run() per id in this loop iteration, wait for every event; the heartbeat's lateness meanwhile."""
    from airflow_provider_wan.triggers.wan import WanTaskTrigger

    end_time = time.time() + 600
    triggers = [WanTaskTrigger(task_id=t, poll_interval=15.0, end_time=end_time) for t in ids]
    objects_before = len(gc.get_objects()) + gc.get_freeze_count()
    frozen_before = gc.get_freeze_count()
    await asyncio.sleep(0.5)  # the heartbeat runs before the triggers start
    began = time.monotonic()
    offset = len(heartbeat.wakeups)

    async def drive(trigger: WanTaskTrigger) -> str:
        events = [event.payload async for event in trigger.run()]
        return str(events[0]["status"]) if len(events) == 1 else f"{len(events)} events"

    # every run() started in this one loop iteration, as the triggerer's runner does with a batch of new triggers
    tasks = [asyncio.ensure_future(drive(t)) for t in triggers]
    statuses = await asyncio.gather(*tasks)
    ended = time.monotonic()
    del tasks, triggers
    wakeups = [w for w in heartbeat.wakeups[offset:] if w[0] <= ended]
    worst_at, worst = max(wakeups, key=lambda w: w[1])
    first = sorted(late for at, late in wakeups if at - began <= 10.0)
    everything = sorted(late for _, late in wakeups)
    full = [(at - began, seconds) for at, seconds in collections.done if began <= at <= ended]

    def during_full_collection(at: float, late: float) -> bool:
        woke_after = at - late - HEARTBEAT
        return any(start < at and start + seconds > woke_after for start, seconds in collections.done)

    outside_at, outside = max(
        ((at, late) for at, late in wakeups if not during_full_collection(at, late)), key=lambda w: w[1]
    )
    return {
        "triggers": len(ids),
        "succeeded": statuses.count("success"),
        "run_s": ended - began,
        "stall_first_10s_ms": first[-1] * 1000 if first else 0.0,
        "p99_first_10s_ms": first[int(len(first) * 0.99)] * 1000 if first else 0.0,
        "stall_max_ms": worst * 1000,
        "stall_max_ended_s": worst_at - began,
        "p99_ms": everything[int(len(everything) * 0.99)] * 1000,
        "stall_outside_gc_ms": outside * 1000,
        "stall_outside_gc_ended_s": outside_at - began,
        "objects_before": objects_before,
        "frozen_before": frozen_before,
        "full_gcs": [[round(at, 2), round(seconds * 1000, 1)] for at, seconds in full],
        "rss_after_mib": _rss_mib(),
    }


def _held_by_the_freeze() -> dict[str, Any]:
    """What only the freeze keeps alive: cyclic garbage among the frozen objects, found once they are unfrozen."""
    # everything a normal full collection frees (the frozen objects are left out); timed: what a full collection
    # costs the loop at this point, after the bursts
    started = time.perf_counter()
    gc.collect()
    full_collection_ms = (time.perf_counter() - started) * 1000
    rss_before = _rss_mib()
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    gc.set_debug(gc.DEBUG_SAVEALL)  # the unreachable objects go to gc.garbage instead of being freed: to count them
    try:
        held = gc.collect()
        size = sum(sys.getsizeof(o) for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    gc.collect()
    return {
        "full_collection_at_end_ms": full_collection_ms,
        "frozen_at_end": frozen,
        "held_objects": held,
        "held_getsizeof_mib": size / 2**20,
        "rss_freed_mib": rss_before - _rss_mib(),
    }


async def _child_main(code: str, ids: list[str], bursts: int) -> dict[str, Any]:
    # the triggerer's own modules first: a triggerer process has them loaded, and its heap is what a full garbage
    # collection walks
    import airflow.jobs.triggerer_job_runner  # noqa: F401

    from airflow_provider_wan.hooks import wan as hook_module
    from airflow_provider_wan.triggers import wan as trigger_module

    records = FreezeRecords()
    trigger_module.log.addHandler(records)
    trigger_module.log.setLevel(logging.INFO)
    heartbeat = Heartbeat()
    collections = FullCollections()
    gc.callbacks.append(collections)
    beat = asyncio.create_task(heartbeat.run())
    size = len(ids) // bursts
    results = []
    for n in range(bursts):
        if n:
            await asyncio.sleep(BETWEEN_BURSTS)
        results.append(await _burst(ids[n * size : (n + 1) * size], heartbeat, collections))
    heartbeat.stop()
    await beat
    gc.callbacks.remove(collections)
    state = hook_module._loop_state.pop(id(asyncio.get_running_loop()), None)
    if state is not None:
        await state[1].close()
    return {
        "code": code,
        "bursts": results,
        "freeze": [list(args) for args in records.args],
        **_held_by_the_freeze(),
    }


def child(code: str, ids_path: str, bursts: int) -> int:
    ids = json.loads(Path(ids_path).read_text())
    print("RESULT " + json.dumps(asyncio.run(_child_main(code, ids, bursts))), flush=True)
    return 0


def _row(code: str, burst: int, r: dict[str, Any]) -> str:
    gcs = r["full_gcs"]
    longest_gc = f"{max(ms for _, ms in gcs):.0f} ms" if gcs else "-"
    return (
        f"| {code} | {burst} | {r['succeeded']}/{r['triggers']} | {r['stall_first_10s_ms']:.0f} ms | "
        f"{r['p99_first_10s_ms']:.1f} ms | {r['stall_max_ms']:.0f} ms | {r['stall_max_ended_s']:.2f} s | "
        f"{r['p99_ms']:.1f} ms | {len(gcs)}, {longest_gc} | {r['stall_outside_gc_ms']:.0f} ms | {r['run_s']:.0f} s |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triggers", type=int, default=1000, help="triggers started together (default 1000)")
    parser.add_argument("--bursts", type=int, default=2, help="bursts per child, one after the other (default 2)")
    parser.add_argument("--codes", default=";".join(CODES), help="separated by ';', of: " + "; ".join(CODES))
    parser.add_argument("--child", choices=CODES, help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.ids, args.bursts)

    from airflow_provider_wan.testing import start_simulator_process

    print(describe(), flush=True)
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    home = tempfile.mkdtemp(prefix="wan-bench-stall-")
    os.environ["AIRFLOW_HOME"] = home
    # one burst's tasks run at once; the next burst's wait PENDING until the first burst's end, then run 30 s: the
    # second burst's triggers, started after the first burst's end, find their tasks RUNNING and read them 2-3 times
    sim = start_simulator_process(
        pending_seconds=0.0,
        generation_seconds=GENERATION,
        task_query_qps=0,
        max_concurrent_tasks=args.triggers,
        create_rps=0,
        log_requests=False,
    )
    rows = []
    try:
        conn = sim.connection_json()
        os.environ["AIRFLOW_CONN_WAN_DEFAULT"] = conn
        base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
        base.update(AIRFLOW_CONN_WAN_DEFAULT=conn, AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING", AIRFLOW_HOME=home)
        for code in args.codes.split(";"):
            env = dict(base)
            if code == "provider, freeze off":
                env["AIRFLOW__WAN__FREEZE_HEAP_IN_TRIGGERER"] = "False"
            sim.reset()
            ids = _create_tasks(args.triggers * args.bursts)
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                json.dump(ids, handle)
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", code, "--ids", handle.name, "--bursts", str(args.bursts)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=args.bursts * (GENERATION + 300),
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
            for n, b in enumerate(r["bursts"], 1):
                print(
                    f"  {code}, burst {n}: longest stall {b['stall_max_ms']:.0f} ms, ending "
                    f"{b['stall_max_ended_s']:.2f} s after its start; outside full collections "
                    f"{b['stall_outside_gc_ms']:.0f} ms, ending "
                    f"{b['stall_outside_gc_ended_s']:.2f} s after its start; heap {b['objects_before']} objects "
                    f"({b['frozen_before']} frozen); full collections (s after the start, ms): {b['full_gcs']}; "
                    f"RSS after it {b['rss_after_mib']:.1f} MiB",
                    flush=True,
                )
            print(
                f"  {code}: freeze took (ms): {r['freeze']}; at the end {r['frozen_at_end']} frozen, of which "
                f"{r['held_objects']} were garbage kept only by the freeze ({r['held_getsizeof_mib']:.2f} MiB by "
                f"sys.getsizeof; RSS given back when freed: {r['rss_freed_mib']:.1f} MiB)",
                flush=True,
            )
    finally:
        sim.stop()
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(
        f"\n{args.triggers} WanTaskTriggers started in one loop iteration, {args.bursts} bursts per process; "
        "connection from AIRFLOW_CONN_WAN_DEFAULT"
    )
    print(
        "\n| code | burst | triggers ok | longest stall, first 10 s | p99, first 10 s | longest stall, whole burst "
        "| it ended | p99, whole burst | full GCs: count, longest | longest stall outside full GCs | burst |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for n, b in enumerate(r["bursts"], 1):
            print(_row(r["code"], n, b))
    print(
        "\n| code | freeze took | RSS after burst 1, 2 | a full collection at the end | frozen at the end "
        "| kept only by the freeze |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        freeze = ", ".join(f"{ms:.2f} ms" for (ms,) in r["freeze"]) or "-"
        rss = ", ".join(f"{b['rss_after_mib']:.1f}" for b in r["bursts"])
        print(
            f"| {r['code']} | {freeze} | {rss} MiB | {r['full_collection_at_end_ms']:.0f} ms | {r['frozen_at_end']} "
            f"| {r['held_objects']} objects, "
            f"{r['held_getsizeof_mib']:.2f} MiB (shallow, sys.getsizeof), {r['rss_freed_mib']:.1f} MiB RSS given back |"
        )
    shipped = next((r for r in rows if r["code"] == "provider"), None)
    if shipped is not None:
        first = shipped["bursts"][0]
        ok = first["succeeded"] == first["triggers"] and first["stall_max_ms"] < 50
        print(
            f"\ngoal: {first['triggers']} triggers starting together, longest loop stall < 50 ms: "
            f"{'met' if ok else 'MISSED'} ({first['stall_max_ms']:.0f} ms over the first burst; outside the "
            f"interpreter's full garbage collections {first['stall_outside_gc_ms']:.0f} ms)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
