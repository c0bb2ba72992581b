"""Google Cloud Storage clients for the provider (image inputs, the transfer). ``google.cloud`` is imported lazily."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.cloud import storage


def storage_client(
    gcp_conn_id: str | None = None, *, impersonation_chain: str | Sequence[str] | None = None
) -> storage.Client:
    """
    A ``google.cloud.storage.Client``. An explicit connection always wins over the environment:

    * ``gcp_conn_id`` given: that connection through the google provider's ``GCSHook`` (with
      ``impersonation_chain``), as Airflow users expect; without apache-airflow-providers-google installed this is
      an error naming what to install, never a silent fall-back to other credentials;
    * else ``STORAGE_EMULATOR_HOST`` set: anonymous credentials against the emulator (the library's own convention);
    * else Application Default Credentials.

    :raises WanInvalidInputError: ``gcp_conn_id`` or ``impersonation_chain`` without the google provider
    """
    from google.cloud import storage

    if gcp_conn_id or impersonation_chain:
        try:
            from airflow.providers.google.cloud.hooks.gcs import GCSHook
        except ImportError:
            # imported here: this module stays free of Airflow's import (the demo sets Airflow's home after it)
            from airflow_provider_wan.exceptions import WanInvalidInputError

            raise WanInvalidInputError(
                "gcp_conn_id/impersonation_chain: a Google Cloud connection needs apache-airflow-providers-google "
                "(pip install 'airflow-provider-wan[google]'); leave both unset to use STORAGE_EMULATOR_HOST or "
                "Application Default Credentials"
            ) from None
        return GCSHook(
            gcp_conn_id=gcp_conn_id or "google_cloud_default", impersonation_chain=impersonation_chain
        ).get_conn()
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "test"), credentials=AnonymousCredentials()
        )
    return storage.Client()
