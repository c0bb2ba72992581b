"""Google Cloud Storage clients for the provider (image inputs, the transfer). ``google.cloud`` is imported lazily."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.cloud import storage


def storage_client(gcp_conn_id: str | None = None) -> storage.Client:
    """
    A ``google.cloud.storage.Client``.

    * ``STORAGE_EMULATOR_HOST`` set: anonymous credentials against the emulator (the library's own convention);
    * ``gcp_conn_id`` given and apache-airflow-providers-google installed: that connection's credentials;
    * otherwise: Application Default Credentials.
    """
    from google.cloud import storage

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"), credentials=AnonymousCredentials()
        )
    if gcp_conn_id:
        try:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook
        except ImportError:
            pass
        else:
            return GCSHook(gcp_conn_id=gcp_conn_id).get_conn()
    return storage.Client()
