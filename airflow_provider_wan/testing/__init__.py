"""
A local, DashScope-compatible simulator of the Wan video-generation API, for tests, demos and users' DAG tests.

It speaks DashScope's HTTP API (``/api/v1``: create on both synthesis endpoints, get, cancel and list tasks),
enforces the model rules of :mod:`airflow_provider_wan.models` (no copy of them lives here), plays tasks through
PENDING -> RUNNING -> SUCCEEDED with configurable timing, per-model concurrency and rate limits, serves real H.264
MP4s at signed, expiring links, and injects faults on demand.

Three ways to run it:

* ``wan-simulator --port 0 --api-key sk-test`` (console script, see ``--help``);
* ``with WanSimulator(api_keys=["sk-test"], time_scale=0.01) as sim: ...`` (in-process, background thread), or
  :func:`start_simulator_process` (child process, for Airflow components in other processes);
* the pytest plugin (``wan_simulator`` and ``wan_simulator_api_key`` fixtures).

Test control lives under ``/_sim`` and has no authentication: keep simulators on loopback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import DEFAULT_API_KEY, DEFAULT_MODERATION_WORD, FAULT_KINDS, ROUTES, Fault, SimulatorConfig

if TYPE_CHECKING:
    from .simulator import SimulatorProcess, WanSimulator, start_simulator_process

_LAZY = ("SimulatorProcess", "WanSimulator", "start_simulator_process")


def __getattr__(name: str) -> Any:
    # aiohttp is imported on first use only: the pytest plugin loads this package in every pytest session
    if name in _LAZY:
        from . import simulator

        return getattr(simulator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_MODERATION_WORD",
    "FAULT_KINDS",
    "ROUTES",
    "Fault",
    "SimulatorConfig",
    "SimulatorProcess",
    "WanSimulator",
    "start_simulator_process",
]
