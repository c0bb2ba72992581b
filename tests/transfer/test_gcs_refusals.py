"""
What GCS refuses at the end of a resumable upload (the last chunk, answered 412 when another writer created the
object meanwhile: real GCS keeps ``ifGenerationMatch``, the emulator does not), through a small HTTP proxy in front of
the emulator (real HTTP both ways): the transfer fails in our words, without the session's URL, and keeps nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanRetryableError
from airflow_provider_wan.transfers.sinks.gcs import GCSSink
from tests.transfer.conftest import BUCKET, GCSEmulator
from tests.transfer.proxy import ForwardingProxy, forward, refuse, serving


class LastChunkProxy(ForwardingProxy):
    """Forwards every request to the emulator but answers 412 to the last chunk of a resumable upload."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, _Forward)
        self.refused: list[str] = []


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
            refuse(self, 412, error, "application/json")
        else:
            forward(self, body)

    do_GET = do_PUT = do_POST = do_DELETE = _any


@pytest.fixture
def proxy(gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[LastChunkProxy]:
    with serving(LastChunkProxy(gcs_emulator.url)) as server:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.url)
        yield server


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
