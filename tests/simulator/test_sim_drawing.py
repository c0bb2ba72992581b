"""The simulator's videos show the request: model, size, length and prompt drawn in a band at the top."""

from __future__ import annotations

import io
import time
from typing import Any

import av
import pytest
import requests

from airflow_provider_wan.testing._font import text_band

T2V = "services/aigc/video-generation/video-synthesis"


def _top_rows(video: bytes, index: int, rows: int) -> tuple[bytes, int]:
    with av.open(io.BytesIO(video)) as container:
        for number, frame in enumerate(container.decode(video=0)):
            if number == index:
                plane = frame.planes[0]
                data = bytes(plane)
                return b"".join(data[r * plane.line_size : r * plane.line_size + frame.width] for r in range(rows)), (
                    frame.width
                )
    raise AssertionError("no such frame")


@pytest.mark.parametrize("draw_text", [True, False])
def test_prompt_and_model_are_drawn(wan_simulator: Any, draw_text: bool) -> None:
    wan_simulator.configure(draw_text=draw_text, generation_seconds=0.2, pending_seconds=0.0)
    headers = {"Authorization": f"Bearer {wan_simulator.api_key}", "X-DashScope-Async": "enable"}
    prompt = "A red fox reads the morning paper"
    body = {"model": "wan2.2-t2v-plus", "input": {"prompt": prompt}, "parameters": {"size": "832*480"}}
    created = requests.post(f"{wan_simulator.base_url}/{T2V}", json=body, headers=headers, timeout=10).json()
    task_id = created["output"]["task_id"]
    for _ in range(100):
        output = requests.get(f"{wan_simulator.base_url}/tasks/{task_id}", headers=headers, timeout=10).json()["output"]
        if output["task_status"] == "SUCCEEDED":
            break
        time.sleep(0.1)
    video = requests.get(output["video_url"], timeout=30).content
    expected, rows = text_band(["wan2.2-t2v-plus 832x480 5s", prompt], 832)
    got, width = _top_rows(video, 3, rows)
    assert width == 832
    diff = sum(abs(a - b) for a, b in zip(got, expected, strict=True)) / len(expected)
    # H.264 at a modest quality blurs glyph edges; a band of text is still far from a bar frame's top rows
    if draw_text:
        assert diff < 20, diff
    else:
        assert diff > 20, diff
