"""
Session set-up shared by every test: a private AIRFLOW_HOME with a migrated sqlite metadata DB, so DAGs can run
through real Airflow (``dag.test()``). Must run before anything imports airflow, hence module level.

Area fixtures live in ``tests/<area>/conftest.py``; the DashScope simulator fixture ``wan_simulator`` comes from
the package's own pytest plugin (``airflow_provider_wan.testing.pytest_plugin``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

_HOME = Path(os.environ.get("WAN_TEST_AIRFLOW_HOME") or tempfile.mkdtemp(prefix="wan-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(_HOME / "dags"))
# a real key must never leak into tests; the simulator's keys are set per test
os.environ.pop("DASHSCOPE_API_KEY", None)
os.environ.pop("STORAGE_EMULATOR_HOST", None)

if not (_HOME / "airflow.db").exists():
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )


# --- fixtures every area uses (``wan_simulator`` itself comes from the package's pytest plugin) -----------------------
@pytest.fixture
def wan_conn(monkeypatch: pytest.MonkeyPatch, wan_simulator: Any) -> str:
    """``wan_default`` pointing at the in-process simulator (reset for this test); returns the API key."""
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    return str(wan_simulator.api_key)


@pytest.fixture
async def close_wan_sessions() -> AsyncIterator[None]:
    """Close the hook's per-event-loop aiohttp session at the end of an async test (no 'Unclosed' noise)."""
    yield
    from airflow_provider_wan.hooks import wan as hook_module

    loop = asyncio.get_running_loop()
    state = hook_module._loop_state.pop(id(loop), None)
    if state is not None and state[0] is loop:
        await state[1].close()
