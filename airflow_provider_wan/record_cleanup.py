"""
Cleanup of the retry-safety records kept in Airflow Variables
(:class:`~airflow_provider_wan.create_record.VariableRecords`, the store of Airflow 2.11 to 3.2). Airflow never
deletes a Variable by itself, so a DAG that makes hundreds of videos a night leaves hundreds of
``wan_create_record/...`` Variables a night behind, for ever.

:func:`clean_variable_records` deletes those whose create was sent longer ago than ``older_than`` (default 30 days),
judged by the time the record itself holds (``sent_at``). It needs the metadata database through Airflow's ORM, so it
runs where that is reachable: in a task on Airflow 2.11, and on a host configured with the metadata database (the
scheduler's, for one) on every version, as a command::

    python -m airflow_provider_wan.record_cleanup --older-than-days 30 [--dry-run]

Airflow 3's tasks have no database access and the Task SDK cannot list Variables, so there the command is the way.

What deleting costs: a record is what makes a clear and re-run of its task instance re-attach to the DashScope task
already paid for, or refuse to create again while an earlier create's outcome is unknown. Without it, clearing that
(old) task instance creates and pays for a new video. DashScope keeps a task 24 hours, after which a re-attach finds
nothing and creates a new task anyway, so a month-old record guards little but the outcome-unknown refusal; a record
younger than a day is never deleted, nor one whose task instance has not finished (it may still retry).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow_provider_wan.create_record import VARIABLE_PREFIX, CreateRecord, variable_key

__all__ = ["DEFAULT_OLDER_THAN", "MIN_OLDER_THAN", "RecordCleanup", "clean_variable_records", "main"]

#: the default age past which a record goes
DEFAULT_OLDER_THAN = timedelta(days=30)
#: the least ``older_than`` accepted: DashScope keeps a task 24 hours, and a younger record still re-attaches to it
MIN_OLDER_THAN = timedelta(days=1)
#: Variables deleted per statement and transaction (well under SQLite's limit on bound parameters)
_BATCH = 500


@dataclass
class RecordCleanup:
    """
    What :func:`clean_variable_records` found.

    :param older_than: the age limit it applied
    :param dry_run: True when nothing was deleted (``deleted`` lists what would have been)
    :param deleted: Variable key -> its record, for the records deleted (or that would be, in a dry run)
    :param unfinished: keys of old records kept because their task instance has not finished
    :param unreadable: keys under ``wan_create_record/`` whose value is not a record: left alone
    :param young: how many records were kept for being younger than ``older_than``
    """

    older_than: timedelta
    dry_run: bool
    deleted: dict[str, CreateRecord] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    young: int = 0

    def lines(self) -> Iterator[str]:
        """The report, one line per Variable touched or left alone for a reason, then a summary."""
        verb = "Would delete" if self.dry_run else "Deleted"
        for key, record in self.deleted.items():
            task = f"DashScope task {record.task_id}" if record.task_id else "create in flight, no task id stored"
            sent = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.sent_at))
            yield f"{verb} {key} ({record.model}, sent {sent}, {task})"
        for key in self.unfinished:
            yield f"Kept {key}: its task instance has not finished"
        for key in self.unreadable:
            yield f"Left alone {key}: its value is not an airflow-provider-wan retry-safety record"
        yield (
            f"{len(self.deleted)} record(s) {'to delete' if self.dry_run else 'deleted'} (sent more than "
            f"{_days(self.older_than)} ago), {self.young} younger kept, {len(self.unfinished)} kept for an unfinished "
            f"task instance, {len(self.unreadable)} unreadable left alone"
        )


def _days(age: timedelta) -> str:
    return f"{age.total_seconds() / 86400:g} days"


def clean_variable_records(older_than: timedelta = DEFAULT_OLDER_THAN, *, dry_run: bool = False) -> RecordCleanup:
    """
    Delete the ``wan_create_record/...`` Variables whose create was sent more than ``older_than`` ago.

    Kept whatever their age: a record whose task instance exists and has not finished (queued, running, deferred,
    up for retry...: it may still need the record), and any Variable under the prefix whose value is not a record
    (reported in :attr:`RecordCleanup.unreadable`). Deletes in batches of 500, each its own transaction.

    Needs the metadata database through Airflow's ORM: a task on Airflow 2.11, or any process on a host configured
    with the metadata database (see :func:`main`); inside an Airflow 3 task Airflow refuses the session.

    :param older_than: age of the record (now minus its ``sent_at``) past which it is deleted; at least 1 day,
        default 30 days
    :param dry_run: find and report, delete nothing (default False)
    :return: what was deleted (or would be) and what was kept, and why
    """
    if not isinstance(older_than, timedelta) or older_than < MIN_OLDER_THAN:
        raise ValueError(
            f"older_than: must be a timedelta of at least {_days(MIN_OLDER_THAN)} (a younger record may still "
            f"re-attach to a DashScope task, kept 24 hours), got {older_than!r}"
        )
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    report = RecordCleanup(older_than=older_than, dry_run=dry_run)
    cutoff = time.time() - older_than.total_seconds()
    with create_session() as session:
        protected = _unfinished_task_instance_keys(session)
        rows = session.query(Variable).filter(Variable.key.startswith(f"{VARIABLE_PREFIX}/", autoescape=True))
        for variable in rows.order_by(Variable.key):
            record = _record(variable.val)
            if record is None:
                report.unreadable.append(variable.key)
            elif record.sent_at >= cutoff:
                report.young += 1
            elif variable.key in protected:
                report.unfinished.append(variable.key)
            else:
                report.deleted[variable.key] = record
        # the reading is done before the first delete: each batch commits on its own
        session.commit()
        if not dry_run:
            keys = list(report.deleted)
            for start in range(0, len(keys), _BATCH):
                batch = keys[start : start + _BATCH]
                session.query(Variable).filter(Variable.key.in_(batch)).delete(synchronize_session=False)
                session.commit()
    return report


def _record(value: str | None) -> CreateRecord | None:
    try:
        return CreateRecord.from_json(json.loads(value or ""))
    except ValueError:
        return None


def _unfinished_task_instance_keys(session: Any) -> set[str]:
    """The record keys of every task instance that has not finished (no state yet counts as not finished)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.state import State
    from sqlalchemy import or_

    finished = [str(getattr(state, "value", state)) for state in State.finished]
    rows = session.query(TaskInstance.dag_id, TaskInstance.task_id, TaskInstance.run_id, TaskInstance.map_index)
    rows = rows.filter(or_(TaskInstance.state.is_(None), TaskInstance.state.not_in(finished)))
    return {variable_key(dag_id, task_id, run_id, map_index) for dag_id, task_id, run_id, map_index in rows}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m airflow_provider_wan.record_cleanup``: :func:`clean_variable_records` from a shell."""
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_wan.record_cleanup",
        description="Delete airflow-provider-wan retry-safety records (wan_create_record/... Airflow Variables) "
        "older than a number of days. Run it where the metadata database is configured (e.g. the scheduler's host). "
        "A deleted record no longer stops a clear and re-run of its task instance from paying for a new video.",
    )
    parser.add_argument(
        "--older-than-days",
        type=float,
        default=DEFAULT_OLDER_THAN.days,
        help=f"delete records whose create was sent more than this many days ago (at least "
        f"{MIN_OLDER_THAN.days}; default {DEFAULT_OLDER_THAN.days})",
    )
    parser.add_argument("--dry-run", action="store_true", help="report what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    try:
        older_than = timedelta(days=args.older_than_days)
    except (OverflowError, ValueError):  # infinity, NaN, or past timedelta's range
        older_than = None
    if older_than is None or older_than < MIN_OLDER_THAN:
        parser.error(
            f"--older-than-days: must be a number of days >= {MIN_OLDER_THAN.days}, got {args.older_than_days}"
        )
    report = clean_variable_records(older_than, dry_run=args.dry_run)
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
