"""
https video links behind a corporate proxy (``HTTPS_PROXY``), through real HTTP(S) on 127.0.0.1: the download goes
through the proxy's CONNECT tunnel, TLS inside it checks the certificate against the link's name, and a name that
resolves into the worker's network is refused before the proxy is asked for a tunnel (hooks/guard.py).

The proxy is :class:`~tests.transfer.proxy.Gateway` (``HTTP_PROXY`` and ``HTTPS_PROXY``, with a login in its URL):
the API is "elsewhere" the way tests/transfer/test_dns_links.py puts it (``base_url`` names ``api.wan-dns.test``,
which only the proxy knows), and a CONNECT for ``cdn.wan-dns.test:443`` is a tunnel to a
:class:`~tests.transfer.proxy.TLSFront`: an https server with a certificate for that name, passing requests on to
the simulator. The worker trusts the certificate the way users trust a CA (``REQUESTS_CA_BUNDLE``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_wan.exceptions import WanFinalError, WanTransferIntegrityError
from airflow_provider_wan.hooks.wan import WanHook
from tests.certificates import self_signed_certificate
from tests.names import DOMAIN, resolve_test_names
from tests.transfer.proxy import (
    Gateway,
    TLSFront,
    assert_names_the_proxys_certificate,
    only_way_to_the_api,
    serving,
    tls_fronts,
)
from tests.transfer.test_hostile_links import SIGNATURE, _answer_with_link, _fails_clearly, _generate, _operator

CDN, GATEWAY = f"cdn.{DOMAIN}", f"api.{DOMAIN}"
#: names leading into the worker's network: this machine, the private network, the cloud's metadata service
INSIDE = {
    f"video.{DOMAIN}": ("127.0.0.1", "this machine"),
    f"private.{DOMAIN}": ("10.20.30.40", "private"),
    f"metadata.{DOMAIN}": ("169.254.169.254", "link-local"),
}
NAMES = {CDN: "93.184.216.34", **{name: address for name, (address, _) in INSIDE.items()}}
#: the proxy's login, in HTTP(S)_PROXY as users write it: never in an error or a log line
PROXY_PASSWORD = "pr0xy-s3cret-Zq"
PROXY_LOGIN = f"wan-user:{PROXY_PASSWORD}"

#: makes an https server for a name (its certificate naming ``certificate_name``, default the name), opens the
#: proxy's tunnel to it and trusts its certificate
Fronts = Callable[..., TLSFront]


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_test_names(monkeypatch, NAMES)


@pytest.fixture
def gateway(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """``wan_default`` at ``http://api.wan-dns.test/api/v1``; every link through the proxy, which wants a login."""
    with only_way_to_the_api(wan_simulator, monkeypatch, GATEWAY, PROXY_LOGIN) as proxy:
        yield proxy


@pytest.fixture
def fronts(wan_simulator: Any, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fronts]:
    with ExitStack() as stack:
        yield tls_fronts(stack, gateway, wan_simulator.url, tmp_path, monkeypatch)


def _downloads(sim: Any) -> int:
    return int(sim.stats()["requests"].get("download", 0))


def _https_link(task_id: str, host: str) -> str:
    """The task's real video link, as DashScope answered it, made https under ``host`` (port 443)."""
    real = WanHook().get_task(task_id).video_url or ""
    parts = urlsplit(real)
    return f"https://{host}{parts.path}?{parts.query}"


def _no_secrets(text: str) -> None:
    assert PROXY_PASSWORD not in text, "the proxy's password leaked"
    assert SIGNATURE not in text, "the signed link leaked"


def test_an_https_video_url_lands_whole_through_the_proxys_tunnel(
    wan_simulator: Any, gateway: Gateway, fronts: Fronts, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    front = fronts(CDN)
    task_id = _generate()
    link = _https_link(task_id, CDN)
    served = requests.get(link.replace(f"https://{CDN}", wan_simulator.url, 1), timeout=30).content
    _answer_with_link(wan_simulator, task_id, link)
    with caplog.at_level(logging.DEBUG):
        result = _operator(tmp_path, task_id).execute({})
    assert (tmp_path / f"{task_id}.mp4").read_bytes() == served
    assert result["size"] == len(served)
    assert gateway.connects == [f"{CDN}:443"]  # one tunnel, asked for by name (the proxy resolves it)
    assert CDN not in gateway.hosts, "the link went through the proxy as plain http"
    assert gateway.refused == 0  # the login in HTTPS_PROXY was sent
    assert [urlsplit(path).path for path in front.paths] == [urlsplit(link).path]
    assert PROXY_PASSWORD not in caplog.text


def test_a_certificate_for_another_name_is_refused_with_a_clear_error(
    wan_simulator: Any, gateway: Gateway, fronts: Fronts, tmp_path: Path
):
    # a proxy inspecting TLS with a CA the worker does not trust looks the same: the certificate does not fit
    front = fronts(CDN, certificate_name=f"other.{DOMAIN}")
    task_id = _generate()
    _answer_with_link(wan_simulator, task_id, _https_link(task_id, CDN))
    before = _downloads(wan_simulator)
    error = _fails_clearly(tmp_path / "out", task_id, WanFinalError, "TLS certificate was not accepted")
    assert CDN in str(error)
    assert "REQUESTS_CA_BUNDLE" in str(error)  # what to do about it
    _no_secrets(f"{error} {error!r}")
    # refused at once: the same certificate would be refused again, so no retry
    assert gateway.connects == [f"{CDN}:443"]
    assert front.paths == []
    assert _downloads(wan_simulator) == before


def test_a_refused_certificate_is_named_as_the_https_proxys_or_the_links_host(
    wan_simulator: Any, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # HTTPS_PROXY=https://...: TLS to the proxy itself, then TLS to the link's host inside its tunnel. The proxy's own
    # certificate refused read as a dropped connection, tried again and again ("ProxyError before an answer")
    task_id = _generate()
    link = _https_link(task_id, CDN)
    for folder in ("proxy", "impostor", "cdn"):
        (tmp_path / folder).mkdir()
    proxy_certificate = self_signed_certificate(tmp_path / "proxy", ip_address="127.0.0.1")
    impostor = self_signed_certificate(tmp_path / "impostor", ip_address="127.0.0.1")
    # the CDN answers for its name with a certificate no trusted authority signed; only the proxy's is trusted
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy_certificate[0]))
    before = _downloads(wan_simulator)
    with serving(TLSFront(wan_simulator.url, self_signed_certificate(tmp_path / "cdn", dns_name=CDN))) as front:
        assert isinstance(front, TLSFront)
        for served in (impostor, proxy_certificate):
            with (
                serving(Gateway(wan_simulator.url, credentials=PROXY_LOGIN, certificate=served)) as tls_proxy,
                monkeypatch.context() as env,
            ):
                assert isinstance(tls_proxy, Gateway)
                tls_proxy.tunnels[f"{CDN}:443"] = front.address
                proxy = f"https://127.0.0.1:{tls_proxy.server_address[1]}"
                for name in ("HTTPS_PROXY", "https_proxy"):  # the API stays behind the plain-http gateway
                    env.setenv(name, f"https://{PROXY_LOGIN}@127.0.0.1:{tls_proxy.server_address[1]}")
                _answer_with_link(wan_simulator, task_id, link)
                error = _fails_clearly(tmp_path / "out", task_id, WanFinalError, "TLS certificate was not accepted")
            text = f"{error} {error!r} {getattr(error, 'to_dict', dict)()}"
            _no_secrets(text)
            assert urlsplit(link).query not in text, "the signed link leaked"
            if served is impostor:
                # refused at the handshake with the proxy, at once: no CONNECT, no login, the link not asked for
                assert_names_the_proxys_certificate(error, proxy, PROXY_LOGIN)
                assert f"the video of DashScope task {task_id} from https://{CDN}" in str(error)
                assert "The video link was not read" in str(error)
                assert (tls_proxy.connects, tls_proxy.refused) == ([], 0)
            else:
                # the CDN's, inside the trusted proxy's tunnel: named as the link's host's, once (not retried)
                assert f"Refused to fetch the video of DashScope task {task_id} from https://{CDN} " in str(error)
                assert "proxy at" not in str(error)
                assert tls_proxy.connects == [f"{CDN}:443"]
    assert front.paths == []
    assert _downloads(wan_simulator) == before


@pytest.mark.parametrize("name", sorted(INSIDE), ids=[words for _, words in sorted(INSIDE.values())])
def test_a_name_resolving_into_the_network_is_refused_before_any_connect(
    wan_simulator: Any, gateway: Gateway, fronts: Fronts, tmp_path: Path, name: str
):
    fronts(name)  # the tunnel would lead to the video: only the guard stands in the way
    address, words = INSIDE[name]
    task_id = _generate()
    _answer_with_link(wan_simulator, task_id, _https_link(task_id, name))
    before = _downloads(wan_simulator)
    error = _fails_clearly(tmp_path / "out", task_id, WanFinalError, words)
    assert name in str(error)
    assert address in str(error)
    _no_secrets(str(error))
    assert gateway.connects == [], "the proxy was asked for a tunnel"
    assert _downloads(wan_simulator) == before


def test_a_tunnel_the_proxy_refuses_is_an_error_without_its_login(
    wan_simulator: Any, gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    # no tunnel to the CDN: the proxy answers the CONNECT with 502, each attempt
    task_id = _generate()
    _answer_with_link(wan_simulator, task_id, _https_link(task_id, CDN))
    with caplog.at_level(logging.DEBUG):
        error = _fails_clearly(tmp_path / "out", task_id, WanTransferIntegrityError, "ProxyError")
    _no_secrets(f"{error} {error!r} {caplog.text}")
    assert gateway.connects == [f"{CDN}:443"] * 2  # max_download_attempts


def test_a_netrc_login_is_not_handed_to_the_links_host(
    wan_simulator: Any, gateway: Gateway, fronts: Fronts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # a machine's ~/.netrc with a default login (for pip, git...): requests would put it in the request to any host
    front = fronts(CDN)
    task_id = _generate()
    _answer_with_link(wan_simulator, task_id, _https_link(task_id, CDN))
    netrc = tmp_path / "netrc"
    netrc.write_text("default login intruder password n3trc-pa55\n")
    monkeypatch.setenv("NETRC", str(netrc))  # from here (the test's own requests.get would take it too)
    _operator(tmp_path / "out", task_id).execute({})
    assert len(front.paths) == 1
    assert front.authorizations == [None]
