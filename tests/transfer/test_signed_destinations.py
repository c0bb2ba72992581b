"""
A destination carrying a credential (an Azure SAS URL, an abfs:// URI with a SAS appended): refused by name before
DashScope or the store is asked anything, and its signature never shown: not in the Rendered Template view (the
rendered fields Airflow stores), the task log, XCom or the error. The credential's supported place, a wasb
connection, stores the video without it reaching the result either. Real Airflow (``dag.test()``), the DashScope
simulator, the GCS emulator (every Airflow version) and Azurite, with SAS tokens Azurite really honours.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

import pytest

from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.transfers.sinks import b64
from tests.airflow_run import run_dag, write_dag
from tests.transfer.conftest import AZURITE_ACCOUNT, AZURITE_KEY, BUCKET

MODEL = "wan2.5-t2v-preview"
T2V_ENDPOINT = "services/aigc/video-generation/video-synthesis"
# each SAS its own expiry, hence its own signature: Airflow's masker is one per process and keeps what it was given
_hours = itertools.count(1)


def _sas(kind: str, *, container: str = BUCKET, permissions: str = "rwd") -> str:
    """
    A SAS token for the test account: ``container``: a service SAS of ``container``; ``account``: an account SAS
    (resource types container and object). ``permissions``: the letters granted (r read, w write, d delete, c create,
    a add, l list).
    """
    from azure.storage.blob import (
        AccountSasPermissions,
        ContainerSasPermissions,
        ResourceTypes,
        generate_account_sas,
        generate_container_sas,
    )

    expiry = datetime.now(timezone.utc) + timedelta(hours=next(_hours))
    if kind == "container":
        return generate_container_sas(
            AZURITE_ACCOUNT,
            container,
            account_key=AZURITE_KEY,
            permission=ContainerSasPermissions.from_string(permissions),
            expiry=expiry,
        )
    return generate_account_sas(
        AZURITE_ACCOUNT,
        account_key=AZURITE_KEY,
        resource_types=ResourceTypes(container=True, object=True),
        permission=AccountSasPermissions.from_string(permissions),
        expiry=expiry,
    )


def _signature_forms(sas: str) -> list[str]:
    """The SAS's signature as it may be written: percent-encoded as in the token, decoded, and its first characters."""
    raw = next(value for name, _, value in (pair.partition("=") for pair in sas.split("&")) if name == "sig")
    return [raw, unquote(raw), raw[:12]]


def _blob_endpoint(connection_string: str) -> str:
    return dict(part.split("=", 1) for part in connection_string.split(";") if part)["BlobEndpoint"]


def _generate() -> str:
    hook = WanHook()
    body = {"model": MODEL, "input": {"prompt": "a red fox in snow"}, "parameters": {"size": "832*480"}}
    return hook.wait_for_task(hook.create_task(T2V_ENDPOINT, body).task_id, poll_interval=0.1, timeout=30).task_id


def _rendered_rows(dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    """Every rendered-fields row Airflow stored for ``task_id`` in the run (one per map index)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id)
        return [dict(row.rendered_fields or {}) for row in rows]


def _gcs_signed(task_id: str, signature: str) -> dict[str, str]:
    """A V4-signed GCS URL to the video's place, and the gs:// URI with that signature appended."""
    query = (
        "X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=wan%40p.iam.gserviceaccount.com%2F20261201%2Fauto"
        f"%2Fstorage%2Fgoog4_request&X-Goog-Date=20261201T000000Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host"
        f"&X-Goog-Signature={signature}"
    )
    return {
        "https": f"https://storage.googleapis.com/{BUCKET}/wan/{task_id}.mp4?{query}",
        "store": f"gs://{BUCKET}/wan/{{wan_task_id}}.mp4?{query}",
    }


@pytest.mark.parametrize(
    ("store", "mapped"),
    # GCS on every Airflow version the suite runs; Azure where azure-storage-blob is installed, with a SAS token
    # Azurite honours (a real write grant on the container)
    [("gs", False), ("gs", True), ("az", True)],
    ids=["gcs-task", "gcs-mapped-task", "azure-sas-mapped-task"],
)
def test_a_signed_destination_is_refused_and_its_signature_never_shown(
    request: pytest.FixtureRequest,
    wan_connection: Any,
    capfd: pytest.CaptureFixture[str],
    store: str,
    mapped: bool,
) -> None:
    # the destination arrives through a template (here params; as from an upstream task's XCom or a Variable): the
    # operator learns it only once rendered, after Airflow has rendered it for the UI
    task_id = _generate()
    before = wan_connection.stats()["requests"]
    if store == "az":
        azurite = request.getfixturevalue("azurite")
        sas = _sas("container", permissions="racwdl")
        links = {
            "https": f"{_blob_endpoint(azurite.connection_string)}/{BUCKET}/wan/{task_id}.mp4?{sas}",
            "store": f"abfs://{BUCKET}/wan/{{wan_task_id}}.mp4?{sas}",
        }
        signatures = _signature_forms(sas)
        place = azurite.container
    else:
        bucket = request.getfixturevalue("bucket")
        # each case its own signature: Airflow's masker is one per process and keeps what it was given
        signature = f"{int(mapped)}a3f09c2b7e4d15" * 16
        links = _gcs_signed(task_id, signature)
        signatures = [signature, signature[:12]]
        place = bucket
    dag_id = f"wan_signed_destination_{store}_{'mapped' if mapped else 'task'}"
    common = f"task_id='store', wan_task_id={task_id!r}, params={links!r}, download_retry_delay=0.01"
    if mapped:
        body = (
            f"WanVideoToStorageOperator.partial({common})"
            ".expand(destination=['{{ params.https }}', '{{ params.store }}'])"
        )
    else:
        body = f"WanVideoToStorageOperator({common}, destination='{{{{ params.https }}}}')"
    source = f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

        with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            {body}
        """
    result = run_dag(write_dag(source, dag_id))
    captured = capfd.readouterr()
    logs = captured.out + captured.err

    # refused, by name, before DashScope or the store was asked anything
    assert [state for state, _ in result.tasks.values()] == ["failed"] * (2 if mapped else 1), result.tasks
    assert "destination: " in logs
    assert "is a signed web link" in logs  # and what to do instead: the credential goes in a connection
    after = wan_connection.stats()["requests"]
    assert after.get("get_task", 0) == before.get("get_task", 0)
    assert after.get("download", 0) == before.get("download", 0)
    assert list(place.list_blobs() if store == "az" else place.client.list_blobs(BUCKET)) == []

    # the Rendered Template view: one row per map index, the destination there, its signature not
    rows = _rendered_rows(dag_id, result.run_id, "store")
    assert len(rows) == (2 if mapped else 1)
    xcoms = json.dumps(list(result.xcoms.items()), default=str)
    # where the link pointed stays readable; its query does not
    assert sorted(row["destination_uri"] for row in rows) == sorted(
        link.partition("?")[0] + "?***" for link in (list(links.values()) if mapped else [links["https"]])
    )
    # nor in the log (the error included), nor XCom
    for signature in signatures:
        assert all(signature not in json.dumps(row) for row in rows)
        assert signature not in logs
        assert signature not in xcoms


def _transfer_with_sas(sas: str, azurite: Any, monkeypatch: pytest.MonkeyPatch, dag_id: str) -> Any:
    """Generate a video, then run a DAG (``dag.test()``) storing it through a wasb connection holding ``sas``."""
    connection_string = f"BlobEndpoint={_blob_endpoint(azurite.connection_string)};SharedAccessSignature={sas}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_AZURE_SAS",
        json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}}),
    )
    task_id = _generate()
    source = f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

        with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            WanVideoToStorageOperator(
                task_id="store",
                wan_task_id={task_id!r},
                destination="abfs://{BUCKET}/wan/{{wan_task_id}}.mp4",
                conn_id="wan_azure_sas",
                download_retry_delay=0.01,
                retries=0,
            )
        """
    return task_id, run_dag(write_dag(source, dag_id))


@pytest.mark.parametrize(
    ("kind", "permissions"),
    # the least a verified transfer needs (a container SAS: read, write, delete), and an account SAS with more
    [("container", "rwd"), ("account", "racwdl")],
    ids=["container-sas-read-write-delete", "account-sas"],
)
def test_a_sas_token_in_a_wasb_connection_stores_the_video(
    azurite: Any,
    wan_connection: Any,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    permissions: str,
) -> None:
    # what the refusal of a signed link points to: the SAS in the connection, the destination a plain URI
    sas = _sas(kind, permissions=permissions)
    task_id, run = _transfer_with_sas(sas, azurite, monkeypatch, f"wan_sas_connection_{kind}")

    assert run.tasks == {"store": ("success", 1)}, run.tasks
    result = run.xcoms[("store", "return_value")]
    assert result["uri"] == f"abfs://{BUCKET}/wan/{task_id}.mp4"
    blob = azurite.container.get_blob_client(f"wan/{task_id}.mp4")
    stored, data = blob.get_blob_properties(), blob.download_blob().readall()
    # whole: the bytes Azure kept are the size and MD5 the download proved
    assert len(data) == stored.size == result["size"] > 10_000
    assert stored.metadata["wan_source_md5"] == b64(hashlib.md5(data).digest())
    assert stored.metadata["wan_source_bytes"] == str(len(data))
    # the SDK's blob URL carries the SAS: the console link is built without it
    assert result["console_url"] == f"{_blob_endpoint(azurite.connection_string)}/{BUCKET}/wan/{task_id}.mp4"
    captured = capfd.readouterr()
    for signature in _signature_forms(sas):
        assert signature not in json.dumps(result, default=str)
        assert signature not in captured.out + captured.err


@pytest.mark.parametrize(
    ("container", "permissions", "error"),
    [
        # signed for another container: Azure cannot authenticate it here
        ("other-videos", "racwdl", "cannot be used with these credentials (HTTP 403"),
        (
            BUCKET,
            "rl",
            "may not write blobs in the Azure container 'wan-videos' (HTTP 403 "
            "AuthorizationPermissionMismatch): a SAS needs the write permission",
        ),
        (BUCKET, "rwc", "a SAS needs the delete permission"),
        (BUCKET, "wd", "a SAS needs the read permission"),
    ],
    ids=["sas-of-another-container", "read-only-sas", "sas-without-delete", "sas-without-read"],
)
def test_a_container_sas_that_cannot_do_the_transfer_is_refused_before_any_download(
    azurite: Any,
    wan_connection: Any,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    container: str,
    permissions: str,
    error: str,
) -> None:
    sas = _sas("container", container=container, permissions=permissions)
    before = wan_connection.stats()["requests"]
    _, run = _transfer_with_sas(sas, azurite, monkeypatch, f"wan_sas_refused_{permissions}")

    assert run.tasks == {"store": ("failed", 1)}, run.tasks
    logs = "".join(capfd.readouterr())
    assert "destination: " in logs
    assert error in logs
    assert "nothing was downloaded" in logs
    # before any download: the simulator served no video, and nothing is in the container
    after = wan_connection.stats()["requests"]
    assert after.get("download", 0) == before.get("download", 0)
    assert list(azurite.container.list_blobs()) == []
    for signature in _signature_forms(sas):
        assert signature not in logs


def test_a_container_sas_of_a_missing_container_says_it_does_not_exist(
    azurite: Any, wan_connection: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_wan.exceptions import WanFinalError
    from airflow_provider_wan.transfers.sinks.azure import AzureBlobSink

    sas = _sas("container", container="no-such-container")
    connection_string = f"BlobEndpoint={_blob_endpoint(azurite.connection_string)};SharedAccessSignature={sas}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_AZURE_SAS",
        json.dumps({"conn_type": "wasb", "extra": {"connection_string": connection_string}}),
    )
    with pytest.raises(WanFinalError, match="container 'no-such-container' does not exist"):
        AzureBlobSink("no-such-container", azure_conn_id="wan_azure_sas").check("wan/x.mp4")
