"""
The HTTP session for links an API answer names (a result's ``video_url``, an upload policy's ``upload_host``):
each connection is judged by the address it actually reached (:func:`~airflow_provider_wan.hooks.wan.link_problem`
judges the link as written).

A link's host name is resolved by the connection itself, so checking a name beforehand proves nothing: it may
resolve to a public address for the check and to 169.254.169.254 or 127.0.0.1 for the connection (DNS rebinding).
So the connection classes of :func:`guarded_session` look at the socket's peer right after the TCP connect, before
TLS and before a byte of the request is sent, and close it with :class:`RefusedAddress` when the rule refuses that
address. TLS is unchanged: urllib3 still wraps the socket with the link's host name (SNI, certificate check).

Behind a proxy (``HTTP(S)_PROXY`` in the environment, which ``requests`` honours unless ``NO_PROXY`` names the
host), the peer is the proxy, legitimately often on a private network, and the proxy resolves the link's name. Then
the session resolves the name itself before the request and refuses it when any of its addresses is refused: best
effort (the proxy may resolve differently, or resolve names this machine cannot; an unresolvable name is left to
the proxy). Guarding the proxy's own reach is the proxy's job. An https link goes through the proxy's CONNECT tunnel,
and TLS inside it still checks the certificate against the link's name (:func:`certificate_refused` tells that
failure from a dropped connection). An ``https://`` proxy's own certificate is checked too: :func:`refusing_proxy`
names the proxy when it was that one refused.

Imported only when a video is copied or a local file uploaded (``requests``, ``urllib3``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import select_proxy
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from airflow_provider_wan.hooks._sync_transport import (
    CheckedAdapter,
    ProxyTLSMixin,
    as_sent,
    fault_of,
    refused_at_the_proxy,
)
from airflow_provider_wan.hooks.classify import CERTIFICATE_REFUSED, TransportFault
from airflow_provider_wan.hooks.proxies import proxy_for
from airflow_provider_wan.hooks.wan import host_addresses

__all__ = ["CERTIFICATE_REFUSED", "RefusedAddress", "certificate_refused", "guarded_session", "refusing_proxy"]

#: why a connection to an IP address must not be used, or None when it may (hooks.wan.link_address_problem)
AddressRule = Callable[[str], str | None]


class RefusedAddress(Exception):
    """A link's host led to an address the rule refuses; the connection was closed before any request was sent."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def certificate_refused(exc: BaseException) -> bool:
    """
    Whether a ``requests`` failure was a certificate failing the check (the API's transport's rule): the server's,
    unless :func:`refusing_proxy` names the proxy's.
    """
    return fault_of(exc) is TransportFault.CERTIFICATE


def refusing_proxy(exc: BaseException, url: str) -> str | None:
    """
    The ``https://`` proxy whose own certificate a ``requests`` failure for ``url`` was (its URL without the login,
    by the rule that chose it: :func:`~airflow_provider_wan.hooks.proxies.proxy_for`), or None: no proxy's was.
    """
    return proxy_for(url)[0] if refused_at_the_proxy(exc) else None


def guarded_session(refuse: AddressRule) -> requests.Session:
    """
    A ``requests`` session whose every connection (direct, or named through a proxy) must pass ``refuse``.

    :param refuse: why an IP address must not be connected to, or None when it may
    """
    session = requests.Session()
    session.auth = as_sent  # no ~/.netrc login for a host an answer names
    adapter = _GuardedAdapter(refuse)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _checked(connection: HTTPConnection, sock: socket.socket, refuse: AddressRule) -> socket.socket:
    if connection.proxy is not None:
        return sock  # the peer is the proxy: the link's name was judged before the request (_GuardedAdapter.send)
    why = refuse(str(sock.getpeername()[0]))
    if why:
        sock.close()
        raise RefusedAddress(why)
    return sock


def _pool_classes(refuse: AddressRule) -> dict[str, type[HTTPConnectionPool]]:
    """Pool classes whose connections check their peer with ``refuse`` (one set per session: the rule is its own)."""

    class Connection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _checked(self, super()._new_conn(), refuse)

    class TLSConnection(ProxyTLSMixin, HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _checked(self, super()._new_conn(), refuse)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    return {"http": Pool, "https": TLSPool}


class _GuardedAdapter(CheckedAdapter):
    def __init__(self, refuse: AddressRule) -> None:
        self._refuse = refuse
        self._pools = _pool_classes(refuse)
        # urllib3 retries nothing: the caller (the download engine, the upload) decides what a dropped connection means
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = self._pools
        return manager

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        if proxies and select_proxy(request.url or "", proxies):
            host = urlsplit(request.url or "").hostname or ""
            for address in sorted(host_addresses(host)):
                why = self._refuse(address)
                if why:
                    raise RefusedAddress(why)
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
