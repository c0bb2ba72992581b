"""
Issue 3, acceptance 5: a worker dies between the create and the result, and Airflow's retry re-attaches.

A non-deferrable operator polls in its worker. Its LocalExecutor worker process (the supervisor) and the task runner
are SIGKILLed together, as when the machine goes away: nobody reports the task's end. The scheduler notices the
missing heartbeats (``[scheduler] task_instance_heartbeat_timeout``, shortened in conftest.py), the task goes to
``up_for_retry``, and the retry finds the DashScope task id that the retry-safety record keeps in the task state store
before the wait began: it re-attaches instead of creating (and paying for) a second video.
"""

from __future__ import annotations

import time

import pytest

from tests.deferral.conftest import STACK_HEARTBEAT_TIMEOUT, dag_source
from tests.stack import AIRFLOW_2

pytestmark = pytest.mark.stack

DAG = """
WanTextToVideoOperator(
    task_id="generate",
    model="wan2.5-t2v-preview",
    prompt="a slow pan over a misty valley",
    deferrable=False,
    poll_interval=1,
    retries=1,
    retry_delay=timedelta(seconds=1),
)
"""


def test_worker_killed_while_polling_then_retry_reattaches(airflow_stack, sim):
    # long enough that the retry starts while the task is still RUNNING: the re-attach path, not "already done"
    sim.configure(generation_seconds=STACK_HEARTBEAT_TIMEOUT + 18.0)
    dag_id = "wan_stack_worker_crash"
    airflow_stack.write_dag(
        f"{dag_id}.py",
        dag_source(dag_id, DAG, imports="from airflow_provider_wan.operators.wan import WanTextToVideoOperator"),
    )
    run_id = airflow_stack.run_dag(dag_id)
    airflow_stack.wait_for_task_state(dag_id, run_id, "generate", "running", timeout=120)

    # wait until the worker has created the task, stored its id and is polling it
    def polling() -> bool:
        return "is RUNNING after" in airflow_stack.task_log(dag_id, run_id, "generate", 1)

    airflow_stack.wait_until(polling, timeout=60, what="the worker to poll a RUNNING task")
    # the record the retry will read: the task state store on Airflow 3.3, an Airflow Variable before
    created = airflow_stack.retry_record(dag_id, run_id, "generate")["task_id"]
    assert sim.stats()["tasks_created"] == 1

    killed = airflow_stack.kill_task_instance(dag_id, run_id, "generate")
    killed_at = time.monotonic()
    # Airflow 3: the worker (task supervisor) and the task runner; Airflow 2.11 also the executor's worker process
    # that forked the supervisor (it runs one task at a time), all three as on a worker machine that dies
    assert len(killed) == (3 if AIRFLOW_2 else 2), f"expected the worker processes of {dag_id}.generate: {killed}"

    airflow_stack.wait_for_task_state(dag_id, run_id, "generate", ["up_for_retry", "queued", "running", "success"])
    assert airflow_stack.wait_for_run(dag_id, run_id, timeout=180) == "success", airflow_stack.diagnostics()
    print(f"\nrun finished {time.monotonic() - killed_at:.1f} s after the worker was killed")

    ti = airflow_stack.task_instances(dag_id, run_id)[0]
    assert ti["try_number"] == 2
    # the first try never finished by itself: the scheduler failed it for its missing heartbeats
    first_try = airflow_stack.query(
        "SELECT state FROM task_instance_history WHERE dag_id = ? AND run_id = ? AND try_number = 1",
        (dag_id, run_id),
    )
    assert [row["state"] for row in first_try] == ["failed"]
    retry_log = airflow_stack.task_log(dag_id, run_id, "generate", 2)
    assert "Re-attaching to DashScope task" in retry_log
    assert "Created DashScope task" not in retry_log
    # exactly one video was paid for, and the retry returned its result
    assert sim.stats()["tasks_created"] == 1
    result = airflow_stack.xcom(dag_id, run_id, "generate")
    assert result["wan_task_id"] == created
    assert result["task_status"] == "SUCCEEDED"
