"""
Sinks: where a verified video lands. One small class per destination; everything else (the download engine, names,
idempotency, metadata, sidecar, result, asset events) is shared by the operator layer in
:mod:`airflow_provider_wan.transfers.base`.

A sink promises, whatever the destination:

* :meth:`Sink.check` fails before any download when the destination cannot be written (a missing bucket is a final
  error naming it);
* an :class:`Upload` holds the bytes out of sight (a resumable session, a multipart upload, uncommitted blocks, a
  temporary file) in bounded memory, and makes them visible only in :meth:`Upload.commit`, called once the download
  is proven whole. ``commit`` compares what the store kept with the downloaded size and MD5, deletes it on a
  mismatch, and records ``wan_source_bytes`` and ``wan_source_md5`` in the object's metadata: what a rerun trusts;
* :meth:`Upload.abort` leaves nothing behind, and :meth:`Sink.remove_leftovers` removes what a killed transfer
  (which could not abort) left where it would show.

:func:`sink_for` picks the sink of a destination URI (``gs://``, ``s3://``, ``abfs://``/``az://``/``wasbs://``, ``file://``).
The store clients (google-cloud-storage, boto3, azure-storage-blob) are imported inside the sinks: each is an
optional extra.
"""

from __future__ import annotations

import base64
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import quote, unquote, urlsplit

from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError
from airflow_provider_wan.redact import redact_text

__all__ = ["Destination", "Sink", "Stored", "Upload", "b64", "check_no_query", "sink_for"]

VIDEO_CONTENT_TYPE = "video/mp4"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass
class Stored:
    """An object as the store reports it."""

    uri: str
    size: int
    metadata: dict[str, str] = field(default_factory=dict)
    #: base64 MD5 of the stored bytes as the store computed it; None when the store keeps none (S3 multipart)
    md5: str | None = None
    #: base64 CRC32C, when the store reports one (GCS)
    crc32c: str | None = None
    #: GCS generation, S3/Azure ETag, ...: what a precondition names
    version: str | None = None
    content_type: str | None = None


def check_ours(uri: str, held: Mapping[str, str] | None, metadata: Mapping[str, str]) -> None:
    """
    After the call that makes an object was refused on its condition (the key no longer free, or not the object it
    was to replace): an object whose metadata (``held``) carries this upload's ``wan_transfer_id`` is our own, made
    by the call the client library sent again after its answer was lost. Anything else is another writer's: a final
    error, and their object stays.
    """
    ours = metadata.get("wan_transfer_id")
    if held is None or not ours or held.get("wan_transfer_id") != ours:
        # from None: called in the handler of the refusal, whose client-library text stays out of the traceback
        raise WanFinalError(f"{uri} was written by someone else while this copy ran; nothing was replaced") from None


class Upload(ABC):
    """Bytes on their way into one object, invisible until :meth:`commit`."""

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def commit(self, *, size: int, md5: bytes, crc32c: bytes | None) -> Stored:
        """Make the object visible, verify it against ``size``/``md5``/``crc32c`` (delete it on a mismatch), record
        ``wan_source_bytes`` and ``wan_source_md5``; return it as stored."""

    @abstractmethod
    def abort(self) -> None:
        """After any failure: nothing of this upload stays (best effort, never raises)."""

    def write_whole(self, data: bytes) -> Stored:
        """Write ``data`` as the whole object and commit it against its own size and MD5; abort on any failure."""
        try:
            self.write(data)
            return self.commit(size=len(data), md5=hashlib.md5(data).digest(), crc32c=None)
        except BaseException:
            self.abort()
            raise


class Sink(ABC):
    """One destination: a bucket, container or folder, and the client that writes there."""

    #: what the destination is called in messages ("GCS bucket", "S3 bucket", "folder"...)
    kind: ClassVar[str]
    #: the store's limit on custom metadata, keys and values together, in bytes as the store counts them
    metadata_limit: ClassVar[int] = 8 * 1024
    #: metadata travels in HTTP headers: values must be ASCII (non-ASCII is percent-encoded)
    ascii_metadata: ClassVar[bool] = False

    def __init__(self, container: str) -> None:
        self.container = container

    @abstractmethod
    def uri(self, key: str) -> str: ...

    def check_key(self, key: str, parameter: str = "object_name") -> None:
        """
        Raise :class:`WanInvalidInputError` naming ``parameter`` (the operator's, where the user wrote the name)
        when the store refuses this key, or would put it elsewhere.
        """
        if not key or len(key.encode("utf-8")) > 1024 or "\r" in key or "\n" in key:
            raise WanInvalidInputError(
                f"{parameter}: {key!r} is not a valid object name (1-1024 UTF-8 bytes, no line breaks)"
            )
        if key.endswith("/"):
            raise WanInvalidInputError(
                f"{parameter}: {key!r} ends with '/': it names a folder (stores show such an object as one), not a "
                "video; end it with the file name, e.g. {wan_task_id}.mp4"
            )
        if any(segment in (".", "..") for segment in key.split("/")):
            # HTTP clients resolve them (requests turns /container/a/../../b into /b: another container), GCS
            # refuses them, consoles and sync tools show another path: the object would not be where it is named
            raise WanInvalidInputError(
                f"{parameter}: {key!r} has a '.' or '..' path segment; name the object without them"
            )

    def check_metadata_keys(self, keys: Iterable[str]) -> None:
        """Raise :class:`WanInvalidInputError` naming ``extra_metadata`` when the store refuses a metadata name."""
        return None  # most stores take any name

    @abstractmethod
    def check(self, key: str) -> None:
        """
        Before any download: the destination exists and these credentials may do what the transfer will do there;
        else a final error naming it.

        :param key: the object the transfer will write (a credential scoped below the container, such as an Azure
            container SAS, is asked about it rather than about the container)
        """

    @abstractmethod
    def stat(self, key: str) -> Stored | None: ...

    def remove_leftovers(self, keys: Iterable[str]) -> list[str]:
        """
        Remove what transfers to ``keys`` left behind when they were killed before they could abort (SIGKILL runs no
        :meth:`Upload.abort`), where such leftovers show: a folder's partial files. Called as a transfer starts; never
        touches a live transfer's upload, never raises. Returns the URIs removed.

        Default: nothing to remove (a GCS resumable session and Azure's uncommitted blocks are invisible and expire
        on their own; S3 keeps an unfinished multipart upload until the bucket's ``AbortIncompleteMultipartUpload``
        lifecycle rule removes it).
        """
        return []

    @abstractmethod
    def open(self, key: str, *, metadata: Mapping[str, str], replacing: Stored | None) -> Upload:
        """An upload of the video to ``key``; ``replacing`` is the object it may replace (None: must not exist)."""

    @abstractmethod
    def put_small(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str], replacing: Stored | None
    ) -> Stored:
        """Write a small object whole (the JSON sidecar)."""

    @abstractmethod
    def read_range(self, key: str, start: int, length: int, *, version: str | None) -> bytes:
        """``length`` bytes of the object from ``start`` (fewer at its end), of that ``version`` only (the poster
        frame's reads: :class:`~airflow_provider_wan.transfers.poster.StoredObjectReader`)."""

    def delete(self, stored: Stored, key: str) -> None:  # pragma: no cover - overridden where used
        raise NotImplementedError

    def encode_metadata(self, metadata: Mapping[str, str]) -> dict[str, str]:
        """Metadata as the store takes it: ASCII values percent-encoded where the store needs it."""
        if not self.ascii_metadata:
            return dict(metadata)
        return {key: encode_header_value(value) for key, value in metadata.items()}

    def decode_metadata(self, metadata: Mapping[str, str] | None) -> dict[str, str]:
        if not self.ascii_metadata:
            return dict(metadata or {})
        return {key.lower(): unquote(value) for key, value in (metadata or {}).items()}

    def console_url(self, key: str) -> str | None:
        """Where a person sees the object in the store's web console, when there is one."""
        return None


def encode_header_value(value: str) -> str:
    """``value`` with non-ASCII, control characters and ``%`` percent-encoded: safe in an HTTP header."""
    return quote(value, safe="".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%"))


@dataclass(frozen=True)
class Destination:
    """A parsed destination URI: scheme, connection id (``scheme://conn_id@bucket/key``), container and key."""

    scheme: str
    conn_id: str | None
    container: str
    key: str

    @classmethod
    def parse(cls, uri: str, conn_id: str | None = None) -> Destination:
        text = str(uri or "").strip()
        check_no_query(text)
        # as errors show it
        shown = repr(redact_text(text))
        try:
            parts = urlsplit(text)
        except ValueError:  # an unclosed IPv6 bracket, a bad port
            raise WanInvalidInputError(f"destination: {shown} is not a valid URI") from None
        scheme = parts.scheme.lower()
        if scheme == "file" or (not scheme and text.startswith("/")):
            path = unquote(parts.path) if scheme else text
            # file://relative/x.mp4 would silently drop "relative": only file:///abs/path (or localhost)
            if not path.startswith("/") or parts.netloc not in ("", "localhost"):
                raise WanInvalidInputError(
                    f"destination: {shown}: a file:// destination needs an absolute path (file:///data/videos/...)"
                )
            return cls("file", conn_id, "/", path.lstrip("/"))
        if scheme not in _SINKS:
            raise WanInvalidInputError(
                f"destination: {shown} is not a supported destination; use gs://, s3://, abfs:// (az://, wasbs://), "
                "or file:// followed by the bucket (container, folder) and the object name"
            )
        user, _, host = parts.netloc.rpartition("@")
        container = host
        if scheme in ("abfs", "abfss", "az", "wasb", "wasbs") and "@" in parts.netloc:
            # Azure style: abfs://container@account.dfs.core.windows.net/key: the container comes before the @
            container, user = user, ""
        if not container:
            raise WanInvalidInputError(f"destination: {shown} names no bucket (container)")
        return cls(scheme, conn_id or (user or None), container, parts.path.lstrip("/"))


def check_no_query(uri: str) -> None:
    """
    Raise :class:`WanInvalidInputError` naming ``destination`` when ``uri`` holds a ``?`` or ``#``.

    A URI's query and fragment are cut from its path: ``wan/what?.mp4`` would become the object ``wan/what`` (and
    ``wan/#{wan_task_id}.mp4`` one key, ``wan/``, for every task). And a query is where a signed link keeps its
    credential (an Azure SAS URL, a presigned S3, OSS or GCS URL): not a destination form here, as the transfer
    makes requests such a link does not sign (block lists, multipart parts, metadata reads). The URI is shown
    without its query (it may be a signature), with what to write instead.
    """
    text = str(uri or "").strip()
    if "?" not in text and "#" not in text:
        return
    shown = repr(redact_text(text))
    if text.lower().startswith(("http://", "https://")):
        raise WanInvalidInputError(
            f"destination: {shown} is a signed web link (an Azure SAS URL, a presigned S3, OSS or GCS URL), which is "
            "not a destination: name the store by its scheme (abfs://container/key, s3://bucket/key, "
            "gs://bucket/key) and give its credentials through a connection (conn_id); an Azure SAS token goes in a "
            "wasb connection's connection_string (BlobEndpoint=...;SharedAccessSignature=...)"
        )
    raise WanInvalidInputError(
        f"destination: {shown} has a '?' or '#', which would end the object name there; object names of this "
        "operator cannot hold them, and a store's credentials come from its connection (conn_id), never from the URI"
    )


def sink_for(destination: Destination) -> Sink:
    """The sink of a parsed destination; its store client is imported only now."""
    factory = _SINKS[destination.scheme]
    module_name, class_name = factory.rsplit(".", 1)
    import importlib

    module = importlib.import_module(f"airflow_provider_wan.transfers.sinks.{module_name}")
    sink: Sink = getattr(module, class_name).from_destination(destination)
    return sink


_SINKS = {
    "gs": "gcs.GCSSink",
    "gcs": "gcs.GCSSink",
    "s3": "s3.S3Sink",
    "s3a": "s3.S3Sink",
    "abfs": "azure.AzureBlobSink",
    "abfss": "azure.AzureBlobSink",
    "az": "azure.AzureBlobSink",
    "wasb": "azure.AzureBlobSink",
    "wasbs": "azure.AzureBlobSink",
    "file": "local.LocalSink",
}
