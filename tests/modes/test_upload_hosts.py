"""
Where a local file is uploaded: DashScope's upload policy names the ``upload_host``, and a hostile or mixed-up answer
must not send the user's file to this machine, the cloud's metadata service or the private network, nor over plain
http when the API is https. Through real HTTP on 127.0.0.1: the operator runs against the capture server
(tests/modes/capture.py, which answers the policy and takes the upload itself) and fails before any create, with
nothing uploaded; the simulator's normal flow still uploads.

Host names are controlled by patching ``socket.getaddrinfo`` (the system's resolver, not our code) for names under
``wan-dns.test`` (tests/names.py). The API is "elsewhere" (not on this machine) the way users put it behind a
gateway: ``base_url`` names ``api.wan-dns.test``, which only an HTTP proxy (``HTTP_PROXY``) on 127.0.0.1 knows, and
the proxy forwards every request to the capture server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanFinalError
from airflow_provider_wan.operators.wan import WanImageToVideoOperator
from tests.certificates import self_signed_certificate
from tests.foundation.images import write_png
from tests.modes.capture import UploadCaptureServer
from tests.modes.test_input_attacks import _StateStore, _TaskInstance
from tests.names import DOMAIN, resolve_test_names
from tests.transfer.proxy import Gateway, TLSFront, serving, tls_fronts

KEY = "sk-upload-hosts"
MODEL = "wan2.5-i2v-preview"
#: a name resolving to this machine, one resolving to a public address (only ever reached through the proxy), and
#: the name of an https API on this machine
UPLOADS, CDN, SECURE = f"uploads.{DOMAIN}", f"cdn.{DOMAIN}", f"secure.{DOMAIN}"
GATEWAY = f"api.{DOMAIN}"
NAMES = {UPLOADS: "127.0.0.1", CDN: "93.184.216.34", SECURE: "127.0.0.1"}


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_test_names(monkeypatch, NAMES)


@pytest.fixture
def capture() -> Iterator[UploadCaptureServer]:
    with UploadCaptureServer() as server:
        yield server


@pytest.fixture
def gateway(capture: UploadCaptureServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """The API at ``http://api.wan-dns.test/api/v1``, reached through the proxy: not on this machine."""
    with serving(Gateway(capture.origin)) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "")
        _connect(monkeypatch, f"http://{GATEWAY}/api/v1")
        yield proxy


def _connect(monkeypatch: pytest.MonkeyPatch, base_url: str) -> None:
    connection = {"conn_type": "wan", "password": KEY, "extra": {"base_url": base_url}}
    monkeypatch.setenv("AIRFLOW_CONN_WAN_UPLOADS", json.dumps(connection))


def _run(tmp_path: Path) -> Any:
    """Run the image-to-video operator with a local frame, as Airflow would, up to the create (no wait)."""
    frame = write_png(tmp_path / "first.png", 640, 480, (200, 30, 30))
    operator = WanImageToVideoOperator(
        task_id="upload",
        wan_conn_id="wan_uploads",
        model=MODEL,
        prompt="p",
        img_url=str(frame),
        wait_for_completion=False,
    )
    return operator.execute(context={"task_state_store": _StateStore(), "ti": _TaskInstance()})


def _refused(tmp_path: Path, capture: UploadCaptureServer, *fragments: str) -> str:
    """The run fails with a final error naming the parameter, the file and ``fragments``; nothing sent or created."""
    with pytest.raises(WanFinalError) as caught:
        _run(tmp_path)
    text = str(caught.value)
    for fragment in ("img_url", "first.png", "upload_host", *fragments):
        assert fragment in text, text
    # the policy was asked for (free), and nothing more: no upload, no create
    assert len(capture.policies) == 1
    assert capture.uploads == []
    assert capture.creates == []
    # never the policy's credentials
    for secret in ("c2lnbmF0dXJl", "cG9saWN5", "LTAIcapture"):
        assert secret not in text
    return text


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("http://169.254.169.254/_oss", "link-local"),
        ("http://100.100.100.200/_oss", "Alibaba Cloud's metadata"),
        ("http://10.0.0.7/_oss", "private"),
        ("http://[::1]:9/_oss", "this machine"),
    ],
    ids=["cloud-metadata", "alibaba-metadata", "private-network", "loopback-v6"],
)
def test_an_upload_host_inside_the_network_is_refused_as_written(
    capture: UploadCaptureServer, gateway: Gateway, tmp_path: Path, host: str, words: str
):
    capture.upload_host = host
    _refused(tmp_path, capture, words, host.rsplit("/", 1)[0])
    assert gateway.hosts == [GATEWAY], "something but the policy request went out"


def test_an_upload_host_on_this_machine_is_refused_when_the_api_is_elsewhere(
    capture: UploadCaptureServer, gateway: Gateway, tmp_path: Path
):
    # the capture server would take the file (it does in the test below): only the rule stands in the way
    capture.upload_host = f"http://127.0.0.1:{capture.port}/_oss"
    _refused(tmp_path, capture, "this machine", f"http://127.0.0.1:{capture.port}")


def test_an_upload_host_name_resolving_to_this_machine_is_refused_at_the_connection(
    capture: UploadCaptureServer, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # not proxied: the worker connects to the name itself, and the connection's peer is 127.0.0.1
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, UPLOADS)
    capture.upload_host = f"http://{UPLOADS}:{capture.port}/_oss"
    text = _refused(tmp_path, capture, "this machine", UPLOADS, "127.0.0.1", "closed before a byte was sent")
    assert UPLOADS not in gateway.hosts
    assert "127.0.0.1" in text


def test_behind_a_proxy_an_upload_host_name_resolving_to_this_machine_is_refused_before_the_request(
    capture: UploadCaptureServer, gateway: Gateway, tmp_path: Path
):
    # the proxy would resolve the name: it is resolved here first, and the proxy is never asked for it
    capture.upload_host = f"http://{UPLOADS}:{capture.port}/_oss"
    _refused(tmp_path, capture, "this machine", UPLOADS)
    assert gateway.hosts == [GATEWAY]


def test_behind_a_proxy_an_upload_host_outside_takes_the_file(
    capture: UploadCaptureServer, gateway: Gateway, tmp_path: Path
):
    capture.upload_host = f"http://{CDN}/_oss"
    _run(tmp_path)
    [upload] = capture.uploads
    assert upload["file"] == (tmp_path / "first.png").read_bytes()
    [create] = capture.creates
    assert create["body"]["input"]["img_url"].startswith("oss://dashscope-instant/capture/")
    assert gateway.hosts == [GATEWAY, CDN, GATEWAY]  # policy, upload, create


@pytest.fixture
def https_proxy(
    capture: UploadCaptureServer, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., TLSFront]]:
    """
    The gateway as ``HTTPS_PROXY`` too; makes an https upload host for a name (a certificate for ``certificate_name``,
    default the name, trusted through the env) behind the proxy's CONNECT tunnel, passing on to the capture server.
    """
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, gateway.url)
    with ExitStack() as stack:
        yield tls_fronts(stack, gateway, capture.origin, tmp_path, monkeypatch)


def test_behind_an_https_proxy_an_https_upload_host_takes_the_file_through_the_tunnel(
    capture: UploadCaptureServer, gateway: Gateway, https_proxy: Callable[..., TLSFront], tmp_path: Path
):
    front = https_proxy(CDN)
    capture.upload_host = f"https://{CDN}/_oss"
    _run(tmp_path)
    [upload] = capture.uploads
    assert upload["file"] == (tmp_path / "first.png").read_bytes()
    assert len(capture.creates) == 1
    assert gateway.connects == [f"{CDN}:443"]  # the upload, through a tunnel asked for by name
    assert gateway.hosts == [GATEWAY, GATEWAY]  # policy, create: never the upload as plain http
    assert front.paths == ["/_oss"]


def test_behind_an_https_proxy_an_upload_host_name_resolving_to_this_machine_is_refused_before_any_connect(
    capture: UploadCaptureServer, gateway: Gateway, https_proxy: Callable[..., TLSFront], tmp_path: Path
):
    https_proxy(UPLOADS)  # the tunnel would lead to the capture server: only the guard stands in the way
    capture.upload_host = f"https://{UPLOADS}/_oss"
    _refused(tmp_path, capture, "this machine", UPLOADS)
    assert gateway.connects == []


def test_behind_an_https_proxy_an_upload_host_with_a_certificate_for_another_name_is_refused(
    capture: UploadCaptureServer, gateway: Gateway, https_proxy: Callable[..., TLSFront], tmp_path: Path
):
    front = https_proxy(CDN, certificate_name=f"other.{DOMAIN}")
    capture.upload_host = f"https://{CDN}/_oss"
    _refused(tmp_path, capture, "TLS certificate was not accepted", CDN, "REQUESTS_CA_BUNDLE")
    assert gateway.connects == [f"{CDN}:443"]
    assert front.paths == []


@pytest.fixture
def https_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UploadCaptureServer]:
    """An https API on this machine (``https://secure.wan-dns.test``), its certificate trusted through the env."""
    cert_file, key_file = self_signed_certificate(tmp_path, dns_name=SECURE)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    with UploadCaptureServer(host=SECURE, certificate=(cert_file, key_file)) as server:
        _connect(monkeypatch, server.base_url)
        yield server


def test_a_plain_http_upload_host_is_refused_when_the_api_is_https(
    https_api: UploadCaptureServer, capture: UploadCaptureServer, tmp_path: Path
):
    # on this machine like the API (so the address rule allows it): only the downgrade to plain http is refused
    https_api.upload_host = f"{capture.origin}/_oss"
    _refused(tmp_path, https_api, "plain http while the API is https", capture.origin)
    assert capture.uploads == []


def test_an_https_upload_host_takes_the_file_when_the_api_is_https(https_api: UploadCaptureServer, tmp_path: Path):
    _run(tmp_path)
    [upload] = https_api.uploads
    assert upload["file"] == (tmp_path / "first.png").read_bytes()
    assert len(https_api.creates) == 1


def test_the_simulator_still_takes_uploads_on_loopback(
    wan_simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # the simulator's policy names itself on 127.0.0.1, where the API is: allowed
    monkeypatch.setenv("AIRFLOW_CONN_WAN_UPLOADS", wan_simulator.connection_json())
    _run(tmp_path)
    stats = wan_simulator.stats()
    assert stats["uploads"]["files"] == 1, stats
    assert stats["uploads"]["bytes"] == (tmp_path / "first.png").stat().st_size, stats
    assert stats["tasks_created"] == 1, stats
