"""
An attacker's review of the deferrable path and of what leaves a task (trigger events, XCom, execute_complete): each
hostile answer served for real on 127.0.0.1 by the simulator, each test with the promise it broke.
"""

from __future__ import annotations

import json

import pytest
import requests

from airflow_provider_wan.hooks.wan import MAX_ANSWER_PROMPT_CHARS, RetryPolicy, WanHook
from airflow_provider_wan.triggers.wan import WanTaskTrigger, task_from_event
from tests.integration.conftest import BODY, ENDPOINT

FAST = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
SIGNED = "https://bucket.oss-ap-southeast-1.aliyuncs.com/v.mp4?Expires=1&OSSAccessKeyId=LTAIx&Signature=c2lnbmVk"


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
