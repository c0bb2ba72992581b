"""
A distributed Airflow 3 deployment on loopback: CeleryExecutor with a Redis broker, a PostgreSQL metadata DB, several
Celery workers and several triggerers, each a process of its own. For the scale-out test and benchmark.

Redis and PostgreSQL are the Debian packages (``redis-server``, ``postgresql``; ``scripts/test.sh`` installs them
when missing), started here on free ports with throw-away data directories, and stopped again. PostgreSQL refuses to
run as root, so as root its server runs as the unprivileged ``nobody``. Typical use::

    with DistributedStack(workers=2, triggerers=2, env={"AIRFLOW_CONN_WAN_DEFAULT": conn}) as stack:
        stack.write_dag("batch.py", source)
        run_id = stack.run_dag("batch")
        assert stack.wait_for_run("batch", run_id, timeout=600) == "success"

Everything else (DAG runs, queries, logs) is :class:`tests.stack.AirflowStack`'s; queries go to PostgreSQL.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.stack import AirflowStack, Component, StackError, free_port

__all__ = ["DistributedStack", "Services", "missing_system_packages"]


def _postgres_bin(name: str) -> str | None:
    """A PostgreSQL server binary: Debian keeps them in /usr/lib/postgresql/<version>/bin, outside PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def missing_system_packages() -> list[str]:
    """Debian packages the distributed stack needs that are not installed (``scripts/test.sh`` installs them)."""
    missing = []
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    if not (_postgres_bin("initdb") and _postgres_bin("pg_ctl")):
        missing.append("postgresql")
    return missing


class Services:
    """Redis and PostgreSQL on loopback, in a temporary directory; :meth:`stop` removes everything."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="wan-services-"))
        self.redis_port = free_port()
        self.pg_port = free_port()
        self._redis: subprocess.Popen[bytes] | None = None
        self._pg_data = self.root / "pgdata"
        self._pg_started = False
        # PostgreSQL will not run as root: as root, its files and server belong to nobody
        self._pg_user = "nobody" if os.geteuid() == 0 else None

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def sql_alchemy_conn(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/postgres"

    def _as_pg_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self._pg_user, "--", *argv] if self._pg_user else argv

    def start(self) -> Services:
        missing = missing_system_packages()
        if missing:
            raise StackError(f"missing Debian packages: {' '.join(missing)} (scripts/test.sh installs them)")
        try:
            self._start_redis()
            self._start_postgres()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_redis(self) -> None:
        log = open(self.root / "redis.log", "wb")  # noqa: SIM115  (closed with the process in stop())
        self._redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_port(self.redis_port, "redis-server", self.root / "redis.log")

    def _start_postgres(self) -> None:
        self._pg_data.mkdir()
        sockets = self.root / "pgsock"
        sockets.mkdir()
        if self._pg_user:
            entry = pwd.getpwnam(self._pg_user)
            for path in (self.root, self._pg_data, sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        initdb, pg_ctl = _postgres_bin("initdb"), _postgres_bin("pg_ctl")
        assert initdb
        assert pg_ctl
        subprocess.run(
            self._as_pg_user([initdb, "-D", str(self._pg_data), "-U", "airflow", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {self.pg_port} -c listen_addresses=127.0.0.1 -k {sockets} -c fsync=off -c max_connections=300"
        subprocess.run(
            self._as_pg_user(
                [pg_ctl, "-D", str(self._pg_data), "-l", str(self.root / "postgres.log"), "-o", options, "-w", "start"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        self._pg_started = True

    def _wait_port(self, port: int, what: str, log: Path, timeout: float = 30.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                return
            time.sleep(0.1)
        raise StackError(f"{what} did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self._pg_started:
            pg_ctl = _postgres_bin("pg_ctl")
            if pg_ctl:
                subprocess.run(
                    self._as_pg_user([pg_ctl, "-D", str(self._pg_data), "-m", "immediate", "-w", "stop"]),
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
            self._pg_started = False
        if self._redis is not None:
            self._redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._redis.wait(10)
            if self._redis.poll() is None:
                self._redis.kill()
                self._redis.wait(5)
            self._redis = None
        shutil.rmtree(self.root, ignore_errors=True)


class DistributedStack(AirflowStack):
    """
    api-server, scheduler (CeleryExecutor), dag-processor, ``triggerers`` triggerers and ``workers`` Celery workers,
    on a PostgreSQL metadata DB and a Redis broker (:class:`Services`, started and stopped with the stack).

    :param workers: Celery workers, each its own process (default 2)
    :param worker_concurrency: task slots per worker (default 4)
    :param triggerers: triggerer processes (default 2)
    :param env: extra environment for every component (connections)
    :param config: Airflow options, ``{"section.key": value}``
    """

    def __init__(
        self,
        *,
        workers: int = 2,
        worker_concurrency: int = 4,
        triggerers: int = 2,
        env: Mapping[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        keep_home: bool = False,
    ) -> None:
        self.services = Services()
        self.worker_concurrency = worker_concurrency
        names = ["api-server", "scheduler", "dag-processor"]
        names += [f"triggerer-{i + 1}" for i in range(triggerers)]
        names += [f"worker-{i + 1}" for i in range(workers)]
        settings: dict[str, Any] = {
            "core.executor": "CeleryExecutor",
            "core.parallelism": workers * worker_concurrency,
            "database.sql_alchemy_conn": self.services.sql_alchemy_conn,
            # Airflow's async engine would otherwise guess the psycopg (3) driver, which is not installed
            "database.sql_alchemy_conn_async": self.services.sql_alchemy_conn.replace("+psycopg2", "+asyncpg"),
            "database.sql_alchemy_pool_size": 5,
            "celery.broker_url": self.services.broker_url,
            "celery.result_backend": "db+" + self.services.sql_alchemy_conn,
            "celery.worker_concurrency": worker_concurrency,
            "celery.sync_parallelism": 1,
            "scheduler.task_queued_timeout": 600,
        }
        settings.update(config or {})
        super().__init__(env=env, config=settings, components=(), keep_home=keep_home)
        self.components_to_start = tuple(names)
        self._ports: dict[str, dict[str, str]] = {}

    def start(self, timeout: float = 240.0) -> DistributedStack:
        started = time.monotonic()
        for folder in (self.dags_folder, self.logs_folder, self.home / "plugins"):
            folder.mkdir(parents=True, exist_ok=True)
        (self.home / "airflow.cfg").write_text("")
        self.services.start()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "airflow", "db", "migrate"],
                cwd=self.home,
                env=self.environ,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                raise StackError(f"airflow db migrate on PostgreSQL failed:\n{done.stdout[-4000:]}")
            from tests.stack import _LIVE_STACKS

            _LIVE_STACKS.add(self)
            for name in self.components_to_start:
                self._launch(name)
            self.wait_healthy(timeout=max(1.0, timeout - (time.monotonic() - started)))
            self.wait_until(self._execution_api_ready, timeout=60, interval=0.5, what="the execution API")
            self.wait_until(self._workers_ready, timeout=120, interval=1.0, what="every Celery worker ready")
        except BaseException:
            self.stop()
            raise
        self.started_seconds = time.monotonic() - started
        return self

    def _launch(self, name: str) -> Component:
        kind = name.rsplit("-", 1)[0] if name.startswith(("triggerer-", "worker-")) else name
        argv = {"worker": ["celery", "worker", "--concurrency", str(self.worker_concurrency)]}.get(kind, [kind])
        if kind == "worker":
            argv += ["--celery-hostname", f"{name}@localhost", "--without-gossip", "--without-mingle"]
        env = dict(self.environ)
        # each worker and triggerer serves its logs on a port of its own: they share one machine here
        env.update(self._ports.setdefault(name, self._own_ports(kind)))
        log_path = self.home / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "airflow", *argv],
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        component = Component(name, process, log_path, time.monotonic())
        self.components[name] = component
        return component

    @staticmethod
    def _own_ports(kind: str) -> dict[str, str]:
        if kind == "worker":
            return {"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        if kind == "triggerer":
            return {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port())}
        return {}

    def wait_healthy(self, timeout: float = 120.0) -> None:
        wanted = {"api-server": "metadatabase", "scheduler": "scheduler", "dag-processor": "dag_processor"}

        def healthy() -> bool:
            self._check_alive()
            try:
                health = self.health()
            except (StackError, OSError):
                return False
            names = [wanted[n] for n in self.components_to_start if n in wanted] + ["triggerer"]
            return all((health.get(name) or {}).get("status") == "healthy" for name in names)

        self.wait_until(healthy, timeout=timeout, interval=0.5, what="every component healthy")

    def _workers_ready(self) -> bool:
        self._check_alive()
        return all(
            "ready." in self.component_log(name) for name in self.components_to_start if name.startswith("worker-")
        )

    def stop(self, timeout: float = 8.0) -> None:
        super().stop(timeout)
        self.services.stop()

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        """Read-only SQL on the PostgreSQL metadata DB (``?`` placeholders, as for sqlite)."""
        import psycopg2
        import psycopg2.extras

        with contextlib.closing(
            psycopg2.connect(host="127.0.0.1", port=self.services.pg_port, user="airflow", dbname="postgres")
        ) as db:
            db.set_session(readonly=True, autocommit=True)
            with db.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
                cursor.execute(sql.replace("?", "%s"), tuple(params))
                return [dict(row) for row in cursor.fetchall()]


def batch_dag_source(dag_id: str, videos: int, *, poll_interval: float = 15.0) -> str:
    """A DAG of ``videos`` deferrable text-to-video tasks (one mapped task), as a nightly batch would be."""
    return f"""
from __future__ import annotations

from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanTextToVideoOperator

with DAG(dag_id={dag_id!r}, schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    WanTextToVideoOperator.partial(
        task_id="generate",
        model="wan2.5-t2v-preview",
        duration=5,
        deferrable=True,
        poll_interval={poll_interval!r},
        timeout=3600,
        retries=2,
    ).expand(prompt=[f"video {{i}} of the nightly batch" for i in range({videos})])
"""
