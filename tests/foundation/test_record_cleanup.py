"""
The cleanup of retry-safety records kept in Airflow Variables (``airflow_provider_wan.record_cleanup``), against
the session's real metadata DB.

The records are written the real way: a task run through ``dag.test()`` puts them with
:class:`~airflow_provider_wan.create_record.VariableRecords` (through the Task SDK on Airflow 3, the ORM on 2.11),
among them its own task instance's record as ``record_store`` keys it. One writer run serves the module; only the
last test deletes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_wan.compat import HAS_TASK_STATE_STORE
from airflow_provider_wan.record_cleanup import clean_variable_records, main
from tests.airflow_run import run_dag, write_dag

WRITER_SOURCE = """
import datetime
import time

from airflow.providers.common.compat.sdk import DAG, Variable, task

from airflow_provider_wan.create_record import CreateRecord, VariableRecords, record_store

DAY = 86400
PREFIX = {prefix!r}


@task
def write_records(**context):
    now = time.time()

    def record(age_days, task_id):
        return CreateRecord("a" * 64, "wan2.5-t2v-preview", now - age_days * DAY, task_id)

    # this task instance's own record, where an operator without a task state store keeps it
    record_store({{"ti": context["ti"]}}).put(record(40, "own-task"))
    if context.get("task_state_store") is not None:
        # Airflow 3.3: where the operators keep it there
        record_store(context).put(record(40, "own-task"))
    for name, age_days, task_id in [
        ("done", 31, "old-task"),
        ("in_flight", 45, None),
        ("young", 29, "recent-task"),
        ("hours", 0.5, "fresh-task"),
    ]:
        VariableRecords(PREFIX, name, "scheduled__2026-01-01", -1).put(record(age_days, task_id))
    # under the prefix but not a record: left alone
    Variable.set(f"wan_create_record/{{PREFIX}}/junk", "not json")
    # not under the prefix ("_" must not act as a LIKE wildcard), though its value is an old record
    Variable.set(f"wanXcreateXrecord/{{PREFIX}}/lookalike", record(40, "x").to_json(), serialize_json=True)


with DAG("{dag_id}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
    write_records()
"""


def _variable(key: str) -> Any:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(Variable).filter(Variable.key == key).one_or_none()
        return None if row is None else row.val


def _set_state(dag_id: str, run_id: str, state: str) -> None:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id).update({"state": state})


@pytest.fixture(scope="module")
def records() -> dict[str, str]:
    prefix = f"cleanup_{uuid.uuid4().hex[:8]}"
    dag_id = f"{prefix}_writer"
    result = run_dag(write_dag(WRITER_SOURCE.format(prefix=prefix, dag_id=dag_id), dag_id))
    assert result.state == "success", result.tasks

    def key(name: str) -> str:
        return f"wan_create_record/{prefix}/{name}/scheduled__2026-01-01/-1"

    keys = {name: key(name) for name in ("done", "in_flight", "young", "hours")}
    keys["junk"] = f"wan_create_record/{prefix}/junk"
    keys["own"] = f"wan_create_record/{dag_id}/write_records/{result.run_id}/-1"
    keys["lookalike"] = f"wanXcreateXrecord/{prefix}/lookalike"
    keys["dag_id"], keys["run_id"] = dag_id, result.run_id
    assert all(_variable(keys[name]) is not None for name in ("own", "done", "young", "junk", "lookalike"))
    return keys


def _ours(keys: Any, records: dict[str, str]) -> set[str]:
    """The names of this module's records among ``keys`` (other tests' Variables may share the database)."""
    by_key = {key: name for name, key in records.items()}
    return {by_key[key] for key in keys if key in by_key}


def test_dry_run_reports_by_the_records_own_time_and_deletes_nothing(records):
    report = clean_variable_records(timedelta(days=30), dry_run=True)
    assert _ours(report.deleted, records) == {"own", "done", "in_flight"}
    assert report.deleted[records["in_flight"]].in_flight
    assert report.deleted[records["done"]].task_id == "old-task"
    assert _ours(report.unreadable, records) == {"junk"}
    assert report.young >= 2
    assert not _ours(report.unfinished, records)
    lines = list(report.lines())
    assert f"Would delete {records['in_flight']} (wan2.5-t2v-preview, sent " in "\n".join(lines)
    assert any(line.endswith("create in flight, no task id stored)") for line in lines)
    assert all(_variable(records[name]) is not None for name in ("own", "done", "in_flight", "young", "junk"))
    # a longer limit spares the 31-day record, a shorter one takes the 29-day one
    assert _ours(clean_variable_records(timedelta(days=35), dry_run=True).deleted, records) == {"own", "in_flight"}
    assert _ours(clean_variable_records(timedelta(days=2), dry_run=True).deleted, records) == {
        "own",
        "done",
        "in_flight",
        "young",
    }


@pytest.mark.parametrize("state", ["up_for_retry", "running", "deferred", "queued"])
def test_an_unfinished_task_instance_keeps_its_record_whatever_its_age(records, state):
    # the writer's task instance, as it would be while Airflow may still retry it: its 40-day-old record stays
    _set_state(records["dag_id"], records["run_id"], state)
    try:
        report = clean_variable_records(timedelta(days=30), dry_run=True)
    finally:
        _set_state(records["dag_id"], records["run_id"], "success")
    assert _ours(report.unfinished, records) == {"own"}
    assert _ours(report.deleted, records) == {"done", "in_flight"}
    assert f"Kept {records['own']}: its task instance has not finished" in list(report.lines())


def test_an_age_under_a_day_is_refused_before_anything_is_read(records, capsys):
    with pytest.raises(ValueError, match=r"older_than: must be a timedelta of at least 1 days .* got "):
        clean_variable_records(timedelta(hours=6))
    with pytest.raises(ValueError, match=r"older_than: must be a timedelta"):
        clean_variable_records(30)  # type: ignore[arg-type]
    for days in ("0.25", "nan", "inf", "-40", "1e300"):
        with pytest.raises(SystemExit) as exited:
            main(["--older-than-days", days])
        assert exited.value.code == 2
        assert f"--older-than-days: must be a number of days >= 1, got {float(days)}" in capsys.readouterr().err
    assert _variable(records["hours"]) is not None


def test_the_command_deletes_old_records_and_reports_them(records):
    # what a cron job on the scheduler's host runs (Airflow 3's tasks cannot reach the metadata database)
    command = [sys.executable, "-m", "airflow_provider_wan.record_cleanup", "--older-than-days", "30"]
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert any(line.startswith(f"Deleted {records['done']} (wan2.5-t2v-preview, sent ") for line in out), out
    assert f"Left alone {records['junk']}: its value is not an airflow-provider-wan retry-safety record" in out
    deleted, summary = out[-1].split(" ", 1)
    assert int(deleted) >= 3
    assert summary.startswith("record(s) deleted (sent more than 30 days ago), ")
    for name in ("own", "done", "in_flight"):
        assert _variable(records[name]) is None, name
    for name in ("young", "hours", "junk", "lookalike"):
        assert _variable(records[name]) is not None, name
    # run again: nothing of ours is left to delete
    again = clean_variable_records(timedelta(days=30))
    assert not _ours(again.deleted, records)
    assert _ours(again.unreadable, records) == {"junk"}


@pytest.mark.skipif(not HAS_TASK_STATE_STORE, reason="the task state store exists from Airflow 3.3")
def test_airflow_removes_a_task_state_store_record_with_its_dag_run_or_once_expired(records):
    # what docs/operators/text_to_video.rst says of Airflow 3.3: the row outlives its task instance, carries an
    # expiry [state_store] default_retention_days (30) after its last write for `airflow state-store clean`, and goes
    # with its DAG run (a foreign key with ON DELETE CASCADE: deleting the run, or `airflow db clean` purging it)
    from airflow.models import DagRun
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session

    def rows() -> list[Any]:
        with create_session() as session:
            query = session.query(TaskStateStoreModel).filter_by(dag_id=records["dag_id"], key="wan_create")
            return [(row.updated_at, row.expires_at) for row in query]

    [(updated_at, expires_at)] = rows()
    # both stamped at the write, a few milliseconds apart
    assert abs(expires_at - updated_at - timedelta(days=30)) < timedelta(minutes=1)
    with create_session() as session:
        session.delete(session.query(DagRun).filter_by(dag_id=records["dag_id"], run_id=records["run_id"]).one())
    assert rows() == []
