"""
Fixtures for running the example DAGs end to end: the DashScope simulator (the package's ``wan_simulator``
fixture), a GCS emulator on 127.0.0.1, and an environment pointing the DAGs at both.
"""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_run import dags_folder
from tests.stack import free_port

REPO_DAGS = Path(__file__).resolve().parents[2] / "dags"
#: seconds between status reads in the examples under test (their default is DashScope's 15 s)
POLL_INTERVAL = "0.5"


@pytest.fixture(scope="session")
def wan_simulator_options() -> dict[str, Any]:
    # quick generations; the examples' videos stay real H.264 MP4s. PENDING lasts long enough that the sensor
    # example's submit (wait_for_completion=False) still sees it on a loaded 2-core machine (0.2 s was flaky)
    return {"pending_seconds": 1.5, "generation_seconds": 1.0, "log_requests": False}


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    """An in-memory gcp-storage-emulator on 127.0.0.1; yields its URL (for ``STORAGE_EMULATOR_HOST``)."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def example_dags_folder() -> Path:
    """The example DAGs and their assets, copied into the session's dags folder (``dag.test()`` runs from there)."""
    target = dags_folder()
    for source in REPO_DAGS.glob("example_wan_*.py"):
        shutil.copy2(source, target / source.name)
    shutil.copytree(REPO_DAGS / "assets", target / "assets", dirs_exist_ok=True)
    return target


@pytest.fixture
def example_env(
    monkeypatch: pytest.MonkeyPatch, wan_simulator: Any, gcs_emulator: str, example_dags_folder: Path
) -> dict[str, Any]:
    """Connections, Variables and knobs for one example run; a fresh bucket per test."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = f"wan-examples-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("AIRFLOW_VAR_WAN_GCS_BUCKET", bucket)
    monkeypatch.setenv("WAN_EXAMPLE_POLL_INTERVAL", POLL_INTERVAL)
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    client.create_bucket(bucket)
    return {"bucket": client.bucket(bucket), "simulator": wan_simulator, "folder": example_dags_folder}


def load_example(folder: Path, dag_id: str) -> Any:
    """Import an example DAG file from the session's dags folder, after the test's environment is set."""
    path = folder / f"{dag_id}.py"
    spec = importlib.util.spec_from_file_location(f"example_under_test_{dag_id}_{uuid.uuid4().hex[:6]}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, module.dag
