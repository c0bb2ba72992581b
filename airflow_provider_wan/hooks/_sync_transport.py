"""
The worker's transport (``requests``): one attempt of an :class:`~airflow_provider_wan.hooks.wan.ApiCall`, bounded
in total time, its answer read up to a size cap, and handed to the classifier.

``requests`` has only per-read timeouts: a server sending one byte a second keeps every read short and holds the
call for hours. So each attempt runs under a watchdog timer that, when the attempt's total time is up, shuts the
socket down; the blocked read returns at once and the attempt ends as a timeout. Imported only when a request is
made (``requests`` is not cheap to import).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from airflow_provider_wan.hooks.classify import (
    MAX_ANSWER_BYTES,
    Failure,
    TransportFault,
    classify_answer,
    classify_transport,
    proxy_certificate_refused,
    proxy_refused,
)
from airflow_provider_wan.hooks.proxies import proxy_for

if TYPE_CHECKING:
    from airflow_provider_wan.hooks.wan import ApiCall, Credentials

_READ_CHUNK = 64 * 1024
_local = threading.local()


class _Watchdog:
    """
    Shuts down the socket of this thread's current request once ``seconds`` have passed. Also the attempt's record
    of what left: whether a request was started on a connection (:attr:`sent`), and what a proxy answered to the
    ``CONNECT`` of an https call (:attr:`tunnel_status`).
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        #: the status of the proxy's answer to this attempt's CONNECT; None: no tunnel was asked for
        self.tunnel_status: int | None = None
        self._lock = threading.Lock()
        self._connection: HTTPConnection | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connection = connection
            fired = self.fired
        if fired:
            _shutdown(connection)

    @property
    def sent(self) -> bool:
        """Whether a connection began to send this attempt's request (only then may any of its bytes have left)."""
        with self._lock:
            return self._connection is not None

    def tunnel_refused(self) -> bool:
        """The proxy answered the CONNECT with anything but 200, and so (no tunnel) nothing of the request left."""
        return self.tunnel_status not in (None, 200) and not self.sent

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            connection = self._connection
        if connection is not None:
            _shutdown(connection)


def _shutdown(connection: HTTPConnection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    # socket.socket's own shutdown, also for an SSLSocket: wakes a read blocked in another thread
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


@contextmanager
def _watchdog(seconds: float) -> Iterator[_Watchdog]:
    watchdog = _Watchdog(seconds)
    _local.watchdog = watchdog
    watchdog._timer.start()
    try:
        yield watchdog
    finally:
        watchdog._timer.cancel()
        _local.watchdog = None


class _TunnelAnswer(http.client.HTTPResponse):
    """A proxy's answer to a CONNECT: its status is recorded for the attempt (``http.client`` keeps only its text)."""

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        watchdog = getattr(_local, "watchdog", None)
        if watchdog is not None:
            watchdog.tunnel_status = status
        return version, status, reason


class _WatchedMixin:
    response_class: type[http.client.HTTPResponse]

    def _tunnel(self) -> None:
        # the CONNECT, sent and answered inside connect(): when the proxy refuses it, connect() raises and request(),
        # which alone writes the call, is never reached. urllib3 and http.client read the answer's status line with
        # response_class (were that ever done otherwise, no status is recorded: the refusal stays an unknown outcome)
        self.response_class = _TunnelAnswer
        try:
            super()._tunnel()  # type: ignore[misc]
        finally:
            del self.response_class

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        watchdog = getattr(_local, "watchdog", None)
        if watchdog is not None and watchdog.fired:
            _shutdown(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> None:
        watchdog = getattr(_local, "watchdog", None)
        if watchdog is not None:
            watchdog.attach(self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class ProxyCertificateError(ssl.SSLCertVerificationError):
    """The certificate of an ``https://`` proxy itself was refused (not that of a server reached through it)."""


class ProxyTLSMixin:
    """
    For an ``HTTPSConnection``: a certificate refused at the TLS handshake with an ``https://`` proxy itself is raised
    as a :class:`ProxyCertificateError` (see :func:`refused_at_the_proxy`), whatever urllib3 and requests wrap it
    in. Shared by the API's connections and those of the links an answer names (hooks/guard.py).
    """

    def _connect_tls_proxy(self, hostname: str, sock: socket.socket) -> ssl.SSLSocket:
        # urllib3's handshake with the proxy, before any CONNECT (or to forward a plain-http request): nothing of the
        # request left (were it ever done elsewhere, a refused proxy certificate reads as the server's)
        try:
            return super()._connect_tls_proxy(hostname, sock)  # type: ignore[misc]
        except ssl.SSLCertVerificationError as exc:
            raise ProxyCertificateError(*exc.args) from exc


class _WatchedHTTPSConnection(_WatchedMixin, ProxyTLSMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class CheckedAdapter(HTTPAdapter):
    """An adapter that checks the certificate of every TLS connection it opens, an ``https://`` proxy's included."""

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        if verify and getattr(conn, "scheme", None) == "https" and not url.lower().startswith("https:"):
            # a plain-http URL sent through an https:// proxy: the connection is TLS to the proxy, which requests
            # leaves unchecked for an http URL (CERT_NONE), handing the proxy's login and the request to whoever
            # answered at the proxy's address; checked against the authorities an https URL would be
            url = "https:" + url.partition(":")[2]
        super().cert_verify(conn, url, verify, cert)


class WatchedAdapter(CheckedAdapter):
    """An adapter whose connections a :class:`_Watchdog` can interrupt (directly or through a proxy)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


def as_sent(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """
    A session's ``auth`` that changes nothing. A session without one takes a login from ``~/.netrc`` (or ``NETRC``)
    for the request's host and puts it in ``Authorization``: over the API key (every call refused), or handed to
    any host an answer names (a video link, an upload host).
    """
    return request


def new_session() -> requests.Session:
    """A pooled session whose requests the watchdog can cut; urllib3 retries nothing (the hook decides)."""
    session = requests.Session()
    session.auth = as_sent
    adapter = WatchedAdapter(pool_connections=4, pool_maxsize=16, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it wraps (a urllib3 ``reason``, an exception as first argument, else its cause), in turn."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            current = reason
        elif current.args and isinstance(current.args[0], BaseException):
            current = current.args[0]
        else:
            current = current.__cause__ or current.__context__


def refused_at_the_proxy(exc: BaseException) -> bool:
    """
    Whether a requests/urllib3 failure was the ``https://`` proxy's own certificate refused (a connection with
    :class:`ProxyTLSMixin`): nothing was sent to the proxy, let alone to the server behind it.
    """
    return any(isinstance(current, ProxyCertificateError) for current in _causes(exc))


def fault_of(exc: BaseException) -> TransportFault:
    """What a requests/urllib3 exception means, from its chain of causes (never from its text)."""
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema)):
        return TransportFault.INVALID_URL
    if isinstance(exc, requests.exceptions.MissingSchema):
        return TransportFault.INVALID_URL
    for current in _causes(exc):
        if isinstance(current, ssl.SSLCertVerificationError):
            return TransportFault.CERTIFICATE
        if isinstance(
            current,
            (
                urllib3.exceptions.NewConnectionError,
                urllib3.exceptions.ConnectTimeoutError,
                urllib3.exceptions.NameResolutionError,
                ConnectionRefusedError,
            ),
        ):
            return TransportFault.NOT_CONNECTED
        if isinstance(current, (urllib3.exceptions.ReadTimeoutError, socket.timeout)):
            return TransportFault.TIMEOUT
    if isinstance(exc, requests.exceptions.Timeout):
        return TransportFault.TIMEOUT
    return TransportFault.BROKEN


def _read_capped(response: requests.Response) -> tuple[bytes, bool]:
    """The body, decoded (gzip...), at most MAX_ANSWER_BYTES; True when more was there."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_READ_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return b"".join(chunks)[:MAX_ANSWER_BYTES], True
    return b"".join(chunks), False


def _first_values(response: requests.Response) -> Mapping[str, str]:
    """
    The answer's headers, each as its first line says: what aiohttp's ``headers.get()`` gives the triggerer's
    transport. ``requests`` joins repeated lines with ", " ("2, 2"; two HTTP-dates hold commas themselves), which
    no Retry-After reader can take apart.
    """
    raw = getattr(response.raw, "headers", None)
    if raw is None or not hasattr(raw, "getlist"):
        return response.headers
    return requests.structures.CaseInsensitiveDict({name: raw.getlist(name)[0] for name in raw})


def exchange(
    session: requests.Session,
    call: ApiCall,
    credentials: Credentials,
    *,
    connect_timeout: float,
    read_timeout: float,
    seconds: float,
    is_deadline: bool,
) -> dict[str, Any] | Failure:
    """
    One attempt: send ``call``, read the answer, classify it.

    :param seconds: the attempt's total time limit, connect to last byte
    :param is_deadline: that limit is the caller's deadline (not the per-request limit)
    """
    timed_out = TransportFault.DEADLINE if is_deadline else TransportFault.TIMEOUT
    if seconds <= 0:
        return classify_transport(call, timed_out, credentials, seconds=0.0)
    fault: TransportFault | None = None
    at_the_proxy = False
    url = call.url(credentials.base_url)
    with _watchdog(seconds) as watchdog:
        try:
            response = session.request(
                call.method,
                url,
                params=call.params,
                json=call.json_body,
                headers=call.headers(credentials),
                timeout=(min(connect_timeout, seconds), min(read_timeout, seconds)),
                allow_redirects=False,
                stream=True,
            )
            try:
                headers = _first_values(response)
                body, truncated = _read_capped(response)
            finally:
                response.close()
        except Exception as exc:  # every failure of the client library; its text is never used
            fault = fault_of(exc)
            at_the_proxy = refused_at_the_proxy(exc)
    proxy = proxy_for(url)[0]
    if fault is not None and proxy is not None and watchdog.tunnel_refused():
        # certain, whatever exception urllib3 made of it: no tunnel, so no request() and not one byte of the call
        return proxy_refused(call, credentials, proxy, watchdog.tunnel_status or 0, tunnel=True)
    if at_the_proxy and proxy is not None:
        return proxy_certificate_refused(call, credentials, proxy)
    if watchdog.fired and fault is not TransportFault.NOT_CONNECTED:
        # the socket was shut under the read: whatever came is partial (even a "clean" end without Content-Length)
        return classify_transport(call, timed_out, credentials, seconds=seconds)
    if fault is not None:
        # a per-read timeout: no byte for read_timeout seconds
        return classify_transport(call, fault, credentials, seconds=min(read_timeout, seconds))
    # proxy: the one requests took (its own rule, asked again): a 407 is that proxy's refusal, named without its login
    return classify_answer(call, response.status_code, headers, body, credentials, truncated=truncated, proxy=proxy)
