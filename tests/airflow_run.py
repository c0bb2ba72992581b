"""
Run a DAG through real Airflow (``dag.test()``) and read back what the metadata DB recorded.

Airflow 3.3's ``dag.test()`` serializes DAGs from the configured bundle (the dags folder), so a DAG built inline in
a test cannot run: :func:`write_dag` puts its source into the session's dags folder and imports it from there.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def dags_folder() -> Path:
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_dag(source: str, dag_id: str) -> Any:
    """Write a DAG file (which must define ``dag``) into the dags folder and return its DAG object."""
    path = dags_folder() / f"{dag_id}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(f"test_dag_{dag_id}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def xcom_model() -> Any:
    """The ORM class of the xcom table: ``XComModel`` on Airflow 3, ``XCom`` on 2.11."""
    try:
        from airflow.models.xcom import XComModel
    except ImportError:  # Airflow 2
        from airflow.models.xcom import XCom as XComModel
    return XComModel


def dag_bag(folder: Path | str) -> Any:
    """A ``DagBag`` of ``folder`` (it moved to ``airflow.dag_processing.dagbag`` in Airflow 3.2)."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:
        from airflow.models.dagbag import DagBag

        # before 3.2 the bag also loads Airflow's own examples unless told not to
        return DagBag(dag_folder=str(folder), include_examples=False)
    return DagBag(dag_folder=str(folder))


@dataclass
class RunResult:
    run_id: str
    state: str
    #: task_id (or "task_id[map_index]") -> (state, try_number)
    tasks: dict[str, tuple[str, int]]
    #: (task_id, key) -> value, every XCom of the run
    xcoms: dict[tuple[str, str], Any]
    #: task_id -> rendered template fields
    rendered: dict[str, dict[str, Any]]
    #: (classpath, kwargs) of every trigger the run deferred to (Airflow 3: the trigger rows the run added to the DB)
    triggers: list[tuple[str, dict[str, Any]]]


def run_dag(dag: Any, **kwargs: Any) -> RunResult:
    """``dag.test()`` then the run's task instances, XComs and rendered fields, straight from the DB."""
    from airflow.models import TaskInstance
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    XComModel = xcom_model()
    # Airflow 2's XCom rows deserialize themselves when loaded (the ORM class's reconstructor)
    airflow3 = XComModel.__name__ == "XComModel"

    inline: list[tuple[str, dict[str, Any]]] = []
    if airflow3:
        from airflow.models.trigger import Trigger
        from sqlalchemy import func

        # the DB is the test process's, shared by the runs before this one: only the rows this run adds are its own
        with create_session() as session:
            before = session.query(func.max(Trigger.id)).scalar() or 0
        dag_run = dag.test(**kwargs)
    else:
        # Airflow 2.11's dag.test() does not write the DAG's dataset aliases to the DB (the scheduler's parsing does),
        # and an event for an alias that is not there fails the task: sync the DAG as parsing would
        dag.sync_to_db()
        # ...and runs triggers inline without storing them: record what it was handed
        from airflow.models import dag as dag_module

        run_inline = dag_module._run_inline_trigger

        def recording(trigger: Any) -> Any:
            classpath, trigger_kwargs = trigger.serialize()
            inline.append((classpath, dict(trigger_kwargs)))
            return run_inline(trigger)

        dag_module._run_inline_trigger = recording
        try:
            dag_run = dag.test(**kwargs)
        finally:
            dag_module._run_inline_trigger = run_inline
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        tasks = {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): (str(ti.state), ti.try_number)
            for ti in tis
        }
        xcoms = {
            (x.task_id, x.key): XComModel.deserialize_value(x) if airflow3 else x.value
            for x in session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        }
        rendered = {
            r.task_id: dict(r.rendered_fields or {})
            for r in session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id)
        }
        if airflow3:
            inline = [
                (t.classpath, dict(t.kwargs))
                for t in session.query(Trigger).filter(Trigger.id > before).order_by(Trigger.id)
            ]
        state = str(dag_run.state)
    return RunResult(dag_run.run_id, state, tasks, xcoms, rendered, inline)


def asset_events(uri: str, run_id: str) -> tuple[list[dict[str, Any]], set[str]]:
    """
    The extras of the asset events ``run_id`` emitted for ``uri``, and the names of the asset aliases that announced
    that asset (Airflow 2.11 calls them datasets: ``DatasetModel``, ``DatasetEvent``, ``DatasetAliasModel``).
    """
    from airflow.utils.session import create_session

    try:
        from airflow.models.asset import AssetAliasModel, AssetEvent, AssetModel
    except ImportError:  # Airflow 2
        from airflow.models.dataset import (
            DatasetAliasModel as AssetAliasModel,
        )
        from airflow.models.dataset import (
            DatasetEvent as AssetEvent,
        )
        from airflow.models.dataset import (
            DatasetModel as AssetModel,
        )
    event_key = "asset_id" if hasattr(AssetEvent, "asset_id") else "dataset_id"
    with create_session() as session:
        asset = session.query(AssetModel).filter_by(uri=uri).one()
        events = session.query(AssetEvent).filter_by(**{event_key: asset.id, "source_run_id": run_id}).all()
        extras = [dict(event.extra or {}) for event in events]
        aliases = {
            alias.name
            for alias in session.query(AssetAliasModel).all()
            if asset.id in {a.id for a in getattr(alias, "assets", None) or getattr(alias, "datasets", [])}
        }
    return extras, aliases
