"""
Issue 10, acceptance 2: clear and re-run through a real scheduler (the package's Airflow stack: scheduler with
LocalExecutor, triggerer, dag-processor, api-server) against a simulator process and a GCS emulator.

1. A generate task and its transfer succeed: one DashScope task, one object.
2. Clearing the succeeded generate task together with its downstream re-attaches: the retry-safety record holds the
   same request's task, so no task is created; ``wan_task_id`` and the result are pushed again, and the transfer
   (``wan_task_id`` from ``xcom_pull(key='wan_task_id')``) succeeds.
3. After the prompt is edited (the DAG file rewritten), the same clear creates exactly one new task and lands the
   new video.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.deferral.conftest import dag_source
from tests.stack import AirflowStack

pytestmark = pytest.mark.stack

IMPORTS = (
    "from airflow_provider_wan.operators.wan import WanTextToVideoOperator\n"
    "from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator"
)


def _body(bucket: str, prompt: str) -> str:
    return f"""
generate = WanTextToVideoOperator(
    task_id="generate",
    model="wan2.5-t2v-preview",
    prompt={prompt!r},
    size="832*480",
    deferrable=True,
    poll_interval=1,
)
to_gcs = WanVideoToGCSOperator(
    task_id="to_gcs",
    wan_task_id="{{{{ ti.xcom_pull(task_ids='generate', key='wan_task_id') }}}}",
    bucket_name={bucket!r},
)
generate >> to_gcs
"""


def _blob_task_ids(bucket: Any) -> dict[str, str]:
    """Object name -> the DashScope task id in its metadata, for every object of the bucket."""
    return {blob.name: (blob.metadata or {}).get("wan_task_id") for blob in bucket.list_blobs()}


def _try_numbers(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, int]:
    return {row["task_id"]: row["try_number"] for row in stack.task_instances(dag_id, run_id)}


def test_clear_and_rerun_reattaches_then_a_changed_prompt_makes_one_new_video(
    airflow_stack, sim, stack_gcs_emulator, monkeypatch
):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", stack_gcs_emulator)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    bucket = client.create_bucket(f"wan-rerun-{uuid.uuid4().hex[:10]}")
    sim.configure(pending_seconds=0.3, generation_seconds=2.0)
    dag_id = "wan_stack_clear_rerun"
    stack = airflow_stack

    # 1. the first run: one task, one object
    stack.write_dag(f"{dag_id}.py", dag_source(dag_id, _body(bucket.name, "a lighthouse at dawn"), imports=IMPORTS))
    run_id = stack.run_dag(dag_id)
    assert stack.wait_for_run(dag_id, run_id) == "success", stack.diagnostics()
    first_id = stack.xcom(dag_id, run_id, "generate", key="wan_task_id")
    assert sim.stats()["tasks_created"] == 1
    assert _blob_task_ids(bucket) == {f"wan/{first_id}.mp4": first_id}

    # 2. clear the succeeded generate task with its downstream: re-attach, nothing created, the transfer succeeds
    stack.clear(dag_id, run_id, ["generate"])
    assert stack.wait_for_run(dag_id, run_id) == "success", stack.diagnostics()
    assert _try_numbers(stack, dag_id, run_id) == {"generate": 2, "to_gcs": 2}
    assert sim.stats()["tasks_created"] == 1
    log = stack.task_log(dag_id, run_id, "generate", 2)
    assert f"Re-attaching to DashScope task {first_id}" in log
    assert "Created DashScope task" not in log
    # pushed again, exactly as a fresh run pushes them
    assert stack.xcom(dag_id, run_id, "generate", key="wan_task_id") == first_id
    result = stack.xcom(dag_id, run_id, "generate")
    assert result["wan_task_id"] == first_id
    assert result["task_status"] == "SUCCEEDED"
    assert stack.xcom(dag_id, run_id, "to_gcs")["wan_task_id"] == first_id
    assert _blob_task_ids(bucket) == {f"wan/{first_id}.mp4": first_id}

    # 3. edit the prompt, clear again: exactly one new task, the new video lands beside the old one
    stack.write_dag(f"{dag_id}.py", dag_source(dag_id, _body(bucket.name, "a lighthouse in a storm"), imports=IMPORTS))
    stack.clear(dag_id, run_id, ["generate"])
    assert stack.wait_for_run(dag_id, run_id) == "success", stack.diagnostics()
    assert _try_numbers(stack, dag_id, run_id) == {"generate": 3, "to_gcs": 3}
    assert sim.stats()["tasks_created"] == 2
    second_id = stack.xcom(dag_id, run_id, "generate", key="wan_task_id")
    assert second_id != first_id
    log = stack.task_log(dag_id, run_id, "generate", 3)
    assert "The request differs from the one an earlier try sent" in log
    assert f"Created DashScope task {second_id}" in log
    prompts = {task["task_id"]: task["input"]["prompt"] for task in sim.tasks()}
    assert prompts == {first_id: "a lighthouse at dawn", second_id: "a lighthouse in a storm"}
    assert stack.xcom(dag_id, run_id, "to_gcs")["wan_task_id"] == second_id
    assert _blob_task_ids(bucket) == {f"wan/{first_id}.mp4": first_id, f"wan/{second_id}.mp4": second_id}
    assert stack.retry_record(dag_id, run_id, "generate")["task_id"] == second_id
