"""
Submit now, wait separately: a Wan task created with ``wait_for_completion=False`` and awaited by a sensor.

Shows :class:`~airflow_provider_wan.operators.wan.WanTextToVideoOperator` returning as soon as DashScope has
accepted the task (its id goes to XCom at once), then
:class:`~airflow_provider_wan.sensors.wan.WanTaskSensor` waiting for that task in the triggerer. The sensor only
reads the task, so retrying it never pays for a second video. The same sensor waits for a task created elsewhere,
e.g. one whose create request timed out (``WanCreateOutcomeUnknownError`` tells you how to find its id).

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable;
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $0.18 on DashScope: ``wan2.1-t2v-turbo`` at 480P, 5 s.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG

from airflow_provider_wan.operators.wan import WanTextToVideoOperator
from airflow_provider_wan.sensors.wan import WanTaskSensor
from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

DAG_ID = "example_wan_sensor"
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
    # [START howto_sensor_wan_task]
    submit = WanTextToVideoOperator(
        task_id="submit",
        model="wan2.1-t2v-turbo",
        prompt="Steam rising from a cup of tea on a wooden table, morning light.",
        size="832*480",
        # return once DashScope has accepted the task; its id is in XCom under the key "wan_task_id"
        wait_for_completion=False,
    )

    wait_for_video = WanTaskSensor(
        task_id="wait_for_video",
        wan_task_id="{{ ti.xcom_pull(task_ids='submit', key='wan_task_id') }}",
        poke_interval=POLL_INTERVAL,
        timeout=3600,
        deferrable=True,
    )
    submit >> wait_for_video
    # [END howto_sensor_wan_task]

    video_to_gcs = WanVideoToGCSOperator(
        task_id="video_to_gcs",
        # the sensor returns the finished task's result (WanResult), like the operators do
        wan_task_id=wait_for_video.output,
        bucket_name=GCS_BUCKET,
    )
    wait_for_video >> video_to_gcs
