"""The result contract and the lineage names: which asset a destination is, how OpenLineage names what was stored."""

from __future__ import annotations

from typing import Any, get_type_hints

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.hooks.wan import TaskStatus, WanTask
from airflow_provider_wan.lineage import dashscope_namespace, storage_dataset
from airflow_provider_wan.results import WanResult, WanStoredVideo, WanTaskResult, task_id_of
from airflow_provider_wan.transfers.sinks import Destination, sink_for
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator
from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

SIGNED = "https://bucket.oss.example.com/v.mp4?Expires=1&OSSAccessKeyId=k&Signature=s"


def test_a_task_result_is_the_contract_and_holds_no_signature() -> None:
    task = WanTask(task_id="t-1", status=TaskStatus.SUCCEEDED, video_url=SIGNED, usage={"video_duration": 5})
    result = task.to_result()
    assert set(result) == set(get_type_hints(WanTaskResult))
    assert result["wan_task_id"] == "t-1"
    assert result["video_url"] == "https://bucket.oss.example.com/v.mp4"
    assert set(get_type_hints(WanResult)) - set(get_type_hints(WanTaskResult)) == {
        "model",
        "region",
        "estimated_cost_usd",
    }
    assert "wan_task_id" in get_type_hints(WanStoredVideo)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("t-1", "t-1"),
        ({"wan_task_id": "t-1", "model": "wan2.6-t2v"}, "t-1"),
        ({"task_id": "t-old"}, "t-old"),  # a result written before the contract
        ({"model": "wan2.6-t2v"}, None),
        (None, None),
        (42, None),
    ],
)
def test_the_task_id_of_a_result_or_a_string(value: Any, expected: str | None) -> None:
    assert task_id_of(value) == expected


def test_a_result_from_before_the_contract_is_read_back() -> None:
    task = WanTask.from_result({"task_id": "t-old", "task_status": "SUCCEEDED", "usage": {"video_duration": 5}})
    assert (task.task_id, task.status) == ("t-old", TaskStatus.SUCCEEDED)
    assert WanTask.from_result(task.to_result()) == task


def test_the_transfer_takes_the_model_from_the_upstream_result() -> None:
    upstream = {"wan_task_id": "t-1", "model": "wan2.6-t2v", "orig_prompt": "a fox"}
    op = WanVideoToStorageOperator(task_id="s", wan_task_id=upstream, destination="s3://b/wan/")
    assert (op._task_id(), op._model()) == ("t-1", "wan2.6-t2v")
    assert (
        WanVideoToStorageOperator(task_id="s", wan_task_id=upstream, destination="s3://b/", model="m")._model() == "m"
    )
    op.wan_task_id = {"model": "wan2.6-t2v"}
    with pytest.raises(WanInvalidInputError, match="wan_task_id: a dict without 'wan_task_id'"):
        op._task_id()


@pytest.mark.parametrize(
    ("destination", "key", "asset"),
    [
        ("s3://b/videos/{{ dag_run.run_after | ds }}/{wan_task_id}.mp4", "videos/2026-01-01/t-1.mp4", "s3://b/videos"),
        ("s3://aws_conn@b/videos/{wan_task_id}.mp4", "videos/t-1.mp4", "s3://b/videos"),
        ("s3://b/teasers/", "teasers/t-1.mp4", "s3://b/teasers"),
        ("s3://b/{wan_task_id}.mp4", "t-1.mp4", "s3://b"),
        ("s3://b/fixed/name.mp4", "fixed/name.mp4", "s3://b/fixed"),
        ("gs://b/a/{{ ds }}/b/{wan_task_id}.mp4", "a/2026-01-01/b/t-1.mp4", "gs://b/a"),
        ("file:///data/videos/{wan_task_id}.mp4", "data/videos/t-1.mp4", "file:///data/videos"),
        ("abfs://c/clips/{wan_task_id}.mp4", "clips/t-1.mp4", "abfs://c/clips"),
        # nothing fixed after the bucket: the bucket is the asset
        ("s3://b/{{ var.value.folder }}/x.mp4", "daily/x.mp4", "s3://b"),
        # a templated bucket: the key's fixed head still names the prefix
        ("s3://{{ var.value.bucket }}/videos/{wan_task_id}.mp4", "videos/t-1.mp4", "s3://x var.value.bucket x/videos"),
    ],
)
def test_one_asset_per_destination_prefix(destination: str, key: str, asset: str) -> None:
    op = WanVideoToStorageOperator(task_id="s", wan_task_id="t-1", destination=destination)
    sink = sink_for(Destination.parse(destination.replace("{{", "x").replace("}}", "x").replace("{wan_task_id}", "t")))
    assert op.asset_uri(sink, key) == asset


def test_the_gcs_operator_names_its_asset_from_object_name() -> None:
    op = WanVideoToGCSOperator(task_id="g", wan_task_id="t-1", bucket_name="b")
    sink, key = op.destination("t-1")
    assert (key, op.asset_uri(sink, key)) == ("wan/t-1.mp4", "gs://b/wan")


@pytest.mark.parametrize(
    ("uri", "account", "expected"),
    [
        ("s3://bucket/videos/t.mp4", None, ("s3://bucket", "videos/t.mp4")),
        ("gs://bucket/wan/t.mp4", None, ("gs://bucket", "wan/t.mp4")),
        ("file:///data/videos/t.mp4", None, ("file", "/data/videos/t.mp4")),
        ("abfs://clips/wan/t.mp4", "acct", ("wasbs://clips@acct.blob.core.windows.net", "wan/t.mp4")),
    ],
)
def test_openlineage_names_of_stored_objects(uri: str, account: str | None, expected: tuple[str, str]) -> None:
    assert storage_dataset(uri, account) == expected


def test_the_dashscope_namespace_is_the_api_host() -> None:
    assert (
        dashscope_namespace("https://dashscope-intl.aliyuncs.com/api/v1") == "dashscope://dashscope-intl.aliyuncs.com"
    )
    assert dashscope_namespace("http://127.0.0.1:8089/api/v1") == "dashscope://127.0.0.1:8089"
    assert dashscope_namespace(None) == "dashscope"
