"""Shared fixtures of the simulator tests: the plugin's fixtures plus a thin DashScope HTTP client."""

from __future__ import annotations

import base64
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

# The plugin is also an installed pytest11 entry point; importing its fixtures here keeps these tests working when
# the package is only on PYTHONPATH (a conftest's fixtures simply shadow the plugin's).
from airflow_provider_wan.testing import pytest_plugin

_wan_simulator_session = pytest_plugin._wan_simulator_session
wan_simulator = pytest_plugin.wan_simulator
wan_simulator_api_key = pytest_plugin.wan_simulator_api_key

VIDEO = "services/aigc/video-generation/video-synthesis"
KF2V = "services/aigc/image2video/video-synthesis"
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")


def _png(width: int = 400, height: int = 400) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def wan_simulator_options() -> dict[str, Any]:
    """Faster than the plugin's defaults (which suit users' DAG tests): these tests wait on many tasks."""
    return {"pending_seconds": 0.05, "generation_seconds": 0.25}


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    """A valid 400x400 grey PNG, built by hand (no imaging library needed)."""
    return _png()


@pytest.fixture(scope="session")
def png_data_uri(png_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode()


class DashScope:
    """Raw HTTP calls to a simulator, as DashScope's REST docs describe them (no SDK in between)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.session = requests.Session()

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "X-DashScope-Async": "enable", **extra}

    def create(
        self,
        model: str = "wan2.5-t2v-preview",
        input: dict[str, Any] | None = None,
        parameters: dict[str, Any] | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        body: dict[str, Any] = {"model": model, "input": {"prompt": "a cat"} if input is None else input}
        if parameters is not None:
            body["parameters"] = parameters
        if endpoint is None:
            endpoint = KF2V if "kf2v" in model else VIDEO
        kwargs.setdefault("headers", self.headers())
        return self.session.post(f"{self.base_url}/{endpoint}", json=body, **kwargs)

    def create_id(self, *args: Any, **kwargs: Any) -> str:
        response = self.create(*args, **kwargs)
        assert response.status_code == 200, response.text
        return str(response.json()["output"]["task_id"])

    def get(self, task_id: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.headers())
        return self.session.get(f"{self.base_url}/tasks/{task_id}", **kwargs)

    def cancel(self, task_id: str) -> requests.Response:
        return self.session.post(f"{self.base_url}/tasks/{task_id}/cancel", headers=self.headers())

    def list(self, **params: Any) -> requests.Response:
        return self.session.get(f"{self.base_url}/tasks", params=params, headers=self.headers())

    def wait(self, task_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(task_id)
            if response.status_code == 429:  # the 20-per-second query limit: back off like a real client
                time.sleep(0.2)
                continue
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["output"]["task_status"] in TERMINAL:
                return body
            assert time.monotonic() < deadline, f"task {task_id} still {body['output']['task_status']}"
            time.sleep(0.1)


@pytest.fixture
def api(wan_simulator: Any) -> Iterator[DashScope]:
    """Raw DashScope HTTP calls to the (reset) session simulator."""
    client = DashScope(wan_simulator.base_url, wan_simulator.api_key)
    yield client
    client.session.close()


def _probe(data: bytes) -> dict[str, Any]:
    import io

    import av

    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        return {
            "format": container.format.name,
            "codec": video.codec_context.name,
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "duration": (container.duration or 0) / 1_000_000,
            "audio": [s.codec_context.name for s in container.streams.audio],
            "frames": sum(1 for _ in container.decode(video=0)),
        }


@pytest.fixture(scope="session")
def probe_video() -> Any:
    """probe_video(mp4 bytes) -> {format, codec, width, height, duration (s), audio codecs, frames}, via PyAV."""
    return _probe
