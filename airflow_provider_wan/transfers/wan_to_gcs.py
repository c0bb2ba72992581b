"""
WanVideoToGCSOperator: a finished Wan video, streamed from DashScope into Google Cloud Storage, verified, once.

The way through::

    GCS: object already there for this DashScope task? --yes--> return it (no DashScope call, no download, no upload)
    DashScope: GET /tasks/{id} for a fresh signed video_url (the copy in XCom may be stale)
    link --HTTP GET, streamed; on a drop: Range from the last byte received--> md5 + crc32c + byte count
         --> GCS resumable upload, one chunk_size piece at a time (if_generation_match preconditions)
    finalize only when every announced byte arrived; then compare size, md5 and crc32c with what GCS stored
    mismatch, failure, kill --> the upload session is cancelled, or the finished object deleted: nothing is kept

Memory stays bounded by the chunk size (about twice ``chunk_size`` plus one read buffer), never by the video size:
``benchmarks/transfer.py`` measures it.

Heavy imports (``google.cloud.storage``, ``google_crc32c``, ``requests``) happen inside the methods that need them:
DAG files import this module, and importing an operator must stay cheap.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_provider_wan.exceptions import (
    WanError,
    WanFinalError,
    WanInvalidInputError,
    WanRetryableError,
    WanTransferIntegrityError,
)
from airflow_provider_wan.hooks.wan import TaskStatus, WanHook, WanTask
from airflow_provider_wan.models import cost_from_usage
from airflow_provider_wan.transfers.download import (
    READ_SIZE,
    Progress,
    ResumableDownload,
    SourceChangedError,
    mask_signed_url,
)

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context
    from google.cloud.storage import Blob, Bucket, Client
    from google.cloud.storage.fileio import BlobWriter

__all__ = [
    "DEFAULT_ASSET_ALIAS",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_OBJECT_NAME",
    "METADATA_LIMIT_BYTES",
    "ResumableDownload",
    "WanVideoToGCSOperator",
    "fit_metadata",
]

KiB = 1024
MiB = 1024 * KiB
#: GCS resumable uploads take chunks in multiples of 256 KiB (except the last one)
GCS_CHUNK_MULTIPLE = 256 * KiB
DEFAULT_CHUNK_SIZE = 8 * MiB
#: ``{wan_task_id}`` is replaced after Jinja rendering: the DashScope task id is unique, so is the object name
TASK_ID_PLACEHOLDER = "{wan_task_id}"
DEFAULT_OBJECT_NAME = f"wan/{TASK_ID_PLACEHOLDER}.mp4"
VIDEO_CONTENT_TYPE = "video/mp4"
SIDECAR_CONTENT_TYPE = "application/json"
#: GCS's limit on an object's custom metadata, keys and values together
METADATA_LIMIT_BYTES = 8 * KiB
#: every transfer announces its object through this asset alias unless told otherwise
DEFAULT_ASSET_ALIAS = "wan_video_to_gcs"

# custom metadata keys (GCS object metadata)
META_TASK_ID = "wan_task_id"
META_TRANSFER_ID = "wan_transfer_id"
META_SOURCE_BYTES = "wan_source_bytes"
#: MD5 (base64) of the downloaded bytes, recorded once the object verified: a rerun trusts only an object carrying it
META_SOURCE_MD5 = "wan_source_md5"
META_ORIG_PROMPT = "wan_orig_prompt"
META_ACTUAL_PROMPT = "wan_actual_prompt"
META_PROMPTS_CUT = "wan_prompts_truncated"
META_VIDEO_GENERATION = "wan_video_generation"


# --- pure helpers ------------------------------------------------------------------------------------------------
def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` UTF-8 bytes, never inside a character."""
    if max_bytes <= 0:
        return ""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def fit_metadata(
    fields: Mapping[str, str | None],
    prompts: Mapping[str, str | None],
    limit: int = METADATA_LIMIT_BYTES,
) -> dict[str, str]:
    """
    GCS custom metadata: every field of ``fields``, then the ``prompts`` cut to fit ``limit`` bytes in total.

    GCS refuses an object whose custom metadata (keys and values, UTF-8) exceeds 8 KiB; a wan2.6 prompt may be
    1,500 characters (4,500 bytes in Chinese) and the extended prompt longer. The prompts share what the other
    fields leave, each getting at least an equal part; when one is cut, ``wan_prompts_truncated`` says so (the
    JSON sidecar keeps them whole).

    :param fields: metadata that must fit whole; None values are left out
    :param prompts: long texts, cut on character boundaries in the order given
    :param limit: budget in bytes (default 8 KiB, GCS's limit)
    :raises WanInvalidInputError: when ``fields`` alone do not fit (only possible with a huge ``extra_metadata``)
    """
    metadata = {key: str(value) for key, value in fields.items() if value is not None}
    marker_cost = _utf8_len(META_PROMPTS_CUT) + len("true")
    used = sum(_utf8_len(k) + _utf8_len(v) for k, v in metadata.items())
    texts = {key: value for key, value in prompts.items() if value}
    needed = used + sum(_utf8_len(k) + _utf8_len(v) for k, v in texts.items())
    if needed <= limit:
        metadata.update({k: v for k, v in texts.items()})
        return metadata
    # the truncation marker must fit too
    budget = limit - used - marker_cost - sum(_utf8_len(k) for k in texts)
    if budget < 0:
        raise WanInvalidInputError(
            f"extra_metadata: the object metadata takes {used} bytes, over GCS's limit of {limit} bytes for keys and "
            "values together; shorten extra_metadata"
        )
    remaining = list(texts.items())
    for index, (key, value) in enumerate(remaining):
        share = budget // (len(remaining) - index)
        # a short text takes only what it needs; the rest goes to the next one
        cut = _cut_utf8(value, share)
        metadata[key] = cut
        budget -= _utf8_len(cut)
    metadata[META_PROMPTS_CUT] = "true"
    return metadata


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


# --- the operator ---------------------------------------------------------------------------------------------------
class WanVideoToGCSOperator(BaseOperator):
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

    An expired result (the task reads UNKNOWN, or the link answers 403/404) fails at once, without Airflow retries:
    DashScope keeps results for 24 hours, and the video must be generated again.

    The object's custom metadata: ``wan_task_id``, ``wan_model``, ``wan_request_id``, ``wan_seed``,
    ``wan_orig_prompt``, ``wan_actual_prompt`` (cut to fit GCS's 8 KiB limit; ``wan_prompts_truncated`` says so),
    ``wan_usage`` (JSON), ``wan_estimated_cost_usd``, ``wan_submit_time``, ``wan_end_time``, ``wan_source_bytes``,
    ``wan_transfer_id``, and ``extra_metadata``. Never the signed link.

    Asset events: every ``AssetAlias`` in ``outlets`` (by default the alias ``wan_video_to_gcs``) receives an event
    for ``Asset("gs://<bucket>/<object>")``, whose name cannot be known when the DAG is parsed; an ``Asset`` in
    ``outlets`` whose URI is exactly ``gs://<bucket>/<object>`` gets the same ``extra``. Schedule a downstream DAG
    with ``schedule=AssetAlias("wan_video_to_gcs")`` (or your own alias via ``asset_alias``). The event is emitted
    by every successful run, a skipped rerun included (``extra["uploaded"]`` tells them apart), like any outlet.

    .. seealso::
        For more information on how to use this operator, take a look at the guide:
        :ref:`howto/operator:WanVideoToGCSOperator`

    :param wan_task_id: the DashScope task id (templated), typically
        ``"{{ ti.xcom_pull(task_ids='generate', key='wan_task_id') }}"``
    :param bucket_name: the GCS bucket (templated)
    :param object_name: the object name (templated; default ``wan/{wan_task_id}.mp4``). ``{wan_task_id}`` is
        replaced by the DashScope task id after Jinja rendering, e.g. ``"videos/{{ dag.dag_id }}/{wan_task_id}.mp4"``.
        The task id makes the name unique per video and stable across reruns; the default leaves out ``{{ ds }}``,
        which Airflow 3 does not define for runs without a logical date
    :param wan_conn_id: the ``wan`` connection (default ``wan_default``)
    :param gcp_conn_id: a Google Cloud connection (needs apache-airflow-providers-google); default: the
        ``STORAGE_EMULATOR_HOST`` emulator when set, else Application Default Credentials
    :param chunk_size: bytes per upload request, a multiple of 256 KiB (default 8 MiB); bounds the memory used
    :param overwrite: replace an object that holds something else than this task's video (default False)
    :param write_sidecar: also write ``<object name without extension>.json`` with the generation's full
        metadata (prompts uncut, usage, cost, the video's size, checksums and generation) (default False)
    :param model: model name, for the metadata and the cost estimate (templated; DashScope's task record does
        not name it), e.g. ``"{{ ti.xcom_pull(task_ids='generate')['model'] }}"``
    :param prompt: the prompt, recorded when the task record has none (templated)
    :param seed: the seed the video was generated with, recorded when given (templated)
    :param extra_metadata: more custom metadata for the object, str to str (templated)
    :param asset_alias: name of the ``AssetAlias`` added to ``outlets`` that announces each object (default
        ``wan_video_to_gcs``); None adds none
    :param max_download_attempts: HTTP requests for the video in all, resumptions included (default 5)
    :param download_retry_delay: seconds before the first resumption, doubled each time, at most 30 (default 1.0)
    :param download_timeout: seconds the whole download may take, wall clock, resumptions included (default 3600;
        None: no limit); a server sending a trickle of bytes cannot hold the worker longer
    :param progress_interval: seconds between two progress lines in the log (default 5.0)
    """

    template_fields: Sequence[str] = (
        "wan_task_id",
        "bucket_name",
        "object_name",
        "model",
        "prompt",
        "seed",
        "extra_metadata",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"extra_metadata": "json"}
    ui_color = "#ff6a00"

    def __init__(
        self,
        *,
        wan_task_id: str,
        bucket_name: str,
        object_name: str = DEFAULT_OBJECT_NAME,
        wan_conn_id: str = WanHook.default_conn_name,
        gcp_conn_id: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        overwrite: bool = False,
        write_sidecar: bool = False,
        model: str | None = None,
        prompt: str | None = None,
        seed: int | str | None = None,
        extra_metadata: dict[str, str] | None = None,
        asset_alias: str | None = DEFAULT_ASSET_ALIAS,
        max_download_attempts: int = 5,
        download_retry_delay: float = 1.0,
        download_timeout: float | None = 3600.0,
        progress_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(chunk_size, int) or chunk_size <= 0 or chunk_size % GCS_CHUNK_MULTIPLE:
            raise WanInvalidInputError(
                f"chunk_size: {chunk_size!r} is not a positive multiple of 256 KiB ({GCS_CHUNK_MULTIPLE} bytes), "
                f"which GCS resumable uploads require; e.g. {DEFAULT_CHUNK_SIZE} (8 MiB)"
            )
        if max_download_attempts < 1:
            raise WanInvalidInputError(f"max_download_attempts: must be at least 1, got {max_download_attempts}")
        if download_timeout is not None and not download_timeout > 0:
            raise WanInvalidInputError(f"download_timeout: must be a positive number of seconds: {download_timeout}")
        if asset_alias:
            from airflow.providers.common.compat.sdk import AssetAlias

            outlets = kwargs.get("outlets") or []
            outlets = list(outlets) if isinstance(outlets, list | tuple) else [outlets]
            alias = AssetAlias(name=asset_alias)
            kwargs["outlets"] = outlets if alias in outlets else [*outlets, alias]
        super().__init__(**kwargs)
        self.wan_task_id = wan_task_id
        self.bucket_name = bucket_name
        self.object_name = object_name
        self.wan_conn_id = wan_conn_id
        self.gcp_conn_id = gcp_conn_id
        self.chunk_size = chunk_size
        self.overwrite = overwrite
        self.write_sidecar = write_sidecar
        self.model = model
        self.prompt = prompt
        self.seed = seed
        self.extra_metadata = extra_metadata or {}
        self.asset_alias = asset_alias
        self.max_download_attempts = max_download_attempts
        self.download_retry_delay = download_retry_delay
        self.download_timeout = download_timeout
        self.progress_interval = progress_interval
        self._killed = False

    @cached_property
    def hook(self) -> WanHook:
        return WanHook(wan_conn_id=self.wan_conn_id)

    @cached_property
    def gcs_client(self) -> Client:
        from airflow_provider_wan.gcs import storage_client

        return storage_client(self.gcp_conn_id)

    # -- names ----------------------------------------------------------------------------------------------------
    def _task_id(self) -> str:
        value = str(self.wan_task_id if self.wan_task_id is not None else "").strip()
        if not value or value in ("None", "null") or "/" in value or "?" in value:
            raise WanInvalidInputError(
                f"wan_task_id: {self.wan_task_id!r} is not a DashScope task id (did the upstream task push its "
                "'wan_task_id' XCom?)"
            )
        return value

    def _object_name(self, task_id: str) -> str:
        name = str(self.object_name or "").replace(TASK_ID_PLACEHOLDER, task_id).lstrip("/")
        if not name or _utf8_len(name) > 1024 or "\r" in name or "\n" in name:
            raise WanInvalidInputError(
                f"object_name: {name!r} is not a valid GCS object name (1-1024 UTF-8 bytes, no line breaks)"
            )
        return name

    @staticmethod
    def sidecar_name(object_name: str) -> str:
        """``wan/abc.mp4`` -> ``wan/abc.json``: the sidecar lies next to the video."""
        head, _, tail = object_name.rpartition("/")
        stem = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
        return f"{head}/{stem}.json" if head else f"{stem}.json"

    # -- execution ------------------------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        task_id = self._task_id()
        object_name = self._object_name(task_id)
        bucket_name = str(self.bucket_name or "").strip()
        if not bucket_name:
            raise WanInvalidInputError("bucket_name: a GCS bucket name is required")
        sidecar = self.sidecar_name(object_name) if self.write_sidecar else None
        if sidecar == object_name:
            raise WanInvalidInputError(f"object_name: {object_name!r} would be its own JSON sidecar; name it .mp4")
        self._check_metadata_fits(task_id)
        bucket = self._bucket(bucket_name)

        # GCS first: a copy made by an earlier run is returned without touching DashScope, whose record may be gone
        existing = bucket.get_blob(object_name)
        if existing is not None and self._holds_video_of(existing, task_id):
            self.log.info(
                "gs://%s/%s already holds DashScope task %s's video (generation %s, %d bytes): nothing to copy",
                bucket_name,
                object_name,
                task_id,
                existing.generation,
                existing.size or 0,
            )
            sidecar_uri = self._write_sidecar(bucket, sidecar, existing, None) if sidecar else None
            result = self._result(existing, task_id, uploaded=False, sidecar_uri=sidecar_uri)
            self._emit_asset_event(context, result)
            return result
        generation_match = self._replaceable_generation(existing, task_id, bucket_name)
        sidecar_generation = self._sidecar_generation(bucket, sidecar, task_id) if sidecar else None

        task = self._finished_task(task_id)
        blob = self._copy(task, bucket, object_name, generation_match)
        sidecar_uri = self._write_sidecar(bucket, sidecar, blob, task, sidecar_generation) if sidecar else None
        result = self._result(blob, task_id, uploaded=True, sidecar_uri=sidecar_uri)
        self._emit_asset_event(context, result)
        return result

    def _check_metadata_fits(self, task_id: str) -> None:
        """Before any download: the metadata, with generous stand-ins for what DashScope will say, fits the limit."""
        stand_in = "x" * 64
        task = WanTask(
            task_id=task_id,
            status=TaskStatus.SUCCEEDED,
            request_id=stand_in,
            submit_time=stand_in,
            end_time=stand_in,
            usage={"video_count": 1, "video_duration": 15, "video_ratio": "1920*1080", "note": "x" * 200},
        )
        self._metadata(task, uuid.uuid4().hex, 1 << 40)

    def _bucket(self, bucket_name: str) -> Bucket:
        """The bucket, once it is known to exist: a missing bucket is a final error before anything is downloaded."""
        from google.api_core import exceptions as google_errors

        try:
            bucket = self.gcs_client.lookup_bucket(bucket_name)
        except google_errors.Forbidden:
            raise WanFinalError(
                f"bucket_name: the GCS bucket {bucket_name!r} cannot be read with these credentials (HTTP 403); "
                "grant them storage.buckets.get and object access, or check gcp_conn_id. Nothing was downloaded"
            ) from None
        except google_errors.GoogleAPIError as exc:
            raise WanRetryableError(
                f"GCS did not answer the lookup of bucket {bucket_name!r} ({type(exc).__name__}); nothing was "
                "downloaded"
            ) from None
        if bucket is None:
            raise WanFinalError(
                f"bucket_name: the GCS bucket {bucket_name!r} does not exist (or is in another project); create it "
                "or fix bucket_name. Nothing was downloaded"
            )
        return bucket

    def on_kill(self) -> None:
        # the copy loop checks this flag between reads, then cancels the upload: no half object, no open session
        self._killed = True

    @staticmethod
    def _holds_video_of(blob: Blob, task_id: str) -> bool:
        """
        Whether ``blob`` is a verified copy of the task's video: the size and MD5 recorded from the download match
        what GCS stores. An object written by an older version (no recorded MD5, perhaps truncated) is not.
        """
        metadata = blob.metadata or {}
        if metadata.get(META_TASK_ID) != task_id:
            return False
        size, md5 = metadata.get(META_SOURCE_BYTES), metadata.get(META_SOURCE_MD5)
        return bool(size and md5 and size == str(blob.size) and md5 == blob.md5_hash)

    def _replaceable_generation(self, existing: Blob | None, task_id: str, bucket_name: str) -> int:
        """The ``if_generation_match`` precondition of the upload: 0 = must not exist; else the generation replaced."""
        if existing is None:
            return 0
        owner = (existing.metadata or {}).get(META_TASK_ID)
        if owner == task_id:
            self.log.warning(
                "gs://%s/%s names DashScope task %s but carries no verified size and MD5 of it (an unfinished "
                "earlier copy, or one made by an older version): replacing it",
                bucket_name,
                existing.name,
                task_id,
            )
            return int(existing.generation or 0)
        if not self.overwrite:
            held = f"DashScope task {owner}'s video" if owner else "an object not written by this operator"
            raise WanFinalError(
                f"gs://{bucket_name}/{existing.name} already exists and holds {held}, not task {task_id}'s; nothing "
                "was downloaded. Choose another object_name, or set overwrite=True to replace it",
                task_id=task_id,
            )
        self.log.info(
            "Replacing gs://%s/%s (generation %s): overwrite=True", bucket_name, existing.name, existing.generation
        )
        return int(existing.generation or 0)

    def _sidecar_generation(self, bucket: Bucket, name: str, task_id: str) -> int:
        existing = bucket.get_blob(name)
        if existing is None:
            return 0
        owner = (existing.metadata or {}).get(META_TASK_ID)
        if owner != task_id and not self.overwrite:
            raise WanFinalError(
                f"gs://{bucket.name}/{name} (the JSON sidecar) already exists and does not belong to DashScope task "
                f"{task_id}; nothing was downloaded. Choose another object_name, set overwrite=True, or "
                "write_sidecar=False",
                task_id=task_id,
            )
        return int(existing.generation or 0)

    def _finished_task(self, task_id: str) -> WanTask:
        """The task as DashScope reports it now: a fresh signed link, or the provider's error."""
        task = self.hook.get_task(task_id)
        # FAILED, CANCELED and UNKNOWN (expired after 24 hours) raise final errors here
        task.raise_for_status()
        if task.status is not TaskStatus.SUCCEEDED:
            raise WanRetryableError(
                f"DashScope task {task_id} is still {task.status.value}: there is no video to copy yet. Wait for it "
                "first (wait_for_completion=True on the generating operator, or WanTaskSensor)",
                task_id=task_id,
                request_id=task.request_id,
            )
        if not task.video_url:
            raise WanRetryableError(
                f"DashScope task {task_id} SUCCEEDED but its answer carried no video_url",
                task_id=task_id,
                request_id=task.request_id,
            )
        return task

    # -- metadata -------------------------------------------------------------------------------------------------
    def _metadata(self, task: WanTask, transfer_id: str, source_bytes: int | None) -> dict[str, str]:
        model = str(self.model) if self.model else None
        cost = cost_from_usage(model, task.usage)
        extra = self.extra_metadata
        if not isinstance(extra, Mapping):
            raise WanInvalidInputError(f"extra_metadata: must be a dict of str to str, got {type(extra).__name__}")
        fields: dict[str, str | None] = {
            **{str(k): str(v) for k, v in extra.items()},
            META_TASK_ID: task.task_id,
            "wan_model": model,
            "wan_request_id": task.request_id,
            "wan_seed": str(self.seed) if self.seed not in (None, "", "None") else None,
            "wan_usage": json.dumps(task.usage, separators=(",", ":"), sort_keys=True) if task.usage else None,
            "wan_estimated_cost_usd": f"{cost:.4f}" if cost is not None else None,
            "wan_submit_time": task.submit_time,
            "wan_end_time": task.end_time,
            META_SOURCE_BYTES: str(source_bytes) if source_bytes is not None else None,
            META_TRANSFER_ID: transfer_id,
        }
        prompts = {
            META_ORIG_PROMPT: task.orig_prompt or (str(self.prompt) if self.prompt else None),
            META_ACTUAL_PROMPT: task.actual_prompt,
        }
        # room for what _verified() records once the object verified: the size (20 digits) and the MD5 (base64)
        reserved = len(META_SOURCE_BYTES) + 20 + len(META_SOURCE_MD5) + 24
        return fit_metadata(fields, prompts, limit=METADATA_LIMIT_BYTES - reserved)

    # -- the copy -------------------------------------------------------------------------------------------------
    def _copy(self, task: WanTask, bucket: Bucket, object_name: str, generation_match: int) -> Blob:
        url = task.video_url or ""
        mask_signed_url(url)
        download = ResumableDownload(
            self.hook.session,
            url,
            task_id=task.task_id,
            log=self.log,
            timeout=self.hook.timeout,
            max_attempts=self.max_download_attempts,
            retry_delay=self.download_retry_delay,
            deadline=self.download_timeout,
            read_size=min(READ_SIZE, self.chunk_size),
        )
        while True:
            try:
                return self._copy_once(download, task, bucket, object_name, generation_match)
            except SourceChangedError as changed:
                if not download.may_restart():
                    raise WanTransferIntegrityError(
                        f"{changed}; gave up after {download.attempts} requests. Nothing was kept",
                        task_id=task.task_id,
                    ) from None
                # the upload was abandoned with the stale bytes: start both again from byte 0
                self.log.warning("%s; starting the copy again from byte 0", changed)
                download.restart()

    def _copy_once(
        self, download: ResumableDownload, task: WanTask, bucket: Bucket, object_name: str, generation_match: int
    ) -> Blob:
        transfer_id = uuid.uuid4().hex
        progress = Progress(self.log, self.progress_interval)
        blob = bucket.blob(object_name, chunk_size=self.chunk_size)
        writer: BlobWriter | None = None
        finalizing = False
        self.log.info(
            "Copying DashScope task %s's video to gs://%s/%s (%s, chunks of %g MiB)",
            task.task_id,
            bucket.name,
            object_name,
            "new object" if generation_match == 0 else f"replacing generation {generation_match}",
            self.chunk_size / MiB,
        )
        try:
            # the iteration ends normally only once the download is proven whole (length, validators, MP4 boxes)
            for chunk in download:
                if self._killed:
                    raise WanRetryableError("The transfer was killed", task_id=task.task_id)
                if writer is None:
                    # opened on the first byte: the size announced by the link goes into the object's metadata
                    blob.metadata = self._metadata(task, transfer_id, download.total)
                    writer = self._open_writer(blob, generation_match)
                writer.write(chunk)
                progress.update(download.received, download.total)
            assert writer is not None  # an empty download is never proven whole
            finalizing = True
            # the last chunk: only now does the object come into existence
            writer.close()
            stored = self._verified(bucket, object_name, transfer_id, download.received, download)
        except BaseException:
            self._abandon(writer, bucket, object_name, transfer_id, finalizing)
            raise
        elapsed, rate = progress.rate(download.received)
        self.log.info(
            "Uploaded %d bytes (%.1f MiB) in %.1f s, %.1f MB/s; %d resumption(s), %d restart(s)",
            download.received,
            download.received / MiB,
            elapsed,
            rate,
            download.resumptions,
            download.restarts,
        )
        return stored

    def _open_writer(self, blob: Blob, generation_match: int) -> BlobWriter:
        from google.cloud.storage.fileio import BlobWriter

        writer = blob.open(
            "wb",
            chunk_size=self.chunk_size,
            ignore_flush=True,
            content_type=VIDEO_CONTENT_TYPE,
            # real GCS refuses the upload if another writer created/replaced the object meanwhile
            if_generation_match=generation_match,
            # the library's own CRC32C check fires only after the object exists; ours (md5 + crc32c of the
            # downloaded bytes against what GCS stored) covers it and decides whether the object is kept
            checksum=None,
        )
        assert isinstance(writer, BlobWriter)
        return writer

    def _abandon(
        self, writer: BlobWriter | None, bucket: Bucket, object_name: str, transfer_id: str, finalizing: bool
    ) -> None:
        """After a failure: cancel the resumable session; if the last chunk may have landed, delete our object."""
        if writer is not None and not finalizing:
            try:
                writer.terminate()
            except Exception as exc:
                # an unfinished session holds no object and expires by itself after a week
                self.log.warning("Could not cancel the resumable upload session: %s", type(exc).__name__)
        if finalizing:
            try:
                stored = bucket.get_blob(object_name)
                if stored is not None and (stored.metadata or {}).get(META_TRANSFER_ID) == transfer_id:
                    stored.delete(if_generation_match=stored.generation)
                    self.log.warning("Deleted the partly verified gs://%s/%s", bucket.name, object_name)
            except Exception:
                self.log.exception(
                    "Could not check for (or delete) gs://%s/%s after a failure", bucket.name, object_name
                )

    def _verified(
        self, bucket: Bucket, object_name: str, transfer_id: str, size: int, download: ResumableDownload
    ) -> Blob:
        """
        The stored object, once its size and checksums match what was downloaded; then the verified size and MD5
        are recorded in its metadata (what a rerun trusts). A mismatch raises; the caller deletes the object.
        """
        stored = bucket.get_blob(object_name)
        uri = f"gs://{bucket.name}/{object_name}"
        if stored is None:
            raise WanTransferIntegrityError(f"{uri} does not exist after its upload completed")
        if (stored.metadata or {}).get(META_TRANSFER_ID) != transfer_id:
            # another writer replaced it right after us (only possible with overwrite races): not ours to delete
            raise WanTransferIntegrityError(f"{uri} was replaced by another writer right after this upload")
        md5, crc32c = _b64(download.md5()), download.crc32c()
        problems = []
        if stored.size != size:
            problems.append(f"size {stored.size} != {size} bytes downloaded")
        if stored.md5_hash is not None and stored.md5_hash != md5:
            problems.append(f"md5 {stored.md5_hash} != {md5}")
        if crc32c is not None and stored.crc32c is not None and stored.crc32c != _b64(crc32c):
            problems.append(f"crc32c {stored.crc32c} != {_b64(crc32c)}")
        if stored.md5_hash is None and stored.crc32c is None:
            problems.append("GCS reported no checksum to compare")
        if problems:
            raise WanTransferIntegrityError(
                f"{uri} did not verify ({'; '.join(problems)}) and was deleted; a retry copies it again",
                task_id=(stored.metadata or {}).get(META_TASK_ID),
            )
        stored.metadata = {**(stored.metadata or {}), META_SOURCE_BYTES: str(size), META_SOURCE_MD5: md5}
        stored.patch(if_generation_match=stored.generation, if_metageneration_match=stored.metageneration)
        self.log.info(
            "Verified %s: %d bytes, md5 %s, crc32c %s, generation %s",
            uri,
            size,
            stored.md5_hash,
            stored.crc32c,
            stored.generation,
        )
        return stored

    # -- sidecar --------------------------------------------------------------------------------------------------
    def _write_sidecar(
        self, bucket: Bucket, name: str, video: Blob, task: WanTask | None, generation_match: int | None = None
    ) -> str:
        """Write (or confirm) the JSON sidecar describing ``video``; return its URI."""
        uri = f"gs://{bucket.name}/{name}"
        metadata = video.metadata or {}
        task_id = metadata.get(META_TASK_ID, "")
        if generation_match is None:
            existing = bucket.get_blob(name)
            if existing is not None and (existing.metadata or {}).get(META_VIDEO_GENERATION) == str(video.generation):
                return uri  # already describes this very object
            generation_match = self._sidecar_generation(bucket, name, task_id)
        if task is None:
            # the object's metadata has the prompts cut to 8 KiB; the task (if still there) has them whole
            try:
                task = self.hook.get_task(task_id)
            except WanError:
                task = None
            if task is not None and task.status is not TaskStatus.SUCCEEDED:
                task = None
        document = self._sidecar_document(bucket.name, video, task)
        sidecar = bucket.blob(name)
        sidecar.metadata = {META_TASK_ID: task_id, META_VIDEO_GENERATION: str(video.generation)}
        sidecar.upload_from_string(
            json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True),
            content_type=SIDECAR_CONTENT_TYPE,
            if_generation_match=generation_match,
        )
        self.log.info("Wrote the JSON sidecar %s", uri)
        return uri

    def _sidecar_document(self, bucket_name: str, video: Blob, task: WanTask | None) -> dict[str, Any]:
        metadata = dict(video.metadata or {})
        usage: Any = metadata.get("wan_usage") or "{}"
        try:
            usage = json.loads(usage)
        except ValueError:
            usage = {"unparsed": usage}
        cost = metadata.get("wan_estimated_cost_usd")
        document: dict[str, Any] = {
            "wan_task_id": metadata.get(META_TASK_ID),
            "model": metadata.get("wan_model"),
            "request_id": metadata.get("wan_request_id"),
            "seed": metadata.get("wan_seed"),
            "orig_prompt": metadata.get(META_ORIG_PROMPT),
            "actual_prompt": metadata.get(META_ACTUAL_PROMPT),
            "prompts_truncated": metadata.get(META_PROMPTS_CUT) == "true",
            "usage": usage,
            "estimated_cost_usd": float(cost) if cost else None,
            "submit_time": metadata.get("wan_submit_time"),
            "end_time": metadata.get("wan_end_time"),
            "extra_metadata": {k: v for k, v in metadata.items() if not k.startswith("wan_")},
            "video": {
                "uri": f"gs://{bucket_name}/{video.name}",
                "size": video.size,
                "md5_hash": video.md5_hash,
                "crc32c": video.crc32c,
                "generation": str(video.generation),
                "content_type": video.content_type,
            },
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if task is not None:
            document.update(
                orig_prompt=task.orig_prompt or document["orig_prompt"],
                actual_prompt=task.actual_prompt or document["actual_prompt"],
                prompts_truncated=False,
                scheduled_time=task.scheduled_time,
            )
        return document

    # -- result and asset event -----------------------------------------------------------------------------------
    def _result(self, blob: Blob, task_id: str, *, uploaded: bool, sidecar_uri: str | None) -> dict[str, Any]:
        md5_hex = binascii.hexlify(base64.b64decode(blob.md5_hash)).decode() if blob.md5_hash else None
        return {
            "uri": f"gs://{blob.bucket.name}/{blob.name}",
            "bucket": blob.bucket.name,
            "object": blob.name,
            "size": blob.size,
            "md5_hash": blob.md5_hash,
            "md5_hex": md5_hex,
            "crc32c": blob.crc32c,
            # a decimal string: generations are ~2**60, and XCom's JSON round trip turns big ints into floats
            "generation": str(blob.generation),
            "content_type": blob.content_type,
            "wan_task_id": task_id,
            "uploaded": uploaded,
            "sidecar_uri": sidecar_uri,
        }

    def _emit_asset_event(self, context: Context, result: dict[str, Any]) -> None:
        from airflow.providers.common.compat.sdk import Asset, AssetAlias

        from airflow_provider_wan.compat import asset_for_uri

        events = context.get("outlet_events")
        if events is None:
            return
        uri = result["uri"]
        extra = {
            key: result[key]
            for key in (
                "bucket",
                "object",
                "size",
                "md5_hash",
                "crc32c",
                "generation",
                "content_type",
                "wan_task_id",
                "uploaded",
            )
        }
        for outlet in self.outlets or []:
            if isinstance(outlet, AssetAlias):
                events[outlet].add(asset_for_uri(uri), extra=extra)
            elif isinstance(outlet, Asset) and outlet.uri == uri:
                events[outlet].extra.update(extra)
