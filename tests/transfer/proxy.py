"""
A small forwarding HTTP proxy on 127.0.0.1 for the store tests (real HTTP both ways): a test's handler decides what
to refuse and passes the rest on to the emulator behind it (moto, the GCS emulator). :class:`Gateway` is such a proxy
set as ``HTTP_PROXY``: the way to an API whose host name only the proxy knows; set as ``HTTPS_PROXY`` too, it opens
CONNECT tunnels, to a :class:`TLSFront` (an https server for a host name) standing for a CDN, an upload host or the API.
"""

from __future__ import annotations

import base64
import http.client
import selectors
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import pytest

from tests.certificates import self_signed_certificate


class ForwardingProxy(ThreadingHTTPServer):
    """A threading server whose handlers forward to ``upstream`` (see :func:`forward`)."""

    daemon_threads = True

    def __init__(self, upstream: str, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.upstream: SplitResult = urlsplit(upstream)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> http.client.HTTPResponse:
        """A request of the proxy's own straight to the upstream (its answer read whole)."""
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            answer = connection.getresponse()
            answer.read()
            return answer
        finally:
            connection.close()


@contextmanager
def serving(proxy: ForwardingProxy) -> Iterator[ForwardingProxy]:
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def refuse(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    """Answer ``status`` with ``body`` instead of forwarding."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def forward(
    handler: BaseHTTPRequestHandler,
    body: bytes,
    edit: Callable[[list[tuple[str, str]], bytes], tuple[list[tuple[str, str]], bytes]] | None = None,
) -> None:
    """
    Pass the request on to the upstream and its answer back. A HEAD answer's Content-Length (the object's size) is
    passed on as it is; the upstream's address in a header (a resumable session's URL) becomes the proxy's, so the
    client stays on the proxy. ``edit`` (headers, body) -> (headers, body) changes the answer on its way back.
    """
    proxy = handler.server
    assert isinstance(proxy, ForwardingProxy)
    upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
    try:
        upstream.request(handler.command, handler.path, body=body, headers=dict(handler.headers.items()))
        answer = upstream.getresponse()
        data = answer.read()
        headers = answer.getheaders()
        if edit is not None:
            headers, data = edit(headers, data)
        handler.send_response(answer.status)
        head = handler.command == "HEAD"
        skip = ("transfer-encoding", "connection") if head else ("content-length", "transfer-encoding", "connection")
        for name, value in headers:
            if name.lower() not in skip:
                handler.send_header(name, value.replace(proxy.upstream.netloc, urlsplit(proxy.url).netloc))
        if not head:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if not head:
            handler.wfile.write(data)
    finally:
        upstream.close()


class Gateway(ForwardingProxy):
    """
    An HTTP proxy forwarding every request (whatever host it names) to its upstream; records the hosts. A request
    for a host in ``redirects`` is answered with a 302 to the URL there instead (a CDN sending the download on).

    Also a CONNECT proxy (what clients use ``HTTPS_PROXY`` for): a CONNECT for a ``host:port`` in ``tunnels`` is a
    tunnel to the address there (the only way to that name), any other is answered 502; ``connects`` records every
    CONNECT's target; one for a ``host:port`` in ``tunnel_refusals`` is answered with the status there (a proxy whose
    rules forbid that host). With ``credentials`` (``user:password``) a request without them
    (``Proxy-Authorization``, Basic) is answered 407 instead; ``refused`` counts those. With ``certificate`` (PEM
    files, tests/certificates.py) it is an https:// proxy: TLS to the proxy itself.
    """

    def __init__(
        self, upstream: str, *, credentials: str | None = None, certificate: tuple[Path, Path] | None = None
    ) -> None:
        super().__init__(upstream, _Forward)
        if certificate is not None:
            # an https:// proxy: TLS to the proxy itself (and, for an https target, TLS inside that TLS)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.hosts: list[str] = []
        self.redirects: dict[str, str] = {}
        self.connects: list[str] = []
        self.tunnels: dict[str, tuple[str, int]] = {}
        self.tunnel_refusals: dict[str, int] = {}
        self.credentials = credentials
        self.refused = 0


class _Forward(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _authorized(self) -> bool:
        if self.server.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(self.server.credentials.encode()).decode()
        if self.headers.get("Proxy-Authorization") == expected:
            return True
        self.server.refused += 1
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="gateway"')
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        return False

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not self._authorized():
            return
        target = urlsplit(self.path)  # a proxy's request names the whole URL
        self.server.hosts.append(target.hostname or "")
        location = self.server.redirects.get(target.hostname or "")
        if location is not None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.path = target.path + (f"?{target.query}" if target.query else "")
        forward(self, body)

    do_GET = do_POST = _any

    def do_CONNECT(self) -> None:
        self.server.connects.append(self.path)  # host:port
        if not self._authorized():
            return
        refusal = self.server.tunnel_refusals.get(self.path)
        if refusal is not None:
            refuse(self, refusal, b"not through this proxy", "text/plain")
            self.close_connection = True
            return
        address = self.server.tunnels.get(self.path)
        try:
            if address is None:
                raise ConnectionRefusedError
            far = socket.create_connection(address, timeout=30)
        except OSError:
            refuse(self, 502, b"", "text/plain")
            self.close_connection = True
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.close_connection = True
        with far:
            _splice(self.connection, far)


def _splice(one: socket.socket, other: socket.socket) -> None:
    """Pass bytes both ways until either side closes (or a minute passes without any)."""
    with selectors.DefaultSelector() as selector:
        selector.register(one, selectors.EVENT_READ, other)
        selector.register(other, selectors.EVENT_READ, one)
        while True:
            ready = selector.select(timeout=60)
            if not ready:
                return
            for key, _ in ready:
                try:
                    data = key.fileobj.recv(64 * 1024)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
                except OSError:
                    return


class TLSFront(ForwardingProxy):
    """
    An https server under a host name (its certificate) passing every request on to the plain-http ``upstream``
    (the simulator, a capture server): the far end of a :class:`Gateway`'s CONNECT tunnel. ``paths`` records the
    requests it passed on, ``authorizations`` their ``Authorization`` headers (None: none).

    :param certificate: the certificate and its key (PEM files, tests/certificates.py)
    """

    def __init__(self, upstream: str, certificate: tuple[Path, Path]) -> None:
        super().__init__(upstream, _Pass)
        self.paths: list[str] = []
        self.authorizations: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        self.socket = context.wrap_socket(self.socket, server_side=True)

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.server_address[1]


class _Pass(BaseHTTPRequestHandler):
    server: TLSFront
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.paths.append(self.path)
        self.server.authorizations.append(self.headers.get("Authorization"))
        forward(self, body)

    do_GET = do_POST = do_HEAD = _any


def assert_names_the_proxys_certificate(error: BaseException, proxy: str, login: str) -> None:
    """
    ``error`` says the certificate refused was the ``https://`` proxy's own, naming it as ``proxy``
    (``scheme://host:port``); its login (``user:password``, as in the proxy's URL) appears nowhere in it.
    """
    text = str(error)
    assert f"Refused the proxy at {proxy} " in text, text
    assert "its TLS certificate was not accepted" in text
    everything = f"{error} {error!r} {getattr(error, 'to_dict', dict)()}"
    user, _, password = login.partition(":")
    assert password not in everything, "the proxy's password leaked"
    assert user not in everything


@contextmanager
def only_way_to_the_api(
    simulator: Any, monkeypatch: pytest.MonkeyPatch, api_host: str, login: str
) -> Iterator[Gateway]:
    """
    A :class:`Gateway` (wanting ``login``) as every proxy variable, ``wan_default`` at ``http://<api_host>/api/v1``:
    a name only the proxy knows. The simulator's own control calls (127.0.0.1) go straight.
    """
    with serving(Gateway(simulator.url, credentials=login)) as proxy:
        url = f"http://{login}@127.0.0.1:{proxy.server_address[1]}"
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.setenv(name, "127.0.0.1")
        monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", simulator.connection_json(base_url=f"http://{api_host}/api/v1"))
        assert isinstance(proxy, Gateway)
        yield proxy


def tls_fronts(
    stack: ExitStack, gateway: Gateway, upstream: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., TLSFront]:
    """
    A maker of https servers behind ``gateway``'s CONNECT tunnels, passing on to ``upstream``: ``front(name)`` serves
    ``name:443`` with a certificate for ``certificate_name`` (default ``name``), trusted through ``REQUESTS_CA_BUNDLE``;
    each is stopped with ``stack``.
    """

    def front(name: str, certificate_name: str | None = None) -> TLSFront:
        where = folder / f"certificate-{name}"
        where.mkdir()
        certificate = self_signed_certificate(where, dns_name=certificate_name or name)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
        server = stack.enter_context(serving(TLSFront(upstream, certificate)))
        gateway.tunnels[f"{name}:443"] = server.address
        assert isinstance(server, TLSFront)
        return server

    return front
