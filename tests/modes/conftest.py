from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def wan_simulator_options() -> dict[str, Any]:
    # quick generations; the videos stay real H.264 MP4s
    return {"pending_seconds": 0.1, "generation_seconds": 0.5, "log_requests": False}
