"""
The triggerer's transport (``aiohttp``): one attempt of an :class:`~airflow_provider_wan.hooks.wan.ApiCall`, bounded
in total time (``ClientTimeout.total``), its answer read up to a size cap, and handed to the classifier, exactly as
the worker's transport does. Imported only inside the async client (``aiohttp`` is not cheap to import).

It goes through the proxy the worker's would (:func:`~airflow_provider_wan.hooks.proxies.proxy_for`) and trusts
the certificate authorities the worker's does (:func:`tls_context`): a deployment where only a proxy reaches
DashScope, or where a proxy inspecting TLS signs with its own CA, must not have its deferrable tasks fail in the
triggerer after the worker created them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from requests.utils import DEFAULT_CA_BUNDLE_PATH

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


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, decoded (gzip...), at most MAX_ANSWER_BYTES; True when more was there."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await response.content.read(_READ_CHUNK)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return b"".join(chunks)[:MAX_ANSWER_BYTES], True


def _fault_of(exc: BaseException) -> TransportFault:
    """What an aiohttp exception means, from its type (never from its text or repr: those hold the headers)."""
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return TransportFault.INVALID_URL
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransportFault.CERTIFICATE
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return TransportFault.NOT_CONNECTED
    if isinstance(exc, asyncio.TimeoutError):  # ServerTimeoutError (a read) and the total limit alike
        return TransportFault.TIMEOUT
    return TransportFault.BROKEN


def _is_the_proxy(exc: BaseException, proxy: str) -> bool:
    """Whether a connection error is about the connection to ``proxy`` itself (its host and port), not the API's."""
    parts = urlsplit(proxy)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return getattr(exc, "host", None) == parts.hostname and getattr(exc, "port", None) == port


def tls_context() -> ssl.SSLContext:
    """
    The TLS settings of an https request: the authorities ``requests`` (the worker) trusts, ``REQUESTS_CA_BUNDLE``,
    else ``CURL_CA_BUNDLE``, else certifi's bundle (a file, or a folder of certificates). ``aiohttp`` would trust
    the system's store instead: a CA added for the worker (a proxy's that inspects TLS) failed every trigger's read.
    """
    return _context_for(os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or "")


@functools.lru_cache(maxsize=8)
def _context_for(authorities: str) -> ssl.SSLContext:
    # one context per bundle: loading one takes ~40 ms, and aiohttp pools connections per context
    authorities = authorities or DEFAULT_CA_BUNDLE_PATH
    if os.path.isdir(authorities):
        return ssl.create_default_context(capath=authorities)
    return ssl.create_default_context(cafile=authorities)


with contextlib.suppress(OSError):
    tls_context()  # loaded with the module, off the triggerer's loop (hooks/lookup.py: import_off_loop)


async def exchange(
    session: aiohttp.ClientSession,
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
    loop = asyncio.get_running_loop()
    started = loop.time()
    timeout = aiohttp.ClientTimeout(
        total=seconds, sock_connect=min(connect_timeout, seconds), sock_read=min(read_timeout, seconds)
    )
    response: aiohttp.ClientResponse | None = None
    url = call.url(credentials.base_url)
    request_headers = call.headers(credentials)
    proxy: str | None = None
    try:
        proxy, login = proxy_for(url)
        tunnel_headers = None
        if login is not None:
            # an https request's login goes in the CONNECT; aiohttp puts proxy_headers nowhere else, so a plain
            # http request (sent to the proxy itself) carries it
            if url.startswith("https:"):
                tunnel_headers = {"Proxy-Authorization": login}
            else:
                request_headers = {**request_headers, "Proxy-Authorization": login}
        response = await session.request(
            call.method,
            url,
            proxy=proxy,
            proxy_headers=tunnel_headers,
            # the authorities the worker trusts, for the API's certificate and an https:// proxy's alike
            ssl=tls_context() if url.startswith("https:") or (proxy or "").startswith("https:") else True,
            params=call.params,
            json=call.json_body,
            headers=request_headers,
            timeout=timeout,
            allow_redirects=False,
        )
        body, truncated = await _read_capped(response)
        status, headers = response.status, response.headers
    except Exception as exc:  # every failure of the client library; its text and repr are never used
        if response is not None:
            response.close()  # drop the connection: the server must see the client gave up
        if isinstance(exc, aiohttp.ClientHttpProxyError) and proxy is not None:
            # raised by aiohttp's connector only for a CONNECT answered other than 200, before the call is written
            return proxy_refused(call, credentials, proxy, exc.status, tunnel=True)
        fault = _fault_of(exc)
        if fault is TransportFault.CERTIFICATE and proxy is not None and _is_the_proxy(exc, proxy):
            # the handshake with the https:// proxy itself: aiohttp names that connection by the proxy's host and port
            return proxy_certificate_refused(call, credentials, proxy)
        if fault is TransportFault.TIMEOUT and loop.time() - started >= seconds * 0.99:
            # the total limit, not a quiet socket: a slow drip of bytes ends here
            return classify_transport(call, timed_out, credentials, seconds=seconds)
        return classify_transport(call, fault, credentials, seconds=min(read_timeout, seconds))
    if truncated:
        response.close()  # the rest is never read: do not hand the connection back to the pool
    else:
        response.release()
    return classify_answer(call, status, headers, body, credentials, truncated=truncated, proxy=proxy)
