"""
What Azure refuses while a video is written (a staged block, the block list's commit), through a small HTTP proxy in
front of Azurite (real HTTP both ways): the transfer fails in our words, never with the client library's text (which
carries the service's message), and keeps nothing.
"""

from __future__ import annotations

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


class _Forward(BaseHTTPRequestHandler):
    server: BlockProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        comp = parse_qs(urlsplit(self.path).query).get("comp", [""])[0]
        if self.command == "PUT" and comp and comp == self.server.refuse_comp:
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
