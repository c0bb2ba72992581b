"""
A batch of Wan videos: one mapped task per prompt, throttled by an Airflow pool to DashScope's concurrency limit.

Shows dynamic task mapping (``.partial().expand()``) over a list of prompts read at run time from the Airflow
Variable ``wan_batch_prompts``, an Airflow pool sized to the model's concurrent-task limit
(``models.get_model(MODEL).max_concurrent_tasks``), and the transfer mapped over the generated videos. When a
prompt fails (e.g. refused by moderation), the other videos are still saved, and the run ends failed.

DashScope runs at most that many tasks of a model at once per account; more wait in PENDING on its side while
their Airflow tasks and deadlines tick. The pool keeps the queue in Airflow instead. Create it once, counting
deferred tasks (the operators wait in the triggerer, and a waiting video still occupies a DashScope slot)::

    airflow pools set wan-wan2.2-t2v-plus 2 "DashScope concurrent tasks of wan2.2-t2v-plus" --include-deferred

Needs:

* connection ``wan_default`` (type ``wan``), or the ``DASHSCOPE_API_KEY`` environment variable;
* the pool above (``POOL`` / ``POOL_SLOTS`` in this file);
* Google Cloud Storage credentials (Application Default Credentials, or ``STORAGE_EMULATOR_HOST``);
* Airflow Variable ``wan_batch_prompts``: a JSON list of prompts (default: the three in ``DEFAULT_PROMPTS``);
* Airflow Variable ``wan_gcs_bucket``: the destination bucket (default ``wan-example-videos``);
* optional environment variable ``WAN_EXAMPLE_POLL_INTERVAL`` (default 15 s).

Costs about $0.10 per prompt on DashScope (``wan2.2-t2v-plus``, 480P, 5 s); ``max_cost_usd`` caps each video.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.providers.common.compat.sdk import DAG, AssetAlias, Variable, task

from airflow_provider_wan.models import get_model
from airflow_provider_wan.operators.wan import WanTextToVideoOperator
from airflow_provider_wan.transfers.wan_to_gcs import DEFAULT_ASSET_ALIAS, WanVideoToGCSOperator

DAG_ID = "example_wan_batch"
GCS_BUCKET = "{{ var.value.get('wan_gcs_bucket', 'wan-example-videos') }}"
POLL_INTERVAL = float(os.environ.get("WAN_EXAMPLE_POLL_INTERVAL", "15"))

# [START howto_wan_batch_pool]
MODEL = "wan2.2-t2v-plus"
# one pool per model: DashScope's concurrency limit is per model and per account, whichever DAG submits
POOL = f"wan-{MODEL}"
POOL_SLOTS = get_model(MODEL).max_concurrent_tasks
# [END howto_wan_batch_pool]

DEFAULT_PROMPTS = [
    "A red kite dancing over green hills on a windy afternoon.",
    "Rain drops sliding down a window, city lights blurred behind.",
    "A paper boat drifting along a stream through an autumn forest.",
]

with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["example", "wan"],
    doc_md=__doc__,
) as dag:
    # [START howto_wan_batch_mapping]
    @task
    def load_prompts() -> list[str]:
        """The batch, read when the run starts (not when the file is parsed)."""
        prompts = Variable.get("wan_batch_prompts", DEFAULT_PROMPTS, deserialize_json=True)
        if not isinstance(prompts, list) or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError("Variable wan_batch_prompts must be a JSON list of non-empty strings")
        return prompts

    generate_videos = WanTextToVideoOperator.partial(
        task_id="generate_video",
        model=MODEL,
        size="832*480",
        duration=5,
        max_cost_usd=0.20,
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        # at most POOL_SLOTS videos of this model in flight, counting the ones waiting in the triggerer
        pool=POOL,
        # throttling answers are retried by the hook; these retries cover the rest (5xx, InternalError tasks)
        retries=2,
        # each mapped task is named after its prompt in the UI (the grid's "Map Index"), not 0, 1, 2...
        map_index_template="{{ task.prompt[:40] }}",
    ).expand(prompt=load_prompts())

    # one transfer per video, each given its generation's result (task id, model, prompt)
    videos_to_gcs = WanVideoToGCSOperator.partial(
        task_id="video_to_gcs",
        bucket_name=GCS_BUCKET,
        # a mapped operator is built only when it runs, so its asset alias is named here too, for the DAG to
        # declare it (Airflow 2.11 fails an event through an alias the DAG did not declare)
        outlets=[AssetAlias(DEFAULT_ASSET_ALIAS)],
        # save every video already paid for, even when another prompt of the batch failed
        trigger_rule="all_done",
    ).expand(wan_task_id=generate_videos.output)

    # ...and still fail the run when any prompt failed, so it does not go unnoticed (a @task rather than the
    # standard provider's EmptyOperator, which Airflow 2.11 does not bundle)
    @task
    def every_prompt_generated() -> None:
        """Runs only when every video was generated (trigger rule all_success)."""

    every_prompt_generated() << generate_videos
    # [END howto_wan_batch_mapping]
