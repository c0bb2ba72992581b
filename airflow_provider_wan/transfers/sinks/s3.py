"""
Amazon S3 (and S3-compatible stores): a multipart upload whose parts go out while the download goes on, a few at a
time (memory: ``parts_in_flight`` + 1 parts), each with its ``Content-MD5`` (S3 checks it); completed only at
commit, and kept only when S3's ETag equals the multipart ETag computed from the downloaded bytes. A video smaller
than one part is one ``PutObject``. Under SSE-KMS or SSE-C the ETag is no MD5 (S3's answer names the encryption):
there the parts' (or the PutObject's) ``Content-MD5`` and the stored size prove the object. What makes the object
is conditional (``If-None-Match: *``, or ``If-Match`` the object it replaces): an object another writer put at the
key meanwhile is never replaced. The verified size and MD5 are recorded in the metadata (for a multipart object by a
server-side copy onto itself). ``boto3`` is imported inside the methods; with apache-airflow-providers-amazon, a
connection id goes through ``S3Hook``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import quote

from airflow_provider_wan.exceptions import WanFinalError, WanRetryableError, WanTransferIntegrityError
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
#: S3's smallest part (all but the last)
MIN_PART = 5 * MiB
#: the oldest botocore that sends If-None-Match / If-Match on PutObject and CompleteMultipartUpload (the amazon extra
#: asks for boto3>=1.35.69, which brings it; an older one installed otherwise would drop the conditions unsaid)
BOTOCORE_NEEDED = "1.35.69"
#: S3's ``x-amz-server-side-encryption`` values under which an ETag is no MD5 of the bytes
_KMS = ("aws:kms", "aws:kms:dsse")


def require_botocore(installed: str) -> None:
    """A final error when botocore ``installed`` (its version) is older than :data:`BOTOCORE_NEEDED`."""

    def numbers(version: str) -> tuple[int, ...]:
        return tuple(int(number) for number in re.findall(r"\d+", version)[:3])

    if numbers(installed) < numbers(BOTOCORE_NEEDED):
        raise WanFinalError(
            f"S3 destinations need boto3/botocore {BOTOCORE_NEEDED} or later (conditional writes: If-None-Match and "
            f"If-Match on PutObject and CompleteMultipartUpload); installed: {installed}. Upgrade them "
            "(pip install 'airflow-provider-wan[amazon]'); nothing was downloaded"
        )


def _etag_is_md5(answer: Mapping[str, Any]) -> bool:
    """
    Whether the ETag in S3's ``answer`` (PutObject, CompleteMultipartUpload, HeadObject) is an MD5: of the bytes, or
    for a multipart object of its parts' MD5s. Under SSE-KMS (``aws:kms``, ``aws:kms:dsse``) or SSE-C it is not.
    """
    return answer.get("ServerSideEncryption") not in _KMS and not answer.get("SSECustomerAlgorithm")


class S3Sink(Sink):
    """
    An S3 bucket.

    :param bucket: the bucket
    :param aws_conn_id: an Airflow AWS connection (needs apache-airflow-providers-amazon); None: boto3's own
        credential chain and ``AWS_ENDPOINT_URL``
    :param part_size: bytes per part, at least 5 MiB (default 8 MiB)
    :param parts_in_flight: parts sent at the same time while the download goes on (default 3); memory stays at
        (``parts_in_flight`` + 1) x ``part_size``
    """

    kind = "S3 bucket"
    #: S3 caps user-defined metadata at 2 KiB
    metadata_limit = 2 * 1024
    ascii_metadata = True

    def __init__(
        self, bucket: str, *, aws_conn_id: str | None = None, part_size: int = 8 * MiB, parts_in_flight: int = 3
    ) -> None:
        super().__init__(bucket)
        self.aws_conn_id = aws_conn_id
        self.part_size = max(part_size, MIN_PART)
        self.parts_in_flight = max(1, parts_in_flight)
        self._client: Any = None

    @classmethod
    def from_destination(cls, destination: Destination) -> S3Sink:
        return cls(destination.container, aws_conn_id=destination.conn_id)

    def uri(self, key: str) -> str:
        return f"s3://{self.container}/{key}"

    def console_url(self, key: str) -> str | None:
        return f"https://s3.console.aws.amazon.com/s3/object/{self.container}?prefix={quote(key, safe='/')}"

    @property
    def client(self) -> Any:
        if self._client is None:
            if self.aws_conn_id:
                try:
                    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
                except ImportError:
                    raise WanFinalError(
                        f"conn_id: the AWS connection {self.aws_conn_id!r} needs apache-airflow-providers-amazon; "
                        "install airflow-provider-wan[amazon], or leave the connection out to use boto3's own "
                        "credentials"
                    ) from None
                self._client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
            else:
                import boto3

                self._client = boto3.client("s3")
        return self._client

    @staticmethod
    def _status(exc: Exception) -> int:
        return int(getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)

    def check(self, key: str) -> None:
        import botocore
        from botocore.exceptions import BotoCoreError, ClientError

        require_botocore(botocore.__version__)
        try:
            self.client.head_bucket(Bucket=self.container)
        except ClientError as exc:
            status = self._status(exc)
            if status == 404:
                raise WanFinalError(
                    f"destination: the S3 bucket {self.container!r} does not exist; create it or fix the destination. "
                    "Nothing was downloaded"
                ) from None
            if status == 403:
                raise WanFinalError(
                    f"destination: the S3 bucket {self.container!r} cannot be read with these credentials (HTTP 403); "
                    "nothing was downloaded"
                ) from None
            raise WanRetryableError(f"S3 answered HTTP {status} to the lookup of bucket {self.container!r}") from None
        except BotoCoreError as exc:
            raise WanRetryableError(f"S3 did not answer ({type(exc).__name__}); nothing was downloaded") from None

    def head(self, key: str) -> dict[str, Any] | None:
        """S3's HeadObject answer about ``key``; None when there is no object."""
        from botocore.exceptions import ClientError

        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.container, Key=key)
        except ClientError as exc:
            if self._status(exc) == 404:
                return None
            raise WanRetryableError(f"S3 answered HTTP {self._status(exc)} about {self.uri(key)}") from None
        return head

    def stat(self, key: str) -> Stored | None:
        head = self.head(key)
        if head is None:
            return None
        etag = str(head.get("ETag", "")).strip('"')
        return Stored(
            uri=self.uri(key),
            size=int(head.get("ContentLength", 0)),
            metadata=self.decode_metadata(head.get("Metadata")),
            # a single-part ETag is the MD5 of the bytes, unless SSE-KMS or SSE-C; a multipart one ("...-N") is not
            md5=b64(bytes.fromhex(etag)) if len(etag) == 32 and "-" not in etag and _etag_is_md5(head) else None,
            version=etag,
            content_type=head.get("ContentType"),
        )

    def read_range(self, key: str, start: int, length: int, *, version: str | None) -> bytes:
        from botocore.exceptions import ClientError

        condition = {"IfMatch": f'"{version}"'} if version else {}
        try:
            answer = self.client.get_object(
                Bucket=self.container, Key=key, Range=f"bytes={start}-{start + length - 1}", **condition
            )
            data: bytes = answer["Body"].read()
        except ClientError as exc:
            raise WanRetryableError(f"S3 answered HTTP {self._status(exc)} to a read of {self.uri(key)}") from None
        return data

    def open(self, key: str, *, metadata: Mapping[str, str], replacing: Stored | None) -> Upload:
        return _S3Upload(self, key, dict(metadata), replacing)

    def put_small(
        self, key: str, data: bytes, *, content_type: str, metadata: Mapping[str, str], replacing: Stored | None
    ) -> Stored:
        _in_our_words(
            f"the upload of {self.uri(key)}",
            lambda: self.client.put_object(
                Bucket=self.container,
                Key=key,
                Body=data,
                ContentType=content_type,
                ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(),
                Metadata=self.encode_metadata(metadata),
            ),
        )
        stored = self.stat(key)
        assert stored is not None
        return stored


class _S3Upload(Upload):
    """
    Parts go out on a small thread pool while the download goes on: at most ``sink.parts_in_flight`` parts are
    being sent, and :meth:`write` waits for the oldest before it hands over another, so memory stays at
    (``parts_in_flight`` + 1) x ``part_size``. A part that failed fails the next :meth:`write` (or :meth:`commit`),
    and the caller then calls :meth:`abort`.
    """

    def __init__(self, sink: S3Sink, key: str, metadata: dict[str, str], replacing: Stored | None) -> None:
        self.sink = sink
        self.key = key
        self.metadata = metadata
        #: what makes the object does so only over what this upload may replace: no object, or that very one
        self.condition = {"IfNoneMatch": "*"} if replacing is None else {"IfMatch": f'"{replacing.version}"'}
        self.pieces: list[bytes] = []
        self.buffered = 0
        self.upload_id: str | None = None
        #: (part number, future of (ETag, MD5 digest)), in part order
        self.sent: list[tuple[int, Future[tuple[str, bytes]]]] = []
        self.pool: ThreadPoolExecutor | None = None
        #: S3 said it made an object at the key for this upload (PutObject or CompleteMultipartUpload answered)
        self.committed = False
        #: the ETags of the objects this upload made: :meth:`abort` deletes only one of them
        self.made: set[str] = set()

    @property
    def client(self) -> Any:
        return self.sink.client

    def write(self, chunk: bytes) -> None:
        self.pieces.append(chunk)
        self.buffered += len(chunk)
        # every part but the last is exactly part_size: the memory bound holds whatever size the reads come in,
        # and the same video is cut into the same parts on every run
        while self.buffered >= self.sink.part_size:
            self._send_part(self._take(self.sink.part_size))

    def _take(self, size: int | None = None) -> bytes:
        """The first ``size`` buffered bytes (all of them by default); the rest stays buffered."""
        if size is None or size >= self.buffered:
            taken, self.pieces, self.buffered = self.pieces, [], 0
            return b"".join(taken)
        # whole pieces, then the head of the one that crosses the boundary: no copy of the whole buffer
        head: list[bytes] = []
        need = size
        while need:
            piece = self.pieces[0]
            if len(piece) <= need:
                head.append(self.pieces.pop(0))
                need -= len(piece)
            else:
                head.append(piece[:need])
                self.pieces[0] = piece[need:]
                need = 0
        self.buffered -= size
        return b"".join(head)

    def _send_part(self, data: bytes) -> None:
        if self.upload_id is None:
            started = self.client.create_multipart_upload(
                Bucket=self.sink.container,
                Key=self.key,
                ContentType=VIDEO_CONTENT_TYPE,
                Metadata=self.sink.encode_metadata(self.metadata),
            )
            self.upload_id = started["UploadId"]
            self.pool = ThreadPoolExecutor(max_workers=self.sink.parts_in_flight, thread_name_prefix="wan-s3-part")
        assert self.pool is not None
        pending = [future for _, future in self.sent if not future.done()]
        if len(pending) >= self.sink.parts_in_flight:
            wait(pending, return_when=FIRST_COMPLETED)
        self._raise_failed()
        number = len(self.sent) + 1
        self.sent.append((number, self.pool.submit(self._upload_part, number, data)))

    def _upload_part(self, number: int, data: bytes) -> tuple[str, bytes]:
        """One UploadPart with its Content-MD5 (S3 refuses the part if it arrived different); runs in the pool."""
        digest = hashlib.md5(data).digest()
        answer = _in_our_words(
            f"part {number} of {self.sink.uri(self.key)}",
            lambda: self.client.upload_part(
                Bucket=self.sink.container,
                Key=self.key,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
                ContentMD5=b64(digest),
            ),
        )
        return str(answer["ETag"]), digest

    def _raise_failed(self) -> None:
        for _, future in self.sent:
            if future.done() and future.exception() is not None:
                future.result()

    def _finish_parts(self) -> list[tuple[int, str, bytes]]:
        """Wait for every part; raise the first failure."""
        return [(number, *future.result()) for number, future in self.sent]

    def _stop_pool(self) -> None:
        if self.pool is not None:
            # parts not started are dropped; parts being sent finish first, so none lands after the abort
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def commit(self, *, size: int, md5: bytes, crc32c: bytes | None) -> Stored:
        recorded = {**self.metadata, "wan_source_bytes": str(size), "wan_source_md5": b64(md5)}
        uri = self.sink.uri(self.key)
        if self.upload_id is None:
            # one part: a single PutObject, visible now, with its MD5 checked by S3 and the final metadata
            data = self._take()
            answer = self._making(
                "the upload",
                lambda: self.client.put_object(
                    Bucket=self.sink.container,
                    Key=self.key,
                    Body=data,
                    ContentType=VIDEO_CONTENT_TYPE,
                    ContentMD5=base64.b64encode(md5).decode(),
                    Metadata=self.sink.encode_metadata(recorded),
                    **self.condition,
                ),
            )
            expected = md5.hex()
        else:
            if self.buffered:
                self._send_part(self._take())
            parts = self._finish_parts()
            self._stop_pool()
            upload_id = self.upload_id
            answer = self._making(
                "the completion",
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.sink.container,
                    Key=self.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag} for number, etag, _ in parts]},
                    **self.condition,
                ),
            )
            expected = f"{hashlib.md5(b''.join(digest for _, _, digest in parts)).hexdigest()}-{len(parts)}"
        etag = str(answer.get("ETag", "")).strip('"')
        # under SSE-KMS or SSE-C the ETag proves nothing: S3 checked every part's (or the PutObject's) Content-MD5, and
        # the size and the recorded MD5 are checked below
        if _etag_is_md5(answer) and etag != expected:
            raise WanTransferIntegrityError(f"{uri} did not verify (ETag {etag} != {expected}) and was deleted")
        if self.upload_id is not None:
            # record the verified size and MD5: a server-side copy onto itself, only if nobody replaced it meanwhile
            self._finishing(
                "the recording of the verified size and MD5 (a copy onto itself) of",
                lambda: self.client.copy_object(
                    Bucket=self.sink.container,
                    Key=self.key,
                    CopySource={"Bucket": self.sink.container, "Key": self.key},
                    CopySourceIfMatch=f'"{etag}"',
                    MetadataDirective="REPLACE",
                    ContentType=VIDEO_CONTENT_TYPE,
                    Metadata=self.sink.encode_metadata(recorded),
                ),
            )
        stored = self.sink.stat(self.key)
        if (
            stored is None
            or stored.size != size
            or stored.metadata.get("wan_source_md5") != b64(md5)
            or (stored.md5 is not None and stored.md5 != b64(md5))
        ):
            raise WanTransferIntegrityError(f"{uri} did not verify after its upload; nothing of this transfer was kept")
        return stored

    def _making(self, what: str, call: Callable[[], Any]) -> Any:
        """
        The call that makes the object, refused (412) when another writer created or replaced the object at the key
        meanwhile: that object is theirs, left as it is. A 412 to a call the client library sent again after an
        answer was lost is our own object (it carries this upload's ``wan_transfer_id``): made.
        """
        try:
            return self._finishing(what, call)
        except _PreconditionFailed:
            held = self.sink.head(self.key)
            check_ours(
                self.sink.uri(self.key),
                None if held is None else self.sink.decode_metadata(held.get("Metadata")),
                self.metadata,
            )
            assert held is not None
            self.committed = True
            self.made.add(str(held.get("ETag", "")).strip('"'))
            # as S3 would have answered the call: the object's ETag, and whether it is an MD5 (its encryption)
            return held

    def _finishing(self, what: str, call: Callable[[], Any]) -> Any:
        """
        The call that makes the object (PutObject, CompleteMultipartUpload) or records its metadata (CopyObject), in
        our words when it fails. An object counts as this upload's, for :meth:`abort` to delete, only once S3 said
        it made it (and only while the key still holds it): a refused call made nothing, so what was at the key
        before (an object ``overwrite`` was to replace) stays, and a refused completion leaves the multipart upload
        to :meth:`abort`, which drops its parts. No answer at all: S3 may have made the object; it carries no
        verified MD5, so the next try replaces it.
        """
        answer = _in_our_words(f"{what} {self.sink.uri(self.key)}", call)
        self.committed = True
        etag = answer.get("ETag") or answer.get("CopyObjectResult", {}).get("ETag")
        if etag:
            self.made.add(str(etag).strip('"'))
        return answer

    def abort(self) -> None:
        try:
            self._stop_pool()
            if not self.committed and self.upload_id is not None:
                self.client.abort_multipart_upload(Bucket=self.sink.container, Key=self.key, UploadId=self.upload_id)
            elif self.committed:
                # only an object this upload made: one another writer put there meanwhile (the copy onto itself
                # then fails its ETag condition) is theirs
                held = self.sink.stat(self.key)
                if held is not None and held.version in self.made:
                    self.client.delete_object(Bucket=self.sink.container, Key=self.key)
        except Exception:  # best effort; an unfinished multipart upload holds no object
            pass


class _PreconditionFailed(WanRetryableError):
    """S3 answered 412: a condition of the request (``If-None-Match``, ``If-Match``, ``CopySourceIfMatch``) failed."""


def _in_our_words(what: str, call: Callable[[], Any]) -> Any:
    """``call()``, a failure of it told in our words (botocore's text quotes the store's own message)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        error = _PreconditionFailed if S3Sink._status(exc) == 412 else WanRetryableError
        raise error(f"S3 answered HTTP {S3Sink._status(exc)} to {what}") from None
    except BotoCoreError as exc:
        raise WanRetryableError(f"S3 did not answer {what} ({type(exc).__name__})") from None
