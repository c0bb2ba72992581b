"""
The operator layer every transfer shares: names, idempotency, metadata, the copy loop, sidecar, result and asset
events. A destination adds only a sink (:mod:`airflow_provider_wan.transfers.sinks`).

The way through::

    parameters checked (task id, object name, metadata size), destination checked (a missing bucket is final)
    store: object already there for this DashScope task, with a verified size and MD5? --yes--> return it
    DashScope: GET /tasks/{id} for a fresh signed video_url (the copy in XCom may be stale)
    download engine --bytes, proven whole--> sink upload (out of sight) --commit: visible, verified, recorded
    any failure --> the upload is aborted: nothing is kept (what a killed worker left: removed by the next transfer)
    then, next to the video: the JSON sidecar (write_sidecar) and the poster frame (poster), each written whole
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
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
from airflow_provider_wan.hooks.classify import TASK_ID_PATTERN
from airflow_provider_wan.hooks.schedule import parse_task_time
from airflow_provider_wan.hooks.wan import TaskStatus, WanHook, WanTask, link_address_problem, link_problem
from airflow_provider_wan.lineage import LineageRecord, dashscope_namespace, storage_dataset
from airflow_provider_wan.masking import SignedLinkMasking, mask_signed_url
from airflow_provider_wan.models import cost_from_usage
from airflow_provider_wan.results import WanStoredVideo, task_id_of
from airflow_provider_wan.schema import parse_int
from airflow_provider_wan.transfers.download import (
    READ_SIZE,
    Progress,
    ResumableDownload,
    SourceChangedError,
)
from airflow_provider_wan.transfers.links import WanStoredObjectLink
from airflow_provider_wan.transfers.poster import (
    POSTER_FORMATS,
    READ_BUFFER,
    StoredObjectReader,
    check_poster,
    poster_image,
    poster_name,
    require_pyav,
)
from airflow_provider_wan.transfers.sinks import Sink, Stored, Upload, b64, encode_header_value

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

__all__ = [
    "ASSET_EVENT_EXTRA",
    "DEFAULT_ASSET_ALIAS",
    "DEFAULT_MAX_VIDEO_BYTES",
    "DEFAULT_OBJECT_NAME",
    "METADATA_LIMIT_BYTES",
    "TASK_ID_PLACEHOLDER",
    "WanVideoTransferOperator",
    "fit_metadata",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
#: ``{wan_task_id}`` is replaced after Jinja rendering: the DashScope task id is unique, so is the object name
TASK_ID_PLACEHOLDER = "{wan_task_id}"
DEFAULT_OBJECT_NAME = f"wan/{TASK_ID_PLACEHOLDER}.mp4"
SIDECAR_CONTENT_TYPE = "application/json"
#: GCS's limit on an object's custom metadata, keys and values together (the default budget)
METADATA_LIMIT_BYTES = 8 * KiB
#: every transfer announces its object through this asset alias unless told otherwise
DEFAULT_ASSET_ALIAS = "wan_video_to_gcs"
#: the largest video a transfer stores unless told otherwise: a Wan video (at most 15 s of 1080p) is tens of MB; 1 GiB
#: would need over 500 Mbit/s, so only a link serving something else (a body without end, a terabyte announced)
#: reaches it, and stopping there costs at most 1 GiB of storage and bandwidth, not download_timeout's worth
DEFAULT_MAX_VIDEO_BYTES = 1 * GiB

#: what an asset event's ``extra`` says of the video (the asset itself is the destination prefix)
ASSET_EVENT_EXTRA = (
    "uri",
    "object",
    "size",
    "md5_hash",
    "md5_hex",
    "crc32c",
    "generation",
    "content_type",
    "wan_task_id",
    "model",
    "uploaded",
)

# custom metadata keys
META_TASK_ID = "wan_task_id"
META_TRANSFER_ID = "wan_transfer_id"
META_SOURCE_BYTES = "wan_source_bytes"
#: MD5 (base64) of the downloaded bytes, recorded once the object verified: a rerun trusts only an object carrying it
META_SOURCE_MD5 = "wan_source_md5"
META_ORIG_PROMPT = "wan_orig_prompt"
META_ACTUAL_PROMPT = "wan_actual_prompt"
META_PROMPTS_CUT = "wan_prompts_truncated"
META_VIDEO_GENERATION = "wan_video_generation"
#: what a sink adds at commit: the size (20 digits) and the MD5 (base64), reserved in the metadata budget
_RESERVED = len(META_SOURCE_BYTES) + 20 + len(META_SOURCE_MD5) + 24


# --- metadata ------------------------------------------------------------------------------------------------------
def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, budget: int, measure: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` whose measure is at most ``budget``, never inside a character."""
    if measure(text) <= budget:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def fit_metadata(
    fields: Mapping[str, str | None],
    prompts: Mapping[str, str | None],
    limit: int = METADATA_LIMIT_BYTES,
    measure: Callable[[str], int] = _utf8_len,
) -> dict[str, str]:
    """
    Custom metadata: every field of ``fields``, then the ``prompts`` cut to fit ``limit`` bytes in total.

    Stores cap an object's custom metadata (GCS and Azure 8 KiB, S3 2 KiB); a wan2.6 prompt may be 1,500 characters
    (4,500 bytes in Chinese) and the extended prompt longer. The prompts share what the other fields leave, each
    getting at least an equal part; when one is cut, ``wan_prompts_truncated`` says so (the JSON sidecar keeps them
    whole).

    :param fields: metadata that must fit whole; None values are left out
    :param prompts: long texts, cut on character boundaries in the order given
    :param limit: budget in bytes (default 8 KiB, GCS's limit)
    :param measure: size of a text as the store counts it (default: UTF-8 bytes; percent-encoded for S3)
    :raises WanInvalidInputError: when ``fields`` alone do not fit (only possible with a huge ``extra_metadata``)
    """
    metadata = {key: str(value) for key, value in fields.items() if value is not None}
    marker_cost = len(META_PROMPTS_CUT) + len("true")
    used = sum(len(k) + measure(v) for k, v in metadata.items())
    texts = {key: value for key, value in prompts.items() if value}
    needed = used + sum(len(k) + measure(v) for k, v in texts.items())
    if needed <= limit:
        metadata.update(texts)
        return metadata
    # the truncation marker must fit too
    budget = limit - used - marker_cost - sum(len(k) for k in texts)
    if budget < 0:
        raise WanInvalidInputError(
            f"extra_metadata: the object metadata takes {used} bytes, over the store's limit of {limit} bytes for "
            "keys and values together; shorten extra_metadata"
        )
    remaining = list(texts.items())
    for index, (key, value) in enumerate(remaining):
        share = budget // (len(remaining) - index)
        # a short text takes only what it needs; the rest goes to the next one
        cut = _cut(value, share, measure)
        metadata[key] = cut
        budget -= measure(cut)
    metadata[META_PROMPTS_CUT] = "true"
    return metadata


def _video_bytes_cap(value: Any) -> int:
    """``max_video_bytes`` as an int (a template renders it as text: "2147483648"), or an error naming it."""
    cap = parse_int(value)
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise WanInvalidInputError(
            f"max_video_bytes: must be a whole number of bytes >= 1 (ASCII digits when templated), got {value!r}; "
            f"the default is {DEFAULT_MAX_VIDEO_BYTES} (1 GiB)"
        )
    return cap


def _recorded_cost(metadata: Mapping[str, str]) -> float | None:
    """The cost estimate an object's metadata records (``wan_estimated_cost_usd``), or None."""
    try:
        return float(metadata.get("wan_estimated_cost_usd") or "")
    except ValueError:
        return None


# --- the operator layer --------------------------------------------------------------------------------------------
class WanVideoTransferOperator(SignedLinkMasking, BaseOperator):
    """
    Base of the transfers: copy a finished Wan video from DashScope into one object, streamed, verified, at most once.

    Subclasses say where, with :meth:`destination` (a sink and an object name, rendered at run time); everything else
    is here. See :class:`~airflow_provider_wan.transfers.wan_to_storage.WanVideoToStorageOperator` for the
    parameters.
    """

    template_fields: Sequence[str] = ("wan_task_id", "model", "prompt", "seed", "extra_metadata", "max_video_bytes")
    template_fields_renderers: ClassVar[dict[str, str]] = {"extra_metadata": "json"}
    ui_color = "#ff6a00"
    #: the parameter that names the object, for error messages
    key_parameter: ClassVar[str] = "object_name"
    operator_extra_links = (WanStoredObjectLink(),)

    def __init__(
        self,
        *,
        wan_task_id: str | Mapping[str, Any],
        wan_conn_id: str = WanHook.default_conn_name,
        overwrite: bool = False,
        write_sidecar: bool = False,
        poster: str | None = None,
        model: str | None = None,
        prompt: str | None = None,
        seed: int | str | None = None,
        extra_metadata: dict[str, str] | None = None,
        asset_alias: str | None = DEFAULT_ASSET_ALIAS,
        max_download_attempts: int = 5,
        download_retry_delay: float = 1.0,
        download_timeout: float | None = 3600.0,
        max_video_bytes: int | str = DEFAULT_MAX_VIDEO_BYTES,
        progress_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(max_video_bytes, str):
            # a template is checked once rendered (execute)
            _video_bytes_cap(max_video_bytes)
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
        self.wan_conn_id = wan_conn_id
        self.overwrite = overwrite
        self.write_sidecar = write_sidecar
        self.poster = check_poster(poster)
        self.model = model
        self.prompt = prompt
        self.seed = seed
        self.extra_metadata = extra_metadata or {}
        self.asset_alias = asset_alias
        self.max_download_attempts = max_download_attempts
        self.download_retry_delay = download_retry_delay
        self.download_timeout = download_timeout
        self.max_video_bytes = max_video_bytes
        self.progress_interval = progress_interval
        self._killed = False
        #: the object name as written in the DAG, before Jinja: its fixed head names the asset (see asset_uri)
        self.key_template: str | None = None
        #: what this run stored, for OpenLineage (get_openlineage_facets_on_complete)
        self.lineage_record: LineageRecord | None = None

    @cached_property
    def hook(self) -> WanHook:
        return WanHook(wan_conn_id=self.wan_conn_id)

    def destination(self, task_id: str) -> tuple[Sink, str]:
        """The sink and the object name (``{wan_task_id}`` already replaced) of this run."""
        raise NotImplementedError

    def part_size(self) -> int:
        """Bytes a sink buffers before sending them (bounds the memory used)."""
        return 8 * MiB

    # -- names ----------------------------------------------------------------------------------------------------
    def _task_id(self) -> str:
        named = task_id_of(self.wan_task_id)
        value = str(named if named is not None else "").strip()
        # the hook's own rule: a '#' would be cut from the request's URL (reading another task), a space or '..'
        # would reach the object name; refused before the store or DashScope is asked
        if not TASK_ID_PATTERN.fullmatch(value) or value in ("None", "null"):
            shown = f"a {type(self.wan_task_id).__name__} without 'wan_task_id'" if named is None else repr(value)
            raise WanInvalidInputError(
                f"wan_task_id: {shown} is not a DashScope task id; give the task id or the upstream operator's "
                "result (e.g. wan_task_id=generate.output)"
            )
        return value

    def _upstream(self) -> Mapping[str, Any]:
        """The upstream operator's or sensor's result, when ``wan_task_id`` is one; else empty."""
        return self.wan_task_id if isinstance(self.wan_task_id, Mapping) else {}

    def _model(self) -> str | None:
        """The model: the ``model`` parameter, else the upstream result's."""
        model = self.model or self._upstream().get("model")
        return str(model) if model else None

    @staticmethod
    def object_key(template: str, task_id: str) -> str:
        return str(template or "").replace(TASK_ID_PLACEHOLDER, task_id).lstrip("/")

    @staticmethod
    def sidecar_name(object_name: str) -> str:
        """``wan/abc.mp4`` -> ``wan/abc.json``: the sidecar lies next to the video."""
        head, _, tail = object_name.rpartition("/")
        stem = tail.rsplit(".", 1)[0] if "." in tail.lstrip(".") else tail
        return f"{head}/{stem}.json" if head else f"{stem}.json"

    # -- execution ------------------------------------------------------------------------------------------------
    def execute(self, context: Context) -> WanStoredVideo:
        task_id = self._task_id()
        max_video_bytes = _video_bytes_cap(self.max_video_bytes)
        sink, key = self.destination(task_id)
        sink.check_key(key, self.key_parameter)
        sidecar = self.sidecar_name(key) if self.write_sidecar else None
        if sidecar == key:
            raise WanInvalidInputError(f"{self.key_parameter}: {key!r} would be its own JSON sidecar; name it .mp4")
        poster = poster_name(key, self.poster) if self.poster else None
        if poster is not None:
            require_pyav(str(self.poster))
            if poster == key:
                raise WanInvalidInputError(f"{self.key_parameter}: {key!r} would be its own poster; name it .mp4")
        for name, what in ((sidecar, "its JSON sidecar"), (poster, "its poster")):
            if name:
                # a name at the store's limit has a longer sidecar (.json for .mp4), refused once the video is stored
                sink.check_key(name, f"{self.key_parameter} ({what})")
        self._check_metadata_fits(sink, task_id)
        # the destination before DashScope: a missing bucket must not cost a download (nor a retry of one)
        sink.check(key)
        for leftover in sink.remove_leftovers(name for name in (key, sidecar, poster) if name):
            self.log.warning(
                "Removed %s, left by an earlier transfer to this name that was killed before it could clean up",
                leftover,
            )

        # the store first: a copy made by an earlier run is returned without touching DashScope
        existing = sink.stat(key)
        if existing is not None and self._holds_video_of(existing, task_id):
            self.log.info(
                "%s already holds DashScope task %s's video (%d bytes, MD5 %s): nothing to copy",
                existing.uri,
                task_id,
                existing.size,
                existing.metadata.get(META_SOURCE_MD5),
            )
            sidecar_uri = self._write_sidecar(sink, sidecar, existing, None) if sidecar else None
            poster_uri = self._write_poster(sink, poster, key, existing, sink.stat(poster)) if poster else None
            result = self._result(
                sink, key, existing, task_id, uploaded=False, sidecar_uri=sidecar_uri, poster_uri=poster_uri
            )
            self._announce(context, result)
            return result
        self._check_replaceable(existing, task_id)
        # the files beside the video before DashScope: one that is not ours must not cost a download
        sidecar_existing = self._companion_replaceable(sink, sidecar, task_id, "write_sidecar") if sidecar else None
        poster_existing = self._companion_replaceable(sink, poster, task_id, "poster") if poster else None

        task = self._finished_task(task_id)
        stored = self._copy(task, sink, key, existing, max_video_bytes, self._estimated_cost(task))
        sidecar_uri = self._write_sidecar(sink, sidecar, stored, task, sidecar_existing) if sidecar else None
        poster_uri = self._write_poster(sink, poster, key, stored, poster_existing) if poster else None
        result = self._result(sink, key, stored, task_id, uploaded=True, sidecar_uri=sidecar_uri, poster_uri=poster_uri)
        self._announce(context, result)
        return result

    def _announce(self, context: Context, result: WanStoredVideo) -> None:
        """The asset event, and the console link (an extra link of the task) where the store has a console."""
        self._emit_asset_event(context, result)
        ti = context.get("ti")
        console_url = result["console_url"]
        if ti is not None and console_url:
            WanStoredObjectLink.persist(ti, console_url)

    def on_kill(self) -> None:
        # the copy loop checks this flag between reads, then aborts the upload: no half object, no open session
        self._killed = True

    @staticmethod
    def _holds_video_of(stored: Stored, task_id: str) -> bool:
        """
        Whether ``stored`` is a verified copy of the task's video: the size and MD5 recorded from the download match
        what the store holds. An object written by an older version (no recorded MD5, perhaps truncated) is not.
        """
        metadata = stored.metadata
        if metadata.get(META_TASK_ID) != task_id:
            return False
        size, md5 = metadata.get(META_SOURCE_BYTES), metadata.get(META_SOURCE_MD5)
        if not (size and md5 and size == str(stored.size)):
            return False
        # the store's own checksum of the bytes it holds, where it keeps one (S3 multipart objects have none)
        return stored.md5 is None or stored.md5 == md5

    def _check_replaceable(self, existing: Stored | None, task_id: str) -> None:
        if existing is None:
            return
        owner = existing.metadata.get(META_TASK_ID)
        if owner == task_id:
            self.log.warning(
                "%s names DashScope task %s but carries no verified size and MD5 of it (an unfinished earlier copy, "
                "or one made by an older version): replacing it",
                existing.uri,
                task_id,
            )
            return
        if not self.overwrite:
            held = f"DashScope task {owner}'s video" if owner else "an object not written by this operator"
            raise WanFinalError(
                f"{existing.uri} already exists and holds {held}, not task {task_id}'s; nothing was downloaded. "
                "Choose another object_name, or set overwrite=True to replace it",
                task_id=task_id,
            )
        self.log.info("Replacing %s: overwrite=True", existing.uri)

    def _companion_replaceable(self, sink: Sink, name: str, task_id: str, parameter: str) -> Stored | None:
        """The sidecar or poster at ``name`` if this task may replace it (it is ours, or ``overwrite``)."""
        existing = sink.stat(name)
        if existing is None:
            return None
        if existing.metadata.get(META_TASK_ID) != task_id and not self.overwrite:
            what = "the JSON sidecar" if parameter == "write_sidecar" else "the poster"
            switch = "write_sidecar=False" if parameter == "write_sidecar" else "poster=None"
            raise WanFinalError(
                f"{existing.uri} ({what}) already exists and does not belong to DashScope task {task_id}; "
                f"nothing was downloaded. Choose another object_name, set overwrite=True, or {switch}",
                task_id=task_id,
            )
        return existing

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
    def _check_metadata_fits(self, sink: Sink, task_id: str) -> None:
        """Before any download: the metadata, with generous stand-ins for what DashScope will say, fits the limit."""
        stand_in = "x" * 64
        task = WanTask(
            task_id=task_id,
            status=TaskStatus.SUCCEEDED,
            request_id=stand_in,
            submit_time=stand_in,
            end_time=stand_in,
            usage={"video_count": 1, "video_duration": 15, "video_ratio": "1920*1080", "note": "x" * 100},
        )
        # the estimate's stand-in: $1,000,000.0000 is longer than any estimate one video reaches
        sink.check_metadata_keys(self._metadata(sink, task, uuid.uuid4().hex, 1 << 40, 1e6))

    def _estimated_cost(self, task: WanTask) -> float | None:
        """
        The cost estimate the object records: the one the create made (carried by the upstream result, priced then
        with the user's prices, as its own result reports it), else the finished task's usage priced by the hook's
        price lookup (``[wan] prices``, the connection extra ``prices``, then the catalogue). A broken price table
        costs the estimate, never the copy of a paid video.
        """
        carried = self._upstream().get("estimated_cost_usd")
        if isinstance(carried, int | float) and not isinstance(carried, bool):
            return float(carried)
        model = self._model()
        if model is None:
            return None
        try:
            prices = self.hook.price_overrides().get(model)
        except WanInvalidInputError as exc:
            self.log.warning("%s; the object records no cost estimate", exc)
            return None
        return cost_from_usage(model, task.usage, prices)

    def _metadata(
        self, sink: Sink, task: WanTask, transfer_id: str, source_bytes: int | None, cost: float | None
    ) -> dict[str, str]:
        model = self._model()
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
            META_ORIG_PROMPT: task.orig_prompt
            or (str(self.prompt) if self.prompt else None)
            or self._upstream().get("orig_prompt"),
            META_ACTUAL_PROMPT: task.actual_prompt,
        }
        measure = (lambda text: len(encode_header_value(text))) if sink.ascii_metadata else _utf8_len
        return fit_metadata(fields, prompts, limit=sink.metadata_limit - _RESERVED, measure=measure)

    # -- the copy -------------------------------------------------------------------------------------------------
    def _copy(
        self, task: WanTask, sink: Sink, key: str, replacing: Stored | None, max_bytes: int, cost: float | None
    ) -> Stored:
        from airflow_provider_wan.hooks.guard import guarded_session

        url = task.video_url or ""
        mask_signed_url(url)
        base_url = self.hook.credentials.base_url
        # a hostile or mixed-up answer must not point the worker at itself or the cloud's metadata service: the link
        # as written is checked before each request (refuse), the address each connection reaches by the session
        with guarded_session(lambda address: link_address_problem(address, base_url)) as session:
            download = ResumableDownload(
                session,
                url,
                task_id=task.task_id,
                log=self.log,
                timeout=self.hook.timeout,
                max_attempts=self.max_download_attempts,
                retry_delay=self.download_retry_delay,
                deadline=self.download_timeout,
                read_size=min(READ_SIZE, self.part_size()),
                max_bytes=max_bytes,
                refuse=lambda link: link_problem(link, base_url),
                # a refused link is an expiry only 24 hours after the end DashScope reports
                ended_at=parse_task_time(task.end_time),
            )
            while True:
                try:
                    return self._copy_once(download, task, sink, key, replacing, cost)
                except SourceChangedError as changed:
                    if not download.may_restart():
                        raise WanTransferIntegrityError(
                            f"{changed.message}; gave up after {download.attempts} requests. Nothing was kept",
                            task_id=task.task_id,
                        ) from None
                    # the upload was abandoned with the stale bytes: start both again from byte 0
                    self.log.warning("%s; starting the copy again from byte 0", changed)
                    download.restart()

    def _copy_once(
        self,
        download: ResumableDownload,
        task: WanTask,
        sink: Sink,
        key: str,
        replacing: Stored | None,
        cost: float | None,
    ) -> Stored:
        transfer_id = uuid.uuid4().hex
        progress = Progress(self.log, self.progress_interval)
        upload: Upload | None = None
        self.log.info(
            "Copying DashScope task %s's video to %s (%s)",
            task.task_id,
            sink.uri(key),
            "new object" if replacing is None else "replacing the object there",
        )
        try:
            # the iteration ends normally only once the download is proven whole (length, validators, MP4 boxes)
            for chunk in download:
                if self._killed:
                    raise WanRetryableError("The transfer was killed", task_id=task.task_id)
                if upload is None:
                    # opened on the first byte: the size announced by the link goes into the object's metadata
                    metadata = self._metadata(sink, task, transfer_id, download.total, cost)
                    upload = sink.open(key, metadata=metadata, replacing=replacing)
                upload.write(chunk)
                progress.update(download.received, download.total)
            assert upload is not None  # an empty download is never proven whole
            # only now does the object become visible; commit verifies it and records the size and MD5
            stored = upload.commit(size=download.received, md5=download.md5(), crc32c=download.crc32c())
        except BaseException:
            if upload is not None:
                upload.abort()
            raise
        elapsed, rate = progress.rate(download.received)
        self.log.info(
            "Stored %s: %d bytes (%.1f MiB) in %.1f s, %.1f MB/s, MD5 %s; %d resumption(s), %d restart(s)",
            stored.uri,
            download.received,
            download.received / MiB,
            elapsed,
            rate,
            stored.metadata.get(META_SOURCE_MD5),
            download.resumptions,
            download.restarts,
        )
        return stored

    # -- sidecar --------------------------------------------------------------------------------------------------
    def _write_sidecar(
        self, sink: Sink, name: str, video: Stored, task: WanTask | None, existing: Stored | None = None
    ) -> str:
        """Write (or confirm) the JSON sidecar describing ``video``; return its URI."""
        task_id = video.metadata.get(META_TASK_ID, "")
        if task is None:
            existing = sink.stat(name)
            if existing is not None and existing.metadata.get(META_VIDEO_GENERATION) == str(video.version):
                return existing.uri  # already describes this very object
            existing = self._companion_replaceable(sink, name, task_id, "write_sidecar")
            # the object's metadata has the prompts cut; the task (if still there) has them whole
            try:
                task = self.hook.get_task(task_id)
            except WanError:
                task = None
            if task is not None and task.status is not TaskStatus.SUCCEEDED:
                task = None
        document = self._sidecar_document(video, task)
        stored = sink.put_small(
            name,
            json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True).encode("utf-8"),
            content_type=SIDECAR_CONTENT_TYPE,
            metadata={META_TASK_ID: task_id, META_VIDEO_GENERATION: str(video.version)},
            replacing=existing,
        )
        self.log.info("Wrote the JSON sidecar %s", stored.uri)
        return stored.uri

    # -- poster -----------------------------------------------------------------------------------------------------
    def _write_poster(self, sink: Sink, name: str, key: str, video: Stored, existing: Stored | None) -> str:
        """
        Write (or confirm) the poster of ``video``: its first frame, read from the stored, verified object (a few
        ranged reads, one decoded frame). A poster already made of this very object in this format is kept.
        """
        fmt = POSTER_FORMATS[str(self.poster)]
        task_id = video.metadata.get(META_TASK_ID, "")
        if (
            existing is not None
            and existing.metadata.get(META_TASK_ID) == task_id
            and existing.metadata.get(META_VIDEO_GENERATION) == str(video.version)
            and existing.content_type == fmt.content_type
        ):
            return existing.uri  # already made of this very object
        if existing is not None:
            existing = self._companion_replaceable(sink, name, task_id, "poster")
        reader = StoredObjectReader(sink, key, video)
        data, width, height = poster_image(io.BufferedReader(reader, READ_BUFFER), str(self.poster))
        stored = sink.put_small(
            name,
            data,
            content_type=fmt.content_type,
            metadata={
                META_TASK_ID: task_id,
                META_VIDEO_GENERATION: str(video.version),
                "wan_poster_size": f"{width}*{height}",
            },
            replacing=existing,
        )
        # written whole in one request; what the store kept must be these bytes
        if stored.size != len(data) or stored.md5 not in (None, b64(hashlib.md5(data).digest())):
            raise WanTransferIntegrityError(
                f"{stored.uri}: the store kept {stored.size} bytes, not the {len(data)} bytes of the poster",
                task_id=task_id,
            )
        self.log.info(
            "Wrote the poster %s (%s, %d*%d, %d bytes; %d bytes of the video read)",
            stored.uri,
            fmt.content_type,
            width,
            height,
            len(data),
            reader.fetched,
        )
        return stored.uri

    @staticmethod
    def _sidecar_document(video: Stored, task: WanTask | None) -> dict[str, Any]:
        metadata = video.metadata
        usage: Any = metadata.get("wan_usage") or "{}"
        try:
            usage = json.loads(usage)
        except ValueError:
            usage = {"unparsed": usage}
        document: dict[str, Any] = {
            "wan_task_id": metadata.get(META_TASK_ID),
            "model": metadata.get("wan_model"),
            "request_id": metadata.get("wan_request_id"),
            "seed": metadata.get("wan_seed"),
            "orig_prompt": metadata.get(META_ORIG_PROMPT),
            "actual_prompt": metadata.get(META_ACTUAL_PROMPT),
            "prompts_truncated": metadata.get(META_PROMPTS_CUT) == "true",
            "usage": usage,
            "estimated_cost_usd": _recorded_cost(metadata),
            "submit_time": metadata.get("wan_submit_time"),
            "end_time": metadata.get("wan_end_time"),
            "extra_metadata": {k: v for k, v in metadata.items() if not k.startswith("wan_")},
            "video": {
                "uri": video.uri,
                "size": video.size,
                "md5_hash": video.md5 or metadata.get(META_SOURCE_MD5),
                "crc32c": video.crc32c,
                "generation": str(video.version),
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

    # -- result, asset event, lineage -----------------------------------------------------------------------------
    def _result(
        self,
        sink: Sink,
        key: str,
        stored: Stored,
        task_id: str,
        *,
        uploaded: bool,
        sidecar_uri: str | None,
        poster_uri: str | None,
    ) -> WanStoredVideo:
        md5 = stored.md5 or stored.metadata.get(META_SOURCE_MD5)
        metadata = stored.metadata
        try:
            usage = json.loads(metadata.get("wan_usage") or "{}")
        except ValueError:
            usage = {}
        result: WanStoredVideo = {
            "wan_task_id": task_id,
            # what the object records: a rerun reports the model and usage the first run stored
            "model": metadata.get("wan_model") or self._model(),
            "uri": stored.uri,
            "bucket": sink.container,
            "object": key,
            "size": stored.size,
            "md5_hash": md5,
            "md5_hex": binascii.hexlify(base64.b64decode(md5)).decode() if md5 else None,
            "crc32c": stored.crc32c,
            # a string: GCS generations are ~2**60, and XCom's JSON round trip turns big ints into floats
            "generation": None if stored.version is None else str(stored.version),
            "content_type": stored.content_type,
            "uploaded": uploaded,
            "sidecar_uri": sidecar_uri,
            "poster_uri": poster_uri,
            # the object in the store's web console (built from the bucket and key: never a signed link)
            "console_url": sink.console_url(key),
            "usage": usage if isinstance(usage, dict) else {},
            "estimated_cost_usd": _recorded_cost(metadata),
            "asset_uri": self.asset_uri(sink, key) if self.asset_alias or self.outlets else None,
        }
        self.lineage_record = self._lineage_record(sink, result)
        return result

    def _lineage_record(self, sink: Sink, result: WanStoredVideo) -> LineageRecord:
        """What OpenLineage will report, recorded now: the listener may run in a forked process, after the task."""
        try:
            # resolved already unless this run found its copy without asking DashScope; no request either way
            namespace = dashscope_namespace(self.hook.credentials.base_url)
        except WanError:
            namespace = dashscope_namespace(None)
        return LineageRecord(
            namespace=namespace,
            wan_task_id=result["wan_task_id"],
            model=result["model"],
            usage=result["usage"],
            estimated_cost_usd=result["estimated_cost_usd"],
            stored=storage_dataset(result["uri"], getattr(sink, "account_name", None)),
        )

    def asset_uri(self, sink: Sink, key: str) -> str:
        """The asset announcing ``key``: its destination prefix, without the trailing ``/`` (Airflow strips it)."""
        prefix = self.asset_prefix(key).rstrip("/")
        return sink.uri(prefix) if prefix else sink.uri("").rstrip("/")

    def asset_prefix(self, key: str) -> str:
        """
        The folder of ``key`` that names its asset: the fixed head of the object name as written in the DAG (up to
        the last ``/`` before any Jinja or ``{wan_task_id}``), so every video of one destination, whatever its date
        partition or task id, is an event of one asset. ``videos/{{ ds }}/{wan_task_id}.mp4`` -> ``videos/``.
        """
        template = self.key_template if self.key_template is not None else key
        head = template.split("{", 1)[0].lstrip("/")
        prefix = head[: head.rfind("/") + 1]
        # a template whose head the rendered name does not start with (a templated bucket): the object's own folder
        return prefix if key.startswith(prefix) else key[: key.rfind("/") + 1]

    def _emit_asset_event(self, context: Context, result: WanStoredVideo) -> None:
        from airflow.providers.common.compat.sdk import Asset, AssetAlias

        from airflow_provider_wan.compat import asset_for_uri

        events = context.get("outlet_events")
        if events is None or result["asset_uri"] is None:
            return
        # one asset per destination prefix; the video is in the event's extra (no signed link: only the object)
        extra = {
            key: result[key]  # type: ignore[literal-required]
            for key in ASSET_EVENT_EXTRA
        }
        for outlet in self.outlets or []:
            if isinstance(outlet, AssetAlias):
                events[outlet].add(asset_for_uri(result["asset_uri"]), extra=extra)
            elif isinstance(outlet, Asset) and outlet.uri == result["asset_uri"]:
                events[outlet].extra.update(extra)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """
        OpenLineage (with apache-airflow-providers-openlineage): the DashScope model as input, the stored object as
        output, the ``wan`` run facet (task id, model, usage, cost). See :doc:`/lineage`.
        """
        from airflow_provider_wan._openlineage import operator_lineage

        return operator_lineage(self.lineage_record, model_is_input=True)
