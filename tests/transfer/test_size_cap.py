"""
``max_video_bytes`` through real HTTP: a link (``LinkServer``) serving a body that keeps looking like an MP4, either
announcing a terabyte (``Content-Length``, a ``Content-Range`` total or end) or announcing nothing and never ending.
Into a folder, the GCS emulator and moto: an announced length (or range end) over the cap is refused before any
byte is stored (no upload is even opened), a body without one is cut at the cap and its upload aborted (GCS session
cancelled, S3 multipart upload aborted). Either is a final error in our words, naming the cap and how to raise it,
never the link.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError, WanTransferIntegrityError
from airflow_provider_wan.transfers.base import DEFAULT_MAX_VIDEO_BYTES
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator
from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator
from tests.airflow_run import run_dag, write_dag
from tests.transfer.conftest import BUCKET
from tests.transfer.test_hostile_links import SIGNATURE, LinkServer, _answer_with_link, _generate, links

__all__ = ["links"]  # the LinkServer fixture, shared with test_hostile_links

MODEL = "wan2.5-t2v-preview"
MiB = 1024 * 1024
#: over S3's 5 MiB part: a body without a length sends two parts before the cap stops it
CAP = 12 * MiB
SINKS = ["folder", "gcs", "s3"]


class Store:
    """One destination of the test: its URI, and what it holds (objects, unfinished uploads)."""

    def __init__(self, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.kind = kind
        self.folder = tmp_path / "out"
        if kind == "gcs":
            self.gcs = request.getfixturevalue("gcs_emulator")
            self.bucket = request.getfixturevalue("bucket")
        elif kind == "s3":
            self.s3 = request.getfixturevalue("moto_s3").client
        self.destination = {
            "folder": f"file://{self.folder}/{{wan_task_id}}.mp4",
            "gcs": f"gs://{BUCKET}/wan/{{wan_task_id}}.mp4",
            "s3": f"s3://{BUCKET}/wan/{{wan_task_id}}.mp4",
        }[kind]

    def held(self) -> list[str]:
        """Everything the store keeps: files, objects, unfinished multipart uploads."""
        if self.kind == "folder":
            return sorted(p.name for p in self.folder.iterdir()) if self.folder.exists() else []
        if self.kind == "gcs":
            return [blob.name for blob in self.bucket.list_blobs()]
        objects = [o["Key"] for o in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        uploads = [f"multipart:{u['Key']}" for u in self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]
        return objects + uploads

    def upload_opened(self) -> bool | None:
        """Whether an upload of the video was opened (None: this store does not tell)."""
        if self.kind == "folder":
            return self.folder.exists()  # created with the partial file, on the first byte
        if self.kind == "gcs":
            return bool(self.gcs.uploads())
        return None


@pytest.fixture(params=SINKS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return Store(request.param, request, tmp_path)


def _fails_at_the_cap(store: Store, task_id: str, words: str) -> WanFinalError:
    operator = WanVideoToStorageOperator(
        task_id="store",
        wan_task_id=task_id,
        model=MODEL,
        destination=store.destination,
        part_size=5 * MiB,
        max_video_bytes=CAP,
        download_timeout=30.0,
    )
    with pytest.raises(WanFinalError, match=words) as caught:
        operator.execute({})
    error = caught.value
    # final: not the retryable integrity error, whose retry would fetch the same link again
    assert not isinstance(error, WanTransferIntegrityError)
    text = f"{error} {error!r} {json.dumps(error.to_dict(), default=str)}"
    assert f"max_video_bytes ({CAP} bytes)" in text
    assert "higher max_video_bytes" in text
    assert SIGNATURE not in text, "the signed link leaked into the error"
    assert "127.0.0.1" not in text, "the link's host leaked into the error"
    assert store.held() == [], "something was kept"
    return error


@pytest.mark.parametrize(
    "announce", ["length", "range", "range-end"], ids=["content-length", "content-range-total", "content-range-end"]
)
def test_a_length_announced_over_the_cap_is_refused_before_any_byte_is_stored(
    wan_connection: Any, links: LinkServer, store: Store, announce: str
) -> None:
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}/mp4?announce={announce}&Signature={SIGNATURE}")
    _fails_at_the_cap(store, task_id, f"announced {1 << 40} bytes")
    assert store.upload_opened() in (False, None), "an upload was opened for a video announced over the cap"
    # the download stopped at the answer's head: not a terabyte, nor download_timeout's worth
    assert sum(links.sent) < 64 * MiB


def test_a_body_without_length_is_cut_at_the_cap_and_its_upload_aborted(
    wan_connection: Any, links: LinkServer, store: Store
) -> None:
    task_id = _generate()
    _answer_with_link(wan_connection, task_id, f"{links.url}/mp4?Signature={SIGNATURE}")
    _fails_at_the_cap(store, task_id, f"sent more than {CAP} bytes without announcing")
    assert store.upload_opened() in (True, None), "the upload was never opened: the cap was not what stopped it"
    if store.kind == "gcs":
        # chunks went up before the cap, and the resumable session was cancelled (DELETE), not left to expire
        methods = [method for method, _, _ in store.gcs.uploads()]
        assert methods.count("PUT") >= 2
        assert "DELETE" in methods
    assert sum(links.sent) < CAP + 64 * MiB


_CAPPED_DAG = """
from datetime import datetime, timedelta

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params={{"cap": {cap}}}) as dag:
    # the first reads the hostile link (the simulator's next task read names it), the second the real video
    capped, fits = (
        WanVideoToStorageOperator(
            task_id=name,
            wan_task_id=wan_task_id,
            model="{model}",
            destination="file://{folder}/" + name + "/{{wan_task_id}}.mp4",
            max_video_bytes="{{{{ params.cap }}}}",
            retries=3,
            retry_delay=timedelta(seconds=0),
            trigger_rule="all_done",
        )
        for name, wan_task_id in (("capped", "{hostile}"), ("fits", "{real}"))
    )
    capped >> fits
"""


def test_a_templated_cap_is_read_as_a_number_and_fails_the_task_once_without_retries(
    wan_connection: Any, links: LinkServer, tmp_path: Path
) -> None:
    hostile, real = _generate(), _generate()
    _answer_with_link(wan_connection, hostile, f"{links.url}/mp4?announce=length&Signature={SIGNATURE}")
    source = _CAPPED_DAG.format(
        dag_id="wan_capped_transfer", hostile=hostile, real=real, model=MODEL, folder=tmp_path, cap=MiB
    )
    result = run_dag(write_dag(textwrap.dedent(source), "wan_capped_transfer"))
    # one try: the retries (3) are not spent on a link that would do the same again
    assert result.tasks["capped"] == ("failed", 1)
    assert not (tmp_path / "capped").exists()
    # the rendered "1048576" is a cap like any number: a real video (about 80 KB) under it lands
    assert result.tasks["fits"] == ("success", 1)
    assert 0 < result.xcoms[("fits", "return_value")]["size"] <= MiB


@pytest.mark.parametrize("cap", [0, -1, 1.5, True, None, "many", "1e9", "-5"])
def test_max_video_bytes_must_be_a_positive_whole_number(cap: Any) -> None:
    # numbers are refused when the DAG is parsed, text (a template) once rendered: before anything is asked
    with pytest.raises(WanInvalidInputError, match="max_video_bytes: must be a whole number of bytes >= 1"):
        WanVideoToGCSOperator(task_id="t", wan_task_id="task-1", bucket_name="b", max_video_bytes=cap).execute({})


def test_the_default_cap_is_1_gib() -> None:
    operator = WanVideoToGCSOperator(task_id="t", wan_task_id="task-1", bucket_name="b")
    assert operator.max_video_bytes == DEFAULT_MAX_VIDEO_BYTES == 1 << 30
    assert "max_video_bytes" in operator.template_fields
