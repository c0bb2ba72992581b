"""
The transfers' extra link: a button on the task instance that opens the stored video in its store's web console.

The transfer keeps the console address in XCom (:meth:`WanStoredObjectLink.persist`, key ``wan_console_url``), the
way the official providers' XCom-backed links do; the address is built from the bucket and the object name only
(:meth:`~airflow_provider_wan.transfers.sinks.Sink.console_url`), never a signed link. Airflow 3 resolves the link
in the worker once the task ends and stores it under :attr:`~WanStoredObjectLink.xcom_key` for the UI (the same key
and value); Airflow 2.11's webserver calls :meth:`~WanStoredObjectLink.get_link`, which reads it. The class is
registered in the provider info (``extra-links``) so that serialized DAGs can name it.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

__all__ = ["WanStoredObjectLink"]

_SIGNATURE_NAMES = {"signature", "sig", "se", "sp", "sv", "skoid", "expires", "ossaccesskeyid", "googleaccessid"}


def _is_console_address(value: Any) -> bool:
    """An http(s) address without a signature in its query: the only kind this link hands on."""
    if not isinstance(value, str) or not value:
        return False
    parts = urlsplit(value)
    # the query names of S3/GCS presigned links, Azure SAS tokens and OSS signed links
    names = {name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)}
    signed = bool(names & _SIGNATURE_NAMES) or any(name.startswith(("x-amz-", "x-goog-", "x-oss-")) for name in names)
    return parts.scheme in ("https", "http") and bool(parts.netloc) and not signed


class WanStoredObjectLink(BaseOperatorLink):
    """``Stored video``: the object in the GCS or S3 console (Azure: the blob's address); no link for ``file://``."""

    name: ClassVar[str] = "Stored video"
    #: the XCom key of the console address (also the key Airflow 3 stores the resolved link under)
    key: ClassVar[str] = "wan_console_url"

    @property
    def xcom_key(self) -> str:
        return self.key

    @classmethod
    def persist(cls, ti: Any, url: str) -> None:
        """Keep ``url`` for the link (called by the transfer once the object is stored)."""
        if _is_console_address(url):
            ti.xcom_push(key=cls.key, value=url)

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        # ti_key: a TaskInstanceKey (2.11's webserver) or the running task instance (Airflow 3's worker)
        value = XCom.get_value(ti_key=ti_key, key=self.key)
        return value if _is_console_address(value) else ""
