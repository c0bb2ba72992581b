"""
The temporary upload against a misbehaving upload host: a redirect is refused (the file goes nowhere else) and an
error answer's text never reaches our error, only a code-shaped OSS ``<Code>``. Behind an ``https://`` proxy, a
refused certificate is named as the proxy's or the upload host's, whichever it was.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanFinalError, WanRetryableError
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.media import check_local_media, upload_media
from tests.certificates import self_signed_certificate
from tests.foundation.images import write_png
from tests.integration.test_transport_proxy import PROXY_LOGIN, VARIABLES
from tests.names import DOMAIN, resolve_test_names
from tests.transfer.proxy import Gateway, TLSFront, assert_names_the_proxys_certificate, serving

SIGNED = "https://elsewhere.example/v.mp4?Expires=1&OSSAccessKeyId=AK&Signature=s3cr3t"


class _Host(BaseHTTPRequestHandler):
    """
    Policy at /api/v1/uploads, naming ``self.server.upload_host`` (default: the upload host at /oss, which answers as
    ``self.server.mode`` says).
    """

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        host = f"http://127.0.0.1:{self.server.server_address[1]}"  # type: ignore[attr-defined]
        data = {
            "policy": "cG9saWN5",
            "signature": "c2ln",
            "upload_dir": "dashscope-instant/x/2026-11-30/u1",
            "upload_host": self.server.upload_host or f"{host}/oss",  # type: ignore[attr-defined]
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
    server.mode, server.code, server.elsewhere, server.upload_host = "redirect", "AccessDenied", 0, None
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


def test_a_refused_certificate_is_named_as_the_https_proxys_or_the_upload_hosts(
    host: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the upload host (https) through HTTPS_PROXY=https://...: TLS to the proxy itself, then to the upload host inside
    # its tunnel; the API (plain http) is reached straight. The proxy's own certificate refused read as the upload
    # host's ("refused to upload ... to https://upload...: its TLS certificate was not accepted")
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    upload = f"upload.{DOMAIN}"
    resolve_test_names(monkeypatch, {})  # the upload host's name resolves nowhere here: only the proxy reaches it
    host.upload_host = f"https://{upload}/oss"
    for folder in ("proxy", "impostor", "upload"):
        (tmp_path / folder).mkdir()
    proxy_certificate = self_signed_certificate(tmp_path / "proxy", ip_address="127.0.0.1")
    impostor = self_signed_certificate(tmp_path / "impostor", ip_address="127.0.0.1")
    # the upload host answers for its name with a certificate no trusted authority signed; only the proxy's is trusted
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy_certificate[0]))
    upstream = f"http://127.0.0.1:{host.server_address[1]}"
    with serving(TLSFront(upstream, self_signed_certificate(tmp_path / "upload", dns_name=upload))) as front:
        assert isinstance(front, TLSFront)
        for served in (impostor, proxy_certificate):
            with (
                serving(Gateway(upstream, credentials=PROXY_LOGIN, certificate=served)) as gateway,
                monkeypatch.context() as env,
            ):
                assert isinstance(gateway, Gateway)
                gateway.tunnels[f"{upload}:443"] = front.address
                proxy = f"https://127.0.0.1:{gateway.server_address[1]}"
                env.setenv("HTTPS_PROXY", f"https://{PROXY_LOGIN}@127.0.0.1:{gateway.server_address[1]}")
                with pytest.raises(WanFinalError) as caught:
                    _upload(tmp_path)
            error = caught.value
            text = str(error)
            assert text.startswith("img_url: "), text
            assert "TLS certificate was not accepted" in text
            assert "Nothing was uploaded or submitted" in text
            if served is impostor:
                # refused at the handshake with the proxy: no CONNECT, no login, the upload host not reached
                assert_names_the_proxys_certificate(error, proxy, PROXY_LOGIN)
                assert f"uploading first.png to https://{upload} (the upload_host" in text
                assert (gateway.connects, gateway.refused) == ([], 0)
            else:
                # the upload host's, inside the trusted proxy's tunnel: named as the upload host's
                assert f"refused to upload first.png to https://{upload} " in text
                assert "proxy at" not in text
                assert PROXY_LOGIN.partition(":")[2] not in f"{error} {error!r}"
                assert gateway.connects == [f"{upload}:443"]
    assert front.paths == []
