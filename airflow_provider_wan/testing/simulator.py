"""
Running the simulator from Python: in a background thread (:class:`WanSimulator`) or as a separate process
(:func:`start_simulator_process`), both driven through the same admin helpers.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from ._config import DEFAULT_API_KEY, Fault, SimulatorConfig
from .server import build_app, start_site

__all__ = ["SimulatorProcess", "WanSimulator", "start_simulator_process"]

# Loopback only, never through a proxy that HTTP(S)_PROXY may name.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
LISTENING_PREFIX = "wan-simulator listening on "


class _AdminClient:
    """The ``/_sim`` endpoints as methods. Subclasses set ``host`` and ``port``."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What DashScope clients take as base URL: ``http://HOST:PORT/api/v1``."""
        return f"{self.url}/api/v1"

    @property
    def admin_url(self) -> str:
        """``http://HOST:PORT/_sim``: test control (stats, tasks, faults, reset, config); no auth."""
        return f"{self.url}/_sim"

    def _admin(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.admin_url}/{path}", data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ValueError(f"simulator refused {method} /_sim/{path}: {detail}") from exc

    @property
    def api_key(self) -> str:
        """The first accepted key."""
        raise NotImplementedError

    def connection_json(self, *, password: str | None = None, **extra: Any) -> str:
        """
        This simulator as an Airflow ``wan`` connection, in the JSON form of ``AIRFLOW_CONN_*`` variables.

        ``password`` defaults to the simulator's first accepted key; ``extra`` fields are added to (or override)
        ``base_url``. E.g. ``monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())``.
        """
        key = self.api_key if password is None else password
        return json.dumps({"conn_type": "wan", "password": key, "extra": {"base_url": self.base_url, **extra}})

    def stats(self) -> dict[str, Any]:
        """Request counts per route and path, response statuses, tasks_created, faults fired (GET /_sim/stats)."""
        return dict(self._admin("GET", "stats"))

    def tasks(self) -> list[dict[str, Any]]:
        """Every live task: id, model, status, endpoint, input and parameters as received (GET /_sim/tasks)."""
        return list(self._admin("GET", "tasks")["tasks"])

    def faults(self) -> list[dict[str, Any]]:
        """The armed faults (GET /_sim/faults)."""
        return list(self._admin("GET", "faults")["faults"])

    def inject_fault(self, kind: str, route: str | None = None, count: int = 1, **params: Any) -> dict[str, Any]:
        """
        Arm a fault (POST /_sim/faults) and return it as stored.

        ``kind``: error, reset, slow, malformed, task_fail, task_unknown, truncate, expired; the download shapes
        no_length, short_range, changing_body, drip; the API misbehaviours answer, redirect, huge, drip. ``route``:
        create, get_task, cancel, list, download or any (default depends on the kind). ``count``: responses
        affected (-1: until cleared). ``params``: status, code, message, retry_after (error), delay (slow, drip;
        seconds), code/message (task_fail), after_bytes (truncate; no_length and short_range: where the body ends
        cleanly; drip: bytes per delay); status, body or raw, processed (answer); status, location (redirect);
        size (huge).
        """
        fault: dict[str, Any] = {"kind": kind, "count": count, **params}
        if route is not None:
            fault["route"] = route
        return dict(self._admin("POST", "faults", fault)["faults"][0])

    def clear_faults(self) -> int:
        """Disarm every fault (DELETE /_sim/faults); returns how many were armed."""
        return int(self._admin("DELETE", "faults")["cleared"])

    def reset(self) -> None:
        """Forget tasks, counters, faults and rate history; back to the start-up configuration (POST /_sim/reset)."""
        self._admin("POST", "reset", {})

    def configure(self, **options: Any) -> dict[str, Any]:
        """Change settings at run time (POST /_sim/config), e.g. ``time_scale=0.01``; returns the new settings."""
        return dict(self._admin("POST", "config", options))

    def config(self) -> dict[str, Any]:
        """The current settings (GET /_sim/config); api_keys is reported as a count."""
        return dict(self._admin("GET", "config"))


class WanSimulator(_AdminClient):
    """
    A DashScope-compatible simulator served from a background thread with its own event loop.

    ``WanSimulator(api_keys=["sk-test"], generation_seconds=1.0, time_scale=0.1)``: options are the fields of
    :class:`~airflow_provider_wan.testing.SimulatorConfig`; ``faults`` arms faults from the start (dicts as for
    :meth:`inject_fault`). ``start()`` binds ``host`` (default 127.0.0.1) on ``port`` (default 0: a free port).
    Also a context manager.
    """

    def __init__(
        self,
        api_keys: Iterable[str] = (DEFAULT_API_KEY,),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Iterable[Mapping[str, Any]] = (),
        **options: Any,
    ) -> None:
        #: the start-up settings (the server's current ones: :meth:`config`)
        self.initial_config = SimulatorConfig.from_options(api_keys=tuple(api_keys), **options)
        self._faults = [Fault.from_dict(f) for f in faults]
        self.host = host
        self.port = port
        self._requested_port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.app: web.Application | None = None

    @property
    def api_key(self) -> str:
        """The first accepted key."""
        return self.initial_config.api_keys[0]

    def start(self) -> WanSimulator:
        """Start serving; returns once the port is bound. Raises whatever made the start-up fail."""
        if self._thread is not None:
            raise RuntimeError("this simulator is already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._serve, name=f"wan-simulator-{id(self):x}", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError(f"the Wan simulator failed to start: {self._error}") from self._error
        if not self._ready.is_set():
            raise RuntimeError("the Wan simulator did not start within 30 s")
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() through _error
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        self.app = build_app(self.initial_config, self._faults)
        runner, self.port = await start_site(self.app, self.host, self._requested_port)
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent)."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)
        thread.join(15)
        self._thread = None
        self.port = self._requested_port

    def __enter__(self) -> WanSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class SimulatorProcess(_AdminClient):
    """A ``wan-simulator`` running as a child process; ``stop()`` sends SIGTERM (then SIGKILL after ``timeout``)."""

    def __init__(self, process: subprocess.Popen[str], host: str, port: int, api_keys: tuple[str, ...]) -> None:
        self.process = process
        self.host = host
        self.port = port
        self.api_keys = api_keys
        #: the child's last 2,000 output lines (request log), for debugging a failed test
        self.output: collections.deque[str] = collections.deque(maxlen=2000)
        self._reader = threading.Thread(target=self._drain, name=f"wan-simulator-{process.pid}-out", daemon=True)
        self._reader.start()

    @property
    def api_key(self) -> str:
        return self.api_keys[0]

    @property
    def pid(self) -> int:
        return self.process.pid

    def _drain(self) -> None:
        # keep reading so the child never blocks on a full pipe
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))

    def stop(self, timeout: float = 10.0) -> int:
        """Stop the child (SIGTERM, then SIGKILL after ``timeout`` seconds); returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._reader.join(5)
        return int(self.process.returncode)

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def options_to_argv(options: Mapping[str, Any]) -> list[str]:
    """CLI arguments for simulator options (``time_scale=0.1`` -> ``--time-scale 0.1``; faults -> ``--fault JSON``)."""
    argv: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if name == "api_keys":
            for key in [value] if isinstance(value, str) else value:
                argv += ["--api-key", key]
        elif name == "faults":
            for fault in value:
                argv += ["--fault", json.dumps(fault)]
        elif name == "log_requests":
            if not value:
                argv.append("--quiet")
        elif value is None:
            continue
        elif isinstance(value, bool):  # on/off switches (--draw-text)
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv


def start_simulator_process(
    api_keys: Iterable[str] = (DEFAULT_API_KEY,),
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Iterable[Mapping[str, Any]] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    **options: Any,
) -> SimulatorProcess:
    """
    Start ``wan-simulator`` in a child process and wait until it listens; options as for :class:`WanSimulator`.

    Runs ``python -m airflow_provider_wan.testing`` (the console script's entry point) with this interpreter, so it
    works whether or not the package is installed; this package's directory is added to the child's PYTHONPATH.
    For tests where Airflow components run in other processes and need one shared simulator. Unless
    ``cache_dir`` is given (None: memory only), encoded MP4s are cached in ``$TMPDIR/wan-simulator-cache-<uid>``,
    shared by every simulator process started this way.
    """
    keys = tuple(api_keys)
    # child processes share their encodes on disk unless told otherwise: each would pay ~1 s per 1080p shape
    options.setdefault("cache_dir", str(Path(tempfile.gettempdir()) / f"wan-simulator-cache-{os.getuid()}"))
    SimulatorConfig.from_options(api_keys=keys, **options)  # fail here, not in the child, on a bad option
    argv = [
        sys.executable,
        "-u",
        "-m",
        "airflow_provider_wan.testing",
        "--host",
        host,
        "--port",
        str(port),
        *options_to_argv({"api_keys": keys, "faults": list(faults), **options}),
    ]
    child_env = dict(os.environ if env is None else env)
    package_root = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, child_env.get("PYTHONPATH")) if p)
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env, start_new_session=True
    )
    assert process.stdout is not None
    # the first line announces the URL; read it with a deadline so a broken child cannot hang the caller
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline() if process.stdout else ""))
    reader.start()
    reader.join(timeout)
    first = lines[0] if lines else ""
    if not first.startswith(LISTENING_PREFIX):
        process.kill()
        rest = process.stdout.read() if not reader.is_alive() else ""
        process.wait(5)
        raise RuntimeError(f"wan-simulator did not start (exit {process.returncode}): {first}{rest}")
    url = first[len(LISTENING_PREFIX) :].strip()
    bound_host, _, bound_port = url.removeprefix("http://").split("/", 1)[0].rpartition(":")
    simulator = SimulatorProcess(process, bound_host.strip("[]"), int(bound_port), keys)
    simulator.output.appendleft(first.rstrip("\n"))
    return simulator
