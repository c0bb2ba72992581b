"""
The transfer keeps an object only when it can prove the download whole (issue 10), through real HTTP: the
simulator's download fault shapes (no length, a 206 cut short, a body that changes between requests, a drip) against
WanVideoToGCSOperator and the GCS emulator. For each shape: what can be proven lands whole; what cannot leaves no
object and reports no success. Parameters are checked before anything is downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import textwrap
import time
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError, WanTransferIntegrityError
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator
from tests.airflow_run import run_dag, write_dag
from tests.transfer.conftest import BUCKET

T2V_ENDPOINT = "services/aigc/video-generation/video-synthesis"
MODEL = "wan2.5-t2v-preview"


def _generate() -> str:
    hook = WanHook()
    body = {"model": MODEL, "input": {"prompt": "a paper boat on a stream"}, "parameters": {"size": "832*480"}}
    return hook.wait_for_task(hook.create_task(T2V_ENDPOINT, body).task_id, poll_interval=0.1, timeout=30).task_id


def _served(task_id: str) -> bytes:
    link = WanHook().get_task(task_id).video_url
    assert link
    response = requests.get(link, timeout=30)
    response.raise_for_status()
    return response.content


def _operator(task_id: str, **kwargs: Any) -> WanVideoToGCSOperator:
    kwargs.setdefault("bucket_name", BUCKET)
    kwargs.setdefault("download_retry_delay", 0.01)
    return WanVideoToGCSOperator(task_id="to_gcs", wan_task_id=task_id, model=MODEL, **kwargs)


def _names(bucket: Any) -> list[str]:
    return sorted(blob.name for blob in bucket.client.list_blobs(bucket.name))


def _downloads(sim: Any) -> int:
    return int(sim.stats()["requests"].get("download", 0))


def _lands_whole(sim: Any, bucket: Any, task_id: str, served: bytes) -> dict[str, Any]:
    result = _operator(task_id).execute({})
    blob = bucket.get_blob(f"wan/{task_id}.mp4")
    assert blob.download_as_bytes() == served
    assert result["uploaded"] is True
    assert result["md5_hash"] == base64.b64encode(hashlib.md5(served).digest()).decode()
    return result


def _leaves_nothing(bucket: Any, task_id: str, words: str, **kwargs: Any) -> WanTransferIntegrityError:
    with pytest.raises(WanTransferIntegrityError, match=words) as caught:
        _operator(task_id, **kwargs).execute({})
    assert _names(bucket) == []
    assert "Signature" not in str(caught.value)
    return caught.value


# --- no Content-Length -------------------------------------------------------------------------------------------
def test_no_length_cut_by_a_clean_close_is_completed_not_stored_short(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    task_id = _generate()
    served = _served(task_id)
    wan_connection.inject_fault("no_length", after_bytes=20_000)
    before = _downloads(wan_connection)

    _lands_whole(wan_connection, bucket, task_id, served)
    # the clean end proved nothing: a Range request past byte 20,000 found the rest (and the length)
    assert _downloads(wan_connection) - before == 2


def test_a_server_that_never_announces_the_length_leaves_nothing(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    task_id = _generate()
    wan_connection.inject_fault("no_length", after_bytes=20_000, count=-1)
    _leaves_nothing(bucket, task_id, "answered 416|could not be completed")
    # even a whole body is not kept when nothing (Content-Length, Content-Range, 416) says it is whole
    wan_connection.clear_faults()
    wan_connection.inject_fault("no_length", count=-1)
    error = _leaves_nothing(bucket, task_id, "416")
    assert "Nothing was kept" in str(error)


# --- a resumed 206 cut short -------------------------------------------------------------------------------------
def test_resumed_206_cut_short_without_length_is_completed(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    served = _served(task_id)
    # the first answer has no length and is reset half-way; the resumption is a 206 without total, ended cleanly
    wan_connection.inject_fault("no_length")
    wan_connection.inject_fault("reset", route="download")
    wan_connection.inject_fault("short_range", after_bytes=10_000)
    before = _downloads(wan_connection)

    _lands_whole(wan_connection, bucket, task_id, served)
    assert _downloads(wan_connection) - before >= 3


def test_206_answers_that_never_announce_the_total_leave_nothing(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    task_id = _generate()
    wan_connection.inject_fault("no_length", count=-1)
    wan_connection.inject_fault("reset", route="download")
    wan_connection.inject_fault("short_range", after_bytes=10_000, count=-1)
    _leaves_nothing(bucket, task_id, "could not be completed in 4 requests", max_download_attempts=4)


# --- a body that changes between requests --------------------------------------------------------------------------
def test_a_changed_body_is_never_stitched_the_copy_restarts(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    task_id = _generate()
    served = _served(task_id)
    # cut the first answer; the resumption (a 206) comes from a changed file (other ETag), If-Range ignored
    wan_connection.inject_fault("truncate", after_bytes=20_000)
    wan_connection.inject_fault("changing_body")
    before = _downloads(wan_connection)

    _lands_whole(wan_connection, bucket, task_id, served)
    # the stale 206 was dropped; the copy started again from byte 0 on the third request
    assert _downloads(wan_connection) - before == 3


def test_a_body_that_keeps_changing_leaves_nothing(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    wan_connection.inject_fault("truncate", after_bytes=20_000, count=-1)
    wan_connection.inject_fault("changing_body", count=-1)
    # cut, changed (restart from byte 0), cut, changed again: out of requests, nothing stitched, nothing kept
    error = _leaves_nothing(bucket, task_id, "changed between two requests", max_download_attempts=4)
    assert "gave up after 4 requests" in str(error)
    assert wan_connection.stats()["faults_fired"]["changing_body"] == 2


# --- slow drip ---------------------------------------------------------------------------------------------------
def test_a_dripping_download_stops_at_its_deadline(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    wan_connection.inject_fault("drip", delay=0.2, after_bytes=512, count=-1)
    started = time.monotonic()
    _leaves_nothing(bucket, task_id, "did not finish within 1.5 s", download_timeout=1.5)
    assert time.monotonic() - started < 5


# --- reruns ------------------------------------------------------------------------------------------------------
def test_a_truncated_object_of_an_older_version_is_replaced(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    task_id = _generate()
    served = _served(task_id)
    # what an earlier version left after a clean close without Content-Length: the task's name, 20,000 bytes
    old = bucket.blob(f"wan/{task_id}.mp4")
    old.metadata = {"wan_task_id": task_id}
    old.upload_from_string(served[:20_000], content_type="video/mp4")
    before = _downloads(wan_connection)

    result = _lands_whole(wan_connection, bucket, task_id, served)
    assert _downloads(wan_connection) - before == 1
    assert bucket.get_blob(f"wan/{task_id}.mp4").metadata["wan_source_md5"] == result["md5_hash"]

    # and now the rerun trusts it: nothing downloaded, nothing uploaded
    uploads = len(gcs_emulator.uploads())
    again = _operator(task_id).execute({})
    assert again["uploaded"] is False
    assert _downloads(wan_connection) - before == 1
    assert len(gcs_emulator.uploads()) == uploads


def test_an_object_whose_bytes_differ_from_the_recorded_md5_is_replaced(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    task_id = _generate()
    served = _served(task_id)
    _operator(task_id).execute({})
    blob = bucket.get_blob(f"wan/{task_id}.mp4")
    # same name, same metadata (size and md5 recorded), other bytes of the same length
    forged = bucket.blob(blob.name)
    forged.metadata = blob.metadata
    forged.upload_from_string(served[:-1] + b"\x00", content_type="video/mp4")

    assert _operator(task_id).execute({})["uploaded"] is True
    assert bucket.get_blob(blob.name).download_as_bytes() == served


# --- parameters before any download --------------------------------------------------------------------------------
_MISSING_BUCKET_DAG = """
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    WanVideoToGCSOperator(
        task_id="to_gcs",
        wan_task_id="{task_id}",
        bucket_name="no-such-bucket",
        retries=2,
        retry_delay=timedelta(seconds=0),
    )
"""


def test_a_missing_bucket_is_a_final_error_naming_it(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    before = wan_connection.stats()["requests"]

    with pytest.raises(WanFinalError, match="'no-such-bucket' does not exist") as caught:
        _operator(task_id, bucket_name="no-such-bucket").execute({})
    assert isinstance(caught.value, AirflowFailException)

    dag_id = "wan_transfer_missing_bucket"
    dag = write_dag(textwrap.dedent(_MISSING_BUCKET_DAG).format(dag_id=dag_id, task_id=task_id), dag_id)
    result = run_dag(dag)
    assert result.tasks["to_gcs"] == ("failed", 1)  # one try, not three
    after = wan_connection.stats()["requests"]
    # DashScope was not asked anything: no task read, no download
    assert after.get("get_task", 0) == before.get("get_task", 0)
    assert after.get("download", 0) == before.get("download", 0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"extra_metadata": {"notes": "x" * 9000}}, "extra_metadata"),
        ({"object_name": "a\nb.mp4"}, "object_name"),
        ({"object_name": "v/" + "é" * 600}, "object_name"),
        # a name ending with '/' names a folder: an empty file name, the console's folder marker
        ({"object_name": "videos/"}, "object_name: 'videos/' ends with '/'"),
        ({"object_name": "wan/{wan_task_id}/"}, "object_name: 'wan/3f1c0a4e-.*/' ends with '/'"),
    ],
)
def test_parameters_are_checked_before_dashscope_is_asked(
    wan_connection: Any, gcs_emulator: Any, bucket: Any, kwargs: dict[str, Any], words: str
) -> None:
    before = wan_connection.stats()["requests"]
    with pytest.raises(WanInvalidInputError, match=words):
        _operator("3f1c0a4e-0000-4000-8000-000000000000", **kwargs).execute({})
    assert wan_connection.stats()["requests"] == before


@pytest.mark.parametrize("task_id", ["abc#1", "abc 1", "..", "-x", "a\tb", "a" * 200])
def test_a_task_id_dashscope_cannot_have_is_refused_by_name_before_anything_is_asked(
    wan_connection: Any, gcs_emulator: Any, bucket: Any, task_id: str
) -> None:
    # '#' would be cut from the task read's URL (another task's video under this name), '..' or a space would reach
    # the object name: the hook refuses them too, but only after the store was looked at, naming no parameter
    before = wan_connection.stats()["requests"]
    with pytest.raises(WanInvalidInputError) as caught:
        _operator(task_id).execute({})
    assert str(caught.value).startswith("wan_task_id: ")
    assert wan_connection.stats()["requests"] == before
    assert gcs_emulator.requests == []
