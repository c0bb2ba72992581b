"""Acceptance 4: a thousand tasks complete quickly, rate limits hold under load, and memory stays bounded."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime
from typing import Any

import aiohttp
import psutil
import pytest

from airflow_provider_wan.models import get_model
from airflow_provider_wan.testing import start_simulator_process

VIDEO = "services/aigc/video-generation/video-synthesis"
KF2V = "services/aigc/image2video/video-synthesis"
FRAMES = {"first_frame_url": "https://example.com/a.png", "last_frame_url": "https://example.com/b.png"}
# (model, endpoint, input): three models with different concurrency limits (5, 2, 2)
MIX = [
    ("wan2.5-t2v-preview", VIDEO, {"prompt": "a cat"}),
    ("wan2.2-t2v-plus", VIDEO, {"prompt": "a dog"}),
    ("wan2.2-kf2v-flash", KF2V, FRAMES),
]
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"}
MiB = 1024 * 1024


async def run_tasks(base_url: str, api_key: str, count: int, *, downloads: int = 0) -> dict[str, dict[str, Any]]:
    """Create ``count`` tasks (round-robin over MIX), poll them all to a terminal status; return the final outputs."""
    headers = {"Authorization": f"Bearer {api_key}", "X-DashScope-Async": "enable"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:

        async def create(index: int) -> str:
            model, endpoint, input_ = MIX[index % len(MIX)]
            body = {"model": model, "input": input_, "parameters": {}}
            async with session.post(f"{base_url}/{endpoint}", json=body, headers=headers) as response:
                assert response.status == 200, await response.text()
                return str((await response.json())["output"]["task_id"])

        async def get(task_id: str) -> dict[str, Any]:
            async with session.get(f"{base_url}/tasks/{task_id}", headers=headers) as response:
                assert response.status == 200, await response.text()
                return dict((await response.json())["output"])

        ids = await asyncio.gather(*(create(i) for i in range(count)))
        outputs: dict[str, dict[str, Any]] = {}
        waiting = list(ids)
        for _ in range(200):
            results = await asyncio.gather(*(get(i) for i in waiting))
            for output in results:
                if output["task_status"] in TERMINAL:
                    outputs[output["task_id"]] = output
            waiting = [i for i in waiting if i not in outputs]
            if not waiting:
                break
            await asyncio.sleep(0.05)
        assert not waiting, f"{len(waiting)} tasks never finished"
        for task_id in ids[:downloads]:
            async with session.get(outputs[task_id]["video_url"]) as response:
                assert response.status == 200
                await response.read()
        async with session.get(f"{base_url}/tasks", params={"page_size": 100}, headers=headers) as response:
            assert response.status == 200
        return {task_id: outputs[task_id] for task_id in ids}


def max_overlap(outputs: list[dict[str, Any]]) -> int:
    """Most tasks RUNNING at the same instant, from their scheduled_time/end_time."""
    events = []
    for output in outputs:
        start = datetime.strptime(output["scheduled_time"], "%Y-%m-%d %H:%M:%S.%f")
        end = datetime.strptime(output["end_time"], "%Y-%m-%d %H:%M:%S.%f")
        events += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same millisecond
        running += step
        peak = max(peak, running)
    return peak


async def test_a_thousand_tasks_complete(wan_simulator: Any) -> None:
    # 1 s PENDING and 5 s RUNNING at a time scale of 1/1000: the queue plays out in about a second
    wan_simulator.configure(
        pending_seconds=1, generation_seconds=5, time_scale=0.001, create_rps=0, task_query_qps=0, log_requests=False
    )
    outputs = await run_tasks(wan_simulator.base_url, wan_simulator.api_key, 1000, downloads=3)
    assert len(outputs) == 1000
    assert {o["task_status"] for o in outputs.values()} == {"SUCCEEDED"}
    stats = wan_simulator.stats()
    assert stats["tasks_created"] == 1000
    assert stats["requests"]["create"] == 1000
    assert stats["encodes"] <= 3  # three shapes (one per model), each encoded at most once
    # each model's queue respected its catalogue concurrency
    tasks = {t["task_id"]: t["model"] for t in wan_simulator.tasks()}
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for task_id, output in outputs.items():
        by_model[tasks[task_id]].append(output)
    for model, model_outputs in by_model.items():
        limit = get_model(model).max_concurrent_tasks  # type: ignore[union-attr]
        assert max_overlap(model_outputs) == limit, model


async def test_rate_limits_answer_429_under_load(wan_simulator: Any) -> None:
    wan_simulator.configure(log_requests=False)
    headers = {"Authorization": f"Bearer {wan_simulator.api_key}", "X-DashScope-Async": "enable"}
    body = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a"}}
    async with aiohttp.ClientSession() as session:

        async def status(method: str, url: str, **kwargs: Any) -> int:
            async with session.request(method, url, headers=headers, **kwargs) as response:
                return response.status

        creates = await asyncio.gather(
            *(status("POST", f"{wan_simulator.base_url}/{VIDEO}", json=body) for _ in range(30))
        )
        gets = await asyncio.gather(*(status("GET", f"{wan_simulator.base_url}/tasks/x") for _ in range(40)))
    assert sorted(creates) == [200] * 5 + [429] * 25  # wan2.5-t2v-preview: 5 creates per second
    assert sorted(gets) == [200] * 20 + [429] * 20  # 20 queries per second per key
    stats = wan_simulator.stats()
    assert stats["tasks_created"] == 5
    assert stats["throttled"] == 45


def test_memory_stays_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    """RSS of a simulator process (alone, in a child) before and after thousands of tasks."""
    options: dict[str, Any] = {
        "pending_seconds": 1,
        "generation_seconds": 5,
        "time_scale": 0.001,
        "create_rps": 0,
        "task_query_qps": 0,
        "log_requests": False,
    }
    with start_simulator_process(**options) as sim:
        process = psutil.Process(sim.pid)

        def rss() -> int:
            return int(process.memory_info().rss)

        at_start = rss()
        # warm-up: lazy imports, first encodes and allocator arenas are start-up costs, not per-task costs
        asyncio.run(run_tasks(sim.base_url, sim.api_key, 60, downloads=3))
        start = rss()
        asyncio.run(run_tasks(sim.base_url, sim.api_key, 1000, downloads=3))
        after_1000 = rss()
        assert sim.stats()["tasks_live"] == 1060

        # expire everything: records are purged, and a second thousand reuses the memory
        sim.configure(task_ttl_seconds=0.2)
        asyncio.run(asyncio.sleep(1.2))
        stats = sim.stats()
        assert stats["tasks_live"] == 0
        purged = rss()
        sim.configure(task_ttl_seconds=86400)
        asyncio.run(run_tasks(sim.base_url, sim.api_key, 1000, downloads=3))
        after_2000 = rss()
        assert sim.stats()["tasks_created"] == 2060

    figures = {
        "at start": at_start,
        "after warm-up (60 tasks, 3 encodes)": start,
        "after 1,000 tasks": after_1000,
        "after purge": purged,
        "after 1,000 more": after_2000,
    }
    with capsys.disabled():
        print("\nwan-simulator RSS: " + ", ".join(f"{k} {v / MiB:.1f} MiB" for k, v in figures.items()))
        print(f"wan-simulator RSS growth per 1,000 tasks: {(after_1000 - start) / MiB:.1f} MiB")
    assert after_1000 - start < 20 * MiB
    # bounded: the second thousand (after the purge) does not add another thousand tasks' worth
    assert after_2000 - after_1000 < 5 * MiB
