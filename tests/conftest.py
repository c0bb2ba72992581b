"""
Session set-up shared by every test: a private AIRFLOW_HOME with a migrated sqlite metadata DB, so DAGs can run
through real Airflow (``dag.test()``). Must run before anything imports airflow, hence module level.

Area fixtures live in ``tests/<area>/conftest.py``; the DashScope simulator fixture ``wan_simulator`` comes from
the package's own pytest plugin (``airflow_provider_wan.testing.pytest_plugin``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

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
