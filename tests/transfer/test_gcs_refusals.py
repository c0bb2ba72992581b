"""
What GCS refuses at the end of a resumable upload (the last chunk, answered 412 when another writer created the
object meanwhile: real GCS keeps ``ifGenerationMatch``, the emulator does not), through a small HTTP proxy in front of
the emulator (real HTTP both ways): the transfer fails in our words, without the session's URL, and keeps nothing.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_wan.exceptions import WanRetryableError
from airflow_provider_wan.transfers.sinks.gcs import GCSSink
from tests.transfer.conftest import BUCKET, GCSEmulator


class LastChunkProxy(ThreadingHTTPServer):
    """Forwards every request to the emulator but answers 412 to the last chunk of a resumable upload."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = urlsplit(upstream)
        self.refused: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    server: LastChunkProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        total = (self.headers.get("Content-Range") or "").rpartition("/")[2]
        if self.command == "PUT" and self.path.startswith("/upload/") and total not in ("", "*"):
            self.server.refused.append(self.path)
            error = json.dumps({"error": {"code": 412, "message": "Precondition Failed"}}).encode()
            self.send_response(412)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        upstream = http.client.HTTPConnection(self.server.upstream.hostname, self.server.upstream.port, timeout=60)
        try:
            upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    # the emulator's resumable session URL points at itself: keep the client on the proxy
                    self.send_header(name, value.replace(self.server.upstream.netloc, urlsplit(self.server.url).netloc))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = _any


@pytest.fixture
def proxy(gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[LastChunkProxy]:
    server = LastChunkProxy(gcs_emulator.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_refused_last_chunk_fails_in_our_words_and_keeps_nothing(proxy: LastChunkProxy, bucket: Any) -> None:
    sink = GCSSink(BUCKET)
    upload = sink.open("wan/refused.mp4", metadata={"wan_transfer_id": "t-1"}, replacing=None)
    upload.write(b"\0" * 300 * 1024)
    with pytest.raises(
        WanRetryableError, match=r"GCS answered HTTP 412 to the last chunk of gs://wan-videos/"
    ) as caught:
        upload.commit(size=300 * 1024, md5=b"\0" * 16, crc32c=None)
    upload.abort()
    assert proxy.refused, "the proxy saw no last chunk"
    assert "upload_id" not in str(caught.value)
    assert "127.0.0.1" not in str(caught.value)
    assert bucket.get_blob("wan/refused.mp4") is None
