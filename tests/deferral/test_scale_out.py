"""
A batch through a distributed deployment: CeleryExecutor on Redis and PostgreSQL, two Celery workers, two
triggerers (tests/distributed.py), against the simulator enforcing DashScope's account limits.

The CI-sized version of benchmarks/scale_out.py: every video succeeds, each is paid for exactly once, and the task
reads of two triggerers together stay within the account's 20 per second (429s under 1%).
"""

from __future__ import annotations

import pytest

pytest.importorskip("airflow.providers.celery", reason="the scale extra (Celery provider) is not installed")

from airflow_provider_wan.testing import start_simulator_process
from tests.distributed import DistributedStack, batch_dag_source, missing_system_packages

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(bool(missing_system_packages()), reason="scripts/test.sh installs redis-server and postgresql"),
]

VIDEOS = 12


def test_batch_through_celery_workers_and_two_triggerers():
    sim = start_simulator_process(pending_seconds=0.0, generation_seconds=20.0, log_requests=False)
    try:
        stack = DistributedStack(
            workers=2, worker_concurrency=2, triggerers=2, env={"AIRFLOW_CONN_WAN_DEFAULT": sim.connection_json()}
        )
        with stack:
            stack.write_dag("scale_out.py", batch_dag_source("scale_out", VIDEOS, poll_interval=5.0))
            run_id = stack.run_dag("scale_out", timeout=120)
            state = stack.wait_for_run("scale_out", run_id, timeout=480)
            assert state == "success", stack.diagnostics()
            rows = stack.task_instances("scale_out", run_id)
            assert [r["state"] for r in rows] == ["success"] * VIDEOS
            results = [stack.xcom("scale_out", run_id, "generate", map_index=i) for i in range(VIDEOS)]
            assert {r["task_status"] for r in results} == {"SUCCEEDED"}
            assert len({r["wan_task_id"] for r in results}) == VIDEOS
        stats = sim.stats()
        assert stats["tasks_created"] == VIDEOS
        gets = stats["requests"].get("get_task", 0)
        throttled = stats["responses"].get("get_task", {}).get("429", 0)
        assert throttled <= 0.01 * gets, (throttled, gets)
    finally:
        sim.stop()
