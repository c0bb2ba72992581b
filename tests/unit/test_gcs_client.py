"""Which credentials the GCS client uses (``airflow_provider_wan.gcs.storage_client``): an explicit connection wins."""

from __future__ import annotations

import importlib.util

import pytest

from airflow_provider_wan.exceptions import WanInvalidInputError
from airflow_provider_wan.gcs import storage_client

GOOGLE_PROVIDER = importlib.util.find_spec("airflow.providers") is not None and (
    importlib.util.find_spec("airflow.providers.google") is not None
)


@pytest.mark.skipif(GOOGLE_PROVIDER, reason="the google provider is installed here: GCSHook would be used")
@pytest.mark.parametrize("kwargs", [{"gcp_conn_id": "my_gcp"}, {"impersonation_chain": "sa@p.iam.gserviceaccount.com"}])
def test_an_explicit_connection_never_falls_back_to_the_emulator(monkeypatch, kwargs):
    # the emulator (or ADC) in the environment must not silently take the place of the connection the user named
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    with pytest.raises(WanInvalidInputError) as raised:
        storage_client(**kwargs)
    text = str(raised.value)
    assert "gcp_conn_id" in text
    assert "apache-airflow-providers-google" in text
    assert "airflow-provider-wan[google]" in text


def test_without_a_connection_the_emulator_is_used_anonymously(monkeypatch):
    from google.auth.credentials import AnonymousCredentials

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")
    client = storage_client()
    assert isinstance(client._credentials, AnonymousCredentials)
