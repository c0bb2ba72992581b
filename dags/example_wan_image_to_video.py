"""
Image-to-video with Wan: animate one image, used as the first frame of the video.

Shows :class:`~airflow_provider_wan.operators.wan.WanImageToVideoOperator` waiting in a worker (the default,
``deferrable=False``) with an image path taken from an Airflow Variable, then
:class:`~airflow_provider_wan.transfers.wan_to_gcs.WanVideoToGCSOperator`.

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable;
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* Airflow Variable ``wan_i2v_image``: the image, as an http(s) URL, a ``gs://bucket/object``, a local path or a
  data URI (default: ``assets/first_frame.png`` next to this file);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $0.08 on DashScope: ``wan2.2-i2v-flash`` at 480P, 5 s.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanImageToVideoOperator
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_image_to_video"
DEFAULT_IMAGE = str(Path(__file__).resolve().parent / "assets" / "first_frame.png")
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
    # [START howto_operator_wan_image_to_video]
    generate_video = WanImageToVideoOperator(
        task_id="generate_video",
        model="wan2.2-i2v-flash",
        # templated: the image comes from a Variable, with the shipped picture as default
        img_url="{{ var.value.get('wan_i2v_image', params.default_image) }}",
        prompt="Gentle waves roll in while the sun climbs above the horizon; slow, steady camera.",
        resolution="480P",
        duration=5,
        # poll from the worker every POLL_INTERVAL seconds; give up (retryably) after 30 minutes
        poll_interval=POLL_INTERVAL,
        timeout=1800,
        params={"default_image": DEFAULT_IMAGE},
    )
    # [END howto_operator_wan_image_to_video]

    video_to_gcs = WanVideoToGCSOperator(
        task_id="video_to_gcs",
        wan_task_id=generate_video.output,
        bucket_name=GCS_BUCKET,
    )
