"""
Benchmark: uploading a big local video input to DashScope's temporary storage, and what it costs in memory.

An :class:`~airflow_provider_wan.operators.wan.WanAnimateOperator` (``wan2.2-animate-move``: videos up to 200 MB)
gets a ``--size-mib`` local MP4 (a real ``ftyp`` header, then incompressible bytes) as ``video_url``. In a fresh
process that has imported everything and built the request (file checked, nothing sent), the script records its RSS
("before"), then runs what ``submit_job`` runs: the upload policy request, the streamed form upload of the file, and
the create with the ``oss://`` URL, while a thread samples RSS every 5 ms. The DashScope simulator runs in its own
process (it streams the file to disk), so it does not pollute the measurement.

Reported: peak RSS growth above "before" (goal: under 50 MiB for 150 MB; the file is never read whole), the growth of
``ru_maxrss`` as a cross-check, MB/s, and proof the upload arrived whole (the simulator's stored size equals the
file's, the task was created with the header ``X-DashScope-OssResourceResolve``).

    python benchmarks/upload_memory.py [--size-mib 150] [--results benchmarks/RESULTS.md]

Runtime: a few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import describe

MiB = 1024 * 1024
GOAL_GROWTH_MIB = 50
SECTION_START = "<!-- benchmarks/upload_memory.py: start -->"
SECTION_END = "<!-- benchmarks/upload_memory.py: end -->"


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(path: str, base_url: str, api_key: str) -> None:
    """One measured upload, in this (fresh) process; prints a JSON line."""
    os.environ["AIRFLOW_CONN_WAN_BENCH"] = json.dumps(
        {"conn_type": "wan", "password": api_key, "extra": {"base_url": base_url}}
    )
    from airflow_provider_wan.hooks.wan import WanHook
    from airflow_provider_wan.media import upload_all
    from airflow_provider_wan.operators.wan import WanAnimateOperator

    operator = WanAnimateOperator(
        task_id="bench",
        wan_conn_id="wan_bench",
        model="wan2.2-animate-move",
        image_url="https://x.org/p.png",
        video_url=path,
    )
    endpoint, body = operator.build_request()
    hook = WanHook(wan_conn_id="wan_bench")
    hook.credentials  # noqa: B018 - resolve the connection before measuring
    hook.session  # noqa: B018
    peak = before = _rss()
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    upload_all(hook, operator.model, operator._local_media)
    task = hook.create_task(endpoint, body)
    elapsed = time.perf_counter() - started
    done.set()
    sampler.join()
    peak = max(peak, _rss())
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "growth": peak - before,
                "maxrss_growth": max(0, maxrss_after - maxrss_before),
                "seconds": elapsed,
                "url": body["input"]["video_url"],
                "task_id": task.task_id,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=150)
    parser.add_argument("--results", type=Path, default=None, help="rewrite this benchmark's section of RESULTS.md")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0

    from airflow_provider_wan.testing.simulator import start_simulator_process

    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dance.mp4"
        with path.open("wb") as handle:
            handle.write(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
            remaining = size - handle.tell()
            while remaining > 0:
                block = os.urandom(min(MiB, remaining))
                handle.write(block)
                remaining -= len(block)
        simulator = start_simulator_process(log_requests=False)
        try:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(path), simulator.base_url, simulator.api_key],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            result = json.loads(out.strip().splitlines()[-1])
            stats = simulator.stats()
            [task] = simulator.tasks()
        finally:
            simulator.stop()
    arrived = (
        task["input"]["video_url"] == result["url"]
        and stats["requests"].get("upload") == 1
        and stats["uploads"]["bytes"] == size
    )
    report = [
        f"#### {args.size_mib} MiB local video, measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "```",
        describe(),
        "```",
        "",
        "| | peak RSS growth (5 ms samples) | ru_maxrss growth | MB/s | arrived whole, task created |",
        "|---|---|---|---|---|",
        f"| streamed form upload (`media.upload_media`) | {result['growth'] / MiB:.1f} MiB | "
        f"{result['maxrss_growth'] / MiB:.1f} MiB | {size / 1e6 / result['seconds']:.0f} | "
        f"{'yes' if arrived else 'NO'} |",
        "",
        f"Goal: peak RSS growth under {GOAL_GROWTH_MIB} MiB: "
        f"{'met' if result['growth'] < GOAL_GROWTH_MIB * MiB and arrived else 'NOT met'}.",
    ]
    text = "\n".join(report)
    print(text)
    if args.results:
        results = args.results.read_text()
        section = f"{SECTION_START}\n{text}\n{SECTION_END}"
        if SECTION_START in results:
            head, rest = results.split(SECTION_START, 1)
            results = head + section + rest.split(SECTION_END, 1)[1]
        else:
            results = results.rstrip() + (
                "\n\n## 6. Media upload memory (`benchmarks/upload_memory.py`, issue 12)\n\n" + section + "\n"
            )
        args.results.write_text(results)
    return 0 if arrived and result["growth"] < GOAL_GROWTH_MIB * MiB else 1


if __name__ == "__main__":
    sys.exit(main())
