"""
Video links whose host NAME leads into the worker's network, through real HTTP on 127.0.0.1: the address each
connection actually reaches is judged (hooks/guard.py), not the link as written, so a name resolving to this
machine is refused when the API is elsewhere, directly and behind a proxy, and TLS still checks the link's name.

Name resolution is controlled by patching ``socket.getaddrinfo`` (the system's resolver, not our code) for names
under ``wan-dns.test`` only: ``video.wan-dns.test`` resolves to 127.0.0.1, ``cdn.wan-dns.test`` to a public address
(only ever reached through the proxy), ``api.wan-dns.test`` not at all (a gateway only the proxy knows). The API is
"elsewhere" the way users put it behind a gateway: ``base_url`` names ``api.wan-dns.test``, reached through an HTTP
proxy (``HTTP_PROXY``) on 127.0.0.1 that forwards every request to the simulator.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_wan.exceptions import WanFinalError
from airflow_provider_wan.hooks.guard import guarded_session
from airflow_provider_wan.hooks.wan import WanHook, link_address_problem
from tests.certificates import self_signed_certificate
from tests.names import DOMAIN, resolve_test_names
from tests.transfer.proxy import Gateway, serving
from tests.transfer.test_hostile_links import SIGNATURE, _answer_with_link, _fails_clearly, _generate, _operator

NAMES = {f"video.{DOMAIN}": "127.0.0.1", f"cdn.{DOMAIN}": "93.184.216.34"}
GATEWAY = f"api.{DOMAIN}"


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """``socket.getaddrinfo`` answering for ``*.wan-dns.test`` from :data:`NAMES`; every other name as before."""
    resolve_test_names(monkeypatch, NAMES)


@pytest.fixture
def gateway(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """``wan_default`` with base_url ``http://api.wan-dns.test/api/v1``, reached through the proxy."""
    with serving(Gateway(wan_simulator.url)) as proxy:
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "127.0.0.1")  # the simulator's own control calls go straight
        monkeypatch.setenv(
            "AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(base_url=f"http://{GATEWAY}/api/v1")
        )
        yield proxy


def _downloads(sim: Any) -> int:
    return int(sim.stats()["requests"].get("download", 0))


def _link_on(task_id: str, host: str) -> str:
    """The task's real video link, as DashScope answered it, with its host replaced by ``host``."""
    real = WanHook().get_task(task_id).video_url or ""
    return real.replace(urlsplit(real).netloc, host, 1)


def test_a_video_url_whose_name_resolves_to_this_machine_is_refused_at_the_connection(
    wan_simulator: Any, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # the link's host is not proxied: the worker connects to it, and its peer is 127.0.0.1
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, f"127.0.0.1,video.{DOMAIN}")
    task_id = _generate()
    _answer_with_link(wan_simulator, task_id, _link_on(task_id, f"video.{DOMAIN}:{wan_simulator.port}"))
    before = _downloads(wan_simulator)
    error = _fails_clearly(tmp_path / "out", task_id, WanFinalError, "this machine")
    assert f"video.{DOMAIN}" in str(error)  # names the host
    assert "127.0.0.1" in str(error)  # and where it led
    assert "closed before the request was sent" in str(error)
    assert _downloads(wan_simulator) == before, "the simulator was asked for the video"
    assert f"video.{DOMAIN}" not in gateway.hosts


def test_behind_a_proxy_a_name_resolving_to_this_machine_is_refused_before_the_request(
    wan_simulator: Any, gateway: Gateway, tmp_path: Path
):
    # the peer would be the proxy (legitimately private): the link's name is resolved here and judged first
    task_id = _generate()
    _answer_with_link(wan_simulator, task_id, _link_on(task_id, f"video.{DOMAIN}:{wan_simulator.port}"))
    before = _downloads(wan_simulator)
    error = _fails_clearly(tmp_path / "out", task_id, WanFinalError, "this machine")
    assert SIGNATURE not in str(error)
    assert f"video.{DOMAIN}" not in gateway.hosts, "the proxy was asked for the link"
    assert _downloads(wan_simulator) == before


@pytest.mark.parametrize(
    "host",
    [GATEWAY, f"cdn.{DOMAIN}"],
    ids=["a-name-only-the-proxy-resolves", "a-name-resolving-to-a-public-address"],
)
def test_behind_a_proxy_a_link_outside_lands_whole(wan_simulator: Any, gateway: Gateway, tmp_path: Path, host: str):
    task_id = _generate()
    link = _link_on(task_id, host)
    served = requests.get(_link_on(task_id, f"127.0.0.1:{wan_simulator.port}"), timeout=30).content
    _answer_with_link(wan_simulator, task_id, link)
    result = _operator(tmp_path, task_id).execute({})
    assert (tmp_path / f"{task_id}.mp4").read_bytes() == served
    assert result["size"] == len(served)
    assert host in gateway.hosts


@pytest.mark.parametrize("proxied", [False, True], ids=["connected-directly", "through-the-proxy"])
def test_a_redirect_to_a_name_resolving_to_this_machine_is_not_followed(
    wan_simulator: Any, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proxied: bool
):
    if not proxied:
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, f"127.0.0.1,video.{DOMAIN}")
    task_id = _generate()
    gateway.redirects[f"cdn.{DOMAIN}"] = _link_on(task_id, f"video.{DOMAIN}:{wan_simulator.port}")
    _answer_with_link(wan_simulator, task_id, _link_on(task_id, f"cdn.{DOMAIN}"))
    before = _downloads(wan_simulator)
    error = _fails_clearly(tmp_path / "out", task_id, WanFinalError, "this machine")
    assert f"video.{DOMAIN}" in str(error)
    assert gateway.hosts.count(f"cdn.{DOMAIN}") == 1  # the first hop was asked, once
    assert f"video.{DOMAIN}" not in gateway.hosts
    assert _downloads(wan_simulator) == before


def test_the_simulator_on_loopback_may_serve_its_videos_under_a_name_resolving_there(
    wan_connection: Any, tmp_path: Path
):
    # the API is on 127.0.0.1 (base_url), so a link whose name leads to 127.0.0.1 is where the API is
    task_id = _generate()
    real = WanHook().get_task(task_id).video_url or ""
    served = requests.get(real, timeout=30).content
    _answer_with_link(wan_connection, task_id, _link_on(task_id, f"video.{DOMAIN}:{wan_connection.port}"))
    result = _operator(tmp_path, task_id).execute({})
    assert (tmp_path / f"{task_id}.mp4").read_bytes() == served
    assert result["size"] == len(served)


def test_tls_through_the_guarded_session_sends_the_name_and_checks_the_certificate_against_it(tmp_path: Path):
    name = f"video.{DOMAIN}"
    cert_file, key_file = self_signed_certificate(tmp_path, dns_name=name)
    server_names: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda _sock, server_name, _context: server_names.append(server_name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    # the API on loopback (the simulator's case): 127.0.0.1 is allowed, so only TLS decides
    with guarded_session(lambda address: link_address_problem(address, "http://127.0.0.1:1/api/v1")) as session:
        try:
            answer = session.get(f"https://{name}:{port}/v.mp4", verify=str(cert_file), timeout=10)
            assert answer.content == b"ok"
            assert server_names == [name]  # SNI: the link's name, not the address connected to
            # the same server under its address: the certificate does not name it, and is still refused for that
            with pytest.raises(requests.exceptions.SSLError):
                session.get(f"https://127.0.0.1:{port}/v.mp4", verify=str(cert_file), timeout=10)
        finally:
            server.shutdown()
            server.server_close()
