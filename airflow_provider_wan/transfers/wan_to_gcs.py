"""
WanVideoToGCSOperator: a finished Wan video, streamed from DashScope into Google Cloud Storage, verified, once.

The download engine (:mod:`~airflow_provider_wan.transfers.download`), the operator layer
(:mod:`~airflow_provider_wan.transfers.base`) and the GCS sink (:mod:`~airflow_provider_wan.transfers.sinks.gcs`)
do the work; this module names the GCS parameters. Memory stays bounded by the chunk size (about twice
``chunk_size`` plus one read buffer), never by the video size: ``benchmarks/transfer.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.transfers.base import (
    DEFAULT_ASSET_ALIAS,
    DEFAULT_OBJECT_NAME,
    METADATA_LIMIT_BYTES,
    WanVideoTransferOperator,
    fit_metadata,
)
from airflow_provider_wan.transfers.download import ResumableDownload
from airflow_provider_wan.transfers.sinks import Sink
from airflow_provider_wan.transfers.sinks.gcs import GCS_CHUNK_MULTIPLE, GCSSink

__all__ = [
    "DEFAULT_ASSET_ALIAS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_OBJECT_NAME",
    "METADATA_LIMIT_BYTES",
    "ResumableDownload",
    "WanVideoToGCSOperator",
    "fit_metadata",
]

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 8 * MiB


class WanVideoToGCSOperator(WanVideoTransferOperator):
    """
    Copy a finished Wan video from DashScope into a GCS object: streamed, verified, at most once.

    The video is streamed from a freshly signed DashScope link into a GCS resumable upload, ``chunk_size`` bytes at
    a time: memory stays near twice ``chunk_size`` whatever the video's size. A dropped download resumes with an
    HTTP Range request. The upload is finalized only once every announced byte arrived, and kept only when the
    size, MD5 and CRC32C GCS stored match what was downloaded; otherwise nothing is left behind and the task fails
    (retryable: :class:`~airflow_provider_wan.exceptions.WanTransferIntegrityError`).

    Idempotent: an object that already holds this DashScope task's video (``wan_task_id`` in its metadata) is
    returned as is, without asking DashScope anything, so a rerun succeeds even after the 24-hour link expired.
    An object holding anything else fails the task unless ``overwrite=True``. Uploads carry generation
    preconditions (``ifGenerationMatch=0`` for a new object, the current generation when replacing one), so real GCS
    refuses a concurrent writer instead of letting two runs clobber each other.

    An expired result (the task reads UNKNOWN, or the link answers 403/404 more than 24 hours after the task's
    end_time) fails at once, without Airflow retries: DashScope keeps results for 24 hours, and the video must be
    generated again. A link refused within those 24 hours (a proxy, a firewall, the worker's clock) is retried: the
    video still exists.

    The object's custom metadata: ``wan_task_id``, ``wan_model``, ``wan_request_id``, ``wan_seed``,
    ``wan_orig_prompt``, ``wan_actual_prompt`` (cut to fit GCS's 8 KiB limit; ``wan_prompts_truncated`` says so),
    ``wan_usage`` (JSON), ``wan_estimated_cost_usd``, ``wan_submit_time``, ``wan_end_time``, ``wan_source_bytes``,
    ``wan_transfer_id``, and ``extra_metadata``. Never the signed link.

    Asset events: every ``AssetAlias`` in ``outlets`` (by default the alias ``wan_video_to_gcs``) receives an event
    for the destination prefix, ``Asset("gs://<bucket>/<fixed head of object_name>")`` (``gs://<bucket>/wan`` for
    the default name), the video (URI, size, MD5, model, task id) in its ``extra``; an ``Asset`` in ``outlets``
    with that URI gets the same ``extra``. Schedule a downstream DAG on the asset, or on
    ``AssetAlias("wan_video_to_gcs")`` (or your own alias via ``asset_alias``). The event is emitted by every
    successful run, a skipped rerun included (``extra["uploaded"]`` tells them apart), like any outlet.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanVideoToGCSOperator`

    :param wan_task_id: the upstream operator's or sensor's result (:class:`~airflow_provider_wan.results.WanResult`,
        e.g. ``generate.output``), whose model and prompt are then recorded too; or a DashScope task id (templated)
    :param bucket_name: the GCS bucket (templated)
    :param object_name: the object name (templated; default ``wan/{wan_task_id}.mp4``). ``{wan_task_id}`` is
        replaced by the DashScope task id after Jinja rendering, e.g. ``"videos/{{ dag.dag_id }}/{wan_task_id}.mp4"``.
        The task id makes the name unique per video and stable across reruns; the default leaves out ``{{ ds }}``,
        which Airflow 3 does not define for runs without a logical date
    :param wan_conn_id: the ``wan`` connection (default ``wan_default``)
    :param gcp_conn_id: a Google Cloud connection, used through the google provider's ``GCSHook`` (needs
        apache-airflow-providers-google: an error names it otherwise); a given connection wins over the environment.
        Default: the ``STORAGE_EMULATOR_HOST`` emulator when set, else Application Default Credentials
    :param impersonation_chain: service account(s) to impersonate through ``gcp_conn_id``, as in Google's operators
        (templated; default None)
    :param chunk_size: bytes per upload request, a multiple of 256 KiB (default 8 MiB); bounds the memory used
    :param overwrite: replace an object that holds something else than this task's video (default False)
    :param write_sidecar: also write ``<object name without extension>.json`` with the generation's full
        metadata (prompts uncut, usage, cost, the video's size, checksums and generation) (default False)
    :param poster: ``"png"`` or ``"jpeg"``: also store the video's first frame beside it,
        ``<object name without extension>.png`` (``.jpg``), made from the stored, verified object with a few ranged
        reads; a rerun keeps a poster made of the same object (default None: no poster; needs PyAV, the ``video``
        extra, checked before any download)
    :param model: model name, for the metadata and the cost estimate (templated; default: the upstream result's;
        DashScope's task record does not name it)
    :param prompt: the prompt, recorded when the task record has none (templated)
    :param seed: the seed the video was generated with, recorded when given (templated)
    :param extra_metadata: more custom metadata for the object, str to str (templated)
    :param asset_alias: name of the ``AssetAlias`` added to ``outlets`` that announces each object (default
        ``wan_video_to_gcs``); None adds none
    :param max_download_attempts: HTTP requests for the video in all, resumptions included (default 5)
    :param download_retry_delay: seconds before the first resumption, doubled each time, at most 30 (default 1.0)
    :param download_timeout: seconds the whole download may take, wall clock, resumptions and redirects included
        (default 3600; None: no limit); a server sending a trickle of bytes cannot hold the worker longer
    :param max_video_bytes: the largest video stored, in bytes (templated; default 1 GiB,
        ``DEFAULT_MAX_VIDEO_BYTES``). A Wan video, at most 15 s of 1080p, is tens of MB: 1 GiB would take over
        500 Mbit/s, so the default never stops a real one, and it stops a link serving something else (a body
        without end, a huge length announced) after 1 GiB at most instead of ``download_timeout``'s worth. A length
        announced above it (``Content-Length``, ``Content-Range``) is refused before any byte is stored; a body
        announcing none, once its bytes pass it. Either is a final error (no Airflow retries: the same link would do
        it again) and nothing is kept
    :param progress_interval: seconds between two progress lines in the log (default 5.0)
    """

    template_fields: Sequence[str] = (
        *WanVideoTransferOperator.template_fields,
        "bucket_name",
        "object_name",
        "impersonation_chain",
    )

    def __init__(
        self,
        *,
        bucket_name: str,
        object_name: str = DEFAULT_OBJECT_NAME,
        gcp_conn_id: str | None = None,
        impersonation_chain: str | Sequence[str] | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        **kwargs: Any,
    ) -> None:
        if not isinstance(chunk_size, int) or chunk_size <= 0 or chunk_size % GCS_CHUNK_MULTIPLE:
            raise WanInvalidInputError(
                f"chunk_size: {chunk_size!r} is not a positive multiple of 256 KiB ({GCS_CHUNK_MULTIPLE} bytes), "
                f"which GCS resumable uploads require; e.g. {DEFAULT_CHUNK_SIZE} (8 MiB)"
            )
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.object_name = object_name
        self.key_template = object_name
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.chunk_size = chunk_size

    def _object_name(self, task_id: str) -> str:
        return self.object_key(self.object_name, task_id)

    def part_size(self) -> int:
        return self.chunk_size

    def destination(self, task_id: str) -> tuple[Sink, str]:
        bucket_name = str(self.bucket_name or "").strip()
        if not bucket_name:
            raise WanInvalidInputError("bucket_name: a GCS bucket name is required")
        sink = GCSSink(
            bucket_name,
            gcp_conn_id=self.gcp_conn_id,
            impersonation_chain=self.impersonation_chain,
            chunk_size=self.chunk_size,
        )
        return sink, self._object_name(task_id)
