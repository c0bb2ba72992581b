"""
Reference-to-video with Wan 2.7: a video starring the subject of a reference image, speaking with a given voice.

Shows :class:`~airflow_provider_wan.operators.wan.WanReferenceToVideoOperator` with local files (uploaded to
DashScope's temporary storage before the task is created, as the official SDK does), then
:class:`~airflow_provider_wan.transfers.wan_to_gcs.WanVideoToGCSOperator`.

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable;
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* the files ``assets/first_frame.png`` and ``assets/voice.wav`` next to this file (shipped with it);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $0.50 on DashScope: ``wan2.7-r2v`` at 720P, 5 s.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanReferenceToVideoOperator
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_reference_to_video"
ASSETS = Path(__file__).resolve().parent / "assets"
GCS_BUCKET = "{{ var.value.get('wan_gcs_bucket', 'wan-example-videos') }}"
POLL_INTERVAL = float(os.environ.get("WAN_EXAMPLE_POLL_INTERVAL", "15"))

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wan"],
    doc_md=__doc__,
) as dag:
    # [START howto_operator_wan_reference_to_video]
    reference = str(ASSETS / "first_frame.png")
    generate_video = WanReferenceToVideoOperator(
        task_id="generate_video",
        model="wan2.7-r2v",
        prompt="Image 1 rises over the sea and says good morning to the fishing boats.",
        # local paths, gs:// objects or http(s) URLs; references are called Image 1, Video 1... in the prompt
        reference_images=[reference],
        # the voice of Image 1 (wav or mp3, 1-10 s)
        reference_voices={reference: str(ASSETS / "voice.wav")},
        resolution="720P",
        ratio="16:9",
        duration=5,
        poll_interval=POLL_INTERVAL,
        deferrable=True,
    )
    # [END howto_operator_wan_reference_to_video]

    video_to_gcs = WanVideoToGCSOperator(
        task_id="video_to_gcs",
        wan_task_id=generate_video.output,
        bucket_name=GCS_BUCKET,
    )
