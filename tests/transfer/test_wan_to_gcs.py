"""
WanVideoToGCSOperator against real servers on 127.0.0.1: the package's DashScope simulator and gcp-storage-emulator.

Nothing of the provider is mocked. Faults come from the simulator's fault injection; the one GCS misbehaviour (an
object stored with the wrong bytes) is produced by patching the emulator, a third-party test server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import textwrap
import time
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_wan.exceptions import (
    WanFinalError,
    WanInvalidInputError,
    WanResultExpiredError,
    WanRetryableError,
    WanTransferIntegrityError,
)
from airflow_provider_wan.hooks.schedule import parse_task_time
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.models import cost_from_usage
from airflow_provider_wan.redact import url_host
from airflow_provider_wan.transfers.wan_to_gcs import (
    DEFAULT_ASSET_ALIAS,
    METADATA_LIMIT_BYTES,
    WanVideoToGCSOperator,
    fit_metadata,
)
from tests.airflow_run import asset_events, run_dag, write_dag
from tests.transfer.conftest import BUCKET

T2V_ENDPOINT = "services/aigc/video-generation/video-synthesis"
MODEL = "wan2.5-t2v-preview"
KiB = 1024
MiB = 1024 * KiB


def _generate(prompt: str = "a red fox running through snow", **parameters: Any) -> str:
    """A SUCCEEDED simulator task (created and awaited through the provider's hook); returns its id."""
    hook = WanHook()
    body = {
        "model": MODEL,
        "input": {"prompt": prompt},
        "parameters": {"size": "832*480", "duration": 5, **parameters},
    }
    task = hook.create_task(T2V_ENDPOINT, body)
    return hook.wait_for_task(task.task_id, poll_interval=0.1, timeout=30).task_id


def _served_bytes(task_id: str) -> bytes:
    """The video exactly as the simulator serves it (a fresh link, one plain GET)."""
    task = WanHook().get_task(task_id)
    assert task.video_url
    response = requests.get(task.video_url, timeout=30)
    response.raise_for_status()
    return response.content


def _operator(task_id: str, **kwargs: Any) -> WanVideoToGCSOperator:
    kwargs.setdefault("bucket_name", BUCKET)
    kwargs.setdefault("model", MODEL)
    kwargs.setdefault("download_retry_delay", 0.05)
    return WanVideoToGCSOperator(task_id="to_gcs", wan_task_id=task_id, **kwargs)


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _names(bucket: Any) -> list[str]:
    return sorted(blob.name for blob in bucket.client.list_blobs(bucket.name))


# --- 1. end to end through real Airflow ----------------------------------------------------------------------------
def test_generate_then_transfer_through_airflow(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    dag = write_dag(
        f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.operators.wan import WanTextToVideoOperator
        from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

        with DAG("wan_transfer_e2e", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            generate = WanTextToVideoOperator(
                task_id="generate",
                model="{MODEL}",
                prompt="a lighthouse at dawn, waves crashing",
                size="832*480",
                duration=5,
                seed=42,
                wait_for_completion=True,
                poll_interval=0.1,
            )
            WanVideoToGCSOperator(
                task_id="to_gcs",
                # the generating operator's result: the task id, and the model the task record does not name
                wan_task_id=generate.output,
                bucket_name="{BUCKET}",
                object_name="wan/{{{{ dag.dag_id }}}}/{{wan_task_id}}.mp4",
                seed=42,
                write_sidecar=True,
            ) << generate
        """,
        "wan_transfer_e2e",
    )
    result = run_dag(dag)
    assert result.state == "success", result.tasks
    assert result.tasks["to_gcs"] == ("success", 1)
    wan_task_id = result.xcoms[("generate", "wan_task_id")]
    returned = result.xcoms[("to_gcs", "return_value")]
    name = f"wan/wan_transfer_e2e/{wan_task_id}.mp4"

    blob = bucket.get_blob(name)
    assert blob is not None
    generation = blob.generation
    served = _served_bytes(wan_task_id)
    assert len(served) > 10_000
    assert blob.content_type == "video/mp4"
    assert blob.size == len(served)
    assert blob.md5_hash == _md5_b64(served)
    assert blob.download_as_bytes() == served

    metadata = blob.metadata
    assert metadata["wan_task_id"] == wan_task_id
    assert metadata["wan_model"] == MODEL
    assert metadata["wan_seed"] == "42"
    assert metadata["wan_request_id"]
    assert metadata["wan_orig_prompt"] == "a lighthouse at dawn, waves crashing"
    assert metadata["wan_actual_prompt"].startswith("a lighthouse at dawn")
    assert json.loads(metadata["wan_usage"]) == {"video_count": 1, "video_duration": 5, "video_ratio": "832*480"}
    assert metadata["wan_estimated_cost_usd"] == "0.2500"  # 480P at $0.05/s x 5 s
    assert metadata["wan_source_bytes"] == str(len(served))
    assert all("Signature" not in value and "Expires=" not in value for value in metadata.values())

    assert returned == {
        "wan_task_id": wan_task_id,
        "model": MODEL,
        "uri": f"gs://{BUCKET}/{name}",
        "bucket": BUCKET,
        "object": name,
        "size": len(served),
        "md5_hash": _md5_b64(served),
        "md5_hex": hashlib.md5(served).hexdigest(),
        "crc32c": blob.crc32c,
        "generation": str(generation),
        "content_type": "video/mp4",
        "uploaded": True,
        "sidecar_uri": f"gs://{BUCKET}/wan/wan_transfer_e2e/{wan_task_id}.json",
        "poster_uri": None,
        "console_url": f"https://console.cloud.google.com/storage/browser/_details/{BUCKET}/{name}",
        "usage": {"video_count": 1, "video_duration": 5, "video_ratio": "832*480"},
        "estimated_cost_usd": 0.25,
        # the fixed head of object_name: every video of this destination is an event of one asset
        "asset_uri": f"gs://{BUCKET}/wan",
    }
    assert "Signature" not in json.dumps(list(result.xcoms.values()), default=str)

    sidecar = json.loads(bucket.blob(f"wan/wan_transfer_e2e/{wan_task_id}.json").download_as_bytes())
    assert sidecar["wan_task_id"] == wan_task_id
    assert sidecar["model"] == MODEL
    assert sidecar["video"]["generation"] == str(generation)
    assert sidecar["video"]["md5_hash"] == blob.md5_hash
    assert sidecar["estimated_cost_usd"] == 0.25

    # the asset event announcing the object, through the operator's asset alias: the asset is the prefix, the
    # video is in the extra
    extras, aliases = asset_events(f"gs://{BUCKET}/wan", result.run_id)
    assert len(extras) == 1
    assert extras[0]["wan_task_id"] == wan_task_id
    assert extras[0]["uri"] == f"gs://{BUCKET}/{name}"
    assert extras[0]["size"] == len(served)
    assert extras[0]["md5_hash"] == _md5_b64(served)
    assert extras[0]["model"] == MODEL
    assert extras[0]["uploaded"] is True
    assert DEFAULT_ASSET_ALIAS in aliases


# --- 2. dropped downloads ------------------------------------------------------------------------------------------
def test_dropped_download_resumes_with_range(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    served = _served_bytes(task_id)
    # two cuts: after 20,000 bytes of the first answer, then after 30,000 bytes of the first resumption
    wan_connection.inject_fault("truncate", route="download", after_bytes=20_000)
    wan_connection.inject_fault("truncate", route="download", after_bytes=30_000)
    before = wan_connection.stats()

    result = _operator(task_id, chunk_size=256 * KiB).execute({})

    blob = bucket.get_blob(f"wan/{task_id}.mp4")
    assert blob.download_as_bytes() == served
    assert result["md5_hash"] == _md5_b64(served)
    after = wan_connection.stats()
    assert after["requests"]["download"] - before["requests"]["download"] == 3
    # the resumptions were Range requests answered 206, and only the missing bytes were sent again
    assert after["responses"]["download"].get("206", 0) >= 1
    assert after["bytes_sent"] - before["bytes_sent"] == len(served)


def test_download_that_keeps_dropping_leaves_no_object(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    # a 3 MiB payload: several 256 KiB chunks reach GCS before the transfer gives up, so a session is open
    wan_connection.configure(payload_bytes=3 * MiB)
    task_id = _generate()
    wan_connection.inject_fault("truncate", route="download", after_bytes=1 * MiB, count=-1)

    with pytest.raises(WanTransferIntegrityError, match="could not be completed in 2 requests"):
        _operator(task_id, chunk_size=256 * KiB, max_download_attempts=2).execute({})

    assert _names(bucket) == []
    # chunks had been sent to GCS, and the session was then cancelled rather than finalized
    chunk_puts = [r for r in gcs_emulator.video_uploads() if r[0] == "PUT"]
    assert chunk_puts
    assert all("upload_id" in r[1] for r in chunk_puts)


def test_drop_then_expired_link_is_final_and_leaves_no_object(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    wan_connection.configure(payload_bytes=2 * MiB)
    task_id = _generate()
    wan_connection.inject_fault("truncate", route="download", after_bytes=1 * MiB)
    wan_connection.inject_fault("expired", route="download")

    with pytest.raises(WanResultExpiredError, match="24 hours") as caught:
        _operator(task_id, chunk_size=256 * KiB).execute({})

    assert isinstance(caught.value, AirflowFailException)
    assert _names(bucket) == []


def test_gcs_storing_other_bytes_is_caught_and_deleted(
    wan_connection: Any, gcs_emulator: Any, bucket: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcp_storage_emulator.handlers import objects

    finalize = objects._finalize_resumable_object

    def corrupting_finalize(response: Any, storage: Any, obj: Any, data: bytes, upload_id: Any) -> None:
        # a storage fault: the last byte flipped between receipt and storage
        finalize(response, storage, obj, data[:-1] + bytes([data[-1] ^ 0xFF]), upload_id)

    monkeypatch.setattr(objects, "_finalize_resumable_object", corrupting_finalize)
    task_id = _generate()

    with pytest.raises(WanTransferIntegrityError, match="did not verify") as caught:
        _operator(task_id).execute({})

    assert "md5" in str(caught.value)
    assert not isinstance(caught.value, AirflowFailException)  # retryable: the next try downloads again
    assert _names(bucket) == []


# --- 3. expired results fail at once, without Airflow retries ------------------------------------------------------
_SINGLE_TRANSFER_DAG = """
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    WanVideoToGCSOperator(
        task_id="to_gcs",
        wan_task_id="{task_id}",
        bucket_name="{bucket}",
        retries=3,
        retry_delay=timedelta(seconds=0),
    )
"""


def _run_single_transfer(dag_id: str, task_id: str) -> Any:
    dag = write_dag(textwrap.dedent(_SINGLE_TRANSFER_DAG).format(dag_id=dag_id, task_id=task_id, bucket=BUCKET), dag_id)
    return run_dag(dag)


def test_expired_link_fails_on_the_first_try(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    # the simulator's expired link: its task reads as ended more than a day ago
    wan_connection.inject_fault("expired", route="download", count=-1)
    assert time.time() - parse_task_time(WanHook().get_task(task_id).end_time) > 24 * 3600

    with pytest.raises(WanResultExpiredError) as caught:
        _operator(task_id).execute({})
    message = str(caught.value)
    assert "24 hours" in message
    assert "generated again" in message
    assert "Signature" not in message
    assert "403" in message

    result = _run_single_transfer("wan_transfer_expired_link", task_id)
    assert result.tasks["to_gcs"] == ("failed", 1)
    assert _names(bucket) == []


def test_link_refused_minutes_after_the_end_is_retried_not_expired(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    # a proxy, a firewall or a signature problem answers 403 for a video DashScope still keeps (it ended just now)
    task_id = _generate()
    created = wan_connection.stats()["tasks_created"]
    refusal = {"status": 403, "code": "AccessDenied", "message": "You have no right to access this object."}
    wan_connection.inject_fault("error", route="download", **refusal)

    with pytest.raises(WanRetryableError) as caught:
        _operator(task_id).execute({})
    error = caught.value
    assert not isinstance(error, (WanResultExpiredError, AirflowFailException))
    message = str(error)
    assert "HTTP 403 AccessDenied" in message
    assert f"refused by {url_host(wan_connection.base_url)} (HTTP 403" in message  # the link's host, no more
    assert re.search(r"the task ended (less than a minute|\d+ minutes?) ago", message)
    assert "not an expiry" in message
    assert "must NOT be generated again" in message
    assert "proxy or firewall" in message
    assert "clock" in message
    for signed in ("Signature", "OSSAccessKeyId", "Expires="):
        assert signed not in message
    assert _names(bucket) == []

    # through Airflow: the refusal is retried, the next try reads a fresh link from DashScope and stores the video
    wan_connection.inject_fault("error", route="download", **refusal)
    reads = wan_connection.stats()["requests"]["get_task"]
    result = _run_single_transfer("wan_transfer_refused_link", task_id)
    assert result.tasks["to_gcs"] == ("success", 2)
    assert wan_connection.stats()["requests"]["get_task"] - reads >= 2
    assert wan_connection.stats()["tasks_created"] == created  # the video was not generated again
    assert _names(bucket) == [f"wan/{task_id}.mp4"]


def test_expired_task_fails_on_the_first_try(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    # the task's record is gone: DashScope answers 200 with task_status UNKNOWN
    wan_connection.inject_fault("task_unknown")
    task = WanHook().create_task(T2V_ENDPOINT, {"model": MODEL, "input": {"prompt": "x"}, "parameters": {}})
    with pytest.raises(WanResultExpiredError, match="24 hours"):
        WanHook().wait_for_task(task.task_id, poll_interval=0.1, timeout=30)
    downloads_before = wan_connection.stats()["requests"].get("download", 0)

    with pytest.raises(WanResultExpiredError, match="24 hours"):
        _operator(task.task_id).execute({})

    result = _run_single_transfer("wan_transfer_expired_task", task.task_id)
    assert result.tasks["to_gcs"] == ("failed", 1)
    assert wan_connection.stats()["requests"].get("download", 0) == downloads_before
    assert _names(bucket) == []


# --- 4. idempotency ------------------------------------------------------------------------------------------------
def test_second_run_uploads_nothing(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    first = _operator(task_id, write_sidecar=True).execute({})
    assert first["uploaded"] is True
    uploads = len(gcs_emulator.uploads())
    assert uploads >= 2  # the video (resumable) and its sidecar
    # new objects are uploaded with ifGenerationMatch=0: real GCS refuses them if someone else got there first
    assert all("ifGenerationMatch=0" in r[1] for r in gcs_emulator.uploads())
    stats = wan_connection.stats()["requests"]

    second = _operator(task_id, write_sidecar=True).execute({})

    assert second == {**first, "uploaded": False}
    assert len(gcs_emulator.uploads()) == uploads
    # DashScope is not even asked: the rerun works after the 24-hour record is gone
    assert wan_connection.stats()["requests"] == stats
    wan_connection.reset()
    third = _operator(task_id).execute({})
    assert third["generation"] == first["generation"]
    assert len(gcs_emulator.uploads()) == uploads


def test_object_of_another_task_is_not_overwritten(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    first_task, second_task = _generate("first video"), _generate("second video")
    placed = _operator(first_task, object_name="wan/latest.mp4").execute({})
    downloads = wan_connection.stats()["requests"]["download"]

    with pytest.raises(WanFinalError, match="overwrite=True") as caught:
        _operator(second_task, object_name="wan/latest.mp4").execute({})
    assert isinstance(caught.value, AirflowFailException)
    assert first_task in str(caught.value)
    assert wan_connection.stats()["requests"]["download"] == downloads  # refused before downloading anything
    assert str(bucket.get_blob("wan/latest.mp4").generation) == placed["generation"]

    replaced = _operator(second_task, object_name="wan/latest.mp4", overwrite=True).execute({})
    blob = bucket.get_blob("wan/latest.mp4")
    assert blob.metadata["wan_task_id"] == second_task
    assert blob.download_as_bytes() == _served_bytes(second_task)
    assert replaced["generation"] != placed["generation"]
    # the replacement was conditional on the generation it replaced
    initiations = [r for r in gcs_emulator.video_uploads() if r[0] == "POST"]
    assert f"ifGenerationMatch={placed['generation']}" in initiations[-1][1]


def test_a_foreign_object_is_not_overwritten(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_id = _generate()
    bucket.blob(f"wan/{task_id}.mp4").upload_from_string(b"someone else's bytes")
    with pytest.raises(WanFinalError, match="not written by this operator"):
        _operator(task_id).execute({})
    assert bucket.get_blob(f"wan/{task_id}.mp4").download_as_bytes() == b"someone else's bytes"


# --- metadata ------------------------------------------------------------------------------------------------------
def test_long_prompts_are_cut_to_gcs_metadata_limit(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    prompt = "夜晚的城市街道,霓虹灯在雨中闪烁," * 100  # 1,700 characters, 5,100 UTF-8 bytes
    prompt = prompt[:1500]
    task_id = _generate(prompt)

    _operator(task_id, write_sidecar=True, extra_metadata={"team": "promo"}).execute({})

    metadata = bucket.get_blob(f"wan/{task_id}.mp4").metadata
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    assert size <= METADATA_LIMIT_BYTES
    assert metadata["wan_prompts_truncated"] == "true"
    assert metadata["team"] == "promo"
    assert prompt.startswith(metadata["wan_orig_prompt"])
    assert len(metadata["wan_orig_prompt"]) > 500
    sidecar = json.loads(bucket.blob(f"wan/{task_id}.json").download_as_bytes())
    assert sidecar["orig_prompt"] == prompt  # whole in the sidecar
    assert sidecar["prompts_truncated"] is False
    assert sidecar["extra_metadata"] == {"team": "promo"}


def test_a_signed_link_in_extra_metadata_is_stored_without_its_query(
    wan_connection: Any, gcs_emulator: Any, bucket: Any
) -> None:
    # object metadata is read by whoever reads the bucket: a presigned link rendered into it is kept where it
    # pointed, not as a way in (the masking rule of every templated field)
    task_id = _generate()
    signed = "https://media.example.com/in/a.png?X-Amz-Credential=AK&X-Amz-Signature=3e7ada7a5ecre7"
    operator = _operator(task_id, write_sidecar=True, extra_metadata={"source": "{{ params.source }}"})
    operator.render_template_fields({"params": {"source": signed}})
    operator.execute({})

    assert bucket.get_blob(f"wan/{task_id}.mp4").metadata["source"] == "https://media.example.com/in/a.png?***"
    sidecar = json.loads(bucket.blob(f"wan/{task_id}.json").download_as_bytes())
    assert sidecar["extra_metadata"] == {"source": "https://media.example.com/in/a.png?***"}


def test_fit_metadata_shares_the_budget() -> None:
    fields = {"wan_task_id": "t" * 36, "wan_model": "wan2.6-t2v", "wan_seed": None}
    short = fit_metadata(fields, {"wan_orig_prompt": "short", "wan_actual_prompt": "x" * 20_000})
    assert "wan_seed" not in short
    assert short["wan_orig_prompt"] == "short"  # a short text keeps its share whole; the rest goes to the long one
    assert sum(len(k.encode()) + len(v.encode()) for k, v in short.items()) <= METADATA_LIMIT_BYTES
    assert len(short["wan_actual_prompt"]) > 7_000
    untouched = fit_metadata(fields, {"wan_orig_prompt": "a", "wan_actual_prompt": "b"})
    assert "wan_prompts_truncated" not in untouched
    with pytest.raises(WanInvalidInputError, match="extra_metadata"):
        fit_metadata({"big": "x" * 9000}, {})


def test_cost_from_usage_reads_every_usage_shape() -> None:
    assert cost_from_usage("wan2.5-t2v-preview", {"video_duration": 5, "video_ratio": "832*480"}) == 0.25
    assert cost_from_usage("wan2.6-t2v", {"duration": 10, "size": "1920*1080", "SR": 1080}) == 1.5
    assert cost_from_usage("wan2.6-i2v", {"output_video_duration": 5, "SR": 720}) == 0.5
    assert cost_from_usage("no-such-model", {"video_duration": 5}) is None
    assert cost_from_usage(None, {}) is None


# --- parameters ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [0, 1000, 256 * KiB + 1, -256 * KiB])
def test_chunk_size_must_be_a_multiple_of_256_kib(chunk_size: int) -> None:
    with pytest.raises(WanInvalidInputError, match="256 KiB"):
        WanVideoToGCSOperator(task_id="t", wan_task_id="x", bucket_name="b", chunk_size=chunk_size)


def test_names_and_outlets() -> None:
    from airflow.providers.common.compat.sdk import Asset, AssetAlias

    op = WanVideoToGCSOperator(task_id="t", wan_task_id="x", bucket_name="b", outlets=[Asset("gs://b/fixed.mp4")])
    assert op.outlets == [Asset("gs://b/fixed.mp4"), AssetAlias(DEFAULT_ASSET_ALIAS)]
    assert WanVideoToGCSOperator(task_id="t", wan_task_id="x", bucket_name="b", asset_alias=None).outlets == []
    assert WanVideoToGCSOperator.sidecar_name("wan/abc.mp4") == "wan/abc.json"
    assert WanVideoToGCSOperator.sidecar_name("abc") == "abc.json"
    assert op._object_name("abc-123") == "wan/abc-123.mp4"
    for bad in ("", "None", "a/b"):
        op.wan_task_id = bad
        with pytest.raises(WanInvalidInputError, match="wan_task_id"):
            op._task_id()


def test_signed_link_never_reaches_the_log(
    wan_connection: Any, gcs_emulator: Any, bucket: Any, capfd: pytest.CaptureFixture[str], caplog: Any
) -> None:
    task_id = _generate()
    wan_connection.inject_fault("truncate", route="download", after_bytes=10_000)
    _operator(task_id, progress_interval=0.0).execute({})
    wan_connection.inject_fault("expired", route="download")
    bucket.delete_blob(f"wan/{task_id}.mp4")
    with pytest.raises(WanResultExpiredError):
        _operator(task_id).execute({})
    out, err = capfd.readouterr()
    text = out + err + caplog.text
    assert "resuming with a Range request" in text  # the log was captured
    assert "Signature=" not in text
    assert "OSSAccessKeyId" not in text


def test_mapped_transfers_announce_each_object(wan_connection: Any, gcs_emulator: Any, bucket: Any) -> None:
    task_ids = [_generate("first"), _generate("second")]
    dag = write_dag(
        f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

        with DAG("wan_transfer_mapped", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            WanVideoToGCSOperator.partial(task_id="to_gcs", bucket_name="{BUCKET}").expand(wan_task_id={task_ids!r})
        """,
        "wan_transfer_mapped",
    )
    result = run_dag(dag)
    assert result.state == "success", result.tasks
    assert _names(bucket) == sorted(f"wan/{t}.mp4" for t in task_ids)

    # one asset for the destination, one event per video
    extras, _ = asset_events(f"gs://{BUCKET}/wan", result.run_id)
    assert sorted(extra["wan_task_id"] for extra in extras) == sorted(task_ids)
    assert sorted(extra["uri"] for extra in extras) == sorted(f"gs://{BUCKET}/wan/{t}.mp4" for t in task_ids)


# --- memory: bounded by the chunk size, not by the video --------------------------------------------------------
def test_memory_stays_bounded_by_the_chunk_size() -> None:
    """A 64 MiB video with 2 MiB chunks, in a fresh process (benchmarks/transfer.py): RSS grows far less than 64 MiB."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "transfer.py"
    done = subprocess.run(
        [sys.executable, str(script), "--size-mib", "64", "--chunk-mib", "2", "--approaches", "streaming,http_to_gcs"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # the printed table: | approach | peak RSS growth (MiB) | goal | ...
    rows = {}
    for line in done.stdout.splitlines():
        if line.startswith("| WanVideoToGCSOperator"):
            rows["streaming"] = float(line.split("|")[2])
        elif line.startswith("| HttpToGCSOperator"):
            rows["http_to_gcs"] = float(line.split("|")[2])
    # a whole-body copy needs the 64 MiB (and more); the stream about twice its 2 MiB chunk plus reads
    assert rows["http_to_gcs"] > 64
    assert rows["streaming"] < 24, done.stdout


def test_importing_the_operator_stays_cheap() -> None:
    """DAG files import the operator at every parse: no GCS client, HTTP stack or checksum library yet."""
    import subprocess
    import sys

    # on top of what Airflow's BaseOperator loads anyway (Airflow 2.11 imports requests itself)
    code = (
        "import sys; from airflow.providers.common.compat.sdk import BaseOperator; "
        "heavy = ('google.cloud.storage', 'google_crc32c', 'requests', 'aiohttp'); "
        "before = {m for m in heavy if m in sys.modules}; "
        "import airflow_provider_wan.transfers.wan_to_gcs; "
        "print(sorted(m for m in heavy if m in sys.modules and m not in before))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
