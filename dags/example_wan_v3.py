"""
Wan 3.0 with the general operator: one model for text, first and last frames, and references.

Shows :class:`~airflow_provider_wan.operators.wan.WanVideoOperator` (any Wan video model: ``model``, ``prompt``,
``media`` and ``parameters`` by DashScope's names) on ``wan3.0-video`` with a first and a last frame from local
files, then :class:`~airflow_provider_wan.transfers.wan_to_gcs.WanVideoToGCSOperator`.

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable; Wan 3.0 is served on
  workspace domains: set ``workspace_id`` in the connection's extra;
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* ``assets/first_frame.png`` and ``assets/last_frame.png`` next to this file (shipped with it);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $0.29 on DashScope (reseller price, see the cost docs): ``wan3.0-video`` at 720P, 5 s.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanVideoOperator
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_v3"
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
    # [START howto_operator_wan_video]
    generate_video = WanVideoOperator(
        task_id="generate_video",
        model="wan3.0-video",
        prompt="Sunrise over the sea: the sun climbs from the horizon into a clear sky.",
        media=[
            {"type": "first_frame", "url": str(ASSETS / "first_frame.png")},
            {"type": "last_frame", "url": str(ASSETS / "last_frame.png")},
        ],
        # every other field by its DashScope name; the request schema places it in input or parameters
        parameters={"resolution": "720P", "duration": 5, "audio": False},
        max_cost_usd=1.0,
        poll_interval=POLL_INTERVAL,
        deferrable=True,
    )
    # [END howto_operator_wan_video]

    video_to_gcs = WanVideoToGCSOperator(
        task_id="video_to_gcs",
        wan_task_id=generate_video.output,
        bucket_name=GCS_BUCKET,
    )
