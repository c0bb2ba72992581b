"""
Signed links in what a task renders and logs: the one rule for "this value is a signed link", and its masking.

A URL's query string is a bearer secret however it is spelled: a presigned S3 URL's ``X-Amz-Signature``, an OSS
``Signature``, a GCS ``X-Goog-Signature``, an Azure SAS ``sig``; a fragment may be one too (``#access_token=``). So
a value is treated as a signed link when it is a URL (any ``scheme://``, as
:func:`~airflow_provider_wan.redact.redact_text` cuts any URL's query) carrying a ``?`` or a ``#``. The submit
operators' media links and the transfers' ``destination`` follow this rule through :class:`SignedLinkMasking`.

Masking registers the link and its query with Airflow's masker, which then shows ``***`` in the task log and in the
*Rendered Template* view (the rendered fields are redacted when stored). Airflow is imported only when masking.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

__all__ = ["SignedLinkMasking", "is_signed_link", "mask_signed_links", "mask_signed_url", "unsigned_link"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")


def is_signed_link(value: object) -> bool:
    """Whether ``value`` is a URL (``scheme://...``) with a query string or fragment: a secret to mask."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return _SCHEME.match(text) is not None and ("?" in text or "#" in text)


def unsigned_link(url: str) -> str:
    """``url`` without its query string and fragment: what a signed link points to, whoever signed it when."""
    return url.strip().partition("#")[0].partition("?")[0]


def mask_signed_url(url: str) -> None:
    """Register the signed link, its query and its fragment with Airflow's log masker: bearer secrets."""
    try:
        from airflow.providers.common.compat.sdk import mask_secret

        mask_secret(url)
        parts = urlsplit(url.strip())
        for part in (parts.query, parts.fragment):
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


if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator as _Operator
else:
    _Operator = object


class SignedLinkMasking(_Operator):
    """
    Operator mixin (put it before ``BaseOperator``): every signed link in a rendered template field is masked as soon
    as the fields are rendered, before Airflow stores them for the UI's *Rendered Template* and before ``execute``.
    """

    def _do_render_template_fields(
        self, parent: Any, template_fields: Any, context: Any, jinja_env: Any, seen_oids: set[int]
    ) -> None:
        # Airflow's hook for operators that customise rendering, on every version, and the one a mapped task's
        # rendering calls too (render_template_fields is not called there)
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            for name in template_fields:
                mask_signed_links(getattr(self, name, None))
