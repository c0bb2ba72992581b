"""
The S3 sink sends parts concurrently while the download goes on. Through a small HTTP proxy in front of moto (real
HTTP both ways) that counts the UploadPart requests in flight, holds the first ones until three are in flight
(whatever the machine's speed), and refuses the one it is told to:

* the parts overlap, but never more than ``parts_in_flight`` at once, and the object lands byte-identical;
* a part S3 refuses while others are in flight fails the transfer with our own words, the parts in flight finish,
  the multipart upload is aborted, and no object is left;
* an object another writer put at the key while the copy ran (a second transfer to the same name) is never replaced;
* in a bucket encrypted with SSE-KMS (the proxy answers as S3 does there: ``x-amz-server-side-encryption: aws:kms``
  and ETags that are no MD5 of the bytes) a video is stored, verified, and found by a rerun.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_wan.exceptions import WanFinalError, WanRetryableError
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.transfers.sinks.s3 import S3Sink
from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator
from tests.transfer.conftest import BUCKET, MotoS3
from tests.transfer.proxy import ForwardingProxy, forward, refuse, serving

T2V_ENDPOINT = "services/aigc/video-generation/video-synthesis"
MODEL = "wan2.5-t2v-preview"
MiB = 1024 * 1024


class PartProxy(ForwardingProxy):
    """
    Forwards every request to moto. UploadPart requests wait until ``hold_until`` of them are in flight at once (at
    most 10 s), then all pass; the one numbered ``refuse_part`` is refused.
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, _Forward)
        self.hold_until = 0
        self.opened = threading.Event()
        self.refuse_part: int | None = None
        #: refuse what makes the object: CompleteMultipartUpload, or the one PutObject of a small video
        self.refuse_finish = False
        #: before passing on the copy onto itself, put these bytes at its key (another writer, meanwhile)
        self.overwrite_before_copy: bytes | None = None
        #: before passing on what makes the object (CompleteMultipartUpload, PutObject), put these bytes at its key
        self.put_before_finish: bytes | None = None
        #: pass on what makes the object, then answer 500 (an answer lost): the client library sends it again
        self.lose_finish_answer = False
        #: refuse every PutObject to a key ending so (403, with a message of the store's)
        self.refuse_put_suffix: str | None = None
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.parts_seen: list[int] = []
        #: part number -> bytes received
        self.part_sizes: dict[int, int] = {}
        #: answer as S3 does for a bucket encrypted with SSE-KMS (see :func:`_kms_etags`)
        self.kms = False


class _Forward(BaseHTTPRequestHandler):
    server: PartProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.kms:
            # the ETags the client names (conditions, the completion's part list) back to moto's
            body = _kms_etags(body)
            for name in ("If-Match", "x-amz-copy-source-if-match"):
                if name in self.headers:
                    value = _kms_etags(self.headers[name].encode()).decode()
                    del self.headers[name]
                    self.headers[name] = value
        query = parse_qs(urlsplit(self.path).query)
        part = int(query["partNumber"][0]) if self.command == "PUT" and "partNumber" in query else None
        proxy = self.server
        if part is not None:
            with proxy.lock:
                proxy.parts_seen.append(part)
                proxy.part_sizes[part] = len(body)
                proxy.in_flight += 1
                proxy.most_in_flight = max(proxy.most_in_flight, proxy.in_flight)
                if proxy.in_flight >= proxy.hold_until:
                    proxy.opened.set()
            proxy.opened.wait(10)
        finishing = (self.command == "POST" and "uploadId" in query) or (
            self.command == "PUT" and part is None and "x-amz-copy-source" not in self.headers
        )
        copying = self.command == "PUT" and "x-amz-copy-source" in self.headers
        try:
            if finishing and proxy.put_before_finish is not None:
                proxy.request("PUT", urlsplit(self.path).path, body=proxy.put_before_finish)
                proxy.put_before_finish = None
            if copying and proxy.overwrite_before_copy is not None:
                proxy.request("PUT", urlsplit(self.path).path, body=proxy.overwrite_before_copy)
            if copying and not _source_matches(proxy, self.path, self.headers.get("x-amz-copy-source-if-match")):
                # S3 keeps a copy's ETag condition; moto ignores it, so the proxy keeps it for moto
                error = b"<Error><Code>PreconditionFailed</Code><Message>a pre-condition did not hold</Message></Error>"
                refuse(self, 412, error, "application/xml")
            elif finishing and proxy.refuse_put_suffix and urlsplit(self.path).path.endswith(proxy.refuse_put_suffix):
                error = b"<Error><Code>AccessDenied</Code><Message>refused by the test proxy</Message></Error>"
                refuse(self, 403, error, "application/xml")
            elif finishing and proxy.lose_finish_answer:
                proxy.lose_finish_answer = False
                headers = {name: value for name, value in self.headers.items() if name.lower() != "expect"}
                proxy.request(self.command, self.path, body=body, headers=headers)
                refuse(self, 500, b"<Error><Code>InternalError</Code></Error>", "application/xml")
            elif (part is not None and part == proxy.refuse_part) or (finishing and proxy.refuse_finish):
                error = b"<Error><Code>BadDigest</Code><Message>refused by the test proxy</Message></Error>"
                refuse(self, 400, error, "application/xml")
            else:
                forward(self, body, _as_kms_bucket if proxy.kms else None)
        finally:
            if part is not None:
                with proxy.lock:
                    proxy.in_flight -= 1

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any


def _kms_etags(text: bytes) -> bytes:
    """
    moto's ETags (the MD5 of the bytes, or of the parts' MD5s) as S3 gives them in an SSE-KMS bucket: hex that is no
    MD5 of the bytes (here the same digits reversed, so the proxy turns the client's back into moto's the same way).
    """
    return re.sub(rb"[0-9a-f]{32}", lambda found: found.group(0)[::-1], text)


def _as_kms_bucket(headers: list[tuple[str, str]], data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """An answer of moto's as S3 answers for a bucket whose default encryption is SSE-KMS."""
    edited = [
        (name, _kms_etags(value.encode()).decode() if name.lower() == "etag" else value) for name, value in headers
    ]
    edited.append(("x-amz-server-side-encryption", "aws:kms"))
    return edited, re.sub(rb"<ETag>[^<]*</ETag>", lambda found: _kms_etags(found.group(0)), data)


def _source_matches(proxy: PartProxy, path: str, condition: str | None) -> bool:
    """Whether the object a copy reads (its own key here) still has the ETag the copy's condition names."""
    if condition is None:
        return True
    return proxy.request("HEAD", urlsplit(path).path).getheader("ETag", "").strip('"') == condition.strip('"')


@pytest.fixture
def proxy(moto_s3: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[PartProxy]:
    with serving(PartProxy(moto_s3.url)) as server:
        # the operator's boto3 client goes through the proxy; the test reads moto directly (moto_s3.client)
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        yield server


def _generate(size: int) -> tuple[str, bytes]:
    hook = WanHook()
    body = {"model": MODEL, "input": {"prompt": "a heron in the rain"}, "parameters": {"size": "832*480"}}
    task = hook.wait_for_task(hook.create_task(T2V_ENDPOINT, body).task_id, poll_interval=0.1, timeout=30)
    response = hook.session.get(task.video_url or "", timeout=60)
    response.raise_for_status()
    assert len(response.content) == size
    return task.task_id, response.content


def _store(task_id: str, *, overwrite: bool = False, write_sidecar: bool = False) -> dict[str, Any]:
    operator = WanVideoToStorageOperator(
        task_id="store",
        wan_task_id=task_id,
        model=MODEL,
        destination=f"s3://{BUCKET}/wan/{{wan_task_id}}.mp4",
        part_size=5 * MiB,
        write_sidecar=write_sidecar,
        overwrite=overwrite,
    )
    result: dict[str, Any] = operator.execute({})
    return result


def test_parts_overlap_within_the_bound_and_land_whole(proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any) -> None:
    # 26 MiB in 5 MiB parts: six parts; the first ones are held until three are in flight
    wan_connection.configure(payload_bytes=26 * MiB)
    task_id, served = _generate(26 * MiB)
    proxy.hold_until = 3
    result = _store(task_id)
    assert sorted(proxy.parts_seen) == [1, 2, 3, 4, 5, 6]
    assert proxy.part_sizes == {1: 5 * MiB, 2: 5 * MiB, 3: 5 * MiB, 4: 5 * MiB, 5: 5 * MiB, 6: 1 * MiB}
    assert proxy.most_in_flight == S3Sink("b").parts_in_flight == 3
    stored = moto_s3.client.get_object(Bucket=BUCKET, Key=f"wan/{task_id}.mp4")
    assert stored["Body"].read() == served
    assert stored["Metadata"]["wan_source_md5"] == base64.b64encode(hashlib.md5(served).digest()).decode()
    assert result["uploaded"] is True


def test_a_refused_part_aborts_the_upload_and_keeps_nothing(
    proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any
) -> None:
    wan_connection.configure(payload_bytes=26 * MiB)
    task_id, _ = _generate(26 * MiB)
    proxy.hold_until = 3
    proxy.refuse_part = 2
    with pytest.raises(WanRetryableError, match=r"S3 answered HTTP 400 to part 2 of s3://wan-videos/wan/") as caught:
        _store(task_id)
    assert "refused by the test proxy" not in str(caught.value)  # our words, not the store's
    # part 1 and the parts in flight with part 2 were sent; abort waited for them, then dropped the upload
    assert 1 in proxy.parts_seen
    assert len(proxy.parts_seen) < 6
    assert proxy.in_flight == 0
    assert moto_s3.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert moto_s3.client.list_objects_v2(Bucket=BUCKET).get("Contents", []) == []


def test_every_part_but_the_last_is_exactly_the_part_size_whatever_the_reads(proxy: PartProxy, moto_s3: MotoS3) -> None:
    # a download hands over whatever has arrived: here 3 MiB + 7 bytes at a time, so no read ends on a part boundary
    data = hashlib.sha256(b"wan").digest() * (26 * MiB // 32)
    sink = S3Sink(BUCKET, part_size=5 * MiB)
    upload = sink.open("wan/odd-reads.mp4", metadata={}, replacing=None)
    step = 3 * MiB + 7
    for start in range(0, len(data), step):
        upload.write(data[start : start + step])
    stored = upload.commit(size=len(data), md5=hashlib.md5(data).digest(), crc32c=None)
    assert proxy.part_sizes == {1: 5 * MiB, 2: 5 * MiB, 3: 5 * MiB, 4: 5 * MiB, 5: 5 * MiB, 6: 1 * MiB}
    assert stored.size == len(data)
    assert moto_s3.client.get_object(Bucket=BUCKET, Key="wan/odd-reads.mp4")["Body"].read() == data


@pytest.mark.parametrize(("size", "what"), [(26 * MiB, "the completion"), (1 * MiB, "the upload")])
def test_a_refused_finish_keeps_what_was_at_the_key_and_drops_the_parts(
    proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any, size: int, what: str
) -> None:
    # overwrite=True is to replace another object; S3 refuses the CompleteMultipartUpload (or the one PutObject):
    # nothing new was made, so the object there stays, and the multipart upload's parts are not left to be billed
    wan_connection.configure(payload_bytes=size)
    task_id, _ = _generate(size)
    key = f"wan/{task_id}.mp4"
    moto_s3.client.put_object(Bucket=BUCKET, Key=key, Body=b"an earlier object, not ours")
    proxy.refuse_finish = True
    with pytest.raises(WanRetryableError, match=rf"S3 answered HTTP 400 to {what} s3://{BUCKET}/{key}") as caught:
        _store(task_id, overwrite=True)
    assert "refused by the test proxy" not in str(caught.value)  # our words, not the store's
    assert moto_s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"an earlier object, not ours"
    assert moto_s3.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_an_object_another_writer_put_there_before_the_metadata_copy_is_theirs(
    proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any
) -> None:
    # between the completion and the copy onto itself that records the verified MD5, another writer replaces the
    # object: the copy's ETag condition fails, and the transfer must not delete what the other writer put there
    wan_connection.configure(payload_bytes=26 * MiB)
    task_id, _ = _generate(26 * MiB)
    key = f"wan/{task_id}.mp4"
    proxy.overwrite_before_copy = b"another writer's object"
    with pytest.raises(WanRetryableError, match=r"S3 answered HTTP 412 to the recording of the verified size"):
        _store(task_id)
    assert moto_s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"another writer's object"


@pytest.mark.parametrize("size", [26 * MiB, 1 * MiB], ids=["multipart", "one PutObject"])
def test_an_object_another_writer_created_while_the_copy_ran_is_never_replaced(
    proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any, size: int
) -> None:
    # two transfers to one name (mapped transfers given one object name, a manual run beside the scheduled one): both
    # found the key free; the one finishing second must not replace the first one's video (GCS and Azure refuse it by
    # a precondition, so must S3)
    wan_connection.configure(payload_bytes=size)
    task_id, _ = _generate(size)
    key = f"wan/{task_id}.mp4"
    proxy.put_before_finish = b"the other transfer's video"
    with pytest.raises(WanFinalError, match=rf"s3://{BUCKET}/{key} was written by someone else while this copy ran"):
        _store(task_id)
    assert moto_s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"the other transfer's video"
    assert moto_s3.client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


@pytest.mark.parametrize("kms", [False, True], ids=["unencrypted", "SSE-KMS"])
@pytest.mark.parametrize("size", [26 * MiB, 1 * MiB], ids=["multipart", "one PutObject"])
def test_overwrite_replaces_the_object_found_and_a_lost_answer_is_not_another_writer(
    proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any, size: int, kms: bool
) -> None:
    # overwrite=True makes the object on the condition that the key still holds the object found (If-Match); S3
    # made it, but its answer was lost and the client library sent the call again, which the condition refuses:
    # the object there is this copy's own, not another writer's
    wan_connection.configure(payload_bytes=size)
    task_id, served = _generate(size)
    key = f"wan/{task_id}.mp4"
    moto_s3.client.put_object(Bucket=BUCKET, Key=key, Body=b"an earlier object, not ours")
    proxy.lose_finish_answer = True
    proxy.kms = kms
    result = _store(task_id, overwrite=True)
    assert proxy.lose_finish_answer is False  # the answer was lost
    assert result["uploaded"] is True
    assert result["size"] == size
    assert moto_s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == served


def test_a_refused_sidecar_is_told_in_our_words(proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any) -> None:
    # the sidecar (a small object written whole) failed with botocore's ClientError, the store's message in its text
    wan_connection.configure(payload_bytes=1 * MiB)
    task_id, served = _generate(1 * MiB)
    proxy.refuse_put_suffix = ".json"
    with pytest.raises(WanRetryableError, match=rf"S3 answered HTTP 403 to the upload of s3://{BUCKET}/wan/") as caught:
        _store(task_id, write_sidecar=True)
    assert "refused by the test proxy" not in str(caught.value)  # our words, not the store's
    # the video stays (verified); a retry finds it and writes the sidecar
    assert moto_s3.client.get_object(Bucket=BUCKET, Key=f"wan/{task_id}.mp4")["Body"].read() == served


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.mark.parametrize("size", [26 * MiB, 1 * MiB], ids=["multipart", "one PutObject"])
def test_a_video_in_an_sse_kms_bucket_verifies_and_a_rerun_finds_it(
    proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any, size: int
) -> None:
    # with SSE-KMS (a bucket's default encryption aws:kms, or aws:kms:dsse) S3's ETag is no MD5 of the bytes: the
    # transfer compared it with the downloaded MD5 and failed on every try ("did not verify (ETag ...)")
    wan_connection.configure(payload_bytes=size)
    task_id, served = _generate(size)
    proxy.kms = True
    first = _store(task_id)
    assert first["uploaded"] is True
    assert first["md5_hash"] == _md5(served)
    assert moto_s3.client.get_object(Bucket=BUCKET, Key=f"wan/{task_id}.mp4")["Body"].read() == served
    again = _store(task_id)
    assert again["uploaded"] is False
    assert again["md5_hash"] == _md5(served)


@pytest.mark.parametrize("size", [26 * MiB, 1 * MiB], ids=["multipart", "one PutObject"])
def test_a_video_an_earlier_try_left_in_an_sse_kms_bucket_is_not_judged_by_its_etag(
    proxy: PartProxy, moto_s3: MotoS3, wan_connection: Any, size: int
) -> None:
    # an earlier try stored and verified the video; read back from an SSE-KMS bucket its 32-hex ETag is no MD5: it
    # was taken for the stored bytes' MD5, found different from the recorded one, and the video copied again
    wan_connection.configure(payload_bytes=size)
    task_id, served = _generate(size)
    assert _store(task_id)["uploaded"] is True
    proxy.kms = True
    parts_before = len(proxy.parts_seen)
    again = _store(task_id)
    assert again["uploaded"] is False
    assert again["md5_hash"] == _md5(served)
    assert len(proxy.parts_seen) == parts_before
