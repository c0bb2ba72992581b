"""Fixtures of the integration tests: the package's simulator, and a ``wan_default`` connection pointing at it."""

from __future__ import annotations

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
