"""
Every example DAG in ``dags/`` runs end to end through real Airflow (``dag.test()``, deferrable waits run inline)
against the DashScope simulator and an in-memory GCS emulator, and lands a real, playable MP4 in the bucket.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_run import RunResult, dag_bag, run_dag
from tests.dags.conftest import POLL_INTERVAL, REPO_DAGS, load_example

EXAMPLE_DAG_IDS = {
    "example_wan_text_to_video",
    "example_wan_image_to_video",
    "example_wan_keyframe_to_video",
    "example_wan_batch",
    "example_wan_multishot",
    "example_wan_sensor",
    "example_wan_reference_to_video",
    "example_wan_video_edit",
    "example_wan_v3",
    "example_wan_record_cleanup",
}


def test_example_dags_import_cleanly() -> None:
    bag = dag_bag(REPO_DAGS)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == EXAMPLE_DAG_IDS
    for dag_id in EXAMPLE_DAG_IDS:
        dag = bag.get_dag(dag_id)
        assert dag is not None
        assert "example" in dag.tags
        # the module docstring says what the DAG shows and what it needs
        assert "Needs:" in (dag.doc_md or ""), f"{dag_id} lacks its docstring"


def _succeeded(result: RunResult) -> None:
    failed = {task: state for task, (state, _) in result.tasks.items() if state != "success"}
    assert result.state == "success", f"run {result.state}; tasks not successful: {failed}"
    assert not failed


def _video(bucket: Any, transfer: dict[str, Any]) -> tuple[int, int, float, bool]:
    """Check the object the transfer reported; return the MP4's width, height, duration and whether it has audio."""
    import av

    assert transfer["uri"] == f"gs://{bucket.name}/{transfer['object']}"
    assert transfer["content_type"] == "video/mp4"
    blob = bucket.get_blob(transfer["object"])
    assert blob is not None, f"{transfer['uri']} is not in the bucket"
    data = blob.download_as_bytes()
    assert len(data) == transfer["size"] > 0
    assert base64.b64encode(hashlib.md5(data).digest()).decode() == transfer["md5_hash"]
    assert (blob.metadata or {}).get("wan_task_id") == transfer["wan_task_id"]
    with av.open(io.BytesIO(data)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video))
        assert frames > 0
        duration = float(container.duration or 0) / 1_000_000
        return video.codec_context.width, video.codec_context.height, duration, bool(container.streams.audio)


def _is_upload_of(value: str, path: Path) -> bool:
    """What the simulator records for a local file: the oss:// URL of its upload to the temporary storage."""
    return value.startswith("oss://dashscope-instant/") and value.endswith("/" + path.name)


def _sim_task(simulator: Any, task_id: str) -> dict[str, Any]:
    tasks = {task["task_id"]: task for task in simulator.tasks()}
    assert task_id in tasks, f"the simulator has no task {task_id}"
    return tasks[task_id]


def _trigger_kwargs(result: RunResult, wan_task_id: str) -> list[dict[str, Any]]:
    """Kwargs of the WanTaskTriggers deferred to for one DashScope task."""
    return [
        kwargs
        for classpath, kwargs in result.triggers
        if classpath.endswith("WanTaskTrigger") and kwargs.get("task_id") == wan_task_id
    ]


def test_text_to_video(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_text_to_video")
    result = run_dag(dag)
    _succeeded(result)

    generated = result.xcoms[("generate_video", "return_value")]
    assert generated["task_status"] == "SUCCEEDED"
    assert generated["model"] == "wan2.2-t2v-plus"
    assert generated["estimated_cost_usd"] == pytest.approx(0.10)
    assert "?" not in (generated["video_url"] or ""), "the signed URL's signature must not reach XCom"
    transfer = result.xcoms[("video_to_gcs", "return_value")]
    assert transfer["wan_task_id"] == generated["wan_task_id"]
    assert transfer["object"] == f"wan/example_wan_text_to_video/{generated['wan_task_id']}.mp4"
    assert _video(example_env["bucket"], transfer)[:2] == (832, 480)
    # the sidecar the example asks for
    sidecar = example_env["bucket"].get_blob(f"wan/example_wan_text_to_video/{generated['wan_task_id']}.json")
    assert sidecar is not None
    document = json.loads(sidecar.download_as_bytes())
    assert document["model"] == "wan2.2-t2v-plus"
    assert document["video"]["md5_hash"] == transfer["md5_hash"]
    # ...and the poster: the first frame as PNG, beside the video, at its size
    poster = example_env["bucket"].get_blob(f"wan/example_wan_text_to_video/{generated['wan_task_id']}.png")
    assert poster is not None
    assert transfer["poster_uri"] == f"gs://{poster.bucket.name}/{poster.name}"
    assert poster.content_type == "image/png"
    data = poster.download_as_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", data[16:24]) == (832, 480)

    sent = _sim_task(example_env["simulator"], generated["wan_task_id"])
    assert sent["parameters"]["size"] == "832*480"
    assert sent["parameters"]["seed"] == 42
    # the wait was deferred: `dag.test()` ran the trigger inline and left its row, with ids only, no key or URL
    (kwargs,) = _trigger_kwargs(result, generated["wan_task_id"])
    assert kwargs["wan_conn_id"] == "wan_default"
    assert kwargs["poll_interval"] == float(POLL_INTERVAL)
    assert example_env["simulator"].api_key not in json.dumps(kwargs, default=str)


def test_image_to_video(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_image_to_video")
    result = run_dag(dag)
    _succeeded(result)

    generated = result.xcoms[("generate_video", "return_value")]
    transfer = result.xcoms[("video_to_gcs", "return_value")]
    assert transfer["object"] == f"wan/{generated['wan_task_id']}.mp4"
    _, height, _, _ = _video(example_env["bucket"], transfer)
    assert height == 480
    # this example waits in the worker: no trigger
    assert _trigger_kwargs(result, generated["wan_task_id"]) == []
    # the shipped PNG was read from disk and sent inline
    sent = _sim_task(example_env["simulator"], generated["wan_task_id"])
    assert _is_upload_of(sent["input"]["img_url"], example_env["folder"] / "assets" / "first_frame.png")
    assert sent["parameters"]["resolution"] == "480P"


def test_keyframe_to_video_reads_a_local_and_a_gcs_image(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_keyframe_to_video")
    result = run_dag(dag)
    _succeeded(result)

    bucket = example_env["bucket"]
    assert result.xcoms[("upload_last_frame", "return_value")] == f"gs://{bucket.name}/wan/inputs/last_frame.png"
    generated = result.xcoms[("generate_video", "return_value")]
    assert generated["model"] == "wan2.2-kf2v-flash"
    _video(bucket, result.xcoms[("video_to_gcs", "return_value")])

    sent = _sim_task(example_env["simulator"], generated["wan_task_id"])
    assets = Path(example_env["folder"]) / "assets"
    # the two frames differ in size, so their lengths tell them apart
    assert _is_upload_of(sent["input"]["first_frame_url"], assets / "first_frame.png")
    assert _is_upload_of(sent["input"]["last_frame_url"], assets / "last_frame.png")
    assert sent["endpoint"].strip("/").endswith("image2video/video-synthesis")


def test_multishot_with_audio(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_multishot")
    result = run_dag(dag)
    _succeeded(result)

    generated = result.xcoms[("generate_video", "return_value")]
    assert generated["estimated_cost_usd"] == pytest.approx(1.00)
    sent = _sim_task(example_env["simulator"], generated["wan_task_id"])
    assert sent["model"] == "wan2.6-t2v"
    assert sent["parameters"]["shot_type"] == "multi"
    assert sent["parameters"]["prompt_extend"] is True
    assert sent["parameters"]["audio"] is True
    width, height, duration, has_audio = _video(example_env["bucket"], result.xcoms[("video_to_gcs", "return_value")])
    assert (width, height) == (1280, 720)
    assert duration == pytest.approx(10, abs=1)
    assert has_audio


def test_sensor_waits_for_a_task_submitted_without_waiting(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_sensor")
    result = run_dag(dag)
    _succeeded(result)

    submitted = result.xcoms[("submit", "return_value")]
    # the operator returned before the video existed
    assert submitted["task_status"] == "PENDING"
    assert result.xcoms[("submit", "wan_task_id")] == submitted["wan_task_id"]
    waited = result.xcoms[("wait_for_video", "return_value")]
    assert waited["wan_task_id"] == submitted["wan_task_id"]
    assert waited["task_status"] == "SUCCEEDED"
    transfer = result.xcoms[("video_to_gcs", "return_value")]
    assert transfer["wan_task_id"] == submitted["wan_task_id"]
    _video(example_env["bucket"], transfer)
    assert len(example_env["simulator"].tasks()) == 1, "waiting must never create a second task"


def test_batch_maps_over_the_prompts_variable(example_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.pool import Pool

    prompts = [
        "a kite over hills",
        "rain on a window",
        "a paper boat drifting down a stream through an autumn forest",
        "a lantern in the wind",
    ]
    monkeypatch.setenv("AIRFLOW_VAR_WAN_BATCH_PROMPTS", json.dumps(prompts))
    module, dag = load_example(example_env["folder"], "example_wan_batch")

    from airflow_provider_wan.models import get_model

    model = get_model(module.MODEL)
    assert model is not None
    # the pool is sized to DashScope's concurrency limit for the model, and the generations run in it
    assert model.max_concurrent_tasks == module.POOL_SLOTS
    assert dag.get_task("generate_video").partial_kwargs["pool"] == module.POOL
    Pool.create_or_update_pool(module.POOL, module.POOL_SLOTS, "DashScope concurrent tasks", include_deferred=True)

    result = run_dag(dag)
    _succeeded(result)
    generations = [key for key in result.tasks if key.startswith("generate_video[")]
    transfers = [key for key in result.tasks if key.startswith("video_to_gcs[")]
    assert len(generations) == len(transfers) == len(prompts)

    sent = {task["input"]["prompt"] for task in example_env["simulator"].tasks()}
    assert sent == set(prompts)
    objects = sorted(blob.name for blob in example_env["bucket"].list_blobs(prefix="wan/"))
    assert len(objects) == len(prompts)
    assert all(name.endswith(".mp4") for name in objects)

    # each mapped generation is named after its prompt in the UI (map_index_template), cut at 40 characters
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        named = {
            ti.map_index: ti.rendered_map_index
            for ti in session.query(TaskInstance).filter_by(
                dag_id=dag.dag_id, run_id=result.run_id, task_id="generate_video"
            )
        }
    assert named == {index: prompt[:40] for index, prompt in enumerate(prompts)}
    assert named[2] == "a paper boat drifting down a stream thro"


def test_batch_saves_the_other_videos_when_one_prompt_is_refused(
    example_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.pool import Pool

    moderation_word = example_env["simulator"].config()["moderation_word"]
    prompts = ["a kite over hills", f"a {moderation_word} scene", "a paper boat on a stream"]
    monkeypatch.setenv("AIRFLOW_VAR_WAN_BATCH_PROMPTS", json.dumps(prompts))
    module, dag = load_example(example_env["folder"], "example_wan_batch")
    Pool.create_or_update_pool(module.POOL, module.POOL_SLOTS, "DashScope concurrent tasks", include_deferred=True)

    result = run_dag(dag)

    states = {key: state for key, (state, _) in result.tasks.items()}
    # the run fails, so the refused prompt is noticed...
    assert result.state == "failed"
    assert states["every_prompt_generated"] == "upstream_failed"
    assert states["generate_video[1]"] == "failed"
    assert [states[f"generate_video[{i}]"] for i in (0, 2)] == ["success", "success"]
    transfers = sorted(key for key in states if key.startswith("video_to_gcs["))
    # ...but the two videos already paid for are saved
    assert [states[key] for key in transfers] == ["success", "success"]
    assert len(list(example_env["bucket"].list_blobs(prefix="wan/"))) == 2


def _first_frame_matches(data: bytes, image: Path) -> float:
    """Mean absolute difference (0-255) between the video's frame 0 and ``image`` scaled to the video's size."""
    import av

    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
    with av.open(str(image)) as picture:
        expected = next(picture.decode(video=0)).reformat(width=frame.width, height=frame.height, format="gray")
    got = bytes(frame.reformat(format="gray").planes[0])
    want = bytes(expected.planes[0])
    line_got, line_want = frame.reformat(format="gray").planes[0].line_size, expected.planes[0].line_size
    total = 0
    for row in range(frame.height):
        a = got[row * line_got : row * line_got + frame.width]
        b = want[row * line_want : row * line_want + frame.width]
        total += sum(abs(x - y) for x, y in zip(a, b, strict=True))
    return total / (frame.width * frame.height)


def test_reference_to_video_uploads_the_image_and_the_voice(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_reference_to_video")
    result = run_dag(dag)
    _succeeded(result)

    generated = result.xcoms[("generate_video", "return_value")]
    assert generated["model"] == "wan2.7-r2v"
    sent = _sim_task(example_env["simulator"], generated["wan_task_id"])
    assets = Path(example_env["folder"]) / "assets"
    [item] = sent["input"]["media"]
    assert item["type"] == "reference_image"
    assert _is_upload_of(item["url"], assets / "first_frame.png")
    assert _is_upload_of(item["reference_voice"], assets / "voice.wav")
    assert sent["parameters"] == {"resolution": "720P", "ratio": "16:9", "duration": 5}
    width, height, duration, has_audio = _video(example_env["bucket"], result.xcoms[("video_to_gcs", "return_value")])
    assert (width, height) == (1280, 720)
    assert duration == pytest.approx(5, abs=1)
    # the voice became the video's sound
    assert has_audio


def test_video_edit_and_continuation(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_video_edit")
    result = run_dag(dag)
    _succeeded(result)

    assets = Path(example_env["folder"]) / "assets"
    edited = _sim_task(example_env["simulator"], result.xcoms[("edit_video", "return_value")]["wan_task_id"])
    assert edited["model"] == "wan2.7-videoedit"
    [video] = edited["input"]["media"]
    assert video["type"] == "video"
    assert _is_upload_of(video["url"], assets / "clip.mp4")
    assert edited["parameters"]["audio_setting"] == "origin"
    continued = _sim_task(example_env["simulator"], result.xcoms[("continue_video", "return_value")]["wan_task_id"])
    assert continued["input"]["media"][0]["type"] == "first_clip"
    for transfer in ("edited_to_gcs", "continued_to_gcs"):
        _video(example_env["bucket"], result.xcoms[(transfer, "return_value")])


def test_wan3_first_and_last_frame(example_env: dict[str, Any]) -> None:
    _, dag = load_example(example_env["folder"], "example_wan_v3")
    result = run_dag(dag)
    _succeeded(result)

    generated = result.xcoms[("generate_video", "return_value")]
    assert generated["model"] == "wan3.0-video"
    assert generated["estimated_cost_usd"] == pytest.approx(0.294)
    sent = _sim_task(example_env["simulator"], generated["wan_task_id"])
    assert [m["type"] for m in sent["input"]["media"]] == ["first_frame", "last_frame"]
    assert sent["parameters"] == {"resolution": "720P", "duration": 5, "audio": False}
    transfer = result.xcoms[("video_to_gcs", "return_value")]
    width, height, duration, has_audio = _video(example_env["bucket"], transfer)
    assert (width, height, has_audio) == (1280, 720, False)
    assert duration == pytest.approx(5, abs=1)
    data = example_env["bucket"].get_blob(transfer["object"]).download_as_bytes()
    # the given first frame is the video's frame 0
    assert _first_frame_matches(data, Path(example_env["folder"]) / "assets" / "first_frame.png") < 12


def test_record_cleanup(example_dags_folder: Path) -> None:
    import time
    import uuid

    from airflow.models.variable import Variable

    from airflow_provider_wan.create_record import CreateRecord, variable_key

    # records as VariableRecords.put stores them on Airflow 2.11 (the test process writes through the ORM)
    dag_id, now = f"nightly_{uuid.uuid4().hex[:8]}", time.time()
    old, young = (variable_key(dag_id, "generate", run, -1) for run in ("scheduled__old", "scheduled__young"))
    for key, age_days in ((old, 31), (young, 29)):
        record = CreateRecord("b" * 64, "wan2.2-t2v-plus", now - age_days * 86400, f"task-{age_days}")
        Variable.set(key, record.to_json(), serialize_json=True)

    _, dag = load_example(example_dags_folder, "example_wan_record_cleanup")
    _succeeded(run_dag(dag))
    assert Variable.get(old, None) is None
    assert Variable.get(young, None, deserialize_json=True)["task_id"] == "task-29"
