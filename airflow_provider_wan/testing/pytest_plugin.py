"""
pytest plugin (entry point ``pytest11: wan_simulator``): a Wan simulator for the tests that ask for one.

Fixtures:

* ``wan_simulator``: a :class:`~airflow_provider_wan.testing.WanSimulator`, one per test session, reset before each
  test (no task, fault or counter carried over; start-up settings restored). Its ``base_url`` is the DashScope base
  URL, ``api_key`` a key it accepts.
* ``wan_simulator_api_key``: that key (``sk-wan-simulator-test``).
* ``wan_simulator_options``: the start-up options (session scope). Override it in a conftest.py to change them,
  e.g. ``return {"generation_seconds": 2.0}``. Defaults are fast: 0.1 s PENDING, 0.5 s RUNNING.

Loading the plugin starts nothing: the server starts the first time a test uses ``wan_simulator``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from ._config import DEFAULT_API_KEY

if TYPE_CHECKING:
    from .simulator import WanSimulator

__all__ = ["wan_simulator", "wan_simulator_api_key", "wan_simulator_options"]


@pytest.fixture(scope="session")
def wan_simulator_api_key() -> str:
    """The API key the ``wan_simulator`` fixture accepts."""
    return DEFAULT_API_KEY


@pytest.fixture(scope="session")
def wan_simulator_options() -> dict[str, Any]:
    """Start-up options of the session's simulator (fields of SimulatorConfig); override to change them."""
    return {"pending_seconds": 0.1, "generation_seconds": 0.5}


@pytest.fixture(scope="session")
def _wan_simulator_session(wan_simulator_api_key: str, wan_simulator_options: dict[str, Any]) -> Iterator[WanSimulator]:
    from .simulator import WanSimulator  # aiohttp only once a test needs a simulator

    options = dict(wan_simulator_options)
    keys = options.pop("api_keys", [wan_simulator_api_key])
    simulator = WanSimulator(api_keys=keys, **options)
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def wan_simulator(_wan_simulator_session: WanSimulator) -> WanSimulator:
    """The session's simulator, reset: no tasks, faults or counters, start-up settings."""
    _wan_simulator_session.reset()
    return _wan_simulator_session
