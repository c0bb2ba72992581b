"""
First-and-last-frame (keyframe) video with Wan: the model draws the motion between two images.

Shows :class:`~airflow_provider_wan.operators.wan.WanKeyframeToVideoOperator` with the two kinds of image input the
provider reads for you: a local file shipped next to this DAG (``assets/first_frame.png``) and an object in Google
Cloud Storage (``gs://...``; a first task uploads ``assets/last_frame.png`` there so the example is self-contained).
Both are checked (format, size, dimensions) and sent inline as base64, so nothing needs to be public. Then
:class:`~airflow_provider_wan.transfers.wan_to_gcs.WanVideoToGCSOperator` lands the video in the bucket.

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable;
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_gcs_bucket``: the bucket for the last frame and the video (default ``wan-example-videos``);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $0.14 on DashScope: ``wan2.2-kf2v-flash`` at 720P, 5 s.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG, task

from airflow_provider_wan.operators.wan import WanKeyframeToVideoOperator
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_keyframe_to_video"
ASSETS = Path(__file__).resolve().parent / "assets"
GCS_BUCKET = "{{ var.value.get('wan_gcs_bucket', 'wan-example-videos') }}"
LAST_FRAME_OBJECT = "wan/inputs/last_frame.png"
POLL_INTERVAL = float(os.environ.get("WAN_EXAMPLE_POLL_INTERVAL", "15"))

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wan"],
    doc_md=__doc__,
) as dag:
    # [START howto_operator_wan_keyframe_to_video]
    @task
    def upload_last_frame(bucket_name: str) -> str:
        """Put the example's last frame in GCS (in real life it is already there) and return its gs:// URI."""
        from airflow_provider_wan.gcs import storage_client

        blob = storage_client().bucket(bucket_name).blob(LAST_FRAME_OBJECT)
        blob.upload_from_filename(str(ASSETS / "last_frame.png"), content_type="image/png")
        return f"gs://{bucket_name}/{LAST_FRAME_OBJECT}"

    last_frame_uri = upload_last_frame(GCS_BUCKET)

    generate_video = WanKeyframeToVideoOperator(
        task_id="generate_video",
        model="wan2.2-kf2v-flash",
        # a local path (or file:// URL) is read, checked and sent inline as a base64 data URI
        first_frame_url=str(ASSETS / "first_frame.png"),
        # so is a gs://bucket/object; http(s) URLs and data: URIs are passed through as they are
        last_frame_url=last_frame_uri,
        prompt="The sun rises slowly over a calm sea, its reflection stretching across the water.",
        resolution="720P",
        prompt_extend=False,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )
    # [END howto_operator_wan_keyframe_to_video]

    video_to_gcs = WanVideoToGCSOperator(
        task_id="video_to_gcs",
        wan_task_id=generate_video.output,
        bucket_name=GCS_BUCKET,
    )
