"""Fixtures of the integration tests: the package's simulator, and a ``wan_default`` connection pointing at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

# The plugin is also an installed pytest11 entry point; importing its fixtures keeps these tests working when the
# package is only on PYTHONPATH.
from airflow_provider_wan.testing.pytest_plugin import (  # noqa: F401
    _wan_simulator_session,
    wan_simulator,
    wan_simulator_api_key,
    wan_simulator_options,
)

ENDPOINT = "services/aigc/video-generation/video-synthesis"
BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a lighthouse at dawn"}, "parameters": {}}


@pytest.fixture
def wan_conn(monkeypatch: pytest.MonkeyPatch, wan_simulator: Any) -> str:  # noqa: F811
    """``wan_default`` pointing at the in-process simulator (reset for this test); returns the API key."""
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    return str(wan_simulator.api_key)


@pytest.fixture
async def close_wan_sessions() -> AsyncIterator[None]:
    """Close the async client's per-event-loop aiohttp session at the end of an async test."""
    yield
    from airflow_provider_wan.hooks import wan as hook_module

    loop = asyncio.get_running_loop()
    state = hook_module._loop_state.pop(id(loop), None)
    if state is not None and state[0] is loop:
        await state[1].close()
