"""
Deferrable submit operators through real Airflow (``dag.test()`` runs the trigger inline) against the simulator:
what execute_complete makes of each event, and how Airflow's retries treat the result.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.airflow_run import run_dag, write_dag
from tests.deferral.conftest import dag_source

IMPORTS = "from airflow_provider_wan.operators.wan import WanTextToVideoOperator"


def _dag(dag_id: str, *, retries: int, **operator_kwargs: Any) -> Any:
    kwargs = {
        "model": "wan2.5-t2v-preview",
        "prompt": "a paper boat on a rainy street",
        "deferrable": True,
        "poll_interval": 0.2,
        **operator_kwargs,
    }
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    body = f"WanTextToVideoOperator(task_id='generate', retries={retries}, retry_delay=timedelta(0), {args})"
    return write_dag(dag_source(dag_id, body, imports=IMPORTS), dag_id)


def test_deferred_run_succeeds_with_the_result_in_xcom(wan_conn, wan_simulator):
    result = run_dag(_dag("wan_defer_dagtest_ok", retries=0))
    assert result.state == "success"
    assert result.tasks["generate"] == ("success", 1)
    value = result.xcoms[("generate", "return_value")]
    assert value["task_status"] == "SUCCEEDED"
    assert value["wan_task_id"] == result.xcoms[("generate", "wan_task_id")]
    assert value["model"] == "wan2.5-t2v-preview"
    assert "Signature" not in str(value["video_url"])
    assert wan_simulator.stats()["tasks_created"] == 1


def test_data_inspection_failure_fails_once_despite_retries(wan_conn, wan_simulator):
    wan_simulator.inject_fault("task_fail", code="DataInspectionFailed", count=-1)
    result = run_dag(_dag("wan_defer_dagtest_moderated", retries=3))
    assert result.state == "failed"
    # final error: exactly one try although retries=3, and one task paid for
    assert result.tasks["generate"] == ("failed", 1)
    assert wan_simulator.stats()["tasks_created"] == 1


def test_internal_error_failure_is_retried_with_a_new_task(wan_conn, wan_simulator):
    # control for the test above: the same path with a retryable code does use Airflow's retries
    wan_simulator.inject_fault("task_fail", code="InternalError.Algo", count=1)
    result = run_dag(_dag("wan_defer_dagtest_internal", retries=3))
    assert result.state == "success"
    assert result.tasks["generate"] == ("success", 2)
    # the stored task id was FAILED, so the retry submitted afresh: two tasks, the second succeeded
    assert wan_simulator.stats()["tasks_created"] == 2


def test_timeout_then_retry_reattaches_to_the_same_task(wan_conn, wan_simulator):
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=4.0)
    result = run_dag(_dag("wan_defer_dagtest_reattach", retries=5, timeout=1.5))
    assert result.state == "success"
    state, tries = result.tasks["generate"]
    assert state == "success"
    assert tries >= 2, "the first try should have timed out"
    # every retry found the stored task id RUNNING (never canceled: it was past PENDING) and waited for it again
    assert wan_simulator.stats()["tasks_created"] == 1
    assert "cancel" not in wan_simulator.stats()["requests"]


def test_expired_task_fails_without_retry(wan_conn, wan_simulator):
    wan_simulator.inject_fault("task_unknown", count=-1)
    wan_simulator.configure(generation_seconds=1.0)
    result = run_dag(_dag("wan_defer_dagtest_expired", retries=2))
    assert result.state == "failed"
    assert result.tasks["generate"] == ("failed", 1)


@pytest.mark.parametrize("configured", ["True", "False"])
def test_deferrable_defaults_to_the_airflow_setting(configured):
    # the default is read when the module is imported (as in Airflow's own providers): a fresh interpreter per value
    code = (
        "from airflow_provider_wan.operators.wan import WanTextToVideoOperator\n"
        "from airflow_provider_wan.sensors.wan import WanTaskSensor\n"
        "op = WanTextToVideoOperator(task_id='t', model='wan2.5-t2v-preview', prompt='x')\n"
        "print(op.deferrable, WanTaskSensor(task_id='s', wan_task_id='x').deferrable)"
    )
    env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": configured}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split()[-2:] == [configured, configured]
