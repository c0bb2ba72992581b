"""
Daily cleanup of the submit operators' retry-safety records kept in Airflow Variables (Airflow 2.11 to 3.2).

Before Airflow 3.3 every submit operator's task instance keeps one ``wan_create_record/...`` Variable, and Airflow
never deletes a Variable. This DAG runs ``python -m airflow_provider_wan.record_cleanup`` once a day: it deletes the
records whose create was sent more than ``older_than_days`` ago (default 30), keeps those whose task instance has not
finished, leaves alone anything under the prefix that is not a record, and lists all of it in the task log. Trigger it
with ``dry_run`` to see the list first. A deleted record no longer guards its task instance: clearing that old task
instance then creates, and pays for, a new video.

Needs:

* the metadata database configured where the task runs (the command opens it through Airflow's ORM): always so on
  Airflow 2.11; on Airflow 3 only where the workers are configured with it (a LocalExecutor on the scheduler's host,
  for one). Elsewhere run the same command on the scheduler's host from cron: Airflow 3's tasks cannot reach the
  metadata database themselves.

Costs nothing on DashScope: it makes no request there.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, Param, task

DAG_ID = "example_wan_record_cleanup"

with DAG(
    dag_id=DAG_ID,
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wan", "maintenance"],
    params={
        "older_than_days": Param(30, type="number", minimum=1, description="delete records older than this"),
        "dry_run": Param(False, type="boolean", description="list what would be deleted, delete nothing"),
    },
    doc_md=__doc__,
) as dag:
    # [START howto_record_cleanup]
    @task.bash
    def clean_wan_records() -> str:
        import shlex
        import sys

        # the worker's own interpreter, in a process of its own: it opens the metadata database from the worker's
        # Airflow configuration (on Airflow 3, the task process itself is refused a database session)
        return (
            f"{shlex.quote(sys.executable)} -m airflow_provider_wan.record_cleanup"
            " --older-than-days {{ params.older_than_days }} {{ '--dry-run' if params.dry_run else '' }}"
        )

    clean_wan_records()
    # [END howto_record_cleanup]
