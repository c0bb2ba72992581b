"""
Redaction: the one place that turns text we did not write (server messages, URLs, headers) into text that may reach
a log, an exception, XCom or a trigger event.

Two secrets matter here. The API key (a bearer token) and signed URLs: a result's ``video_url``, an input image on
OSS or S3, a redirect target. Anyone holding a signed URL can read the object until it expires, so its query string
(``Signature``, ``OSSAccessKeyId``, ``X-Amz-Credential``, ``sig``...) is a secret however it is written: plain,
percent-encoded (once or twice), JSON-escaped (``\\/``, ``\\u0026``) or inside a ``Location`` header.

Pure functions, no imports beyond the standard library: the hook, the trigger, the transfers and the simulator's
tests all use them.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["REDACTED", "clean_text", "redact_text", "redact_url", "url_host"]

REDACTED = "***"

# scheme://, with the separators percent-encoded (once or twice) or JSON-escaped
_SEP = r"(?::|%3a|%253a)(?:/|\\/|%2f|%252f){2}"
_URL = re.compile(rf"(?i)\b[a-z][a-z0-9+.\-]{{1,15}}{_SEP}(?:[^\s\"'<>`\\]|\\/|\\u[0-9a-f]{{4}})*")
# where a URL's query string or fragment starts, in any of those encodings
_QUERY_START = re.compile(r"(?i)\?|#|%3f|%253f|%23|%2523|\\u003f|\\u0023")
# user:password@ in a URL's authority
_USERINFO = re.compile(r"(?i)(" + _SEP + r")[^/@\s\"'<>\\%]*(?:@|%40)")
# name=value pairs that are secrets wherever they appear (a query string cut off from its URL, a header dump)
_SECRET_PARAMS = (
    r"signature|x-[a-z]+-signature|x-[a-z]+-credential|x-[a-z]+-security-token|ossaccesskeyid|security-?token|"
    r"accesskeyid|access_?token|api_?key|sig|sv|se|sp|skoid|sktid|token|credential|expires|x-[a-z]+-expires|"
    r"authorization|key"
)
_PARAM = re.compile(rf"(?i)(?<![a-z])({_SECRET_PARAMS})(=|%3d|%253d|\"\s*:\s*\"|\\\"\s*:\s*\\\")([^&\s\"'<>,;\\]+)")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+|%20)[A-Za-z0-9._~+/=\-]+")
# DashScope keys (sk-...) and the like, even outside any name=value
_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def redact_url(url: str | None) -> str | None:
    """
    A URL without its query string, fragment and user info: what may be shown of a signed link.

    ``https://bucket.oss.example.com/v.mp4?Expires=...&Signature=...`` becomes ``https://bucket.oss.example.com/v.mp4``.
    Anything that does not parse as a URL is passed through :func:`redact_text`.
    """
    if not url:
        return url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    except ValueError:
        return redact_text(url)
    if not parts.scheme or not netloc:
        return redact_text(url)
    return redact_text(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def url_host(url: str | None) -> str:
    """``scheme://host[:port]`` of a URL, or ``"an unparsable URL"``: enough to say where something pointed."""
    try:
        parts = urlsplit(url or "")
        host = parts.hostname
        port = parts.port
    except ValueError:
        host, port = None, None
    if not host:
        return "an unparsable URL"
    scheme = (parts.scheme or "?").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address, bracketed as in a URL (``::1:81`` would read as an address)
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _cut_url(match: re.Match[str]) -> str:
    url = match.group(0)
    query = _QUERY_START.search(url)
    if query is None:
        return url
    return url[: query.start()] + "?" + REDACTED


def redact_text(text: str | None, *secrets: str | None) -> str:
    """
    ``text`` with every URL's query string, every ``secret=value`` pair, bearer token and DashScope-style key
    replaced by ``***``, and each of ``secrets`` (e.g. the API key in use) removed wherever it appears.
    """
    if not text:
        return ""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _URL.sub(_cut_url, text)
    text = _USERINFO.sub(lambda m: m.group(1), text)
    text = _PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    return _KEY.sub(REDACTED, text)


def clean_text(value: object, limit: int = 300) -> str | None:
    """
    A server-sent field made fit for our messages: a string (numbers are written out), redacted, without control
    characters or lone surrogates, at most ``limit`` characters. Anything else (None, lists, objects) is None.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        return None
    # cut before redacting too: a megabyte of message must not cost a megabyte of regex work
    text = _CONTROL.sub(" ", text[: limit * 4]).strip()
    text = redact_text(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text or None
