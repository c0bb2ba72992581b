"""
Fixtures of the deferral tests.

* In-process: the package's ``wan_simulator`` (a thread in this process) with a ``wan_default``-style connection in
  the environment, for triggers run directly in the test's event loop and for ``dag.test()`` runs.
* Real stack: one DashScope simulator *process* and one Airflow stack (api-server, scheduler with LocalExecutor and
  two worker slots, dag-processor, triggerer) for this whole test package, started on first use by a ``stack`` test
  and stopped when the package's last test is done, even when tests fail. Each stack test writes its own DAG (its
  own dag_id).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from airflow_provider_wan.testing import SimulatorProcess, start_simulator_process

# The plugin is also an installed pytest11 entry point; importing its fixtures keeps these tests working when the
# package is only on PYTHONPATH (a conftest's fixtures shadow the plugin's).
from airflow_provider_wan.testing.pytest_plugin import (  # noqa: F401
    _wan_simulator_session,
    wan_simulator,
    wan_simulator_api_key,
    wan_simulator_options,
)
from tests.stack import AirflowStack, free_port

VIDEO_ENDPOINT = "services/aigc/video-generation/video-synthesis"
T2V_BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a lighthouse at dawn"}, "parameters": {}}
#: worker slots of the shared stack: few, so "more deferred tasks than slots" is easy to show
STACK_SLOTS = 2
#: the scheduler declares a task dead after this many seconds without a heartbeat (default 300)
STACK_HEARTBEAT_TIMEOUT = 10


# --- the real stack ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="package")
def sim_process() -> Iterator[SimulatorProcess]:
    """A simulator in its own process (Airflow's components are other processes and all need to reach it)."""
    process = start_simulator_process(pending_seconds=0.5, generation_seconds=8.0, log_requests=False)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="package")
def stack_gcs_emulator() -> Iterator[str]:
    """An in-memory GCS emulator on 127.0.0.1 for the stack's transfers; yields its URL (``STORAGE_EMULATOR_HOST``)."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="package")
def airflow_stack(sim_process: SimulatorProcess, stack_gcs_emulator: str) -> Iterator[AirflowStack]:
    """
    The session's Airflow stack, connected to ``sim_process`` through ``AIRFLOW_CONN_WAN_DEFAULT`` and to a GCS
    emulator through ``STORAGE_EMULATOR_HOST``.
    """
    stack = AirflowStack(
        env={"AIRFLOW_CONN_WAN_DEFAULT": sim_process.connection_json(), "STORAGE_EMULATOR_HOST": stack_gcs_emulator},
        parallelism=STACK_SLOTS,
        config={
            # a killed worker is noticed within seconds (issue 3's crash test), not 5 minutes
            "scheduler.task_instance_heartbeat_timeout": STACK_HEARTBEAT_TIMEOUT,
            "workers.min_heartbeat_interval": 2,
        },
    )
    started = time.monotonic()
    stack.start()
    print(f"\nAirflow stack healthy in {time.monotonic() - started:.1f} s ({stack.home})")
    try:
        yield stack
    finally:
        stack.stop()
        # every process the stack started is gone, forked workers and task runners included
        assert stack.leftover_processes() == []


@pytest.fixture
def sim(sim_process: SimulatorProcess) -> SimulatorProcess:
    """The simulator process, reset for this test (tasks, counters, faults, settings)."""
    sim_process.reset()
    return sim_process


def dag_source(dag_id: str, body: str, *, imports: str = "") -> str:
    """A DAG file: ``body`` (indented 4) inside ``with DAG(dag_id, ...)``; manual runs only."""
    lines = "\n".join("    " + line if line.strip() else "" for line in body.strip("\n").splitlines())
    return (
        "from __future__ import annotations\n\n"
        "from datetime import timedelta\n\n"
        "import pendulum\n"
        "from airflow.providers.common.compat.sdk import DAG\n"
        f"{imports}\n\n"
        f"with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:\n"
        f"{lines}\n"
    )
