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


def run_dag(dag: Any, **kwargs: Any) -> RunResult:
    """``dag.test()`` then the run's task instances, XComs and rendered fields, straight from the DB."""
    from airflow.models import TaskInstance
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag_run = dag.test(**kwargs)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        tasks = {
            (ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): (str(ti.state), ti.try_number)
            for ti in tis
        }
        xcoms = {
            (x.task_id, x.key): XComModel.deserialize_value(x)
            for x in session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        }
        rendered = {
            r.task_id: dict(r.rendered_fields or {})
            for r in session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id)
        }
        state = str(dag_run.state)
    return RunResult(dag_run.run_id, state, tasks, xcoms, rendered)
