"""
Signed links in what a task renders and logs: the one rule for "this value is a signed link", and its masking.

A URL's query string is a bearer secret however it is spelled: a presigned S3 URL's ``X-Amz-Signature``, an OSS
``Signature``, a GCS ``X-Goog-Signature``, an Azure SAS ``sig``; a fragment may be one too (``#access_token=``); so is
a password in the user info (``https://reader:password@host/...``). So a value is treated as a signed link when it is a
URL (any ``scheme://``, as :func:`~airflow_provider_wan.redact.redact_text` cuts any URL's query and user info)
carrying a ``?``, a ``#`` or a ``user:password@``. A bare ``name@`` is no credential: ``abfs://container@account...``
names an Azure container so. The submit operators' media links and the transfers' ``destination`` follow this rule
through :class:`SignedLinkMasking`.

Masking registers the link and its query with Airflow's masker, which then shows ``***`` in the task log. That is not
enough for what copies the operator's attributes later: OpenLineage's listener (``[openlineage]
include_full_task_info`` serializes every attribute) redacts with a copy of the masker taken when it started, blind to
what a task registers while it runs. So once rendered, a field holding a signed link keeps it without its query
(``https://host/path?***``), which the *Rendered Template* view and any copier then show; the rendered value, link
whole, is kept aside where no serializer looks, for :meth:`SignedLinkMasking.with_signed_links` to build what is sent.
Airflow is imported only when masking.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, urlsplit, urlunsplit

from airflow_provider_wan.redact import REDACTED, redact_text

__all__ = [
    "SignedLinkMasking",
    "is_signed_link",
    "mask_signed_links",
    "mask_signed_url",
    "unsigned_link",
    "unsigned_links",
    "without_signed_parts",
]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_SPACE = re.compile(r"\s")


def _split(text: str) -> SplitResult | None:
    try:
        return urlsplit(text)
    except ValueError:  # an unclosed IPv6 bracket
        return None


def is_signed_link(value: object) -> bool:
    """
    Whether ``value`` is a URL (``scheme://...``) with a query string, a fragment or a password in its user info: a
    secret to mask.
    """
    if not isinstance(value, str):
        return False
    text = value.strip()
    if _SCHEME.match(text) is None:
        return False
    parts = _split(text)
    return "?" in text or "#" in text or (parts is not None and parts.password is not None)


def unsigned_link(url: str) -> str:
    """
    ``url`` without its query string, fragment and password (a user name stays: ``abfs://container@account`` names
    a container so): what a signed link points to, whoever signed it when.
    """
    text = url.strip().partition("#")[0].partition("?")[0]
    parts = _split(text)
    if parts is None or parts.password is None:
        return text
    login, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{login.partition(':')[0]}@{host}"))


def unsigned_links(value: Any) -> Any:
    """
    ``value`` with every signed link in it as :func:`unsigned_link` makes it: a string, or lists, tuples and dicts of
    them (nested; keys as they are). Only a string that is a link and nothing else: one holding whitespace (a prompt
    that starts with a link) is text, and kept whole.
    """
    if isinstance(value, str):
        return unsigned_link(value) if is_signed_link(value) and not _SPACE.search(value.strip()) else value
    if isinstance(value, Mapping):
        return {key: unsigned_links(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(unsigned_links(item) for item in value)
    return value


def mask_signed_url(url: str) -> None:
    """Register the signed link, its query, its fragment and its password with Airflow's log masker: bearer secrets."""
    try:
        from airflow.providers.common.compat.sdk import mask_secret

        mask_secret(url)
        parts = urlsplit(url.strip())
        for part in (parts.query, parts.fragment, parts.password):
            if part:
                mask_secret(part)
    except Exception:  # pragma: no cover - masking is best effort outside a task
        pass


def mask_signed_links(value: Any) -> None:
    """Mask every signed link in ``value``: a string, or lists, tuples and dicts of them (nested)."""
    if isinstance(value, str):
        if is_signed_link(value):
            mask_signed_url(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            mask_signed_links(item)
    elif isinstance(value, list | tuple):
        for item in value:
            mask_signed_links(item)


def without_signed_parts(value: Any) -> Any:
    """
    ``value`` with every signed link cut to where it points (``https://host/path?***``): a string, or lists, tuples
    and dicts of them, keys included (nested). Anything else is returned as is.
    """
    if isinstance(value, str):
        return _shown_link(value) if is_signed_link(value) else value
    if isinstance(value, Mapping):
        return {without_signed_parts(key): without_signed_parts(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(without_signed_parts(item) for item in value)
    return value


def _shown_link(link: str) -> str:
    """A signed link as it may be shown: its query cut (``?***``), its password (if any) replaced by ``***``."""
    text = link.strip()
    parts = _split(text)
    if parts is None or parts.password is None:
        return redact_text(text)
    # who, not the password (redact_text would drop the whole user info: an s3://conn:pw@ then named no connection)
    head = f"{parts.scheme}://"
    cut = redact_text(urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], *parts[2:])))
    return f"{head}{parts.username}:{REDACTED}@{cut[len(head) :]}"


class _KeptAside:
    """
    Rendered field values holding signed links, whole. Not JSON, not attrs, no ``__dict__``: OpenLineage's
    serializer writes ``<<non-serializable: _KeptAside>>``, its redactor leaves it alone.
    """

    __slots__ = ("values",)

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __repr__(self) -> str:
        return f"<signed links of {', '.join(self.values)}: not shown>"


if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator as _Operator
else:
    _Operator = object

_Self = TypeVar("_Self", bound="SignedLinkMasking")


class SignedLinkMasking(_Operator):
    """
    Operator mixin (put it before ``BaseOperator``): as soon as the fields are rendered, before Airflow stores them for
    the UI's *Rendered Template* and before ``execute``, every signed link in a template field is masked, and the field
    keeps it without its query. :meth:`with_signed_links` gives the operator as rendered, for what must carry a link
    whole (the request a submit operator sends).
    """

    _signed_links: _KeptAside | None = None

    def _do_render_template_fields(
        self, parent: Any, template_fields: Any, context: Any, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        # Airflow's hook for operators that customise rendering, on every version, and the one a mapped task's
        # rendering calls too (render_template_fields is not called there)
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is not self:
            return
        kept = dict(self._signed_links.values) if self._signed_links is not None else {}
        for name in template_fields:
            value = getattr(self, name, None)
            mask_signed_links(value)
            shown = without_signed_parts(value)
            # a field rendered again (its value already cut) keeps the link kept the first time
            if shown != value:
                kept[name] = value
                setattr(self, name, shown)
        if kept:
            self._signed_links = _KeptAside(kept)

    def with_signed_links(self: _Self) -> _Self:
        """
        The operator as rendered: a shallow copy whose fields hold their signed links whole (``self`` when none did).
        For building what is sent, never to be stored: nothing serializes it.
        """
        if self._signed_links is None:
            return self
        rendered = copy.copy(self)
        rendered.__dict__.update(self._signed_links.values)
        return rendered
