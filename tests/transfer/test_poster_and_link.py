"""
The poster frame and the "Stored video" extra link, through real Airflow (``dag.test()``) against the simulator and
the stores the tests start (moto, the GCS emulator, Azurite, a local folder): the poster is an image of the video's
size with the right content type, written through the video's own sink, not re-uploaded by a rerun; the link opens
the object's console page (none for a folder) and never carries a signature.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError
from airflow_provider_wan.transfers.links import WanStoredObjectLink
from airflow_provider_wan.transfers.poster import POSTER_FORMATS
from airflow_provider_wan.transfers.sinks import Destination, sink_for
from tests.airflow_run import run_dag, write_dag
from tests.transfer.conftest import BUCKET
from tests.transfer.test_wan_to_storage import MODEL, Store, _generate, _operator, _served, _videos
from tests.transfer.test_wan_to_storage import store as store  # noqa: PLC0414 - the fixture, shared


def _decoded_size(data: bytes) -> tuple[int, int, str]:
    """Width, height and codec of the first frame of an image or video, decoded by PyAV."""
    import av

    with av.open(io.BytesIO(data)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height, container.streams.video[0].codec_context.name


def _object(store: Store, uri: str) -> tuple[bytes, str, dict[str, str], str]:
    """The bytes, content type, metadata and version of a stored object, read with the store's own client."""
    if store.name == "file":
        path = Path(uri.removeprefix("file://"))
        stored = sink_for(Destination.parse(uri)).stat(uri.removeprefix("file:///"))
        assert stored is not None
        return path.read_bytes(), str(stored.content_type), stored.metadata, str(path.stat().st_mtime_ns)
    read = store.read(uri)
    assert read is not None, uri
    data, content_type, metadata = read
    key = uri.removeprefix(store.prefix)
    if store.name == "s3":
        s3 = pytest.importorskip("boto3").client("s3")
        versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key).get("Versions", [])
        version = ",".join(v["VersionId"] for v in versions)
    elif store.name == "gs":
        version = str(sink_for(Destination.parse(uri)).stat(key).version)  # type: ignore[union-attr]
    else:
        version = str(sink_for(Destination.parse(uri, "wan_azurite")).stat(key).version)  # type: ignore[union-attr]
    return data, content_type, {k.lower(): v for k, v in (metadata or {}).items()}, version


def _stored_video_link(dag: Any, run_id: str, task_id: str) -> str:
    """The task's "Stored video" link as the UI resolves it: from the serialized DAG, by the task instance's key."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    try:  # Airflow 3.3
        from airflow.serialization.serialized_objects import DagSerialization as Serializer
    except ImportError:
        from airflow.serialization.serialized_objects import SerializedDAG as Serializer
    task = Serializer.from_dict(Serializer.to_dict(dag)).get_task(task_id)
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=run_id, task_id=task_id).one()
        key = ti.key
    link = task.operator_extra_link_dict[WanStoredObjectLink.name]
    return str(link.get_link(task, ti_key=key) or "")


CONSOLES = {
    "s3": f"https://s3.console.aws.amazon.com/s3/object/{BUCKET}?prefix=wan/",
    "gs": f"https://console.cloud.google.com/storage/browser/_details/{BUCKET}/wan/",
    "az": f"/devstoreaccount1/{BUCKET}/wan/",
}


def test_poster_and_console_link_through_airflow(store: Store, wan_connection: Any) -> None:
    poster = "jpeg" if store.name in ("file", "az") else "png"
    fmt = POSTER_FORMATS[poster]
    dag_id = f"wan_poster_{store.name}"
    dag = write_dag(
        f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.operators.wan import WanTextToVideoOperator
        from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

        with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            generate = WanTextToVideoOperator(
                task_id="generate", model="{MODEL}", prompt="a lighthouse at dawn", size="832*480", duration=5,
                wait_for_completion=True, poll_interval=0.1,
            )
            store = WanVideoToStorageOperator(
                task_id="store",
                wan_task_id="{{{{ ti.xcom_pull(task_ids='generate', key='wan_task_id') }}}}",
                destination="{store.uri("wan/{wan_task_id}.mp4")}",
                conn_id={store.conn_id!r},
                model="{MODEL}",
                poster="{poster}",
            )
            generate >> store
        """,
        dag_id,
    )
    result = run_dag(dag)
    assert result.state == "success", result.tasks
    wan_task_id = result.xcoms[("generate", "wan_task_id")]
    returned = result.xcoms[("store", "return_value")]
    assert returned["poster_uri"] == store.uri(f"wan/{wan_task_id}{fmt.suffix}")

    # an image of the video's own size, of the format asked for, described like the video
    video_size = _decoded_size(_served(wan_task_id))[:2]
    data, content_type, metadata, version = _object(store, returned["poster_uri"])
    assert content_type == fmt.content_type
    assert _decoded_size(data) == (*video_size, fmt.codec)
    assert metadata["wan_task_id"] == wan_task_id
    assert metadata["wan_poster_size"] == "832*480"

    # the link opens the object in its console (no console for a folder), and carries no signature
    link = _stored_video_link(dag, result.run_id, "store")
    if store.name == "file":
        assert link == ""
        assert returned["console_url"] is None
    else:
        assert link == returned["console_url"]
        assert CONSOLES[store.name] in link
        assert link.endswith(f"wan/{wan_task_id}.mp4")
    assert "sig" not in link.lower()

    # a rerun makes nothing again: neither the video nor the poster (S3: versioning on, a new PUT adds a version)
    if store.name == "s3":
        s3 = pytest.importorskip("boto3").client("s3")
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        version = _object(store, returned["poster_uri"])[3]
    try:
        downloads = wan_connection.stats()["requests"].get("download", 0)
        again = _operator(store, wan_task_id, destination=returned["uri"], poster=poster).execute({})
        assert again["uploaded"] is False
        assert again["poster_uri"] == returned["poster_uri"]
        assert _object(store, returned["poster_uri"])[3] == version
        assert wan_connection.stats()["requests"].get("download", 0) == downloads
    finally:
        if store.name == "s3":
            # a versioned bucket keeps every version: empty it for the next test's fixture
            listing = s3.list_object_versions(Bucket=BUCKET)
            for item in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
                s3.delete_object(Bucket=BUCKET, Key=item["Key"], VersionId=item["VersionId"])
            s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})


def test_a_rerun_adds_a_missing_poster_from_the_stored_video(store: Store, wan_connection: Any) -> None:
    task_id = _generate(store)
    first = _operator(store, task_id).execute({})
    assert first["poster_uri"] is None
    requests_before = dict(wan_connection.stats()["requests"])
    # the poster is made from the object in the store: DashScope is not asked (its link may have expired)
    again = _operator(store, task_id, poster="png").execute({})
    assert again["uploaded"] is False
    assert wan_connection.stats()["requests"].get("download", 0) == requests_before.get("download", 0)
    data, content_type, _, _ = _object(store, again["poster_uri"])
    assert content_type == "image/png"
    assert _decoded_size(data) == (832, 480, "png")


def test_no_pyav_is_an_error_naming_poster_before_any_download(
    store: Store, wan_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.name != "file":
        pytest.skip("checked before the store is written: one destination shows it")
    task_id = _generate(store)
    before = dict(wan_connection.stats()["requests"])
    monkeypatch.setitem(sys.modules, "av", None)  # what an environment without PyAV looks like to importlib
    with pytest.raises(WanInvalidInputError, match=r"poster: 'jpeg' needs PyAV .* airflow-provider-wan\[video\]"):
        _operator(store, task_id, poster="jpeg").execute({})
    after = wan_connection.stats()["requests"]
    assert after.get("get_task", 0) == before.get("get_task", 0)
    assert after.get("download", 0) == before.get("download", 0)
    assert _videos(store) == []


def test_a_poster_that_is_not_ours_is_final_before_any_download(store: Store, wan_connection: Any) -> None:
    if store.name != "file":
        pytest.skip("the same check as the sidecar's on every store; one destination shows it")
    task_id = _generate(store)
    other = Path(store.uri(f"wan/{task_id}.png").removeprefix("file://"))
    other.parent.mkdir(parents=True)
    other.write_bytes(b"someone else's picture")
    before = wan_connection.stats()["requests"].get("download", 0)
    with pytest.raises(WanFinalError, match=r"\(the poster\) already exists .* or poster=None"):
        _operator(store, task_id, poster="png").execute({})
    assert wan_connection.stats()["requests"].get("download", 0) == before
    assert other.read_bytes() == b"someone else's picture"
    assert hashlib.md5(other.read_bytes()).hexdigest()
