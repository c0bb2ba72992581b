"""
An attacker's review of the deferrable path and of what leaves a task (trigger events, XCom, execute_complete): each
hostile answer served for real on 127.0.0.1 by the simulator, each test with the promise it broke.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from airflow_provider_wan.hooks.wan import MAX_ANSWER_PROMPT_CHARS, RetryPolicy, WanHook
from airflow_provider_wan.triggers.wan import WanTaskTrigger, task_from_event
from tests.integration.conftest import BODY, ENDPOINT

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
SIGNED = "https://bucket.oss-ap-southeast-1.aliyuncs.com/v.mp4?Expires=1&OSSAccessKeyId=LTAIx&Signature=c2lnbmVk"


def _create() -> str:
    hook = WanHook(retry_policy=FAST)
    try:
        return hook.create_task(ENDPOINT, BODY).task_id
    finally:
        hook.close()


def _succeeded_answer(wan_simulator) -> tuple[str, dict]:
    """A task of the simulator run to SUCCEEDED, and DashScope's answer about it (to be served altered)."""
    hook = WanHook(retry_policy=FAST)
    try:
        task_id = hook.wait_for_task(hook.create_task(ENDPOINT, BODY).task_id, poll_interval=0.1, timeout=30).task_id
    finally:
        hook.close()
    answer = requests.get(
        f"{wan_simulator.base_url}/tasks/{task_id}",
        headers={"Authorization": f"Bearer {wan_simulator.api_key}"},
        timeout=10,
    ).json()
    return task_id, answer


@pytest.mark.usefixtures("close_wan_sessions")
async def test_echoed_prompts_reach_the_event_as_plain_bounded_text(wan_conn, wan_simulator):
    # orig_prompt and actual_prompt went on as sent: 3 MB of prompt into the trigger's event and XCom (the metadata
    # DB), and a NUL, which PostgreSQL's JSON columns refuse: the XCom push of a paid video failed on every retry
    task_id, answer = _succeeded_answer(wan_simulator)
    answer["output"]["orig_prompt"] = "a lighthouse\x00 at dawn\r\nsecond line\tend\x1b[31m"
    answer["output"]["actual_prompt"] = "rewritten " + "x" * 3_000_000
    wan_simulator.inject_fault("answer", route="get_task", status=200, body=answer)
    trigger = WanTaskTrigger(task_id=task_id, end_time=9e9, poll_interval=0.1, retry_delay=0.01)
    events = [event.payload async for event in trigger.run()]
    assert [e["status"] for e in events] == ["success"]
    result = events[0]["result"]
    assert result["orig_prompt"] == "a lighthouse  at dawn\r\nsecond line\tend [31m"
    assert result["actual_prompt"].startswith("rewritten xxx")
    assert len(result["actual_prompt"]) == MAX_ANSWER_PROMPT_CHARS
    assert len(json.dumps(events)) < MAX_ANSWER_PROMPT_CHARS + 8 * 1024
    # execute_complete's reading of the event keeps them as they are
    assert task_from_event(events[0]).to_result()["orig_prompt"] == result["orig_prompt"]


@pytest.mark.usefixtures("close_wan_sessions")
async def test_a_huge_hostile_video_url_is_cut_in_the_event(wan_conn, wan_simulator):
    # the unsigned copy of video_url went on whole: 2 MB of link, NULs included, into the event and XCom
    task_id, answer = _succeeded_answer(wan_simulator)
    answer["output"]["video_url"] = "https://cdn.example.com/" + "v\x00" * 300_000 + ".mp4?Signature=c2lnbmVk"
    wan_simulator.inject_fault("answer", route="get_task", status=200, body=answer)
    trigger = WanTaskTrigger(task_id=task_id, end_time=9e9, poll_interval=0.1, retry_delay=0.01)
    events = [event.payload async for event in trigger.run()]
    assert [e["status"] for e in events] == ["success"]
    text = json.dumps(events)
    assert "Signature" not in text
    assert "\\u0000" not in text
    assert events[0]["result"]["video_url"].startswith("https://cdn.example.com/v v v")
    assert len(events[0]["result"]["video_url"]) <= 2048
    assert len(text) < 8 * 1024


# --- rendered templates ----------------------------------------------------------------------------------------------
PRESIGNED = (
    "https://media.example.com/frames/first.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE"
    "&X-Amz-Signature=5f0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100"
)


@pytest.mark.parametrize(
    ("mapped", "login"), [(False, False), (True, False), (False, True)], ids=["task", "mapped-task", "login"]
)
def test_a_presigned_media_link_is_masked_in_the_rendered_fields(wan_conn, wan_simulator, capfd, mapped, login):
    # the UI's Rendered Template (stored in the metadata DB) showed a presigned input link whole: a templated
    # img_url (here from params, as from an upstream task's XCom) is a way to read the user's image until it expires
    from tests.airflow_run import run_dag, write_dag
    from tests.deferral.conftest import dag_source

    dag_id = f"wan_rendered_presigned_{mapped}_{login}"
    # a signature of each case's own: Airflow's masker is one per process and keeps what an earlier test registered
    signature = f"{int(mapped)}{int(login)}0e1d2c3b4a59687766554433221100ffeeddccbbaa99887766554433221100"
    presigned = PRESIGNED.replace(PRESIGNED.rsplit("=", 1)[1], signature)
    if login:
        # a password in the link's user info is as much a credential, query or not
        presigned = f"https://reader:{signature}@media.example.com/frames/first.png"
    common = (
        "task_id='generate', model='wan2.5-i2v-preview', prompt='the frame comes alive', "
        "input_extra={'note': ['{{ params.frame }}']}, wait_for_completion=False, "
        f"params={{'frame': {presigned!r}}}"
    )
    if mapped:
        # a mapped task is rendered through another path (MappedOperator.render_template_fields)
        body = f"WanImageToVideoOperator.partial({common}).expand(img_url=['{{{{ params.frame }}}}'])"
    else:
        body = f"WanImageToVideoOperator({common}, img_url='{{{{ params.frame }}}}')"
    imports = "from airflow_provider_wan.operators.wan import WanImageToVideoOperator"
    result = run_dag(write_dag(dag_source(dag_id, body, imports=imports), dag_id))
    assert [state for state, _ in result.tasks.values()] == ["success"]
    rendered = json.dumps(result.rendered["generate"])
    assert "X-Amz-Signature" not in rendered
    assert "media.example.com/frames/first.png" in rendered
    assert signature[:16] not in rendered
    captured = capfd.readouterr()
    assert signature[:16] not in captured.out + captured.err
    # the request itself carried the link whole: DashScope reads the image through it
    assert [task["input"]["img_url"] for task in wan_simulator.tasks()] == [presigned]


# --- the connection changing under a running trigger ----------------------------------------------------------------
ROTATED_KEY = "sk-rotated0123456789abcdef"


async def _run_while(trigger: WanTaskTrigger, change) -> list[dict]:
    """The trigger's events, with ``change()`` made once the trigger has read the task once."""
    import asyncio

    events: list[dict] = []

    async def collect() -> None:
        events.extend([event.payload async for event in trigger.run()])

    running = asyncio.ensure_future(collect())
    await asyncio.sleep(0.5)
    change()
    await running
    return events


@pytest.mark.usefixtures("close_wan_sessions")
async def test_a_key_rotated_while_the_trigger_waits_is_picked_up(monkeypatch, wan_simulator):
    # a trigger read with the key it started with for its whole life (an hour, a sensor's days): a key rotated
    # meanwhile (the old one revoked) failed every deferred task of the account for good (WanAuthError, final)
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    wan_simulator.configure(pending_seconds=0, generation_seconds=1.5)
    task_id = _create()

    def rotate() -> None:
        wan_simulator.configure(api_keys=[ROTATED_KEY])
        monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(password=ROTATED_KEY))

    trigger = WanTaskTrigger(task_id=task_id, end_time=time.time() + 30, poll_interval=0.2, retry_delay=0.01)
    events = await _run_while(trigger, rotate)
    assert [e["status"] for e in events] == ["success"]
    assert events[0]["task_id"] == task_id


@pytest.mark.usefixtures("close_wan_sessions")
async def test_a_key_revoked_while_the_trigger_waits_is_one_final_error(monkeypatch, wan_simulator):
    # control: the connection unchanged, its key refused: one final error event, after one more lookup
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    wan_simulator.configure(pending_seconds=0, generation_seconds=1.5)
    task_id = _create()
    trigger = WanTaskTrigger(task_id=task_id, end_time=time.time() + 30, poll_interval=0.2, retry_delay=0.01)
    events = await _run_while(trigger, lambda: wan_simulator.configure(api_keys=[ROTATED_KEY]))
    assert [e["status"] for e in events] == ["error"]
    assert events[0]["error"]["error_class"] == "WanAuthError"


def test_a_key_rotated_while_a_worker_waits_is_picked_up(monkeypatch, wan_simulator):
    # the worker's twin (a non-deferrable operator's wait, a poking sensor): the hook read the connection once, and a
    # key rotated during the wait failed the task for good
    import threading

    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    wan_simulator.configure(pending_seconds=0, generation_seconds=1.5)
    task_id = _create()

    def rotate() -> None:
        time.sleep(0.5)
        wan_simulator.configure(api_keys=[ROTATED_KEY])
        monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(password=ROTATED_KEY))

    rotation = threading.Thread(target=rotate)
    rotation.start()
    hook = WanHook(retry_policy=FAST)
    try:
        task = hook.wait_for_task(task_id, poll_interval=0.2, timeout=30)
    finally:
        hook.close()
        rotation.join()
    assert task.status.value == "SUCCEEDED"
    assert task.task_id == task_id
