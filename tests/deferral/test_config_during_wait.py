"""
Configuration changed while a paid generation is waited for (in the triggerer or by a worker): the result of a video
already paid for must not fail on it. Real Airflow (``dag.test()``, the trigger inline) against the simulator; the
change is made by a thread once the simulator has seen the create (or the trigger's first read), as an operator
editing ``airflow.cfg`` or a connection would make it.

* ``[wan] prices`` only prices the request before the create (estimate, ``max_cost_usd``): the estimate made then is
  the one reported, by the wait, by the deferred resume and by a retry that re-attaches;
* ``[wan] task_query_qps`` paces the reads: a value that is no number is a warning and the default, never a failed
  read of a task already paid for;
* the connection's region / base URL: the deferred resume reports where the task was made, without reading the
  connection again.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_wan.models import estimate_cost_usd, get_model
from tests.airflow_run import run_dag, write_dag
from tests.deferral.conftest import dag_source

IMPORTS = "from airflow_provider_wan.operators.wan import WanTextToVideoOperator"
MODEL = "wan2.5-t2v-preview"
PRICES = "AIRFLOW__WAN__PRICES"
QPS = "AIRFLOW__WAN__TASK_QUERY_QPS"
#: the estimate at submit time: wan2.5-t2v-preview at its default 1080P size and 5 s, priced at $0.20/s by the test
SUBMIT_PRICES = json.dumps({MODEL: {"1080P": 0.2}})


def _dag(dag_id: str, *, retries: int = 0, **operator_kwargs: Any) -> Any:
    kwargs = {"model": MODEL, "prompt": "a paper boat on a rainy street", "poll_interval": 0.2, **operator_kwargs}
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    body = f"WanTextToVideoOperator(task_id='generate', retries={retries}, retry_delay=timedelta(0), {args})"
    return write_dag(dag_source(dag_id, body, imports=IMPORTS), dag_id)


@pytest.fixture
def change_when() -> Iterator[Callable[..., threading.Event]]:
    """
    ``change_when(ready, name, value)``: set the environment variable ``name`` to ``value`` from a thread as soon as
    ``ready()`` is true (the simulator saw the create...). Returns an Event set once the change is made (never, if
    ``ready()`` never holds while the test runs: the test then says so); the variable is restored after the test.
    """
    threads: list[threading.Thread] = []
    originals: dict[str, str | None] = {}
    test_over = threading.Event()

    def change(ready: Callable[[], bool], name: str, value: str) -> threading.Event:
        originals.setdefault(name, os.environ.get(name))
        done = threading.Event()

        def watch() -> None:
            # no deadline of its own: a loaded machine may take long to start the run, and a change made before
            # the create would test something else
            while not ready():
                if test_over.wait(0.02):
                    return
            os.environ[name] = value
            done.set()

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        threads.append(thread)
        return done

    yield change
    test_over.set()
    for thread in threads:
        thread.join(timeout=10)
    for name, original in originals.items():
        if original is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = original


def _created(sim: Any) -> Callable[[], bool]:
    return lambda: sim.stats()["tasks_created"] >= 1


def _submit_estimate() -> float:
    model = get_model(MODEL)
    assert model is not None
    cost = estimate_cost_usd(model, prices={"1080P": 0.2})
    assert cost is not None
    return cost


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "worker"])
@pytest.mark.parametrize(
    "new_prices",
    ["{not json", json.dumps({MODEL: {"1080P": 9.0}})],
    ids=["invalid", "changed"],
)
def test_prices_changed_during_the_wait_keep_the_submit_estimate(
    monkeypatch, wan_conn, wan_simulator, change_when, deferrable, new_prices
):
    monkeypatch.setenv(PRICES, SUBMIT_PRICES)
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=1.5)
    changed = change_when(_created(wan_simulator), PRICES, new_prices)
    result = run_dag(_dag(f"wan_prices_wait_{deferrable}_{len(new_prices)}", deferrable=deferrable))
    assert changed.is_set(), "the prices were not changed during the run"
    assert result.tasks["generate"] == ("success", 1)
    value = result.xcoms[("generate", "return_value")]
    assert value["task_status"] == "SUCCEEDED"
    # the estimate the budget was checked against, not one priced after the video was paid for
    assert value["estimated_cost_usd"] == pytest.approx(_submit_estimate())
    assert wan_simulator.stats()["tasks_created"] == 1


def test_a_retry_reattaches_and_reports_the_submit_estimate_when_prices_broke_meanwhile(
    monkeypatch, wan_conn, wan_simulator, change_when
):
    # the first try times out on a RUNNING task; the retry must re-attach (nothing new is paid for), whatever the
    # price table says by then, and neither price nor budget the video again
    monkeypatch.setenv(PRICES, SUBMIT_PRICES)
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=3.0)
    change_when(_created(wan_simulator), PRICES, "{not json")
    result = run_dag(_dag("wan_prices_wait_retry", retries=5, timeout=1.0, deferrable=True, max_cost_usd=5.0))
    state, tries = result.tasks["generate"]
    assert state == "success"
    assert tries >= 2, "the first try should have timed out"
    assert result.xcoms[("generate", "return_value")]["estimated_cost_usd"] == pytest.approx(_submit_estimate())
    assert wan_simulator.stats()["tasks_created"] == 1


def test_a_retry_reattaches_though_a_raised_price_passes_the_budget_now(
    monkeypatch, wan_conn, wan_simulator, change_when
):
    # the video is paid for already: a budget refusal now would save nothing and leave it behind
    monkeypatch.setenv(PRICES, SUBMIT_PRICES)
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=3.0)
    change_when(_created(wan_simulator), PRICES, json.dumps({MODEL: {"1080P": 9.0}}))
    result = run_dag(_dag("wan_prices_wait_budget", retries=5, timeout=1.0, deferrable=True, max_cost_usd=5.0))
    state, tries = result.tasks["generate"]
    assert state == "success"
    assert tries >= 2, "the first try should have timed out"
    assert result.xcoms[("generate", "return_value")]["estimated_cost_usd"] == pytest.approx(_submit_estimate())
    assert wan_simulator.stats()["tasks_created"] == 1


@pytest.mark.parametrize(
    ("deferrable", "during_the_wait"),
    [(True, True), (True, False), (False, False)],
    ids=["triggerer-during-the-wait", "deferred-from-the-start", "worker-from-the-start"],
)
def test_task_query_qps_that_is_no_number_does_not_fail_a_paid_video(
    monkeypatch, wan_conn, wan_simulator, change_when, deferrable, during_the_wait
):
    from airflow_provider_wan.hooks import pacing

    # each worker process and each triggerer loop reads the option once, when it first paces a read: in a worker that
    # is the answer to the paid create; in a triggerer the first trigger's start, which may be long after the create
    # (a triggerer restarted, a trigger handed over). This process's pacer is made afresh for the run.
    monkeypatch.setattr(pacing, "_sync_pacers", {})
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=1.0)
    if during_the_wait:
        change_when(_created(wan_simulator), QPS, "fast")
    else:
        monkeypatch.setenv(QPS, "fast")
    result = run_dag(_dag(f"wan_qps_wait_{deferrable}_{during_the_wait}", deferrable=deferrable))
    assert result.tasks["generate"] == ("success", 1)
    assert result.xcoms[("generate", "return_value")]["task_status"] == "SUCCEEDED"
    assert wan_simulator.stats()["tasks_created"] == 1


@pytest.mark.parametrize("edited", ["key-emptied", "moved-to-beijing"])
def test_a_connection_edited_during_the_deferral_neither_fails_nor_relabels_the_result(
    wan_conn, wan_simulator, change_when, edited
):
    # the trigger keeps the key it started with; the resume in the worker used to read the connection again, so a
    # key being rotated (the password emptied for a moment) failed a ready video for good, and a connection pointed
    # elsewhere named the wrong region for it
    if edited == "key-emptied":
        connection = wan_simulator.connection_json(password="")
    else:
        connection = json.dumps({"conn_type": "wan", "password": wan_simulator.api_key, "extra": {"region": "beijing"}})
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=1.5)
    # once the trigger has made its first read (the operator made one before deferring): it holds its client
    changed = change_when(
        lambda: wan_simulator.stats()["requests"].get("get_task", 0) >= 2, "AIRFLOW_CONN_WAN_DEFAULT", connection
    )
    result = run_dag(_dag(f"wan_conn_wait_{edited.replace('-', '_')}", deferrable=True))
    assert changed.is_set()
    assert result.tasks["generate"] == ("success", 1)
    value = result.xcoms[("generate", "return_value")]
    assert value["task_status"] == "SUCCEEDED"
    # where the task was made: the simulator's base URL
    assert value["region"] == "custom"
    assert wan_simulator.stats()["tasks_created"] == 1


def test_a_deferred_sensor_is_not_failed_by_a_key_emptied_during_its_wait(wan_conn, wan_simulator, change_when):
    # the sensor's twin: its resume read the connection again, for the result's region only
    wan_simulator.configure(pending_seconds=0.1, generation_seconds=1.5)
    changed = change_when(
        # the sensor's first poke, then the trigger's first read
        lambda: wan_simulator.stats()["requests"].get("get_task", 0) >= 2,
        "AIRFLOW_CONN_WAN_DEFAULT",
        wan_simulator.connection_json(password=""),
    )
    body = (
        f"submit = WanTextToVideoOperator(task_id='submit', model={MODEL!r}, prompt='a kite', "
        "wait_for_completion=False)\n"
        "submit >> WanTaskSensor(task_id='wait', wan_task_id=submit.output, poke_interval=0.2, deferrable=True)"
    )
    imports = f"{IMPORTS}\nfrom airflow_provider_wan.sensors.wan import WanTaskSensor"
    result = run_dag(write_dag(dag_source("wan_sensor_conn_wait", body, imports=imports), "wan_sensor_conn_wait"))
    assert changed.is_set(), "the sensor did not defer"
    assert result.tasks["wait"] == ("success", 1)
    value = result.xcoms[("wait", "return_value")]
    assert value["task_status"] == "SUCCEEDED"
    # Airflow 3 resumes a fresh sensor, which finds the connection unreadable and says so rather than guessing;
    # Airflow 2.11's dag.test() resumes the same object, whose hook still holds the connection it polled with
    assert value["region"] in ("unknown", "custom")
