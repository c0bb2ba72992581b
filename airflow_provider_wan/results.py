"""
The result contract: what the provider's operators, sensor, trigger and transfers hand on, in one place.

Every result names the DashScope task ``wan_task_id``, the same key as the ``wan_task_id`` XCom the submit operators
push as soon as the task exists. Results are JSON-safe (XCom, trigger events) and never hold a signed URL:
``video_url`` is the result link without its query string (where the video was, not a way to read it), and a
transfer fetches a fresh signed link by the task id when it needs the bytes.

::

    WanTaskResult    a task as DashScope reports it           WanHook.get_task(...).to_result(), the trigger's event
    WanResult        + model, region, estimated cost          the submit operators' and WanTaskSensor's return value
    WanStoredVideo   the stored object (URI, size, MD5, ...)  the transfers' return value

A transfer takes the upstream result whole (``wan_task_id=generate.output``): the model, the prompt and the cost
come from it, with no template pulling them field by field. See :doc:`/results`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

__all__ = ["WanResult", "WanStoredVideo", "WanTaskResult", "task_id_of"]


class WanTaskResult(TypedDict):
    """A DashScope task as ``GET /tasks/{id}`` reports it (``WanTask.to_result()``)."""

    #: the DashScope task id
    wan_task_id: str
    #: PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED or UNKNOWN
    task_status: str
    #: the result link without its query string (no signature), at most 2,048 characters: where the video was, not a
    #: way to read it
    video_url: str | None
    #: the prompts DashScope echoes, as plain text (a control character other than newline and tab becomes a space),
    #: at most 20,000 characters (``hooks.wan.MAX_ANSWER_PROMPT_CHARS``)
    orig_prompt: str | None
    actual_prompt: str | None
    #: DashScope's usage figures, e.g. ``{"video_count": 1, "video_duration": 5, "video_ratio": "832*480"}``: numbers
    #: as sent, strings cleaned (no signed URL), at most 32 fields, no lists or objects
    usage: dict[str, Any]
    submit_time: str | None
    scheduled_time: str | None
    end_time: str | None
    #: DashScope's error code and message, for a task that failed
    code: str | None
    message: str | None
    request_id: str | None


class WanResult(WanTaskResult):
    """The return value (XCom ``return_value``) of the submit operators and of ``WanTaskSensor``."""

    #: the model that made the video; None from the sensor, which only knows the task id (DashScope's task record
    #: does not name the model)
    model: str | None
    #: the DashScope region the task was created in, or ``"custom"`` for a base URL of one's own; ``"unknown"``
    #: when a result without a record of the create (the sensor's) finds the connection unreadable
    region: str
    #: list price in USD from the catalogue (:func:`~airflow_provider_wan.models.request_cost_usd`), as estimated
    #: when the task was created; None when the model or its tier has no price
    estimated_cost_usd: float | None


class WanStoredVideo(TypedDict):
    """The return value of the transfers: the stored object and the video it holds."""

    wan_task_id: str
    #: from the upstream result, or the transfer's ``model`` parameter
    model: str | None
    #: the object's URI, e.g. ``s3://bucket/videos/<task id>.mp4`` (never a signed or console link)
    uri: str
    #: bucket, container, or root folder (``file://``)
    bucket: str
    #: the object's key (name) in the bucket
    object: str
    size: int
    #: MD5 of the bytes, base64 (as GCS and Azure report it) and hex
    md5_hash: str | None
    md5_hex: str | None
    #: CRC32C (base64) where the store reports one (GCS)
    crc32c: str | None
    #: the object's generation or version id, a string (GCS generations overflow JSON numbers); None where none
    generation: str | None
    content_type: str | None
    #: False when a verified copy was already there (a rerun): nothing was downloaded nor uploaded
    uploaded: bool
    sidecar_uri: str | None
    #: the poster frame beside the video (``poster="png"``/``"jpeg"``), or None
    poster_uri: str | None
    #: the object in its store's web console (built from bucket and key, never signed); None for a folder
    console_url: str | None
    #: DashScope's usage and the list-price estimate in USD, as recorded in the object's metadata
    usage: dict[str, Any]
    estimated_cost_usd: float | None
    #: the asset (a destination prefix) the object was announced under, or None without an asset alias
    asset_uri: str | None


def task_id_of(value: Any) -> str | None:
    """
    The DashScope task id a value names: a task id string, or any result above (``wan_task_id``). Results written
    before the contract (``task_id``) are read too. None for anything else.
    """
    if isinstance(value, Mapping):
        value = value.get("wan_task_id") or value.get("task_id")
    return value if isinstance(value, str) else None
