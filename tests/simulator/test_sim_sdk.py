"""Acceptance 1: the official dashscope SDK (2.0.2, 1.x-style VideoSynthesis API) runs end to end on the simulator."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import dashscope
import pytest
import requests
from dashscope import VideoSynthesis


@pytest.fixture
def sdk(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The SDK pointed at the simulator (module globals restored afterwards)."""
    monkeypatch.setattr(dashscope, "base_http_api_url", wan_simulator.base_url)
    monkeypatch.setattr(dashscope, "api_key", wan_simulator.api_key)
    return dashscope


@pytest.fixture
def image_url(png_bytes: bytes) -> Iterator[str]:
    """An http URL of a PNG served by this test process."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png_bytes)))
            self.end_headers()
            self.wfile.write(png_bytes)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/last_frame.png"
    server.shutdown()
    server.server_close()


def test_sdk_text_to_video_end_to_end(sdk: Any, wan_simulator: Any, probe_video: Any) -> None:
    response = VideoSynthesis.call(
        model="wan2.5-t2v-preview",
        prompt="A fox in a trench coat reads case files",
        size="832*480",
        duration=5,
        prompt_extend=True,
        watermark=False,
        seed=12345,
    )
    assert response.status_code == 200, response
    assert response.output.task_status == "SUCCEEDED"
    assert response.usage.video_duration == 5
    assert response.usage.video_ratio == "832*480"
    assert response.output.orig_prompt == "A fox in a trench coat reads case files"
    assert response.output.actual_prompt.startswith("A fox in a trench coat reads case files")

    video = requests.get(response.output.video_url, timeout=30)
    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    info = probe_video(video.content)
    assert info["codec"] == "h264"
    assert (info["width"], info["height"]) == (832, 480)
    assert info["duration"] == pytest.approx(5, abs=0.5)
    assert info["audio"] == ["aac"]  # wan2.5 generates audio unless audio=false

    # the SDK's deprecated 1.x fields reached the simulator and were tolerated
    (task,) = wan_simulator.tasks()
    assert task["input"]["extend_prompt"] is True
    assert task["input"]["function"] == "video-synthesis"
    assert task["endpoint"] == "services/aigc/video-generation/video-synthesis"


def test_sdk_first_and_last_frame_end_to_end(
    sdk: Any, wan_simulator: Any, probe_video: Any, png_data_uri: str, image_url: str
) -> None:
    response = VideoSynthesis.call(
        model="wan2.2-kf2v-flash",
        prompt="Realistic style, a small black cat looks up at the sky",
        first_frame_url=png_data_uri,
        last_frame_url=image_url,
        resolution="720P",
        prompt_extend=True,
    )
    assert response.status_code == 200, response
    assert response.output.task_status == "SUCCEEDED"
    assert response.usage.video_ratio == "standard"
    assert response.usage.video_duration == 5

    info = probe_video(requests.get(response.output.video_url, timeout=30).content)
    assert info["codec"] == "h264"
    assert (info["width"], info["height"]) == (1280, 720)
    assert info["duration"] == pytest.approx(5, abs=0.5)
    assert info["audio"] == []  # kf2v models make silent videos

    (task,) = wan_simulator.tasks()
    assert task["endpoint"] == "services/aigc/image2video/video-synthesis"
    assert task["input"]["last_frame_url"] == image_url
    # a data URI is recorded shortened, never kept whole
    assert task["input"]["first_frame_url"].startswith("data:image/png;base64,<")


def test_sdk_kf2v_without_prompt(sdk: Any, png_data_uri: str) -> None:
    # the SDK sends "prompt": null when no prompt is given; the request stays valid for kf2v
    response = VideoSynthesis.call(
        model="wan2.2-kf2v-flash", first_frame_url=png_data_uri, last_frame_url=png_data_uri, resolution="480P"
    )
    assert response.status_code == 200, response
    assert response.output.task_status == "SUCCEEDED"
    assert "orig_prompt" not in response.output


def test_sdk_reports_documented_errors(sdk: Any) -> None:
    response = VideoSynthesis.async_call(model="wan2.5-t2v-preview", prompt="a cat", size="999*999")
    assert response.status_code == 400
    assert response.code == "InvalidParameter"
    assert "size" in response.message

    response = VideoSynthesis.async_call(model="wan9.9-t2v", prompt="a cat")
    assert response.status_code == 404
    assert response.code == "ModelNotFound"

    response = VideoSynthesis.async_call(model="wan2.5-t2v-preview", prompt="a cat", api_key="sk-wrong")
    assert response.status_code == 401
    assert response.code == "InvalidApiKey"


def test_sdk_cancel_fetch_and_list(sdk: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=30)
    created = VideoSynthesis.async_call(model="wan2.5-t2v-preview", prompt="a dog", size="832*480")
    assert created.status_code == 200
    assert created.output.task_status == "PENDING"

    assert VideoSynthesis.cancel(created).status_code == 200
    fetched = VideoSynthesis.fetch(created)
    assert fetched.output.task_status == "CANCELED"

    listed = VideoSynthesis.list(status="CANCELED", model_name="wan2.5-t2v-preview")
    assert listed.status_code == 200
    assert listed.output["total"] == 1
    assert listed.output["tasks"][0]["task_id"] == created.output.task_id


def test_sdk_v2_client_reads_jobs(wan_simulator: Any) -> None:
    """SDK 2.x's own client (dashscope.Client) creates, waits for and lists jobs on the simulator."""
    client = dashscope.Client(api_key=wan_simulator.api_key, base_url=wan_simulator.base_url)
    job = client.videos.jobs.create(model="wan2.6-t2v", prompt="a cat", size="1280*720", duration=2)
    done = client.videos.jobs.wait(job, timeout=20)
    assert done.status == "SUCCEEDED"
    assert done.video_url
    listed = client.videos.jobs.list()
    assert [t.task_id for t in listed.tasks] == [job.task_id]
