"""
Text-to-video with Wan: one prompt, one video, waited for in the triggerer, then copied to Google Cloud Storage.

Shows :class:`~airflow_provider_wan.operators.wan.WanTextToVideoOperator` with ``deferrable=True`` and a budget
(``max_cost_usd``), followed by :class:`~airflow_provider_wan.transfers.wan_to_gcs.WanVideoToGCSOperator`, which
fetches a fresh download link from the DashScope task id and streams the MP4 into a bucket.

Needs:

* connection ``wan_default`` (type ``wan``): the DashScope API key as password, the key's region in the extra
  (default ``singapore``); without the connection, the ``DASHSCOPE_API_KEY`` environment variable is used;
* Google Cloud Storage credentials: Application Default Credentials (or ``STORAGE_EMULATOR_HOST`` for an emulator);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL``: seconds between status reads (default 15).

Costs about $0.10 on DashScope: 5 s of 480P ``wan2.2-t2v-plus`` (see the cost estimate in the task log).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanTextToVideoOperator
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_text_to_video"
# Knobs, so the same file runs against DashScope and against the simulator (tests, `make demo`).
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
    # [START howto_operator_wan_text_to_video]
    generate_video = WanTextToVideoOperator(
        task_id="generate_video",
        model="wan2.2-t2v-plus",
        prompt=(
            "A lighthouse on a rocky coast at dawn, waves breaking below, seagulls crossing the frame, "
            "the camera slowly pushing in."
        ),
        negative_prompt="text, watermark, blurry",
        size="832*480",
        duration=5,
        seed=42,
        # refuse to submit when the estimate (list price per second x duration) is higher
        max_cost_usd=0.50,
        # wait in the triggerer: no worker slot is held during the minutes of generation
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=1800,
    )
    # [END howto_operator_wan_text_to_video]

    # [START howto_transfer_wan_to_gcs]
    video_to_gcs = WanVideoToGCSOperator(
        task_id="video_to_gcs",
        # the generation's result (airflow_provider_wan.results.WanResult): its wan_task_id names the video (a fresh
        # signed link is fetched from DashScope), its model and cost go into the object's metadata
        wan_task_id=generate_video.output,
        bucket_name=GCS_BUCKET,
        # Jinja first, then {wan_task_id} becomes the DashScope task id: one object per video, reruns included
        object_name="wan/{{ dag.dag_id }}/{wan_task_id}.mp4",
        # also write wan/<dag id>/<task id>.json: prompts, usage, cost, size, checksums
        write_sidecar=True,
        # and wan/<dag id>/<task id>.png: the first frame, for previews (needs PyAV: the [video] extra)
        poster="png",
    )
    # [END howto_transfer_wan_to_gcs]
