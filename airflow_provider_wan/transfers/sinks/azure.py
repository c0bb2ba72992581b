"""
Azure Blob Storage: a block blob. Each ``part_size`` buffer is staged as one block with its transactional MD5
(Azure rejects a block whose bytes do not match it); staged blocks are invisible. The block list is committed only
at :meth:`Upload.commit`, once the download is proven whole, with the content type, the download's MD5 and the final
metadata in the same request: the blob appears whole, described, or not at all. On failure nothing is committed and
Azure drops the uncommitted blocks on its own (after a week). ``azure-storage-blob`` is imported inside the methods;
the connection is a ``wasb`` connection (connection string in the extra, or account name and key) read through
``BaseHook``, so the microsoft-azure provider is not needed.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_wan.exceptions import (
    WanFinalError,
    WanInvalidInputError,
    WanRetryableError,
    WanTransferIntegrityError,
)
from airflow_provider_wan.transfers.sinks import (
    VIDEO_CONTENT_TYPE,
    Destination,
    Sink,
    Stored,
    Upload,
    b64,
    check_ours,
)

MiB = 1024 * 1024


#: an ETag no blob has: a conditional delete that names it deletes nothing
_NO_SUCH_ETAG = '"0x0"'
#: Azure's error codes are words (``ContainerNotFound``); anything else is not shown
_ERROR_CODE = re.compile(r"[A-Za-z]{1,64}")


def _block_ids() -> Callable[[int], str]:
    """
    The ids of one upload's blocks (or of the check's one block): index -> ``<16 random hex digits>-<6 digits>``,
    base64. Azure refuses a block whose id differs in length from those of the blob's other blocks, staged ones
    included, and the check stages its block on the very blob the copy then writes: so both take their ids here.
    """
    prefix = os.urandom(8).hex()
    return lambda index: base64.b64encode(f"{prefix}-{index:06d}".encode()).decode()


def _error_code(exc: Any) -> str | None:
    """Azure's error code of ``exc`` (the ``x-ms-error-code`` header), when it is a plain word."""
    code = getattr(exc, "error_code", None)
    text = str(getattr(code, "value", code) or "")
    return text if _ERROR_CODE.fullmatch(text) else None


def _refused(what: str, exc: Exception) -> WanRetryableError:
    """
    A failed request of an upload in our words: the client library's text carries the service's message (that of a
    refused signature quotes the string it signed).
    """
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        return WanRetryableError(f"Azure did not answer {what} ({type(exc).__name__})")
    code = _error_code(exc)
    return WanRetryableError(f"Azure answered HTTP {status}{f' {code}' if code else ''} to {what}; nothing was kept")


#: Azure metadata names are C# identifiers (they travel as ``x-ms-meta-<name>`` headers)
_METADATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class AzureBlobSink(Sink):
    """
    An Azure Blob Storage container (``abfs://``, ``az://``, ``wasbs://container/path``).

    :param container: the container
    :param azure_conn_id: an Airflow ``wasb`` connection: ``connection_string`` in the extra, or the account name as
        login and the account key as password (the account URL as host, default
        ``https://<account>.blob.core.windows.net``); None: ``AZURE_STORAGE_CONNECTION_STRING``
    :param part_size: bytes per block (default 8 MiB): bounds the memory used
    """

    kind = "Azure container"
    #: Azure caps a blob's metadata at 8 KiB; it travels in headers
    ascii_metadata = True

    def __init__(
        self, container: str, *, azure_conn_id: str | None = None, part_size: int = 8 * MiB, scheme: str = "abfs"
    ) -> None:
        super().__init__(container)
        self.scheme = scheme  # URIs come back in the scheme the destination was given in
        self.azure_conn_id = azure_conn_id
        self.part_size = part_size
        self._client: Any = None

    def check_metadata_keys(self, keys: Iterable[str]) -> None:
        bad = sorted(key for key in keys if not _METADATA_NAME.fullmatch(key))
        if bad:
            raise WanInvalidInputError(
                f"extra_metadata: Azure Blob metadata names must be identifiers (letters, digits, _; not starting "
                f"with a digit); refused: {', '.join(map(repr, bad))}"
            )

    @classmethod
    def from_destination(cls, destination: Destination) -> AzureBlobSink:
        return cls(destination.container, azure_conn_id=destination.conn_id, scheme=destination.scheme)

    def uri(self, key: str) -> str:
        return f"{self.scheme}://{self.container}/{key}"

    def console_url(self, key: str) -> str | None:
        """
        The blob's address on its account (``https://<account>.blob.core.windows.net/<container>/<name>``), with no
        query string: no SAS token. The Azure portal's own page of a blob needs the subscription and resource group,
        which a storage connection does not carry.
        """
        parts = urlsplit(self.client.get_blob_client(key).url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    @property
    def account_name(self) -> str | None:
        """The storage account (OpenLineage names Azure objects by it)."""
        return getattr(self.client, "account_name", None)

    @property
    def client(self) -> Any:
        """The container's client (``ContainerClient``)."""
        if self._client is None:
            from azure.storage.blob import BlobServiceClient

            if self.azure_conn_id:
                from airflow.providers.common.compat.sdk import BaseHook

                conn = BaseHook.get_connection(self.azure_conn_id)
                extra = conn.extra_dejson
                text = extra.get("connection_string") or extra.get("extra__wasb__connection_string")
                if text:
                    service = BlobServiceClient.from_connection_string(text)
                elif conn.login and conn.password:
                    url = conn.host or f"https://{conn.login}.blob.core.windows.net"
                    service = BlobServiceClient(
                        url, credential={"account_name": conn.login, "account_key": conn.password}
                    )
                else:
                    raise WanFinalError(
                        f"conn_id: the Azure connection {self.azure_conn_id!r} has neither a connection_string extra "
                        "nor an account name (login) and key (password)"
                    )
            elif os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
                service = BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"])
            else:
                raise WanFinalError(
                    "conn_id: an Azure destination needs a wasb connection (conn_id) or AZURE_STORAGE_CONNECTION_STRING"
                )
            self._client = service.get_container_client(self.container)
        return self._client

    def check(self, key: str) -> None:
        """
        Before any download: ask Azure, about ``key`` itself, for each permission the transfer will use. Read: the
        blob's properties (``BlobNotFound`` is a yes). Write: one 1-byte block staged to it (uncommitted: invisible,
        dropped at the commit or by Azure within a week). Delete: a delete on a condition no blob meets (``If-Match``
        an impossible ETag: Azure checks the permission first, so 412 or 404 is a yes, and nothing is deleted). Blob
        requests, not the container's properties: a SAS scoped to the container (the least privilege) may not read
        those.
        """
        from azure.core import MatchConditions

        blob = self.client.get_blob_client(key)
        self._probe("read", blob.get_blob_properties)
        self._probe("write", lambda: blob.stage_block(_block_ids()(0), b"\0", length=1))
        self._probe(
            "delete", lambda: blob.delete_blob(etag=_NO_SUCH_ETAG, match_condition=MatchConditions.IfNotModified)
        )

    def _probe(self, permission: str, request: Callable[[], object]) -> None:
        """Run ``request``; raise the final error naming ``permission`` (or the missing container) when refused."""
        from azure.core.exceptions import AzureError, HttpResponseError

        container = self.container
        try:
            request()
        except HttpResponseError as exc:
            code = _error_code(exc)
            if code == "ContainerNotFound":
                raise WanFinalError(
                    f"destination: the Azure container {container!r} does not exist; create it or fix the "
                    "destination. Nothing was downloaded"
                ) from None
            if exc.status_code in (404, 412):
                return  # no such blob, or the condition failed: the permission was granted
            if exc.status_code in (401, 403) and code == "AuthorizationPermissionMismatch":
                raise WanFinalError(
                    f"destination: these credentials may not {permission} blobs in the Azure container "
                    f"{container!r} (HTTP {exc.status_code} {code}): a SAS needs the {permission} permission (the "
                    "transfer needs read, write and delete); nothing was downloaded"
                ) from None
            if exc.status_code in (401, 403):
                raise WanFinalError(
                    f"destination: the Azure container {container!r} cannot be used with these credentials (HTTP "
                    f"{exc.status_code}{f' {code}' if code else ''}): a wrong account key, or a SAS that is expired, "
                    "not yet valid or signed for another container or account; nothing was downloaded"
                ) from None
            raise WanRetryableError(
                f"Azure answered HTTP {exc.status_code} about container {container!r}; nothing was downloaded"
            ) from None
        except AzureError as exc:
            raise WanRetryableError(f"Azure did not answer ({type(exc).__name__}); nothing was downloaded") from None

    def stat(self, key: str) -> Stored | None:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        try:
            props = self.client.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            raise WanRetryableError(f"Azure answered HTTP {exc.status_code} about {self.uri(key)}") from None
        md5 = props.content_settings.content_md5
        return Stored(
            uri=self.uri(key),
            size=int(props.size),
            metadata=self.decode_metadata(props.metadata),
            md5=b64(bytes(md5)) if md5 else None,
            version=props.etag,
            content_type=props.content_settings.content_type,
        )

    def read_range(self, key: str, start: int, length: int, *, version: str | None) -> bytes:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        condition: dict[str, Any] = {}
        if version:
            condition = {"etag": version, "match_condition": MatchConditions.IfNotModified}
        try:
            data: bytes = (
                self.client.get_blob_client(key).download_blob(offset=start, length=length, **condition).readall()
            )
        except AzureError as exc:
            raise WanRetryableError(f"Azure did not serve bytes of {self.uri(key)} ({type(exc).__name__})") from None
        return data

    def open(self, key: str, *, metadata: Mapping[str, str], replacing: Stored | None) -> Upload:
        return _AzureUpload(self, key, dict(metadata), replacing)

    def put_small(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str], replacing: Stored | None
    ) -> Stored:
        return _AzureUpload(self, key, dict(metadata), replacing, content_type=content_type).write_whole(data)


class _AzureUpload(Upload):
    def __init__(
        self,
        sink: AzureBlobSink,
        key: str,
        metadata: dict[str, str],
        replacing: Stored | None,
        content_type: str = VIDEO_CONTENT_TYPE,
    ) -> None:
        self.sink = sink
        self.key = key
        self.metadata = metadata
        self.replacing = replacing
        self.content_type = content_type
        self.blob = sink.client.get_blob_client(key)
        self.buffer = io.BytesIO()
        self.block_id = _block_ids()
        self.blocks: list[str] = []
        self.committed: str | None = None

    def write(self, chunk: bytes) -> None:
        self.buffer.write(chunk)
        if self.buffer.tell() >= self.sink.part_size:
            self._stage()

    def _stage(self) -> None:
        from azure.core.exceptions import AzureError

        data = self.buffer.getvalue()
        self.buffer = io.BytesIO()
        block_id = self.block_id(len(self.blocks))
        try:
            # validate_content: the block is sent with its Content-MD5, which Azure checks before keeping it
            self.blob.stage_block(block_id, data, length=len(data), validate_content=True)
        except AzureError as exc:
            raise _refused(f"block {len(self.blocks) + 1} of {self.sink.uri(self.key)}", exc) from None
        self.blocks.append(block_id)

    def commit(self, *, size: int, md5: bytes, crc32c: bytes | None) -> Stored:
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError
        from azure.storage.blob import BlobBlock, ContentSettings

        if self.buffer.tell() or not self.blocks:
            self._stage()
        recorded = {**self.metadata, "wan_source_bytes": str(size), "wan_source_md5": b64(md5)}
        uri = self.sink.uri(self.key)
        # visible only now: exactly our blocks, in order, with the type, MD5 and metadata in one request
        condition: dict[str, Any] = (
            {"match_condition": MatchConditions.IfMissing}
            if self.replacing is None
            else {"etag": self.replacing.version, "match_condition": MatchConditions.IfNotModified}
        )
        try:
            answer = self.blob.commit_block_list(
                [BlobBlock(block_id=block) for block in self.blocks],
                content_settings=ContentSettings(content_type=self.content_type, content_md5=bytearray(md5)),
                metadata=self.sink.encode_metadata(recorded),
                **condition,
            )
        except (ResourceExistsError, ResourceModifiedError):
            # a commit the client library sent again after its answer was lost finds its own blob: made
            held = self.sink.stat(self.key)
            check_ours(uri, None if held is None else held.metadata, self.metadata)
            assert held is not None
            answer = {"etag": held.version}
        except AzureError as exc:
            raise _refused(f"the commit of {uri}", exc) from None
        self.committed = answer.get("etag")
        stored = self.sink.stat(self.key)
        if stored is None or stored.size != size or stored.version != self.committed:
            raise WanTransferIntegrityError(f"{uri} did not verify after its upload and was deleted")
        return stored

    def abort(self) -> None:
        from azure.core import MatchConditions

        try:
            if self.committed:
                self.blob.delete_blob(etag=self.committed, match_condition=MatchConditions.IfNotModified)
            # staged blocks were never committed: Azure discards them on its own
        except Exception:  # best effort
            pass
