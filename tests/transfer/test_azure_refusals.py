"""
What Azure refuses while a video is written (a staged block, the block list's commit), through a small HTTP proxy in
front of Azurite (real HTTP both ways): the transfer fails in our words, never with the client library's text (which
carries the service's message), and keeps nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_provider_wan.exceptions import WanRetryableError
from airflow_provider_wan.transfers.sinks.azure import AzureBlobSink
from tests.transfer.conftest import AZURE_CONN_ID, BUCKET, Azurite
from tests.transfer.proxy import ForwardingProxy, forward, serving

#: what the refusing "service" says: never to be repeated in our errors
SERVICE_WORDS = "refused by the test proxy"


class BlockProxy(ForwardingProxy):
    """Forwards every request to Azurite but answers 403 to the request kind (``comp``) it is told to refuse."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, _Forward)
        self.refuse_comp: str | None = None
        #: pass the block-list commit on, then answer 500 (its answer lost): the client library sends it again
        self.lose_commit_answer = False


class _Forward(BaseHTTPRequestHandler):
    server: BlockProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        comp = parse_qs(urlsplit(self.path).query).get("comp", [""])[0]
        if self.command == "PUT" and comp == "blocklist" and self.server.lose_commit_answer:
            self.server.lose_commit_answer = False
            headers = {name: value for name, value in self.headers.items() if name.lower() != "expect"}
            self.server.request(self.command, self.path, body=body, headers=headers)
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.command == "PUT" and comp and comp == self.server.refuse_comp:
            error = (
                '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthorizationFailure</Code>'
                f"<Message>{SERVICE_WORDS}</Message></Error>"
            ).encode()
            self.send_response(403)
            self.send_header("x-ms-error-code", "AuthorizationFailure")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
        else:
            forward(self, body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any


@pytest.fixture
def proxy(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[BlockProxy]:
    parts = dict(part.split("=", 1) for part in azurite.connection_string.split(";") if part)
    endpoint = urlsplit(parts["BlobEndpoint"])
    with serving(BlockProxy(f"{endpoint.scheme}://{endpoint.netloc}")) as server:
        parts["BlobEndpoint"] = f"{server.url}{endpoint.path}"
        connection_string = ";".join(f"{key}={value}" for key, value in parts.items())
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}",
            json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}}),
        )
        yield server


def _copy(upload: Any, data: bytes) -> None:
    """What the operator does with an upload: write, commit, abort on any failure."""
    try:
        upload.write(data)
        upload.commit(size=len(data), md5=b"\0" * 16, crc32c=None)
    except BaseException:
        upload.abort()
        raise


@pytest.mark.parametrize("comp", ["block", "blocklist"], ids=["a staged block", "the commit"])
def test_a_refused_block_or_commit_fails_in_our_words_and_keeps_nothing(
    proxy: BlockProxy, azurite: Azurite, comp: str
) -> None:
    sink = AzureBlobSink(BUCKET, azure_conn_id=AZURE_CONN_ID, part_size=1024)
    upload = sink.open("wan/refused.mp4", metadata={"wan_transfer_id": "t-1"}, replacing=None)
    proxy.refuse_comp = comp
    with pytest.raises(WanRetryableError, match=r"Azure answered HTTP 403 AuthorizationFailure to ") as caught:
        _copy(upload, b"\0" * 3000)
    assert SERVICE_WORDS not in str(caught.value)
    assert [blob.name for blob in azurite.container.list_blobs()] == []


def test_a_commit_whose_answer_was_lost_is_not_taken_for_another_writers(proxy: BlockProxy, azurite: Azurite) -> None:
    # Azure committed the block list, its answer was lost, and the client library sent the commit again, which the
    # blob's precondition (absent) refuses: the blob there is this upload's own, verified, not another writer's
    # (that was a final error, 'written by someone else', on a stored video). The library waits ~15 s to retry.
    sink = AzureBlobSink(BUCKET, azure_conn_id=AZURE_CONN_ID, part_size=1024)
    data = bytes(range(256)) * 12
    upload = sink.open("wan/lost.mp4", metadata={"wan_transfer_id": "t-1"}, replacing=None)
    proxy.lose_commit_answer = True
    upload.write(data)
    stored = upload.commit(size=len(data), md5=hashlib.md5(data).digest(), crc32c=None)
    assert proxy.lose_commit_answer is False  # the answer was lost
    assert stored.size == len(data)
    assert azurite.container.download_blob("wan/lost.mp4").readall() == data
