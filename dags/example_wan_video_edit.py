"""
Video editing and continuation with Wan 2.7: restyle a clip by instruction, and continue the same clip.

Shows :class:`~airflow_provider_wan.operators.wan.WanVideoEditOperator` (``wan2.7-videoedit``) and
:class:`~airflow_provider_wan.operators.wan.WanImageToVideoOperator` continuing a clip (``first_clip_url`` on
``wan2.7-i2v``), both from a local video uploaded to DashScope's temporary storage, then both videos to GCS.

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable;
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* ``assets/clip.mp4`` next to this file (shipped with it: 2 s, 640x360);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $1.05 on DashScope: the edit at 720P as long as the clip (billed at most 10 s) and a 5 s continuation
at 720P.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanImageToVideoOperator, WanVideoEditOperator
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_video_edit"
CLIP = str(Path(__file__).resolve().parent / "assets" / "clip.mp4")
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
    # [START howto_operator_wan_video_edit]
    edit_video = WanVideoEditOperator(
        task_id="edit_video",
        model="wan2.7-videoedit",
        video_url=CLIP,
        prompt="Turn the scene into a moonlit night; keep the motion.",
        # keep the clip's own sound; duration 0 (the default) keeps its length
        audio_setting="origin",
        resolution="720P",
        poll_interval=POLL_INTERVAL,
    )
    # [END howto_operator_wan_video_edit]

    # [START howto_operator_wan_continue_clip]
    continue_video = WanImageToVideoOperator(
        task_id="continue_video",
        model="wan2.7-i2v",
        # the new video starts with this clip and carries on
        first_clip_url=CLIP,
        prompt="The bar keeps sweeping across, then slows down and stops in the middle.",
        resolution="720P",
        duration=5,
        poll_interval=POLL_INTERVAL,
    )
    # [END howto_operator_wan_continue_clip]

    edited_to_gcs = WanVideoToGCSOperator(
        task_id="edited_to_gcs", wan_task_id=edit_video.output, bucket_name=GCS_BUCKET
    )
    continued_to_gcs = WanVideoToGCSOperator(
        task_id="continued_to_gcs", wan_task_id=continue_video.output, bucket_name=GCS_BUCKET
    )
