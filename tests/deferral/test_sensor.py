"""
WanTaskSensor: failures and soft_fail through ``dag.test()`` (poke and deferrable, the trigger inline), and the
three modes end to end on the real stack (poke, reschedule, deferrable) waiting for one submitted task.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanRetryableError
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.sensors.wan import WanTaskSensor
from tests.airflow_run import run_dag, write_dag
from tests.deferral.conftest import T2V_BODY, VIDEO_ENDPOINT, dag_source

IMPORTS = "from airflow_provider_wan.sensors.wan import WanTaskSensor"
SUBMIT_IMPORT = "from airflow_provider_wan.operators.wan import WanTextToVideoOperator"


def _create() -> str:
    hook = WanHook()
    try:
        return hook.create_task(VIDEO_ENDPOINT, T2V_BODY).task_id
    finally:
        hook.close()


def _sensor_dag(dag_id: str, wan_task_id: str, **sensor_kwargs: Any) -> Any:
    kwargs = {"wan_task_id": wan_task_id, "poke_interval": 0.2, "retries": 2, **sensor_kwargs}
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return write_dag(dag_source(dag_id, f"WanTaskSensor(task_id='wait', {args})", imports=IMPORTS), dag_id)


def test_defaults_follow_dashscope_and_airflow():
    sensor = WanTaskSensor(task_id="wait", wan_task_id="{{ ti.xcom_pull(task_ids='submit', key='wan_task_id') }}")
    assert sensor.poke_interval == 15.0
    assert sensor.mode == "poke"
    assert tuple(sensor.template_fields) == ("wan_task_id", "wan_conn_id")


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_sensor_returns_the_result(wan_conn, wan_simulator, deferrable):
    task_id = _create()
    result = run_dag(_sensor_dag(f"wan_sensor_ok_{deferrable}", task_id, deferrable=deferrable))
    assert result.state == "success"
    value = result.xcoms[("wait", "return_value")]
    assert value["wan_task_id"] == task_id
    assert value["task_status"] == "SUCCEEDED"
    assert value["region"] == "custom"
    assert "Signature" not in str(value["video_url"])
    assert wan_simulator.stats()["tasks_created"] == 1


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
@pytest.mark.parametrize(
    ("fault", "code"),
    [("task_fail", "DataInspectionFailed"), ("task_fail", "InternalError.Algo"), ("task_unknown", None)],
    ids=["moderated", "internal-error", "expired"],
)
def test_failed_or_expired_task_fails_the_sensor_once(wan_conn, wan_simulator, deferrable, fault, code):
    wan_simulator.inject_fault(fault, **({"code": code} if code else {}))
    task_id = _create()
    dag_id = f"wan_sensor_fail_{fault}_{code}_{deferrable}".replace(".", "_")
    result = run_dag(_sensor_dag(dag_id, task_id, deferrable=deferrable))
    assert result.state == "failed"
    # final: the watched task stays failed whatever Airflow retries, so retries=2 gives one try
    assert result.tasks["wait"] == ("failed", 1)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_soft_fail_skips_on_a_failed_task(wan_conn, wan_simulator, deferrable):
    wan_simulator.inject_fault("task_fail", code="DataInspectionFailed")
    task_id = _create()
    result = run_dag(_sensor_dag(f"wan_sensor_soft_{deferrable}", task_id, deferrable=deferrable, soft_fail=True))
    assert result.tasks["wait"][0] == "skipped"


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_soft_fail_skips_on_a_task_that_failed_before_the_sensor_started(wan_conn, wan_simulator, deferrable):
    wan_simulator.configure(pending_seconds=0, generation_seconds=0)
    wan_simulator.inject_fault("task_fail", code="DataInspectionFailed")
    task_id = _create()
    assert WanHook().get_task(task_id).status.value == "FAILED"
    dag_id = f"wan_sensor_soft_early_{deferrable}"
    result = run_dag(_sensor_dag(dag_id, task_id, deferrable=deferrable, soft_fail=True))
    assert result.tasks["wait"][0] == "skipped"
    # control: without soft_fail the same task fails the sensor
    result = run_dag(_sensor_dag(f"{dag_id}_hard", task_id, deferrable=deferrable))
    assert result.tasks["wait"] == ("failed", 1)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_sensor_timeout_does_not_cancel_the_task(wan_conn, wan_simulator, deferrable, capfd):
    wan_simulator.configure(pending_seconds=60)
    task_id = _create()
    result = run_dag(_sensor_dag(f"wan_sensor_timeout_{deferrable}", task_id, deferrable=deferrable, timeout=0.5))
    assert result.tasks["wait"] == ("failed", 1)
    # a sensor timeout is not retried (retries=2, one try): the deferrable sensor said "a retry of the Airflow task
    # re-attaches to it", the trigger's words for a submit operator
    captured = capfd.readouterr()
    said = [line for line in (captured.out + captured.err).splitlines() if "Sensor has timed out" in line]
    assert said
    assert not [line for line in said if "re-attaches" in line]
    # somebody else's task: a sensor never cancels it
    assert "cancel" not in wan_simulator.stats()["requests"]
    assert {t["task_id"]: t["status"] for t in wan_simulator.tasks()}[task_id] == "PENDING"


def test_a_deferrable_timeout_the_deferral_cannot_hold_is_named(wan_conn, wan_simulator, capfd):
    # a timeout of centuries failed with the API server's "Database error" (the deferral's deadline overflowed the
    # database's dates); an infinite one with Python's "cannot convert float infinity to integer"
    task_id = _create()
    result = run_dag(_sensor_dag("wan_sensor_big_timeout", task_id, deferrable=True, timeout=1e12))
    assert result.tasks["wait"] == ("failed", 1)
    captured = capfd.readouterr()
    said = captured.out + captured.err
    assert "timeout: must be a number of seconds above 0 and at most 2592000 (30 days), got 1000000000000.0" in said
    assert "a deferrable WanTaskSensor's deadline must fit the database" in said
    assert wan_simulator.stats()["requests"].get("get_task", 0) == 0


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_a_poke_interval_of_0_is_refused_before_the_first_read(wan_conn, wan_simulator, capfd, mode):
    # Airflow takes a poke_interval of 0: every mode then read the task in a tight loop (the worker's pokes, the
    # reschedules, the trigger's reads), with only the hook's pacer between the loop and the account's limit
    task_id = _create()
    kwargs: dict[str, Any] = {"deferrable": True} if mode == "deferrable" else {"mode": mode}
    # a timeout, so that a sensor taking 0 again fails this test instead of spinning forever
    result = run_dag(_sensor_dag(f"wan_sensor_poke_0_{mode}", task_id, poke_interval=0, timeout=5, **kwargs))
    # final: retries=2 gives one try
    assert result.tasks["wait"] == ("failed", 1)
    captured = capfd.readouterr()
    said = "poke_interval: must be a number of seconds above 0 and at most 2592000 (30 days), got 0.0"
    assert said in captured.out + captured.err
    assert wan_simulator.stats()["requests"].get("get_task", 0) == 0


def test_missing_task_id_names_the_problem(wan_conn, wan_simulator):
    result = run_dag(_sensor_dag("wan_sensor_no_id", "None"))
    assert result.tasks["wait"] == ("failed", 1)
    assert wan_simulator.stats()["requests"].get("get_task", 0) == 0


# --- end to end on the real stack -----------------------------------------------------------------------------------
E2E_DAG = """
submit = WanTextToVideoOperator(
    task_id="submit", model="wan2.5-t2v-preview", prompt="a kite over the dunes", wait_for_completion=False
)
task_id = "{{ ti.xcom_pull(task_ids='submit', key='wan_task_id') }}"
common = dict(wan_task_id=task_id, timeout=300)
submit >> [
    WanTaskSensor(task_id="wait_poke", mode="poke", poke_interval=1, **common),
    # not 1 s: a reschedule shorter than the executor's event latency trips apache/airflow#71172 (the scheduler
    # fails a sensor whose previous poke's "success" event it reads after re-queueing the next poke)
    WanTaskSensor(task_id="wait_reschedule", mode="reschedule", poke_interval=5, **common),
    WanTaskSensor(task_id="wait_deferrable", deferrable=True, poke_interval=1, **common),
]
"""


@pytest.mark.stack
def test_sensor_modes_end_to_end(airflow_stack, sim):
    sim.configure(generation_seconds=12.0)
    dag_id = "wan_stack_sensor_modes"
    airflow_stack.write_dag(
        f"{dag_id}.py",
        dag_source(
            dag_id,
            E2E_DAG,
            imports=IMPORTS + "\nfrom airflow_provider_wan.operators.wan import WanTextToVideoOperator",
        ),
    )
    run_id = airflow_stack.run_dag(dag_id)
    seen: dict[str, set[str | None]] = {}

    def finished() -> bool:
        for task, state in airflow_stack.task_states(dag_id, run_id).items():
            seen.setdefault(task, set()).add(state)
        return airflow_stack.run_state(dag_id, run_id) in ("success", "failed")

    airflow_stack.wait_until(finished, timeout=180, interval=0.2, what="the sensor DAG run")
    assert airflow_stack.run_state(dag_id, run_id) == "success", airflow_stack.task_states(dag_id, run_id)
    created = airflow_stack.xcom(dag_id, run_id, "submit", key="wan_task_id")
    for sensor in ("wait_poke", "wait_reschedule", "wait_deferrable"):
        value = airflow_stack.xcom(dag_id, run_id, sensor)
        assert value["wan_task_id"] == created
        assert value["task_status"] == "SUCCEEDED"
    # each mode waited its own way
    assert "up_for_reschedule" in seen["wait_reschedule"]
    assert "deferred" in seen["wait_deferrable"]
    assert "deferred" not in seen["wait_poke"]
    assert "up_for_reschedule" not in seen["wait_poke"]
    assert sim.stats()["tasks_created"] == 1


@pytest.mark.parametrize(
    "event",
    [
        {"status": "failed", "task_id": "t1"},
        {"status": "expired", "task_id": "t1", "result": "UNKNOWN"},
        {"status": "canceled", "task_id": "t1", "result": {"wan_task_id": "t2", "task_status": "CANCELED"}},
    ],
    ids=["failed-without-result", "expired-result-not-a-dict", "another-tasks-result"],
)
def test_a_garbled_event_is_no_final_task_failure(event):
    # a malformed event whose status said "failed", "canceled" or "expired" was turned into the sensor's final
    # "task FAILED ... the sensor cannot resubmit": no retry, for a task nobody had seen end
    sensor = WanTaskSensor(task_id="wait", wan_task_id="t1")
    with pytest.raises(WanRetryableError, match="Invalid event from WanTaskTrigger") as raised:
        sensor.execute_complete({}, event)
    assert "cannot resubmit" not in str(raised.value)


@pytest.mark.parametrize("deferrable", [False, True], ids=["poke", "deferrable"])
def test_the_submit_operators_whole_result_names_the_task(wan_conn, wan_simulator, deferrable):
    # wan_task_id=submit.output (as the transfers take it) was read as the text of the dict: "Not a DashScope task id"
    dag_id = f"wan_sensor_result_arg_{deferrable}"
    body = (
        "submit = WanTextToVideoOperator(task_id='submit', model='wan2.5-t2v-preview', prompt='a red kite', "
        "wait_for_completion=False)\n"
        f"WanTaskSensor(task_id='wait', wan_task_id=submit.output, poke_interval=0.2, deferrable={deferrable})"
    )
    result = run_dag(write_dag(dag_source(dag_id, body, imports=f"{IMPORTS}\n{SUBMIT_IMPORT}"), dag_id))
    assert result.state == "success"
    assert result.xcoms[("wait", "return_value")]["wan_task_id"] == result.xcoms[("submit", "wan_task_id")]
    assert result.xcoms[("wait", "return_value")]["task_status"] == "SUCCEEDED"
    assert wan_simulator.stats()["tasks_created"] == 1
