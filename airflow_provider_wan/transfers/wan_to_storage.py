"""
WanVideoToStorageOperator: a finished Wan video into any object store, named by a URI or an ``ObjectStoragePath``.

``gs://`` (native GCS sink), ``s3://`` (multipart), ``abfs://``/``az://``/``wasbs://`` (Azure block blob),
``file://`` (temporary file + atomic rename); the connection as Airflow users give it: ``s3://aws_conn@bucket/key``
(``ObjectStoragePath``'s convention) or ``conn_id``. Every destination keeps the same promises (the operator layer,
:mod:`airflow_provider_wan.transfers.base`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.transfers.base import DEFAULT_OBJECT_NAME, TASK_ID_PLACEHOLDER, WanVideoTransferOperator
from airflow_provider_wan.transfers.sinks import Destination, Sink, check_no_query, sink_for
from airflow_provider_wan.transfers.sinks.gcs import GCSSink

__all__ = ["WanVideoToStorageOperator"]

MiB = 1024 * 1024
#: Jinja expressions, statements and comments: what rendering replaces; the rest of a template is output as written
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


class WanVideoToStorageOperator(WanVideoTransferOperator):
    """
    Copy a finished Wan video from DashScope into an object store: streamed, verified, at most once.

    The video streams from a fresh signed link into the store in bounded memory (a few ``part_size`` buffers), and
    becomes visible only once the download is proven whole (length, validators, MP4 boxes) and the store's checksum
    matches. A failure anywhere leaves nothing behind; a rerun finds the verified object and uploads nothing; an
    expired result is a final error. See :doc:`/operators/wan_to_storage`.

    :param wan_task_id: the upstream operator's or sensor's result (:class:`~airflow_provider_wan.results.WanResult`,
        e.g. ``generate.output``), whose model and prompt are then recorded too; or a DashScope task id (templated)
    :param destination: where the video goes (templated): a URI such as ``s3://my-bucket/wan/{wan_task_id}.mp4``,
        ``s3://aws_conn@my-bucket/...``, ``gs://bucket/...``, ``file:///data/videos/{wan_task_id}.mp4``, or an
        ``ObjectStoragePath``. ``{wan_task_id}`` is replaced by the task id after Jinja rendering; a URI ending
        with ``/`` gets ``{wan_task_id}.mp4`` appended
    :param conn_id: the store's Airflow connection (default: the one in the URI, else the client's own
        credentials); it wins over the one in the URI
    :param impersonation_chain: ``gs://`` destinations only: service account(s) to impersonate through the
        connection, as in Google's operators (templated)
    :param part_size: bytes buffered per upload request, at least 5 MiB for S3, a multiple of 256 KiB for GCS
        (default 8 MiB): bounds the memory used (S3 holds up to four parts: three being sent, one filling)
    :param kwargs: the parameters of
        :class:`~airflow_provider_wan.transfers.wan_to_gcs.WanVideoToGCSOperator` other than the GCS ones
        (``overwrite``, ``write_sidecar``, ``poster``, ``model``, ``prompt``, ``seed``, ``extra_metadata``,
        ``asset_alias``, ``max_download_attempts``, ``download_retry_delay``, ``download_timeout``,
        ``max_video_bytes``, ``progress_interval``)
    """

    key_parameter = "destination"
    template_fields: Sequence[str] = (
        *WanVideoTransferOperator.template_fields,
        "destination_uri",
        "impersonation_chain",
    )

    def __init__(
        self,
        *,
        destination: Any,
        conn_id: str | None = None,
        impersonation_chain: str | Sequence[str] | None = None,
        part_size: int = 8 * MiB,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("asset_alias", "wan_video_to_storage")
        super().__init__(**kwargs)
        # an ObjectStoragePath carries its connection beside the URI
        self.destination_uri = str(destination)
        literal = _JINJA.sub("", self.destination_uri)
        if "?" in literal or "#" in literal:
            # written in the DAG itself, outside any template: refused as the DAG is parsed, before an upstream
            # generation is paid for (a templated one is checked once rendered, before DashScope is asked anything)
            check_no_query(self.destination_uri)
        self.key_template = _key_of(self.destination_uri)
        self.conn_id = conn_id or getattr(destination, "conn_id", None)
        self.impersonation_chain = impersonation_chain
        if not isinstance(part_size, int) or part_size < 256 * 1024 or part_size % (256 * 1024):
            raise WanInvalidInputError(f"part_size: {part_size!r} is not a positive multiple of 256 KiB")
        self.part_size_bytes = part_size

    def part_size(self) -> int:
        return self.part_size_bytes

    def destination(self, task_id: str) -> tuple[Sink, str]:
        uri = str(self.destination_uri or "").strip()
        if uri.endswith("/"):
            uri += DEFAULT_OBJECT_NAME.rpartition("/")[2]
        parsed = Destination.parse(uri.replace(TASK_ID_PLACEHOLDER, task_id), self.conn_id)
        sink = sink_for(parsed)
        if self.impersonation_chain:
            if not isinstance(sink, GCSSink):
                raise WanInvalidInputError(
                    f"impersonation_chain: only gs:// destinations impersonate a service account; {parsed.scheme}:// "
                    "takes its identity from the connection (conn_id)"
                )
            sink.impersonation_chain = self.impersonation_chain
        for name in ("part_size", "chunk_size"):
            if hasattr(sink, name):
                setattr(sink, name, max(self.part_size_bytes, 5 * MiB) if name == "part_size" else self.part_size_bytes)
        return sink, parsed.key


def _key_of(uri: str) -> str:
    """The object name part of a (not yet rendered) destination URI: what follows the bucket."""
    text = uri.strip()
    if "://" not in text:
        return text.lstrip("/")
    return text.split("://", 1)[1].partition("/")[2]
