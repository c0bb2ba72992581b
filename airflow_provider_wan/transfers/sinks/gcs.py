"""
Google Cloud Storage: a resumable upload, ``chunk_size`` bytes per request, finalized only at commit; generation
preconditions (``ifGenerationMatch=0`` for a new object, the current generation when replacing one); size, MD5 and
CRC32C compared with what GCS computed. ``google.cloud.storage`` is imported inside the methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_wan.exceptions import WanFinalError, WanRetryableError, WanTransferIntegrityError
from airflow_provider_wan.transfers.sinks import VIDEO_CONTENT_TYPE, Destination, Sink, Stored, Upload, b64

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Bucket, Client
    from google.cloud.storage.fileio import BlobWriter

KiB = 1024
#: GCS resumable uploads take chunks in multiples of 256 KiB (except the last one)
GCS_CHUNK_MULTIPLE = 256 * KiB


class GCSSink(Sink):
    """
    A GCS bucket.

    :param bucket_name: the bucket
    :param gcp_conn_id: a Google Cloud connection (needs apache-airflow-providers-google); it wins over the
        environment. Default: the ``STORAGE_EMULATOR_HOST`` emulator when set, else Application Default Credentials
    :param impersonation_chain: service account(s) to impersonate through that connection, as in ``GCSHook``
    :param chunk_size: bytes per upload request, a multiple of 256 KiB (default 8 MiB)
    """

    kind = "GCS bucket"

    def __init__(
        self,
        bucket_name: str,
        *,
        gcp_conn_id: str | None = None,
        impersonation_chain: str | Sequence[str] | None = None,
        chunk_size: int = 8 * 1024 * KiB,
    ) -> None:
        super().__init__(bucket_name)
        self.gcp_conn_id = gcp_conn_id
        self.impersonation_chain = impersonation_chain
        self.chunk_size = chunk_size
        self._bucket: Bucket | None = None

    @classmethod
    def from_destination(cls, destination: Destination) -> GCSSink:
        return cls(destination.container, gcp_conn_id=destination.conn_id)

    def uri(self, key: str) -> str:
        return f"gs://{self.container}/{key}"

    def console_url(self, key: str) -> str | None:
        return f"https://console.cloud.google.com/storage/browser/_details/{self.container}/{quote(key)}"

    @property
    def client(self) -> Client:
        from airflow_provider_wan.gcs import storage_client

        return storage_client(self.gcp_conn_id, impersonation_chain=self.impersonation_chain)

    @property
    def bucket(self) -> Bucket:
        if self._bucket is None:
            self._bucket = self.client.bucket(self.container)
        return self._bucket

    def check(self, key: str) -> None:
        from google.api_core import exceptions as google_errors

        try:
            bucket = self.client.lookup_bucket(self.container)
        except google_errors.Forbidden:
            raise WanFinalError(
                f"bucket_name: the GCS bucket {self.container!r} cannot be read with these credentials (HTTP 403); "
                "grant them storage.buckets.get and object access, or check gcp_conn_id. Nothing was downloaded"
            ) from None
        except google_errors.GoogleAPIError as exc:
            raise WanRetryableError(
                f"GCS did not answer the lookup of bucket {self.container!r} ({type(exc).__name__}); nothing was "
                "downloaded"
            ) from None
        if bucket is None:
            raise WanFinalError(
                f"bucket_name: the GCS bucket {self.container!r} does not exist (or is in another project); create "
                "it or fix bucket_name. Nothing was downloaded"
            )
        self._bucket = bucket

    def _stored(self, blob: Blob) -> Stored:
        return Stored(
            uri=self.uri(blob.name or ""),
            size=int(blob.size or 0),
            metadata=dict(blob.metadata or {}),
            md5=blob.md5_hash,
            crc32c=blob.crc32c,
            version=str(blob.generation),
            content_type=blob.content_type,
        )

    def stat(self, key: str) -> Stored | None:
        blob = self.bucket.get_blob(key)
        return None if blob is None else self._stored(blob)

    def read_range(self, key: str, start: int, length: int, *, version: str | None) -> bytes:
        from google.api_core import exceptions as google_errors

        blob = self.bucket.blob(key, generation=int(version) if version else None)
        try:
            data: bytes = blob.download_as_bytes(start=start, end=start + length - 1, checksum=None)
        except google_errors.GoogleAPIError as exc:
            raise WanRetryableError(f"GCS did not serve bytes of {self.uri(key)} ({type(exc).__name__})") from None
        return data

    def open(self, key: str, *, metadata: Mapping[str, str], replacing: Stored | None) -> Upload:
        return _GCSUpload(self, key, dict(metadata), int(replacing.version or 0) if replacing else 0)

    def put_small(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str], replacing: Stored | None
    ) -> Stored:
        blob = self.bucket.blob(key)
        blob.metadata = dict(metadata)
        _in_our_words(
            f"the upload of {self.uri(key)}",
            lambda: blob.upload_from_string(
                data, content_type=content_type, if_generation_match=int(replacing.version or 0) if replacing else 0
            ),
        )
        return self._stored(blob)


class _GCSUpload(Upload):
    def __init__(self, sink: GCSSink, key: str, metadata: dict[str, str], generation_match: int) -> None:
        from google.cloud.storage.fileio import BlobWriter

        self.sink = sink
        self.key = key
        self.transfer_id = metadata.get("wan_transfer_id")
        self.blob = sink.bucket.blob(key, chunk_size=sink.chunk_size)
        self.blob.metadata = metadata
        self.finalizing = False
        writer = self.blob.open(
            "wb",
            chunk_size=sink.chunk_size,
            ignore_flush=True,
            content_type=VIDEO_CONTENT_TYPE,
            # real GCS refuses the upload if another writer created/replaced the object meanwhile
            if_generation_match=generation_match,
            # the library's own CRC32C check fires only after the object exists; commit() compares md5 + crc32c
            checksum=None,
        )
        assert isinstance(writer, BlobWriter)
        self.writer: BlobWriter = writer

    def write(self, chunk: bytes) -> None:
        _in_our_words(f"a chunk of {self.sink.uri(self.key)}", lambda: self.writer.write(chunk))

    def commit(self, *, size: int, md5: bytes, crc32c: bytes | None) -> Stored:
        self.finalizing = True
        # the last chunk: only now does the object come into existence
        _in_our_words(f"the last chunk of {self.sink.uri(self.key)}", self.writer.close)
        uri = self.sink.uri(self.key)
        stored = self.sink.bucket.get_blob(self.key)
        if stored is None:
            raise WanTransferIntegrityError(f"{uri} does not exist after its upload completed")
        if (stored.metadata or {}).get("wan_transfer_id") != self.transfer_id:
            # another writer replaced it right after us (only possible with overwrite races): not ours to delete
            self.finalizing = False
            raise WanTransferIntegrityError(f"{uri} was replaced by another writer right after this upload")
        problems = []
        if stored.size != size:
            problems.append(f"size {stored.size} != {size} bytes downloaded")
        if stored.md5_hash is not None and stored.md5_hash != b64(md5):
            problems.append(f"md5 {stored.md5_hash} != {b64(md5)}")
        if crc32c is not None and stored.crc32c is not None and stored.crc32c != b64(crc32c):
            problems.append(f"crc32c {stored.crc32c} != {b64(crc32c)}")
        if stored.md5_hash is None and stored.crc32c is None:
            problems.append("GCS reported no checksum to compare")
        if problems:
            raise WanTransferIntegrityError(
                f"{uri} did not verify ({'; '.join(problems)}) and was deleted; a retry copies it again",
                task_id=(stored.metadata or {}).get("wan_task_id"),
            )
        stored.metadata = {**(stored.metadata or {}), "wan_source_bytes": str(size), "wan_source_md5": b64(md5)}
        stored.patch(if_generation_match=stored.generation, if_metageneration_match=stored.metageneration)
        return self.sink._stored(stored)

    def abort(self) -> None:
        """Cancel the resumable session; if the last chunk may have landed, delete our object."""
        log = _log()
        if not self.finalizing:
            try:
                self.writer.terminate()
            except Exception as exc:
                # an unfinished session holds no object and expires by itself after a week
                log.warning("Could not cancel the resumable upload session: %s", type(exc).__name__)
            return
        try:
            stored = self.sink.bucket.get_blob(self.key)
            if stored is not None and (stored.metadata or {}).get("wan_transfer_id") == self.transfer_id:
                stored.delete(if_generation_match=stored.generation)
                log.warning("Deleted the unverified %s", self.sink.uri(self.key))
        except Exception as exc:
            log.warning("Could not check for (or delete) %s: %s", self.sink.uri(self.key), type(exc).__name__)


def _in_our_words(what: str, call: Callable[[], Any]) -> Any:
    """
    ``call()``, its failure told in our words: the client library's text of a refused chunk may quote the resumable
    session's URL (its ``upload_id`` lets anyone holding it write the upload).
    """
    import requests
    from google.api_core import exceptions as google_errors

    try:
        return call()
    except google_errors.GoogleAPIError as exc:
        code = getattr(exc, "code", None)
        answer = f"HTTP {int(code)}" if isinstance(code, int) else type(exc).__name__
        raise WanRetryableError(f"GCS answered {answer} to {what}; nothing was kept") from None
    except _media_errors() as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        answer = f"HTTP {int(status)}" if isinstance(status, int) else type(exc).__name__
        raise WanRetryableError(f"GCS answered {answer} to {what}; nothing was kept") from None
    except requests.RequestException as exc:
        # no answer: the caller's abort deletes an object the last chunk may have made
        raise WanRetryableError(f"GCS did not answer {what} ({type(exc).__name__})") from None


def _media_errors() -> tuple[type[Exception], ...]:
    """The upload library's own errors: google-resumable-media's, or the copy google-cloud-storage 3 ships."""
    found: list[type[Exception]] = []
    try:
        from google.resumable_media import common

        found += [common.InvalidResponse, common.DataCorruption]
    except ImportError:
        pass
    try:
        from google.cloud.storage import exceptions as storage_errors

        found += [storage_errors.InvalidResponse, storage_errors.DataCorruption]
    except (ImportError, AttributeError):
        pass
    return tuple(found)


def _log() -> Any:
    import logging

    return logging.getLogger("airflow.task.operators.airflow_provider_wan.transfers")
