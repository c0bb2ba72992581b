"""
A multi-shot video with sound from one prompt: ``wan2.6-t2v`` with ``shot_type="multi"``.

Shows :class:`~airflow_provider_wan.operators.wan.WanTextToVideoOperator` driving wan2.6's multi-shot mode: the
prompt scripts the shots, ``prompt_extend=True`` (required by multi-shot) lets DashScope expand it, and
``audio=True`` asks for an automatically generated soundtrack (wan2.5 and wan2.6 only; no ``audio_url`` needed).
The operator refuses, before any request, a ``shot_type`` on a model without it, or multi-shot without
``prompt_extend``. Then the video is copied to GCS.

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable;
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $1.00 on DashScope: 10 s of 720P ``wan2.6-t2v`` at $0.10 per second.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanTextToVideoOperator
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_multishot"
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
    # [START howto_operator_wan_multishot]
    generate_video = WanTextToVideoOperator(
        task_id="generate_video",
        model="wan2.6-t2v",
        prompt=(
            "Shot 1 [0-3 s]: wide shot of a night market, lanterns swaying, crowds passing. "
            "Shot 2 [3-7 s]: close-up of a cook tossing noodles in a flaming wok. "
            "Shot 3 [7-10 s]: a child laughs, holding a paper lantern, the camera pulls back."
        ),
        size="1280*720",
        duration=10,
        shot_type="multi",
        # multi-shot works only with prompt rewriting on
        prompt_extend=True,
        # a soundtrack generated to match the pictures
        audio=True,
        max_cost_usd=1.50,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )
    # [END howto_operator_wan_multishot]

    video_to_gcs = WanVideoToGCSOperator(
        task_id="video_to_gcs",
        wan_task_id=generate_video.output,
        bucket_name=GCS_BUCKET,
    )
