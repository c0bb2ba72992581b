"""Task lifecycle, response shapes per model family, the task list and result downloads."""

from __future__ import annotations

import hashlib
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from airflow_provider_wan.models import get_model
from airflow_provider_wan.testing import WanSimulator

TIME_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
UTC8 = timezone(timedelta(hours=8))
FRAMES = {"first_frame_url": "https://example.com/first.png", "last_frame_url": "https://example.com/last.png"}


def parse_time(text: str) -> datetime:
    assert TIME_FORMAT.match(text), text
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC8)


def test_lifecycle_pending_running_succeeded(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=0.5, generation_seconds=1.0)
    created = api.create(parameters={"size": "832*480"})
    assert created.status_code == 200
    body = created.json()
    assert set(body) == {"request_id", "output"}
    assert set(body["output"]) == {"task_id", "task_status"}
    assert body["output"]["task_status"] == "PENDING"
    task_id = body["output"]["task_id"]

    pending = api.get(task_id).json()
    assert pending["output"]["task_status"] == "PENDING"
    assert set(pending["output"]) == {"task_id", "task_status", "submit_time", "orig_prompt"}
    assert "usage" not in pending
    submitted = parse_time(pending["output"]["submit_time"])
    assert abs((submitted - datetime.now(UTC8)).total_seconds()) < 5  # UTC+8 wall clock

    time.sleep(0.7)
    running = api.get(task_id).json()["output"]
    assert running["task_status"] == "RUNNING"
    assert "scheduled_time" in running
    assert "end_time" not in running
    assert "video_url" not in running

    time.sleep(0.9)
    done = api.get(task_id).json()
    output = done["output"]
    assert output["task_status"] == "SUCCEEDED"
    scheduled, ended = parse_time(output["scheduled_time"]), parse_time(output["end_time"])
    assert submitted < scheduled < ended
    assert (ended - scheduled).total_seconds() == pytest.approx(1.0, abs=0.01)
    assert output["video_url"].startswith(f"{wan_simulator.url}/_files/{task_id}.mp4?Expires=")
    assert "Signature=" in output["video_url"]
    assert "OSSAccessKeyId=" in output["video_url"]
    assert done["usage"] == {"video_count": 1, "video_duration": 5, "video_ratio": "832*480"}


def test_time_scale_speeds_everything_up(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=60, generation_seconds=300, time_scale=0.001)
    started = time.monotonic()
    assert api.wait(api.create_id())["output"]["task_status"] == "SUCCEEDED"
    assert time.monotonic() - started < 2


USAGE = {
    "wan2.6-t2v": (
        {"prompt": "a"},
        {"size": "1280*720", "duration": 3},
        {"duration": 3, "size": "1280*720", "input_video_duration": 0, "output_video_duration": 3, "video_count": 1}
        | {"SR": 720},
    ),
    "wan2.6-i2v": (
        {"prompt": "a", "img_url": "https://example.com/a.png"},
        {"resolution": "720P", "duration": 2},
        {"duration": 2, "input_video_duration": 0, "output_video_duration": 2, "video_count": 1, "SR": 720},
    ),
    "wan2.5-t2v-preview": ({"prompt": "a"}, {}, {"video_count": 1, "video_duration": 5, "video_ratio": "1920*1080"}),
    "wan2.1-t2v-turbo": (
        {"prompt": "a"},
        {"size": "480*832"},
        {"video_count": 1, "video_duration": 5, "video_ratio": "480*832"},
    ),
    "wan2.2-kf2v-flash": (FRAMES, {}, {"video_count": 1, "video_duration": 5, "video_ratio": "standard"}),
    "wan2.5-i2v-preview": (
        {"img_url": "https://example.com/a.png"},
        {"duration": 10},
        {"video_count": 1, "video_duration": 10, "video_ratio": "standard"},
    ),
}


@pytest.mark.parametrize(
    ("model", "input_", "parameters", "usage"), [(m, *case) for m, case in USAGE.items()], ids=USAGE
)
def test_usage_shape_follows_the_catalogue(
    api: Any, model: str, input_: dict[str, Any], parameters: dict[str, Any], usage: dict[str, Any]
) -> None:
    body = api.wait(api.create_id(model, input_, parameters))
    assert body["output"]["task_status"] == "SUCCEEDED"
    assert body["usage"] == usage


def test_actual_prompt_rules(api: Any) -> None:
    first = api.wait(api.create_id(input={"prompt": "a red kite"}))["output"]
    second = api.wait(api.create_id(input={"prompt": "a red kite"}))["output"]
    assert first["orig_prompt"] == "a red kite"
    assert first["actual_prompt"].startswith("a red kite ")
    assert len(first["actual_prompt"]) > len("a red kite ")
    assert first["actual_prompt"] == second["actual_prompt"]  # deterministic

    no_extend = api.wait(api.create_id(input={"prompt": "a red kite"}, parameters={"prompt_extend": False}))
    assert "actual_prompt" not in no_extend["output"]
    # wan2.6 never returns it, whatever prompt_extend says
    wan26 = api.wait(api.create_id("wan2.6-t2v", {"prompt": "a red kite"}, {"prompt_extend": True, "duration": 2}))
    assert wan26["output"]["orig_prompt"] == "a red kite"
    assert "actual_prompt" not in wan26["output"]


def test_overlong_prompts_are_truncated_not_refused(api: Any, wan_simulator: Any) -> None:
    limit = get_model("wan2.2-t2v-plus").prompt_max_chars  # type: ignore[union-attr]
    prompt = "x" * (limit + 250)
    negative = "n" * 600
    body = api.wait(api.create_id("wan2.2-t2v-plus", {"prompt": prompt, "negative_prompt": negative}, {}))
    assert body["output"]["task_status"] == "SUCCEEDED"
    assert body["output"]["orig_prompt"] == "x" * limit
    (task,) = wan_simulator.tasks()
    assert task["input"]["prompt"] == prompt  # recorded as received


def test_tasks_queue_behind_the_model_concurrency_limit(api: Any, wan_simulator: Any) -> None:
    # wan2.2-t2v-plus: 2 tasks at once in the catalogue
    wan_simulator.configure(pending_seconds=0, generation_seconds=0.6, create_rps=0)
    ids = [api.create_id("wan2.2-t2v-plus") for _ in range(4)]
    statuses = [api.get(i).json()["output"]["task_status"] for i in ids]
    assert statuses == ["RUNNING", "RUNNING", "PENDING", "PENDING"]
    # cancelling a queued task lets the next one take its place
    assert api.cancel(ids[2]).ok
    time.sleep(0.7)
    statuses = [api.get(i).json()["output"]["task_status"] for i in ids]
    assert statuses == ["SUCCEEDED", "SUCCEEDED", "CANCELED", "RUNNING"]
    last = api.wait(ids[3])["output"]
    first = api.get(ids[0]).json()["output"]
    assert last["scheduled_time"] == first["end_time"]


def test_concurrency_limit_can_be_overridden_or_disabled(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(pending_seconds=0, generation_seconds=5, create_rps=0, max_concurrent_tasks=0)
    ids = [api.create_id("wan2.2-t2v-plus") for _ in range(6)]
    assert {api.get(i).json()["output"]["task_status"] for i in ids} == {"RUNNING"}
    # lowering the limit re-plans the queued tasks only: the running ones go on
    wan_simulator.configure(max_concurrent_tasks=1)
    more = [api.create_id("wan2.2-t2v-plus") for _ in range(2)]
    assert [api.get(i).json()["output"]["task_status"] for i in more] == ["PENDING", "PENDING"]


def test_list_filters_and_pages(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(create_rps=0)
    done = [api.create_id() for _ in range(3)]
    for task_id in done:
        api.wait(task_id)
    wan_simulator.configure(pending_seconds=30)
    kf2v = api.create_id("wan2.2-kf2v-flash", FRAMES, {})

    everything = api.list(page_size=2).json()
    assert set(everything) == {"request_id", "page_no", "page_size", "total", "total_page", "tasks", "data"}
    assert everything["total"] == 4
    assert everything["total_page"] == 2
    assert everything["tasks"] == everything["data"]
    assert [t["task_id"] for t in everything["tasks"]] == [kf2v, done[2]]  # newest first
    page2 = api.list(page_size=2, page_no=2).json()
    assert [t["task_id"] for t in page2["tasks"]] == [done[1], done[0]]
    assert page2["tasks"][0]["model_name"] == "wan2.5-t2v-preview"

    pending = api.list(status="PENDING").json()
    assert [t["task_id"] for t in pending["tasks"]] == [kf2v]
    by_model = api.list(model_name="wan2.5-t2v-preview").json()
    assert by_model["total"] == 3
    now = datetime.now(UTC8)
    window = {"start_time": (now - timedelta(minutes=5)).strftime("%Y%m%d%H%M%S")}
    assert api.list(**window).json()["total"] == 4
    window = {"end_time": (now - timedelta(minutes=5)).strftime("%Y%m%d%H%M%S")}
    assert api.list(**window).json()["total"] == 0

    for bad in ({"page_no": 0}, {"page_size": 1000}, {"status": "DONE"}, {"start_time": "yesterday"}):
        response = api.list(**bad)
        assert response.status_code == 400
        assert response.json()["code"] == "InvalidParameter"


def test_download_supports_ranges(api: Any, probe_video: Any) -> None:
    url = api.wait(api.create_id(parameters={"size": "832*480", "audio": False}))["output"]["video_url"]
    full = requests.get(url, timeout=30)
    assert full.status_code == 200
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["Content-Type"] == "video/mp4"
    total = int(full.headers["Content-Length"])
    assert total == len(full.content)
    assert probe_video(full.content)["audio"] == []  # audio=false

    part = requests.get(url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{total}"
    assert part.content == full.content[100:200]
    tail = requests.get(url, headers={"Range": f"bytes={total - 10}-"}, timeout=10)
    assert tail.status_code == 206
    assert tail.content == full.content[-10:]
    suffix = requests.get(url, headers={"Range": "bytes=-5"}, timeout=10)
    assert suffix.content == full.content[-5:]
    beyond = requests.get(url, headers={"Range": f"bytes={total}-"}, timeout=10)
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{total}"
    head = requests.head(url, timeout=10)
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == total


def test_video_dimensions_follow_the_request(api: Any, probe_video: Any) -> None:
    cases = [
        ("wan2.1-t2v-turbo", {"prompt": "a"}, {"size": "480*832"}, (480, 832), []),
        ("wan2.2-i2v-flash", {"img_url": "https://e/a.png"}, {"resolution": "480P"}, (832, 480), []),
        (
            "wan2.5-t2v-preview",
            {"prompt": "a", "audio_url": "https://e/a.mp3"},
            {"size": "624*624"},
            (624, 624),
            ["aac"],
        ),
    ]
    for model, input_, parameters, size, audio in cases:
        url = api.wait(api.create_id(model, input_, parameters))["output"]["video_url"]
        info = probe_video(requests.get(url, timeout=30).content)
        assert (info["width"], info["height"]) == size, model
        assert info["audio"] == audio, model
        assert info["duration"] == pytest.approx(5, abs=0.5)


def test_video_encodes_are_cached(api: Any, wan_simulator: Any) -> None:
    wan_simulator.configure(create_rps=0)
    urls = [api.wait(api.create_id(parameters={"size": "832*480"}))["output"]["video_url"] for _ in range(3)]
    before = wan_simulator.stats()["encodes"]
    bodies = {hashlib.md5(requests.get(u, timeout=30).content).hexdigest() for u in urls}
    assert len(bodies) == 1
    assert wan_simulator.stats()["encodes"] - before <= 1


def test_payload_mode_serves_reproducible_bytes(api: Any, wan_simulator: Any) -> None:
    size = 3 * 1024 * 1024 + 12345
    wan_simulator.configure(payload_bytes=size, create_rps=0)
    first_url = api.wait(api.create_id())["output"]["video_url"]
    second_url = api.wait(api.create_id())["output"]["video_url"]

    one = requests.get(first_url, timeout=30)
    assert one.status_code == 200
    assert int(one.headers["Content-Length"]) == size == len(one.content)
    again = requests.get(first_url, timeout=30)
    assert hashlib.md5(again.content).hexdigest() == hashlib.md5(one.content).hexdigest()
    other = requests.get(second_url, timeout=30)
    assert other.content != one.content  # every task has its own bytes

    start, end = 1024 * 1024 - 7, 2 * 1024 * 1024 + 9  # spans chunk boundaries
    part = requests.get(first_url, headers={"Range": f"bytes={start}-{end}"}, timeout=30)
    assert part.status_code == 206
    assert part.content == one.content[start : end + 1]
    tail = requests.get(first_url, headers={"Range": f"bytes={size - 100}-"}, timeout=30)
    assert tail.content == one.content[-100:]


def test_without_pyav_downloads_fail_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    # `import av` raises ImportError while this is set, as when the [simulator] extra is not installed
    monkeypatch.setitem(sys.modules, "av", None)
    with WanSimulator(pending_seconds=0, generation_seconds=0, log_requests=False) as sim:
        headers = {"Authorization": f"Bearer {sim.api_key}", "X-DashScope-Async": "enable"}
        url = f"{sim.base_url}/services/aigc/video-generation/video-synthesis"
        body = {"model": "wan2.1-t2v-turbo", "input": {"prompt": "a"}, "parameters": {"size": "480*832"}}

        def video_url() -> str:
            task_id = requests.post(url, json=body, headers=headers, timeout=10).json()["output"]["task_id"]
            time.sleep(0.05)
            output = requests.get(f"{sim.base_url}/tasks/{task_id}", headers=headers, timeout=10).json()["output"]
            assert output["task_status"] == "SUCCEEDED"  # the API itself works without PyAV
            return str(output["video_url"])

        response = requests.get(video_url(), timeout=10)
        assert response.status_code == 500
        assert "airflow-provider-wan[simulator]" in response.text
        sim.configure(payload_bytes=1000)  # payloads need no PyAV
        assert len(requests.get(video_url(), timeout=10).content) == 1000
