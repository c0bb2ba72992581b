"""
The submit operators through real Airflow (``dag.test()``) against the simulator.

Issue 3 acceptance 4 (final errors fail on the first try even with retries=3; transient ones are retried),
acceptance 5's persisted state (a retry re-attaches to the task it already paid for), and acceptance 6 (the API key
and signed URLs appear in no log line, XCom, rendered template field or exception text).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.airflow_run import RunResult, run_dag, write_dag

# built, not written out: a traceback quoting this file's source must not look like a leak
BAD_KEY = "sk-" + "not-valid-here"
SIGNATURE = re.compile(r"Signature=|Expires=\d")

DAG_SOURCE = """
import datetime
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_wan.operators.wan import (
    WanImageToVideoOperator, WanKeyframeToVideoOperator, WanTextToVideoOperator,
)

with DAG("{dag_id}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
    {operator}(
        task_id="generate",
        retries={retries},
        retry_delay=datetime.timedelta(seconds=0.5),
        poll_interval=0.2,
        {params}
    )
"""


def _dag(dag_id: str, operator: str = "WanTextToVideoOperator", retries: int = 3, **params: object):
    rendered = "\n        ".join(f"{k}={v!r}," for k, v in params.items())
    return write_dag(DAG_SOURCE.format(dag_id=dag_id, operator=operator, retries=retries, params=rendered), dag_id)


@pytest.fixture
def connection(monkeypatch, wan_simulator, wan_simulator_api_key):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_DEFAULT",
        wan_simulator.connection_json(),
    )
    return wan_simulator


def _scan_for_secrets(key: str, *texts: str) -> None:
    for text in texts:
        assert key not in text, "the API key leaked"
        assert not SIGNATURE.search(text), f"a signed URL leaked: {SIGNATURE.search(text)}"


def _run(dag, capfd, key: str) -> tuple[RunResult, str]:
    result = run_dag(dag)
    out, err = capfd.readouterr()
    output = out + err
    xcoms = json.dumps({f"{t}/{k}": v for (t, k), v in result.xcoms.items()}, default=str)
    _scan_for_secrets(key, output, xcoms, json.dumps(result.rendered, default=str))
    return result, output


def test_text_to_video_result(connection, capfd, wan_simulator_api_key):
    result, output = _run(
        _dag("t2v_ok", model="wan2.5-t2v-preview", prompt="a fox detective", size="832*480", seed=7),
        capfd,
        wan_simulator_api_key,
    )
    assert result.state == "success"
    assert result.tasks["generate"] == ("success", 1)
    value = result.xcoms[("generate", "return_value")]
    assert value["task_status"] == "SUCCEEDED"
    assert value["wan_task_id"] == result.xcoms[("generate", "wan_task_id")]
    assert value["video_url"].endswith(".mp4")
    assert value["estimated_cost_usd"] == pytest.approx(0.25)
    assert value["usage"]["video_ratio"] == "832*480"
    assert "Estimated cost: $0.2500" in output
    assert connection.stats()["tasks_created"] == 1
    [task] = connection.tasks()
    assert task["parameters"] == {"size": "832*480", "seed": 7}


def test_keyframe_operator_uploads_local_images(connection, capfd, wan_simulator_api_key, tmp_path):
    from tests.foundation.images import write_png

    first = write_png(tmp_path / "first.png", 640, 480)
    last = write_png(tmp_path / "last.png", 640, 480, rgb=(10, 200, 90))
    result, _ = _run(
        _dag(
            "kf2v_ok",
            "WanKeyframeToVideoOperator",
            model="wan2.2-kf2v-flash",
            prompt="morph",
            first_frame_url=str(first),
            last_frame_url=str(last),
            resolution="480P",
        ),
        capfd,
        wan_simulator_api_key,
    )
    assert result.tasks["generate"] == ("success", 1)
    [task] = connection.tasks()
    # local files go through DashScope's temporary storage, as the official SDK sends them
    assert task["input"]["first_frame_url"].startswith("oss://dashscope-instant/")
    assert task["input"]["first_frame_url"].endswith("/first.png")
    assert task["input"]["last_frame_url"].endswith("/last.png")
    assert task["endpoint"].endswith("image2video/video-synthesis")
    assert connection.stats()["requests"]["upload"] == 2


@pytest.mark.parametrize(
    ("case", "fault", "params", "error"),
    [
        ("moderation-at-create", None, {"prompt": "forbidden-content in a prompt"}, "DataInspectionFailed"),
        (
            "task-failed-moderation",
            {"kind": "task_fail", "code": "DataInspectionFailed"},
            {"prompt": "p"},
            "DataInspectionFailed",
        ),
        ("task-failed-invalid", {"kind": "task_fail", "code": "InvalidParameter"}, {"prompt": "p"}, "InvalidParameter"),
        (
            "create-400",
            {"kind": "error", "route": "create", "status": 400, "code": "InvalidParameter"},
            {"prompt": "p"},
            "InvalidParameter",
        ),
        (
            "arrearage",
            {"kind": "error", "route": "create", "status": 400, "code": "Arrearage"},
            {"prompt": "p"},
            "Arrearage",
        ),
        ("expired", {"kind": "task_unknown"}, {"prompt": "p"}, "24 hours"),
    ],
)
def test_final_errors_fail_on_the_first_try(connection, capfd, wan_simulator_api_key, case, fault, params, error):
    if fault:
        connection.inject_fault(**fault)
    result, output = _run(
        _dag(f"final_{case.replace('-', '_')}", model="wan2.5-t2v-preview", **params), capfd, wan_simulator_api_key
    )
    assert result.state == "failed"
    assert result.tasks["generate"] == ("failed", 1), "a final error must not be retried"
    assert error in output
    assert connection.stats()["tasks_created"] <= 1


def test_wrong_key_fails_on_the_first_try_and_says_why(monkeypatch, wan_simulator, capfd):
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_DEFAULT",
        wan_simulator.connection_json(password=BAD_KEY),
    )
    result, output = _run(_dag("final_bad_key", model="wan2.5-t2v-preview", prompt="p"), capfd, BAD_KEY)
    assert result.tasks["generate"] == ("failed", 1)
    assert "bound to the region" in output


def test_transient_task_failure_is_retried_by_airflow(connection, capfd, wan_simulator_api_key):
    connection.inject_fault("task_fail", code="InternalError.Algo")
    result, _ = _run(_dag("retry_internal", model="wan2.5-t2v-preview", prompt="p"), capfd, wan_simulator_api_key)
    assert result.state == "success"
    assert result.tasks["generate"] == ("success", 2)
    # the FAILED task cost nothing; the retry made the one that succeeded
    assert connection.stats()["tasks_created"] == 2


def test_a_retry_reattaches_to_the_task_it_already_paid_for(connection, capfd, wan_simulator_api_key):
    # the first try gives up waiting (retryable timeout) while DashScope still generates; the retry must read the
    # persisted task id and wait for that task instead of creating (and paying for) another one.
    # Timing, by bounds the code enforces rather than by dag.test()'s pace: every try waits its whole 1 s timeout
    # (reading the task at the deadline) and Airflow holds each retry back 0.5 s, so the sixth try starts at least
    # 7.5 s after the create, well past the video's end (4.1 s). Before, a try gave up right after its first read
    # once an earlier test had taught this process how long such tasks run, and dag.test() could spend all four
    # tries of retries=3 within the 4.1 s (seen under load). The first try sees the end only if stalled about 3 s.
    connection.configure(generation_seconds=4.0)
    result, output = _run(
        _dag("reattach", retries=5, model="wan2.5-t2v-preview", prompt="p", timeout=1.0),
        capfd,
        wan_simulator_api_key,
    )
    assert result.state == "success"
    assert result.tasks["generate"][1] >= 2
    assert connection.stats()["tasks_created"] == 1
    assert "Re-attaching to DashScope task" in output
    assert result.xcoms[("generate", "return_value")]["task_status"] == "SUCCEEDED"
    # the retry's own XCom names the task it re-attached to
    assert result.xcoms[("generate", "wan_task_id")] == connection.tasks()[0]["task_id"]


def test_budget_guard_refuses_before_submitting(connection, capfd, wan_simulator_api_key):
    result, output = _run(
        _dag("budget", model="wan2.6-t2v", prompt="p", duration=15, max_cost_usd=0.5), capfd, wan_simulator_api_key
    )
    assert result.tasks["generate"] == ("failed", 1)
    assert "max_cost_usd" in output
    assert sum(connection.stats()["requests"].values()) == 0


def test_no_secret_in_task_logs(connection, capfd, wan_simulator_api_key):
    # Self-contained (it used to scan whatever earlier tests left on disk, and dag.test() leaves nothing there, so it
    # scanned nothing): run a DAG whose result holds a signed URL, then scan the task's log, which dag.test() writes
    # to the console, and any log file on disk, after proving the log is there to scan.
    result = run_dag(_dag("log_scan", model="wan2.5-t2v-preview", prompt="a quiet harbour"))
    out, err = capfd.readouterr()
    assert result.tasks["generate"] == ("success", 1)
    [task] = connection.tasks()
    log = out + err
    assert task["task_id"] in log, "the task's log was not captured: the scan would scan nothing"
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    files = [p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file()] if logs.exists() else []
    _scan_for_secrets(wan_simulator_api_key, log, *files)
