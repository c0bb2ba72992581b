"""
The triggerer's heap is frozen (``gc.freeze()``) once per process, when the first WanTaskTrigger starts
(``[wan] freeze_heap_in_triggerer``, default True; ``triggers/wan.py`` ``freeze_heap_once``): the interpreter's full
garbage collections then skip the triggerer's 200,000 objects instead of stopping its event loop for 150 ms while a
batch of triggers starts (benchmarks/RESULTS.md section 10c). Real triggers against the simulator; each test starts
from an unfrozen heap and a process that has not decided yet, and leaves the heap unfrozen.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.triggers import wan as trigger_module
from airflow_provider_wan.triggers.wan import WanTaskTrigger, freeze_heap_once

BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a lighthouse at dawn"}, "parameters": {}}
ENDPOINT = "services/aigc/video-generation/video-synthesis"


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch, wan_simulator: Any, wan_conn: str) -> Iterator[Any]:
    """As in a triggerer process before its first Wan trigger: nothing frozen, nothing decided; unfrozen after."""
    gc.unfreeze()
    monkeypatch.setattr(trigger_module, "_heap_decided_in", set())
    monkeypatch.delenv("AIRFLOW__WAN__FREEZE_HEAP_IN_TRIGGERER", raising=False)
    wan_simulator.configure(pending_seconds=0, generation_seconds=0.1)
    try:
        yield wan_simulator
    finally:
        gc.unfreeze()


async def _run_one_trigger() -> str:
    hook = WanHook()
    try:
        task_id = hook.create_task(ENDPOINT, BODY).task_id
    finally:
        hook.close()
    trigger = WanTaskTrigger(task_id=task_id, poll_interval=0.1, end_time=time.time() + 30)
    events = [event.payload async for event in trigger.run()]
    assert len(events) == 1
    return str(events[0]["status"])


@pytest.mark.usefixtures("close_wan_sessions")
async def test_the_first_trigger_freezes_the_heap_once_per_process(fresh_process: Any) -> None:
    assert gc.get_freeze_count() == 0
    assert await _run_one_trigger() == "success"
    # the test process's heap (pytest, Airflow, the simulator) is far bigger than this
    assert gc.get_freeze_count() > 10_000

    gc.unfreeze()
    assert await _run_one_trigger() == "success"
    assert gc.get_freeze_count() == 0, "a second trigger of the same process froze the heap again"


@pytest.mark.usefixtures("close_wan_sessions")
async def test_the_option_off_leaves_the_heap_unfrozen(fresh_process: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__WAN__FREEZE_HEAP_IN_TRIGGERER", "False")
    assert await _run_one_trigger() == "success"
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("close_wan_sessions")
async def test_a_value_that_is_not_a_boolean_leaves_the_heap_unfrozen_and_says_so(
    fresh_process: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__WAN__FREEZE_HEAP_IN_TRIGGERER", "off")
    with caplog.at_level(logging.WARNING, logger=trigger_module.__name__):
        assert await _run_one_trigger() == "success"
    assert gc.get_freeze_count() == 0
    assert "[wan] freeze_heap_in_triggerer is not true or false" in caplog.text


def test_a_forked_child_freezes_its_own_heap(fresh_process: Any) -> None:
    freeze_heap_once()
    assert gc.get_freeze_count() > 0
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: inherits the parent's frozen heap and its "decided" mark, but is another process
        try:
            gc.unfreeze()
            freeze_heap_once()
            first = gc.get_freeze_count()
            gc.unfreeze()
            freeze_heap_once()
            os.write(write, f"{first} {gc.get_freeze_count()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 100).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    first, second = (int(n) for n in answer.split())
    assert first > 0, "the forked child did not freeze its heap"
    assert second == 0, "the forked child froze twice"
