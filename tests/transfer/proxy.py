"""
A small forwarding HTTP proxy on 127.0.0.1 for the store tests (real HTTP both ways): a test's handler decides what
to refuse and passes the rest on to the emulator behind it (moto, the GCS emulator). :class:`Gateway` is such a proxy
set as ``HTTP_PROXY``: the way to an API whose host name only the proxy knows.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, urlsplit


class ForwardingProxy(ThreadingHTTPServer):
    """A threading server whose handlers forward to ``upstream`` (see :func:`forward`)."""

    daemon_threads = True

    def __init__(self, upstream: str, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.upstream: SplitResult = urlsplit(upstream)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def request(self, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
        """A request of the proxy's own straight to the upstream (its answer read whole)."""
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=60)
        try:
            connection.request(method, path, body=body)
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


def forward(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """
    Pass the request on to the upstream and its answer back. A HEAD answer's Content-Length (the object's size) is
    passed on as it is; the upstream's address in a header (a resumable session's URL) becomes the proxy's, so the
    client stays on the proxy.
    """
    proxy = handler.server
    assert isinstance(proxy, ForwardingProxy)
    upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
    try:
        upstream.request(handler.command, handler.path, body=body, headers=dict(handler.headers.items()))
        answer = upstream.getresponse()
        data = answer.read()
        handler.send_response(answer.status)
        head = handler.command == "HEAD"
        skip = ("transfer-encoding", "connection") if head else ("content-length", "transfer-encoding", "connection")
        for name, value in answer.getheaders():
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
    """

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, _Forward)
        self.hosts: list[str] = []
        self.redirects: dict[str, str] = {}


class _Forward(BaseHTTPRequestHandler):
    server: Gateway
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
