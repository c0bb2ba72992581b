"""
A real Airflow stack for end-to-end tests and benchmarks: api-server, scheduler (LocalExecutor), dag-processor
and triggerer as separate processes (Airflow 2.11: scheduler, which parses DAGs itself, and triggerer), on loopback,
with a fresh AIRFLOW_HOME and sqlite metadata DB.

Typical use::

    with AirflowStack(env={"AIRFLOW_CONN_WAN_DEFAULT": conn_json}) as stack:   # start() ... stop()
        stack.write_dag("my_dag.py", source)
        run_id = stack.run_dag("my_dag")                     # waits for parsing, unpauses, triggers
        stack.wait_for_task_state("my_dag", run_id, "generate", "deferred")
        assert stack.wait_for_run("my_dag", run_id) == "success"
        result = stack.xcom("my_dag", run_id, "generate")

What it gives:

* **start/stop**: :meth:`AirflowStack.start` copies a migrated template DB (migrated once per machine and Airflow
  version), launches each component in its own session (``setsid``), waits for the api-server's health endpoint to
  report every component healthy and warms up the task execution API (20-30 s on 2 busy cores).
  :meth:`AirflowStack.stop` sends SIGTERM to each component's process group, then SIGKILL to what is left; it also
  runs at interpreter exit, so a crashed test leaves no process behind. Only processes this object started are
  signalled.
* **DAGs and runs**: :meth:`write_dag`, :meth:`wait_for_dag`, :meth:`unpause`, :meth:`trigger`, :meth:`run_dag`,
  :meth:`clear`
  (REST API v2; the simple auth manager runs with ``all_admins``, so no token is needed).
* **state**: :meth:`run_state`, :meth:`wait_for_run`, :meth:`task_instances`, :meth:`task_states`,
  :meth:`wait_for_task_state`, :meth:`wait_until`, :meth:`xcom`, :meth:`trigger_rows` (decrypted kwargs),
  :meth:`task_state_store`, :meth:`query` (read-only SQL on the metadata DB).
* **logs**: :meth:`component_log` (a component's stdout/stderr), :meth:`task_log` and :meth:`trigger_log` (the
  per-task files written by workers and by the triggerer).
* **faults**: :meth:`kill` / :meth:`restart` a component, :meth:`kill_task_processes` (the LocalExecutor worker
  and task runner of one task instance, as when a worker machine dies).

On Airflow 2.11 the same methods work without a webserver: health is read from the ``job`` table, DAGs are unpaused
and triggered with Airflow's CLI, and the Airflow 3 option names of the few settings renamed since
(:data:`AIRFLOW2_OPTION_NAMES`) are translated. The webserver only serves the UI, which no test needs.

Configuration goes in through environment variables only (``AIRFLOW__SECTION__KEY``), passed to every component:
``env=`` for extra variables (connections), ``config=`` for Airflow options as ``{"section.key": value}``.
Nothing is read from the caller's AIRFLOW_* environment.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AIRFLOW_2", "COMPONENTS", "AirflowStack", "StackError", "free_port"]


def _airflow_version() -> str:
    from importlib.metadata import version

    return version("apache-airflow")


AIRFLOW_2 = int(_airflow_version().split(".")[0]) < 3
#: Every component a deployment needs (LocalExecutor runs inside the scheduler; on Airflow 2 the scheduler also
#: parses the DAG files, and no test needs the webserver's UI).
COMPONENTS = ("scheduler", "triggerer") if AIRFLOW_2 else ("api-server", "scheduler", "dag-processor", "triggerer")
#: Airflow 3 option -> its Airflow 2.11 name, for the settings renamed since
AIRFLOW2_OPTION_NAMES = {
    "scheduler.task_instance_heartbeat_timeout": "scheduler.scheduler_zombie_task_threshold",
    "scheduler.task_instance_heartbeat_timeout_detection_interval": "scheduler.zombie_detection_interval",
    "workers.min_heartbeat_interval": "scheduler.local_task_job_heartbeat_sec",
    "dag_processor.refresh_interval": "scheduler.dag_dir_list_interval",
    "dag_processor.min_file_process_interval": "scheduler.min_file_process_interval",
}
#: States after which a task instance or a DAG run will not change by itself.
FINISHED_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
FINISHED_RUN_STATES = frozenset({"success", "failed"})

# Loopback only, never through a proxy that HTTP(S)_PROXY may name.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_LIVE_STACKS: set[AirflowStack] = set()
_TEMPLATE_LOCK = threading.Lock()


class StackError(RuntimeError):
    """The stack failed to start, a wait timed out, or an API call failed. The message carries log tails."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_environ() -> dict[str, str]:
    """The caller's environment without any Airflow setting (the test session has its own AIRFLOW_HOME)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}


def _template_db() -> Path:
    """A migrated, empty sqlite metadata DB, built once per machine and Airflow version, copied by every stack."""
    root = Path(tempfile.gettempdir()) / f"wan-airflow-stack-template-{_airflow_version()}"
    db = root / "airflow.db"
    with _TEMPLATE_LOCK:
        if db.exists():
            return db
        building = Path(tempfile.mkdtemp(prefix="wan-airflow-template-"))
        env = _clean_environ()
        env.update(
            AIRFLOW_HOME=str(building),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{building / 'airflow.db'}",
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
        )
        (building / "airflow.cfg").write_text("")
        done = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"airflow db migrate failed ({done.returncode}):\n{done.stdout[-4000:]}")
        root.mkdir(parents=True, exist_ok=True)
        # rename is atomic: another process building at the same time cannot see half a file
        tmp = root / f"airflow.db.{os.getpid()}"
        shutil.copyfile(building / "airflow.db", tmp)
        os.replace(tmp, db)
        shutil.rmtree(building, ignore_errors=True)
        return db


@dataclass
class Component:
    """One running Airflow component: its process (leader of its own process group) and log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None


class AirflowStack:
    """
    A real Airflow stack in separate processes. See the module docstring for an overview.

    :param home: AIRFLOW_HOME to use (default: a new temporary directory, removed by :meth:`stop` unless
        ``keep_home``); must not hold a previous stack's DB
    :param env: extra environment for every component, e.g. ``AIRFLOW_CONN_WAN_DEFAULT``
    :param config: Airflow options, ``{"section.key": value}``, e.g. ``{"core.parallelism": 2}``; they win over
        this class's defaults
    :param parallelism: ``[core] parallelism``: LocalExecutor worker processes, i.e. task slots (default 4)
    :param components: which components :meth:`start` launches (default all four)
    :param keep_home: keep AIRFLOW_HOME (logs, DB) after :meth:`stop`, for debugging (default False; also kept when
        the ``WAN_STACK_KEEP_HOME`` environment variable is set)
    """

    def __init__(
        self,
        home: Path | str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        parallelism: int = 4,
        components: Iterable[str] = COMPONENTS,
        keep_home: bool = False,
    ) -> None:
        self._own_home = home is None
        self.home = Path(home) if home is not None else Path(tempfile.mkdtemp(prefix="wan-airflow-stack-"))
        self.dags_folder = self.home / "dags"
        self.logs_folder = self.home / "logs"
        self.db_path = self.home / "airflow.db"
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.components_to_start = tuple(components)
        self.keep_home = keep_home or bool(os.environ.get("WAN_STACK_KEEP_HOME"))
        self.fernet_key = _fernet_key()
        self.components: dict[str, Component] = {}
        self.started_seconds: float | None = None
        self._token: str | None = None
        settings: dict[str, Any] = {
            "core.executor": "LocalExecutor",
            "core.parallelism": parallelism,
            "core.load_examples": False,
            "core.dags_folder": self.dags_folder,
            "core.plugins_folder": self.home / "plugins",
            "core.fernet_key": self.fernet_key,
            "core.dags_are_paused_at_creation": True,
            "core.simple_auth_manager_all_admins": True,
            "core.execution_api_server_url": f"{self.api_url}/execution/",
            "core.unit_test_mode": False,
            "database.sql_alchemy_conn": f"sqlite:///{self.db_path}",
            "api.host": "127.0.0.1",
            "api.port": self.api_port,
            "api.base_url": self.api_url,
            "api.workers": 1,
            "api.secret_key": os.urandom(16).hex(),
            "api_auth.jwt_secret": os.urandom(16).hex(),
            "logging.base_log_folder": self.logs_folder,
            "logging.worker_log_server_port": free_port(),
            "logging.trigger_log_server_port": free_port(),
            "logging.logging_level": "INFO",
            # new DAG files appear within a couple of seconds; files already parsed are re-read rarely (CPU)
            "dag_processor.refresh_interval": 2,
            "dag_processor.min_file_process_interval": 60,
            "dag_processor.bundle_refresh_check_interval": 1,
            # a dead triggerer's triggers move to a live one after 5 s instead of 30 s
            "triggerer.job_heartbeat_sec": 1,
            "triggerer.triggerer_health_check_threshold": 5,
            "scheduler.trigger_timeout_check_interval": 5,
            "scheduler.task_instance_heartbeat_timeout_detection_interval": 2,
            "scheduler.scheduler_heartbeat_sec": 2,
            "scheduler.job_heartbeat_sec": 2,
            "scheduler.orphaned_tasks_check_interval": 10,
        }
        settings.update(config or {})
        if AIRFLOW_2:
            settings = {AIRFLOW2_OPTION_NAMES.get(key, key): value for key, value in settings.items()}
        self.environ = _clean_environ()
        self.environ["AIRFLOW_HOME"] = str(self.home)
        self.environ["PYTHONUNBUFFERED"] = "1"
        for key, value in settings.items():
            section, _, option = key.partition(".")
            self.environ[f"AIRFLOW__{section.upper()}__{option.upper()}"] = _config_value(value)
        if AIRFLOW_2:
            # Airflow 2 refuses LocalExecutor on sqlite unless told this is a test (its own escape hatch); Airflow 3
            # allows it, and the stack is the same shape on both
            self.environ["_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK"] = "1"
        self.environ.update(env or {})

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> AirflowStack:
        """Prepare AIRFLOW_HOME, launch the components and wait until the api-server reports them healthy."""
        started = time.monotonic()
        if self.db_path.exists():
            raise StackError(f"{self.db_path} exists: a stack needs a fresh AIRFLOW_HOME")
        for folder in (self.dags_folder, self.logs_folder, self.home / "plugins"):
            folder.mkdir(parents=True, exist_ok=True)
        # an existing (empty) airflow.cfg stops four components from racing to write the default one
        (self.home / "airflow.cfg").write_text("")
        shutil.copyfile(_template_db(), self.db_path)
        _LIVE_STACKS.add(self)
        try:
            for name in self.components_to_start:
                self._launch(name)
            self.wait_healthy(timeout=max(1.0, timeout - (time.monotonic() - started)))
            if not AIRFLOW_2:
                # the api-server builds the task execution API on its first request (~4 s of CPU): pay that here,
                # so the first task of the first test is not slower than the others
                self.wait_until(self._execution_api_ready, timeout=60, interval=0.5, what="the execution API")
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - started
        return self

    def _launch(self, name: str) -> Component:
        if name not in COMPONENTS:
            raise ValueError(f"unknown component {name!r}; known: {', '.join(COMPONENTS)}")
        log_path = self.home / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "airflow", name],
                cwd=self.home,
                env=self.environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # its own session and process group: stop() signals the whole group (forked workers, task runners,
                # the triggerer's runner subprocess), and a ^C in the terminal does not reach it
                start_new_session=True,
            )
        component = Component(name, process, log_path, time.monotonic())
        self.components[name] = component
        return component

    def stop(self, timeout: float = 8.0) -> None:
        """
        Stop every component (SIGTERM to its process group, SIGKILL after ``timeout`` s); idempotent.

        A scheduler with a task still running waits for it on SIGTERM; tests do not need that grace, so the default
        timeout is short.
        """
        components = list(self.components.values())
        for component in components:
            _signal_group(component, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for component in components:
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(max(0.1, deadline - time.monotonic()))
        for component in components:
            # the leader may have exited while forked children (workers, task runners) linger in its group
            _signal_group(component, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(5)
        _LIVE_STACKS.discard(self)
        if self._own_home and not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def leftover_processes(self, wait: float = 5.0) -> list[int]:
        """
        Pids still alive in the process group of any component this stack started (empty after a clean stop).

        Zombies (dead, not yet reaped by their new parent) do not count. Waits up to ``wait`` seconds for the
        group to empty, since a killed process takes a moment to disappear.
        """
        groups = {component.pid for component in self.components.values()}
        deadline = time.monotonic() + wait
        while True:
            left = []
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    # /proc/<pid>/stat: "pid (comm) state ppid pgrp ..."; comm may hold spaces, so split after ')'
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if fields[0] != "Z" and int(fields[2]) in groups:
                        left.append(int(entry.name))
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to a component's whole process group and reap it."""
        component = self.components[name]
        _signal_group(component, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            component.process.wait(30)

    def restart(self, name: str) -> Component:
        """Start a component again (after :meth:`kill`); a running one is stopped first."""
        if name in self.components and self.components[name].alive():
            self.kill(name, signal.SIGTERM)
        return self._launch(name)

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health``; on Airflow 2 the same shape, from the ``job`` table's heartbeats."""
        if not AIRFLOW_2:
            return dict(self.api("GET", "monitor/health"))
        rows = self.query(
            "SELECT job_type, MAX(latest_heartbeat) AS beat FROM job WHERE state = 'running' GROUP BY job_type"
        )
        beats = {row["job_type"]: row["beat"] for row in rows}
        return {
            name: {"status": "healthy" if beats.get(job) else "unhealthy"}
            for name, job in (("scheduler", "SchedulerJob"), ("triggerer", "TriggererJob"))
        }

    def wait_healthy(self, timeout: float = 120.0) -> None:
        """Wait until every started component reports healthy (the api-server answers for the others)."""
        wanted = {"api-server": "metadatabase", "scheduler": "scheduler", "dag-processor": "dag_processor"}
        wanted["triggerer"] = "triggerer"

        def healthy() -> bool:
            self._check_alive()
            try:
                health = self.health()
            except (StackError, OSError):
                return False
            return all((health.get(wanted[name]) or {}).get("status") == "healthy" for name in self.components_to_start)

        self.wait_until(healthy, timeout=timeout, interval=0.5, what="every component healthy")

    def _execution_api_ready(self) -> bool:
        try:
            with _OPENER.open(f"{self.api_url}/execution/health", timeout=60) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _check_alive(self) -> None:
        for component in self.components.values():
            if not component.alive():
                raise StackError(
                    f"airflow {component.name} exited with {component.process.returncode}:\n"
                    + self.component_log(component.name, tail=60)
                )

    # --- REST API ----------------------------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> Any:
        """Call the public REST API (``/api/v2/<path>``); returns the decoded JSON, raises StackError on >= 400."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(2):
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            request = urllib.request.Request(
                f"{self.api_url}/api/v2/{path.lstrip('/')}", data=data, method=method, headers=headers
            )
            try:
                with _OPENER.open(request, timeout=timeout) as response:
                    text = response.read().decode()
                return json.loads(text) if text else None
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0:
                    # Airflow 3.0-3.2's API wants a token even with all_admins; the simple auth manager hands one
                    # out without credentials in that mode
                    with _OPENER.open(f"{self.api_url}/auth/token", timeout=timeout) as response:
                        self._token = json.loads(response.read().decode())["access_token"]
                    continue
                raise StackError(
                    f"{method} /api/v2/{path}: HTTP {exc.code}: {exc.read().decode(errors='replace')}"
                ) from exc
        raise AssertionError("unreachable")

    def write_dag(self, filename: str, source: str) -> Path:
        """Write a DAG file into the dags folder (atomically, so the dag-processor never reads half a file)."""
        path = self.dags_folder / filename
        tmp = path.with_suffix(".tmp")
        tmp.write_text(source)
        os.replace(tmp, path)
        return path

    def import_errors(self) -> list[dict[str, Any]]:
        if AIRFLOW_2:
            return self.query("SELECT filename, stacktrace FROM import_error")
        return list(self.api("GET", "importErrors").get("import_errors", []))

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> None:
        """Wait until the dag-processor has parsed ``dag_id``; an import error fails at once with its traceback."""

        def parsed() -> bool:
            rows = self.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", (dag_id,))
            if rows:
                return True
            errors = self.import_errors()
            if errors:
                raise StackError(f"DAG import errors: {json.dumps(errors, indent=1)}")
            return False

        self.wait_until(parsed, timeout=timeout, interval=0.5, what=f"DAG {dag_id} parsed")

    def unpause(self, dag_id: str) -> None:
        if AIRFLOW_2:
            self.cli("dags", "unpause", dag_id)
            return
        self.api("PATCH", f"dags/{dag_id}", {"is_paused": False})

    def cli(self, *args: str, timeout: float = 120.0) -> str:
        """Run ``airflow <args>`` against this stack's home; returns stdout, StackError on a non-zero exit."""
        done = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.environ,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done.stdout

    def trigger(self, dag_id: str, *, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        """Create a manual DAG run (``logical_date`` null); returns its run id."""
        if AIRFLOW_2:
            run_id = run_id or f"manual__{uuid.uuid4().hex}"
            self.cli("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(dict(conf or {})))
            return run_id
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def run_dag(self, dag_id: str, *, conf: Mapping[str, Any] | None = None, timeout: float = 60.0) -> str:
        """Wait for the DAG to be parsed, unpause it and trigger a run; returns the run id."""
        self.wait_for_dag(dag_id, timeout=timeout)
        self.unpause(dag_id)
        return self.trigger(dag_id, conf=conf)

    def clear(self, dag_id: str, run_id: str, task_ids: Iterable[str], *, downstream: bool = True) -> None:
        """Clear task instances of a run (and their downstream) as the UI's *Clear* does; the scheduler re-runs them."""
        self.api(
            "POST",
            f"dags/{dag_id}/clearTaskInstances",
            {
                "dry_run": False,
                "dag_run_id": run_id,
                "task_ids": list(task_ids),
                "include_downstream": downstream,
                "only_failed": False,
                "reset_dag_runs": True,
                "run_on_latest_version": True,
            },
        )

    # --- metadata DB (read-only) -------------------------------------------------------------------------------
    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Run a read-only SQL query on the metadata DB; rows as dicts."""
        uri = f"file:{self.db_path}?mode=ro"
        for attempt in range(20):
            try:
                with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as db:
                    db.row_factory = sqlite3.Row
                    return [dict(row) for row in db.execute(sql, tuple(params)).fetchall()]
            except sqlite3.OperationalError as exc:
                # four writers share one sqlite file: a read may meet a lock; it clears within milliseconds
                if "locked" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", (dag_id, run_id))
        return rows[0]["state"] if rows else None

    def task_instances(self, dag_id: str, run_id: str | None = None) -> list[dict[str, Any]]:
        """Task instance rows (id, task_id, map_index, state, try_number, next_method, trigger_id, ...)."""
        if run_id is None:
            return self.query("SELECT * FROM task_instance WHERE dag_id = ? ORDER BY task_id, map_index", (dag_id,))
        return self.query(
            "SELECT * FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY task_id, map_index", (dag_id, run_id)
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id: state}`` (mapped tasks as ``task_id[i]``)."""
        return {
            (row["task_id"] if row["map_index"] < 0 else f"{row['task_id']}[{row['map_index']}]"): row["state"]
            for row in self.task_instances(dag_id, run_id)
        }

    def wait_until(
        self, condition: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.5, what: str = "condition"
    ) -> Any:
        """Poll ``condition`` until it returns something truthy (returned); StackError with log tails on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(interval)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> str:
        """Wait until the DAG run is success or failed; returns that state."""

        def finished() -> str | None:
            self._check_alive()
            state = self.run_state(dag_id, run_id)
            return state if state in FINISHED_RUN_STATES else None

        return str(self.wait_until(finished, timeout=timeout, what=f"run {dag_id}/{run_id} to finish"))

    def wait_for_task_state(
        self, dag_id: str, run_id: str, task_id: str, states: str | Iterable[str], timeout: float = 120.0
    ) -> str:
        """Wait until ``task_id`` is in one of ``states``; returns the state. Fails early if it finished otherwise."""
        wanted = {states} if isinstance(states, str) else set(states)

        def reached() -> str | None:
            self._check_alive()
            state = self.task_states(dag_id, run_id).get(task_id)
            if state in wanted:
                return state
            if state in FINISHED_TI_STATES:
                raise StackError(f"{dag_id}.{task_id} finished as {state}, not {sorted(wanted)}\n{self.diagnostics()}")
            return None

        return str(self.wait_until(reached, timeout=timeout, interval=0.2, what=f"{task_id} in {sorted(wanted)}"))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """An XCom value, decoded from its JSON column; KeyError when there is none."""
        rows = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = ? AND map_index = ?",
            (dag_id, run_id, task_id, key, map_index),
        )
        if not rows:
            raise KeyError(f"no XCom {key!r} for {dag_id}/{run_id}/{task_id}")
        value = rows[0]["value"]
        if isinstance(value, bytes | bytearray):
            value = value.decode()
        return json.loads(value) if isinstance(value, str) else value

    def trigger_rows(self) -> list[dict[str, Any]]:
        """Every row of the ``trigger`` table, with ``kwargs_raw`` as stored and ``kwargs`` decrypted (JSON)."""
        from cryptography.fernet import Fernet

        fernet = Fernet(self.fernet_key.encode())
        rows = self.query("SELECT * FROM trigger ORDER BY id")
        for row in rows:
            raw = row.pop("kwargs")
            row["kwargs_raw"] = raw
            text = raw if raw.startswith("{") else fernet.decrypt(raw.encode()).decode()
            row["kwargs"] = json.loads(text)
        return rows

    def variable(self, key: str) -> Any:
        """An Airflow Variable's value, decrypted and JSON-decoded when it is JSON; KeyError when there is none."""
        from cryptography.fernet import Fernet

        rows = self.query("SELECT val, is_encrypted FROM variable WHERE key = ?", (key,))
        if not rows:
            raise KeyError(f"no Variable {key!r}")
        value = rows[0]["val"]
        if rows[0]["is_encrypted"]:
            value = Fernet(self.fernet_key.encode()).decrypt(value.encode()).decode()
        try:
            return json.loads(value)
        except ValueError:
            return value

    def retry_record(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        """
        The operators' retry-safety record of one task instance, wherever this Airflow keeps it: the task state
        store (Airflow 3.3) or its Airflow Variable (before); KeyError when there is none.
        """
        from airflow_provider_wan.create_record import RECORD_KEY, variable_key

        if self.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'task_state_store'"):
            return dict(self.task_state_store(dag_id, run_id, task_id)[RECORD_KEY])
        return dict(self.variable(variable_key(dag_id, task_id, run_id, map_index)))

    def task_state_store(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        """The task's ``task_state_store`` entries (the operators' retry-safety record), values JSON-decoded."""
        rows = self.query(
            "SELECT key, value FROM task_state_store WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            (dag_id, run_id, task_id),
        )
        out: dict[str, Any] = {}
        for row in rows:
            try:
                out[row["key"]] = json.loads(row["value"])
            except ValueError:
                out[row["key"]] = row["value"]
        return out

    # --- logs --------------------------------------------------------------------------------------------------
    def component_log(self, name: str, tail: int | None = None) -> str:
        """A component's stdout+stderr (all of it, or the last ``tail`` lines)."""
        path = self.home / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-tail:]) if tail else text

    def _task_log_dir(self, dag_id: str, run_id: str, task_id: str) -> Path:
        return self.logs_folder / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The worker's log of one try ("" when there is none yet)."""
        path = self._task_log_dir(dag_id, run_id, task_id) / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def trigger_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Everything triggerers logged for this task (one file per try and triggerer), concatenated."""
        folder = self._task_log_dir(dag_id, run_id, task_id)
        files = sorted(folder.glob("*.trigger.*.log")) if folder.exists() else []
        return "\n".join(f.read_text(errors="replace") for f in files)

    def diagnostics(self, tail: int = 25) -> str:
        """Log tails of every component, for failure messages."""
        parts = []
        for name, component in self.components.items():
            state = "running" if component.alive() else f"exited {component.process.returncode}"
            parts.append(f"--- {name} ({state}) ---\n{self.component_log(name, tail=tail)}")
        return "\n".join(parts)

    # --- faults ------------------------------------------------------------------------------------------------
    def task_processes(self, ti_id: str) -> list[Any]:
        """
        The processes running task instance ``ti_id`` (either UUID spelling): LocalExecutor worker and task runner.

        Both carry the id in their process title: ``airflow worker -- LocalExecutor: <id>`` (the supervisor) and
        ``airflow worker -- <id>`` (the task runner it forked).
        """
        import psutil

        wanted = str(uuid.UUID(str(ti_id)))  # the DB stores 32 hex digits, process titles the dashed form
        scheduler = self.components.get("scheduler")
        if scheduler is None or not scheduler.alive():
            return []
        found = []
        for proc in psutil.Process(scheduler.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if wanted in " ".join(proc.cmdline()):
                    found.append(proc)
        return found

    def task_instance_processes(self, dag_id: str, run_id: str, task_id: str) -> list[Any]:
        """
        The processes running one task instance: on Airflow 3 by its id (:meth:`task_processes`); on Airflow 2 the
        LocalExecutor worker running the command, the task supervisor it forked (``airflow tasks run ... --local``)
        and the raw task runner, whose titles all name the DAG, the task and the run.
        """
        if not AIRFLOW_2:
            (ti,) = [row for row in self.task_instances(dag_id, run_id) if row["task_id"] == task_id]
            return self.task_processes(ti["id"])
        import psutil

        scheduler = self.components.get("scheduler")
        if scheduler is None or not scheduler.alive():
            return []
        found = []
        for proc in psutil.Process(scheduler.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                words = " ".join(proc.cmdline()).replace("'", " ").replace(",", " ").split()
                if {dag_id, task_id, run_id} <= set(words):
                    found.append(proc)
        return found

    def kill_task_instance(self, dag_id: str, run_id: str, task_id: str) -> list[int]:
        """SIGKILL the worker and task runner of one task instance at once, as when a worker machine dies."""
        return self._kill(self.task_instance_processes(dag_id, run_id, task_id))

    def kill_task_processes(self, ti_id: str) -> list[int]:
        """SIGKILL the worker and task runner of ``ti_id`` at once, as when a worker machine dies; returns pids."""
        return self._kill(self.task_processes(ti_id))

    def _kill(self, processes: list[Any]) -> list[int]:
        import psutil

        for proc in processes:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(processes, timeout=10)
        return [proc.pid for proc in processes]


def _config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _signal_group(component: Component, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        # the component is its group's leader (start_new_session), so its pid is the group id; a reaped leader's
        # group may still hold forked children, which is exactly what this reaches
        os.killpg(component.pid, sig)


@atexit.register
def _stop_live_stacks() -> None:
    for stack in list(_LIVE_STACKS):
        stack.stop(timeout=5)
