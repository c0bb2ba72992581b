"""
The retry-safety record through real Airflow (``dag.test()``) against the simulator (issue 10).

* ``execution_timeout`` fires while the create is in flight (the simulator makes the task, then answers late): the
  retry ends in the final outcome-unknown error naming the model and the time window; one task in total.
* the XCom push fails after the create: the retry re-attaches and pushes ``wan_task_id`` and the result; one task.
* both with the Airflow 3.3 task state store and with the Variable store Airflow < 3.3 gets: a DAG-level
  ``pre_execute`` removes ``task_state_store`` from the context, which is exactly what the operator's feature
  detection sees on an older Airflow.
"""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_wan.compat import AIRFLOW_V_3_0_PLUS, HAS_TASK_STATE_STORE
from tests.airflow_run import RunResult, run_dag, write_dag

DAG_SOURCE = """
import datetime
from pathlib import Path
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_wan.operators.wan import WanTextToVideoOperator

FLAG = Path({flag!r})


def fail_first_wan_task_id_push(context):
    # an XCom backend outage, once: the first try's push of wan_task_id raises after the create succeeded
    ti = context["ti"]
    push = ti.xcom_push

    def flaky_push(key, value, *args, **kwargs):
        if key == "wan_task_id" and not FLAG.exists():
            FLAG.write_text("failed once")
            raise RuntimeError("XCom backend unavailable")
        return push(key, value, *args, **kwargs)

    object.__setattr__(ti, "xcom_push", flaky_push)


def prepare(context):
    if {without_task_state_store!r}:
        # what the operator sees on Airflow < 3.3: no task state store in the context
        context.pop("task_state_store", None)
    if {fail_xcom!r}:
        fail_first_wan_task_id_push(context)


with DAG("{dag_id}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
    WanTextToVideoOperator(
        task_id="generate",
        model="wan2.5-t2v-preview",
        prompt="a heron at dusk",
        size="832*480",
        retries=2,
        retry_delay=datetime.timedelta(seconds=0.2),
        poll_interval=0.2,
        pre_execute=prepare,
        {params}
    )
"""

# the task state store exists from Airflow 3.3; before, the Variable is the record's only home
BACKENDS = ["task_state_store", "variable"] if HAS_TASK_STATE_STORE else ["variable"]


@pytest.fixture
def connection(monkeypatch, wan_simulator):
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    return wan_simulator


def _run(dag_id: str, tmp_path, backend: str, *, fail_xcom: bool = False, **params: object) -> RunResult:
    source = DAG_SOURCE.format(
        dag_id=dag_id,
        flag=str(tmp_path / "xcom-failed"),
        without_task_state_store=backend == "variable",
        fail_xcom=fail_xcom,
        params="\n        ".join(f"{k}={v}," for k, v in params.items()),
    )
    return run_dag(write_dag(source, dag_id))


def _stored_record(dag_id: str, run_id: str, backend: str) -> dict | None:
    """The record as Airflow stores it: the task state store row, or the Variable."""
    from airflow.models import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import text

    rows = []
    if HAS_TASK_STATE_STORE:
        with create_session() as session:
            rows = session.execute(
                text("SELECT value FROM task_state_store WHERE dag_id = :d AND run_id = :r AND key = 'wan_create'"),
                {"d": dag_id, "r": run_id},
            ).fetchall()
    in_state_store = json.loads(rows[0][0]) if rows else None
    in_variable = Variable.get(f"wan_create_record/{dag_id}/generate/{run_id}/-1", None, deserialize_json=True)
    if backend == "variable":
        assert in_state_store is None
        return in_variable
    assert in_variable is None
    return in_state_store


@pytest.mark.skipif(
    not AIRFLOW_V_3_0_PLUS,
    reason="Airflow 2.11's dag.test() lets execution_timeout's AirflowTaskTimeout escape into the caller instead of "
    "failing the try; the in-flight rule itself is store-independent (tests/unit/test_create_record.py)",
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_execution_timeout_during_the_create_then_retry_is_outcome_unknown(connection, tmp_path, capfd, backend):
    # the simulator makes the task at once and answers 6 s later; execution_timeout stops the try after 2 s
    connection.inject_fault("slow", route="create", delay=6)
    dag_id = f"inflight_{backend}"
    result = _run(dag_id, tmp_path, backend, execution_timeout="datetime.timedelta(seconds=2)")
    output = "".join(capfd.readouterr())
    assert result.state == "failed"
    # try 1 timed out (retryable), try 2 refused to create again (final): no try 3
    assert result.tasks["generate"] == ("failed", 2)
    assert "AirflowTaskTimeout" in output or "Timeout" in output
    assert "WanCreateOutcomeUnknownError" in output
    assert "sent the same create request for model 'wan2.5-t2v-preview'" in output
    assert "list_tasks(model_name='wan2.5-t2v-preview'" in output
    assert connection.stats()["tasks_created"] == 1
    record = _stored_record(dag_id, result.run_id, backend)
    assert record is not None
    assert record["task_id"] is None  # still in flight: the answer never arrived
    assert record["model"] == "wan2.5-t2v-preview"
    # let the late answer go out (the simulator counts a request when it is answered): one create request in all
    deadline = time.monotonic() + 10
    while connection.stats()["requests"].get("create", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert connection.stats()["requests"]["create"] == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_xcom_push_failing_after_the_create_then_retry_reattaches(connection, tmp_path, capfd, backend):
    dag_id = f"xcom_fails_{backend}"
    result = _run(dag_id, tmp_path, backend, fail_xcom=True)
    output = "".join(capfd.readouterr())
    assert (tmp_path / "xcom-failed").exists(), "the fault did not fire"
    assert result.state == "success"
    assert result.tasks["generate"] == ("success", 2)
    [task] = connection.tasks()
    assert connection.stats()["tasks_created"] == 1
    assert "Re-attaching to DashScope task " + task["task_id"] in output
    # the retry pushes exactly what a fresh run pushes
    assert result.xcoms[("generate", "wan_task_id")] == task["task_id"]
    value = result.xcoms[("generate", "return_value")]
    assert value["wan_task_id"] == task["task_id"]
    assert value["task_status"] == "SUCCEEDED"
    assert value["estimated_cost_usd"] == pytest.approx(0.25)
    record = _stored_record(dag_id, result.run_id, backend)
    assert record["task_id"] == task["task_id"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_refused_create_lifts_the_in_flight_mark(connection, tmp_path, backend):
    # a DashScope error answer proves no task was made: the mark comes off, so a re-run creates instead of calling
    # the outcome unknown
    connection.inject_fault("error", route="create", status=400, code="InvalidParameter")
    dag_id = f"refused_{backend}"
    result = _run(dag_id, tmp_path, backend)
    assert result.tasks["generate"] == ("failed", 1)
    assert connection.stats()["tasks_created"] == 0
    assert _stored_record(dag_id, result.run_id, backend) is None
