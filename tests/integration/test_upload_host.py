"""
The temporary upload against a misbehaving upload host: a redirect is refused (the file goes nowhere else) and an
error answer's text never reaches our error, only a code-shaped OSS ``<Code>``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanRetryableError
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.media import check_local_media, upload_media
from tests.foundation.images import write_png

SIGNED = "https://elsewhere.example/v.mp4?Expires=1&OSSAccessKeyId=AK&Signature=s3cr3t"


class _Host(BaseHTTPRequestHandler):
    """Policy at /api/v1/uploads; the upload host at /oss answers as ``self.server.mode`` says."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        host = f"http://127.0.0.1:{self.server.server_address[1]}"  # type: ignore[attr-defined]
        data = {
            "policy": "cG9saWN5",
            "signature": "c2ln",
            "upload_dir": "dashscope-instant/x/2026-11-30/u1",
            "upload_host": f"{host}/oss",
            "oss_access_key_id": "AK",
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }
        self._answer(200, json.dumps({"request_id": "r1", "data": data}).encode(), "application/json")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        server: Any = self.server
        if self.path == "/elsewhere":
            server.elsewhere += 1
            self._answer(200, b"", "text/plain")
        elif server.mode == "redirect":
            self.send_response(307)
            self.send_header("Location", f"http://127.0.0.1:{server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            body = f"<Error><Code>{server.code}</Code><Message>{SIGNED}</Message></Error>".encode()
            self._answer(403, body, "application/xml")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Host)
    server.mode, server.code, server.elsewhere = "redirect", "AccessDenied", 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_DEFAULT",
        json.dumps({"conn_type": "wan", "password": "sk-upload-test", "extra": {"base_url": base_url}}),
    )
    yield server
    server.shutdown()
    server.server_close()


def _upload(tmp_path: Path) -> None:
    frame = write_png(tmp_path / "first.png", 640, 480, (200, 30, 30))
    (media,) = check_local_media({"img_url": str(frame)}, "wan2.5-i2v-preview")
    upload_media(WanHook(), "wan2.5-i2v-preview", media)


def test_a_redirecting_upload_host_is_refused_not_followed(host: Any, tmp_path: Path) -> None:
    with pytest.raises(WanRetryableError, match=r"img_url: DashScope's temporary storage refused .* \(HTTP 307\)"):
        _upload(tmp_path)
    assert host.elsewhere == 0


@pytest.mark.parametrize(
    ("code", "shown"),
    [("AccessDenied", "AccessDenied"), (f"{SIGNED}", None), ("<b>x</b>", None), ("A" * 100, None)],
)
def test_an_upload_error_shows_only_a_code_shaped_code(host: Any, tmp_path: Path, code: str, shown: str | None) -> None:
    host.mode, host.code = "error", code
    with pytest.raises(WanRetryableError) as caught:
        _upload(tmp_path)
    text = str(caught.value)
    assert "HTTP 403" in text
    assert "s3cr3t" not in text
    assert "Signature" not in text
    if shown is None:
        assert "HTTP 403)" in text
    else:
        assert f"HTTP 403, {shown})" in text
