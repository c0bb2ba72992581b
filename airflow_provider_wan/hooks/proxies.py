"""
Which proxy an API call takes, by one rule for both transports: the one ``requests`` (the worker) applies.

``requests`` reads ``HTTPS_PROXY``, ``HTTP_PROXY`` and ``ALL_PROXY`` unless ``NO_PROXY`` names the host (names,
suffixes, ``*``, CIDR ranges). ``aiohttp`` (the triggerer) reads none of them, and with ``trust_env=True`` reads them
by urllib's rule instead; so the triggerer's transport asks :func:`proxy_for`, and the worker's asks it which proxy
``requests`` took, to name it when it refuses a call (the classifier never names its login).
"""

from __future__ import annotations

import base64
import functools
import os
from urllib.parse import unquote, urlsplit, urlunsplit

from requests.utils import get_environ_proxies, prepend_scheme_if_needed, select_proxy

__all__ = ["proxy_for"]

#: the variables a proxy decision depends on (each also in upper case)
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def proxy_for(url: str) -> tuple[str | None, str | None]:
    """
    The proxy of ``url`` by the worker's rule, and the ``Proxy-Authorization`` its URL's login makes.

    ``aiohttp``'s own reading (``trust_env=True``) knows no ``ALL_PROXY``, no CIDR ranges, no proxy without a scheme,
    and takes ``~/.netrc`` logins that clash with our ``Authorization`` header. So the decision is ``requests``' own.

    :return: the proxy's URL without its login (None: connect directly), and the header value when the proxy's URL
        held ``user:password`` (never logged, never put in an error)
    """
    parts = urlsplit(url)
    settings = tuple(os.environ.get(name) for lower in _PROXY_VARIABLES for name in (lower, lower.upper()))
    return _proxy_of(f"{parts.scheme}://{parts.netloc}", settings)


@functools.lru_cache(maxsize=64)
def _proxy_of(origin: str, settings: tuple[str | None, ...]) -> tuple[str | None, str | None]:
    # remembered per origin and settings (the key only): requests' rule takes ~0.5 ms a call, on the triggerer's loop
    if not any(settings):
        return None, None  # no proxy configured (and no bypass rule, which may resolve names on macOS)
    proxy = select_proxy(origin, get_environ_proxies(origin))
    if not proxy:
        return None, None
    parts = urlsplit(prepend_scheme_if_needed(proxy, "http"))
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))
    if parts.username is None:
        return bare, None
    # as requests builds it (latin-1, the user name as given: aiohttp's BasicAuth refuses a ':' in it)
    login = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode("latin-1")
    return bare, "Basic " + base64.b64encode(login).decode()
