"""``on_kill`` cancels a DashScope task that is still PENDING (and leaves a running one alone)."""

from __future__ import annotations

import pytest

from airflow_provider_wan.hooks.wan import TaskStatus, WanHook
from airflow_provider_wan.operators.wan import WanTextToVideoOperator

BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a cat"}, "parameters": {}}
ENDPOINT = "services/aigc/video-generation/video-synthesis"


@pytest.fixture
def operator(monkeypatch, wan_simulator, wan_simulator_api_key):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_KILL",
        wan_simulator.connection_json(),
    )
    return WanTextToVideoOperator(task_id="kill", wan_conn_id="wan_kill", model="wan2.5-t2v-preview", prompt="p")


def test_on_kill_cancels_a_pending_task(operator, wan_simulator):
    wan_simulator.configure(pending_seconds=60)
    task = WanHook(wan_conn_id="wan_kill").create_task(ENDPOINT, BODY)
    operator._wan_task_id = task.task_id  # what submit_job records
    operator.on_kill()
    assert WanHook(wan_conn_id="wan_kill").get_task(task.task_id).status is TaskStatus.CANCELED
    assert wan_simulator.stats()["requests"]["cancel"] == 1


def test_on_kill_leaves_a_running_task_alone(operator, wan_simulator):
    wan_simulator.configure(pending_seconds=0, generation_seconds=60)
    hook = WanHook(wan_conn_id="wan_kill")
    task = hook.create_task(ENDPOINT, BODY)
    operator._wan_task_id = task.task_id
    operator.on_kill()
    assert hook.get_task(task.task_id).status is TaskStatus.RUNNING
    assert wan_simulator.stats()["requests"].get("cancel", 0) == 0


@pytest.mark.parametrize("route", ["get_task", "cancel"])
def test_on_kill_ends_soon_whatever_the_server_does(operator, wan_simulator, route):
    # the worker's on_kill read and canceled with the hook's own limits: a server trickling its answer held the kill
    # for minutes (70 s an attempt, six attempts), past Airflow's patience; now each call gets the trigger's grace
    import time

    wan_simulator.configure(pending_seconds=60)
    task = WanHook(wan_conn_id="wan_kill").create_task(ENDPOINT, BODY)
    wan_simulator.inject_fault("drip", route=route, delay=1.0, after_bytes=1, count=-1)
    operator._wan_task_id = task.task_id
    operator.poll_interval = 0.5
    started = time.monotonic()
    try:
        operator.on_kill()
        elapsed = time.monotonic() - started
    finally:
        # the drip's connection closed: the server notices at its next byte and counts the request as it ends,
        # which must not fall into the next test's counts, so wait until it is counted (not a fixed time: a loaded
        # machine counts it later)
        operator.hook.close()
        deadline = time.monotonic() + 10
        while not wan_simulator.stats()["requests"].get(route) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert elapsed < 2.5, f"on_kill took {elapsed:.1f} s"


def test_templated_numbers_are_sent_as_integers(operator):
    operator.duration = "10"
    operator.seed = "42"
    _, body = operator.build_request()
    assert body["parameters"] == {"duration": 10, "seed": 42}
