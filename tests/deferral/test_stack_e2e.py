"""
Deferrable operators on a real Airflow stack (scheduler + LocalExecutor, triggerer, dag-processor, api-server as
separate processes) against a simulator process, everything on 127.0.0.1.

One stack serves the whole session (see conftest.py); each test has its own DAG.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.deferral.conftest import STACK_SLOTS, dag_source
from tests.stack import AirflowStack

pytestmark = pytest.mark.stack

IMPORTS = "from airflow_provider_wan.operators.wan import WanTextToVideoOperator"
POLL_LINE = re.compile(r"DashScope task (?P<task>[0-9a-f-]+) is (?P<status>[A-Z]+) \(poll (?P<n>\d+)")


def _generate(task_id: str = "generate", **kwargs: Any) -> str:
    args = {"model": "wan2.5-t2v-preview", "prompt": "a red fox in fresh snow", "deferrable": True, "poll_interval": 1}
    args.update(kwargs)
    return f"WanTextToVideoOperator(task_id={task_id!r}, {', '.join(f'{k}={v!r}' for k, v in args.items())})"


def _watch(stack: AirflowStack, dag_id: str, run_id: str, timeout: float = 180.0) -> list[dict[str, str | None]]:
    """Sample the run's task states every 0.2 s until it finishes; returns the samples."""
    samples: list[dict[str, str | None]] = []

    def finished() -> bool:
        samples.append(stack.task_states(dag_id, run_id))
        return stack.run_state(dag_id, run_id) in ("success", "failed")

    stack.wait_until(finished, timeout=timeout, interval=0.2, what=f"run {dag_id}")
    return samples


# --- acceptance 1 and 6: one deferred run, watched from the outside ------------------------------------------------
@pytest.fixture(scope="module")
def deferred_run(airflow_stack: AirflowStack, sim_process: Any) -> dict[str, Any]:
    """Run a one-task deferrable DAG; capture the trigger rows while the task is deferred and the final state."""
    sim_process.reset()
    sim_process.configure(generation_seconds=8.0)
    dag_id = "wan_stack_deferred"
    airflow_stack.write_dag(f"{dag_id}.py", dag_source(dag_id, _generate(), imports=IMPORTS))
    started = time.monotonic()
    run_id = airflow_stack.run_dag(dag_id)
    airflow_stack.wait_for_task_state(dag_id, run_id, "generate", "deferred", timeout=120)
    deferred_at = time.monotonic() - started
    # the trigger row exists while the task is deferred; read it straight from the metadata DB
    trigger_rows = airflow_stack.wait_until(airflow_stack.trigger_rows, timeout=30, what="a trigger row")
    samples = _watch(airflow_stack, dag_id, run_id)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "deferred_after_s": deferred_at,
        "duration_s": time.monotonic() - started,
        "trigger_rows": trigger_rows,
        "samples": samples,
        "stats": sim_process.stats(),
        "api_key": sim_process.api_key,
    }


def test_deferred_run_succeeds_with_result_in_xcom(airflow_stack, deferred_run):
    dag_id, run_id = deferred_run["dag_id"], deferred_run["run_id"]
    assert airflow_stack.run_state(dag_id, run_id) == "success", airflow_stack.diagnostics()
    states = [s.get("generate") for s in deferred_run["samples"]]
    assert "deferred" in states
    result = airflow_stack.xcom(dag_id, run_id, "generate")
    wan_task_id = airflow_stack.xcom(dag_id, run_id, "generate", key="wan_task_id")
    assert result["wan_task_id"] == wan_task_id
    assert result["task_status"] == "SUCCEEDED"
    assert result["video_url"].endswith(f"/_files/{wan_task_id}.mp4")
    # the retry-safety record holds the id (beside the request's fingerprint) before the deferral: a retry would
    # re-attach to it
    record = airflow_stack.retry_record(dag_id, run_id, "generate")
    assert record["task_id"] == wan_task_id
    assert record["model"] == "wan2.5-t2v-preview"
    assert len(record["fingerprint"]) == 64
    ti = airflow_stack.task_instances(dag_id, run_id)[0]
    assert ti["try_number"] == 1
    assert deferred_run["stats"]["tasks_created"] == 1
    print(f"\ndeferred after {deferred_run['deferred_after_s']:.1f} s, run took {deferred_run['duration_s']:.1f} s")


def test_triggerer_log_shows_the_polls(airflow_stack, deferred_run):
    dag_id, run_id = deferred_run["dag_id"], deferred_run["run_id"]
    wan_task_id = airflow_stack.xcom(dag_id, run_id, "generate", key="wan_task_id")
    log = airflow_stack.trigger_log(dag_id, run_id, "generate")
    polls = [m.groupdict() for m in POLL_LINE.finditer(log)]
    assert {p["task"] for p in polls} == {wan_task_id}
    statuses = [p["status"] for p in polls]
    assert statuses.count("RUNNING") >= 3, statuses  # 8 s of generation polled every second
    assert statuses[-1] == "SUCCEEDED"
    # the worker did not poll while deferred: every GET beyond the one check before deferring came from the trigger
    assert deferred_run["stats"]["requests"]["get_task"] == len(polls) + 1


def test_trigger_row_holds_no_api_key_and_no_signed_url(airflow_stack, deferred_run):
    rows = deferred_run["trigger_rows"]
    assert len(rows) == 1
    row = rows[0]
    assert row["classpath"] == "airflow_provider_wan.triggers.wan.WanTaskTrigger"
    wan_task_id = airflow_stack.xcom(deferred_run["dag_id"], deferred_run["run_id"], "generate", key="wan_task_id")
    kwargs = row["kwargs"]
    # control: the decrypted row is readable and is this task's trigger
    assert kwargs["task_id"] == wan_task_id
    assert kwargs["wan_conn_id"] == "wan_default"
    stored = json.dumps(kwargs) + row["kwargs_raw"]
    assert deferred_run["api_key"] not in stored
    assert "sk-" not in stored
    assert "Signature" not in stored
    assert "http" not in stored


def test_no_api_key_or_signature_anywhere_in_db_or_logs(airflow_stack, deferred_run):
    key = deferred_run["api_key"]
    leaks = []
    for table in [r["name"] for r in airflow_stack.query("SELECT name FROM sqlite_master WHERE type = 'table'")]:
        for row in airflow_stack.query(f'SELECT * FROM "{table}"'):
            text = " ".join(str(v) for v in row.values())
            if key in text or "Signature=" in text:
                leaks.append(f"table {table}")
    for path in Path(airflow_stack.home).rglob("*.log"):
        text = path.read_text(errors="replace")
        if key in text or "Signature=" in text:
            leaks.append(str(path))
    assert not leaks
    # control: the run's result did reach the DB, so the scan had something to read
    dag_id, run_id = deferred_run["dag_id"], deferred_run["run_id"]
    assert airflow_stack.xcom(dag_id, run_id, "generate")["task_status"] == "SUCCEEDED"


# --- acceptance 2: more deferred tasks than worker slots -----------------------------------------------------------
def test_more_deferred_tasks_than_worker_slots(airflow_stack, sim):
    sim.configure(generation_seconds=14.0)
    dag_id = "wan_stack_many_deferred"
    tasks = [f"generate_{i}" for i in range(STACK_SLOTS + 2)]
    airflow_stack.write_dag(f"{dag_id}.py", dag_source(dag_id, "\n".join(_generate(t) for t in tasks), imports=IMPORTS))
    run_id = airflow_stack.run_dag(dag_id)
    samples = _watch(airflow_stack, dag_id, run_id, timeout=240)
    most_deferred = max(sum(1 for state in s.values() if state == "deferred") for s in samples)
    assert most_deferred > STACK_SLOTS, samples[-5:]
    assert airflow_stack.run_state(dag_id, run_id) == "success", airflow_stack.task_states(dag_id, run_id)
    ids = {airflow_stack.xcom(dag_id, run_id, t)["wan_task_id"] for t in tasks}
    assert len(ids) == len(tasks)
    assert sim.stats()["tasks_created"] == len(tasks)
    print(f"\n{most_deferred} tasks deferred at once with {STACK_SLOTS} worker slots")


# --- acceptance 4: the triggerer dies mid-poll ----------------------------------------------------------------------
def test_triggerer_killed_mid_poll_resumes_from_the_database(airflow_stack, sim):
    sim.configure(generation_seconds=20.0)
    dag_id = "wan_stack_triggerer_crash"
    airflow_stack.write_dag(f"{dag_id}.py", dag_source(dag_id, _generate(), imports=IMPORTS))
    run_id = airflow_stack.run_dag(dag_id)
    airflow_stack.wait_for_task_state(dag_id, run_id, "generate", "deferred", timeout=120)

    def polling() -> bool:
        return len(POLL_LINE.findall(airflow_stack.trigger_log(dag_id, run_id, "generate"))) >= 2

    airflow_stack.wait_until(polling, timeout=60, what="the trigger to poll twice")
    first_owner = airflow_stack.trigger_rows()[0]["triggerer_id"]
    airflow_stack.kill("triggerer")  # SIGKILL to the triggerer and its trigger runner subprocess
    killed_at = time.monotonic()
    assert airflow_stack.task_states(dag_id, run_id)["generate"] == "deferred"
    assert sim.stats()["tasks_by_status"] == {"RUNNING": 1}, "the kill should land mid-generation"
    airflow_stack.restart("triggerer")
    _watch(airflow_stack, dag_id, run_id)
    assert airflow_stack.run_state(dag_id, run_id) == "success", airflow_stack.diagnostics()
    print(f"\nrun finished {time.monotonic() - killed_at:.1f} s after the triggerer was killed")
    # a second triggerer (another job id) picked the stored trigger up and polled it to the end
    log_dir = airflow_stack.logs_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=generate"
    logs = {p.name.rsplit(".", 2)[-2]: p for p in log_dir.glob("*.trigger.*.log")}
    assert len(logs) == 2, sorted(logs)
    resumed = logs.pop(next(owner for owner in logs if owner != str(first_owner)))
    assert list(logs) == [str(first_owner)]
    assert "SUCCEEDED (poll" in resumed.read_text()
    # the task never went back to a worker before the end, and DashScope made exactly one video
    assert airflow_stack.task_instances(dag_id, run_id)[0]["try_number"] == 1
    assert sim.stats()["tasks_created"] == 1
    assert airflow_stack.xcom(dag_id, run_id, "generate")["task_status"] == "SUCCEEDED"


# --- on_kill: a user marks the deferred task failed ---------------------------------------------------------------
def test_marking_a_deferred_task_failed_cancels_the_pending_task(airflow_stack, sim):
    sim.configure(pending_seconds=120.0)  # queued at DashScope: still cancelable
    dag_id = "wan_stack_user_kill"
    airflow_stack.write_dag(f"{dag_id}.py", dag_source(dag_id, _generate(), imports=IMPORTS))
    run_id = airflow_stack.run_dag(dag_id)
    airflow_stack.wait_for_task_state(dag_id, run_id, "generate", "deferred", timeout=120)
    airflow_stack.wait_until(
        lambda: POLL_LINE.search(airflow_stack.trigger_log(dag_id, run_id, "generate")), timeout=60
    )
    airflow_stack.api("PATCH", f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/generate", {"new_state": "failed"})

    def canceled() -> bool:
        return [t["status"] for t in sim.tasks()] == ["CANCELED"]

    # the triggerer cancels the trigger as a user action and runs its on_kill, which cancels the PENDING task
    airflow_stack.wait_until(canceled, timeout=60, what="the DashScope task to be canceled")
    assert sim.stats()["requests"].get("cancel") == 1
    assert "invoking on_kill" in airflow_stack.trigger_log(dag_id, run_id, "generate")
