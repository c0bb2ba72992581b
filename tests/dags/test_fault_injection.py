"""
What the example DAG does when DashScope misbehaves, driven by the simulator's fault injection.

These tests double as the "testing your own DAGs" examples of the docs (``docs/testing.rst`` includes the sections
between the ``[START ...]`` / ``[END ...]`` markers), so they are written the way a user would write them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.airflow_run import run_dag
from tests.dags.conftest import load_example


# [START howto_test_moderation_is_final]
def test_moderation_failure_fails_at_once_without_retries(example_env: dict[str, Any]) -> None:
    simulator = example_env["simulator"]
    # the next task created ends FAILED with DashScope's moderation code, as a flagged output would
    simulator.inject_fault("task_fail", code="DataInspectionFailed", message="Output data may contain inappropriate")
    _, dag = load_example(example_env["folder"], "example_wan_text_to_video")
    generate = dag.get_task("generate_video")
    generate.retries, generate.retry_delay = 3, timedelta(0)

    result = run_dag(dag)

    assert result.state == "failed"
    # a content refusal is final: one try, although three retries were allowed
    assert result.tasks["generate_video"] == ("failed", 1)
    assert result.tasks["video_to_gcs"][0] == "upstream_failed"
    assert simulator.stats()["tasks_created"] == 1


# [END howto_test_moderation_is_final]


# [START howto_test_throttled_create_is_resent]
def test_throttled_create_is_resent_by_the_hook(example_env: dict[str, Any]) -> None:
    simulator = example_env["simulator"]
    # the first two creates are refused with 429, as DashScope does past the model's requests per second
    simulator.inject_fault("error", route="create", status=429, code="Throttling.RateQuota", count=2)
    _, dag = load_example(example_env["folder"], "example_wan_text_to_video")

    result = run_dag(dag)

    assert result.state == "success"
    assert result.tasks["generate_video"] == ("success", 1)  # resent by the hook, not by an Airflow retry
    stats = simulator.stats()
    assert stats["requests"]["create"] == 3
    assert stats["tasks_created"] == 1


# [END howto_test_throttled_create_is_resent]


# [START howto_test_lost_answer_is_not_resent]
def test_lost_create_answer_is_never_resent(example_env: dict[str, Any]) -> None:
    simulator = example_env["simulator"]
    # the create is processed (a task exists, and would be billed), then the connection is reset mid-answer
    simulator.inject_fault("reset", route="create")
    _, dag = load_example(example_env["folder"], "example_wan_text_to_video")
    generate = dag.get_task("generate_video")
    generate.retries, generate.retry_delay = 3, timedelta(0)

    result = run_dag(dag)

    # WanCreateOutcomeUnknownError is final: sending again could pay for a second video
    assert result.tasks["generate_video"] == ("failed", 1)
    assert simulator.stats()["requests"]["create"] == 1
    (task,) = simulator.tasks()
    assert task["model"] == "wan2.2-t2v-plus"


# [END howto_test_lost_answer_is_not_resent]
