"""
WanVideoToStorageOperator into S3 (moto in server mode, real HTTP), a local folder, GCS (the emulator) and Azure Blob
Storage (Azurite), from the DashScope simulator. The same promises on every destination: byte-identical, content type
and metadata, a rerun uploads nothing, a cut download resumes and lands whole, an unprovable download leaves nothing,
a missing bucket is a final error before any download.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_wan.compat import AIRFLOW_V_3_0_PLUS
from airflow_provider_wan.exceptions import WanFinalError, WanInvalidInputError, WanTransferIntegrityError
from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator
from tests.airflow_run import asset_events, run_dag, write_dag
from tests.transfer.conftest import AZURE_CONN_ID, BUCKET

T2V_ENDPOINT = "services/aigc/video-generation/video-synthesis"
MODEL = "wan2.5-t2v-preview"
MiB = 1024 * 1024


class Store:
    """One destination under test: its URI prefix and how to read an object back."""

    def __init__(self, name: str, prefix: str, read: Any, listing: Any, conn_id: str | None = None) -> None:
        self.name = name
        self.prefix = prefix
        self.conn_id = conn_id  # the store's Airflow connection, where the operator needs one
        self._read = read  # key -> (bytes, content type, metadata) or None
        self.listing = listing  # -> sorted keys

    def uri(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def read(self, uri: str) -> Any:
        assert uri.startswith(self.prefix), uri
        return self._read(uri.removeprefix(self.prefix))


@pytest.fixture(params=["s3", "file", "gs", "az"])
def store(request: pytest.FixtureRequest, tmp_path: Path, wan_connection: Any) -> Store:
    if request.param == "az":
        container = request.getfixturevalue("azurite").container

        def read_az(key: str) -> Any:
            from azure.core.exceptions import ResourceNotFoundError

            try:
                download = container.download_blob(key)
            except ResourceNotFoundError:
                return None
            return download.readall(), download.properties.content_settings.content_type, download.properties.metadata

        def list_az() -> list[str]:
            return sorted(blob.name for blob in container.list_blobs())

        return Store("az", f"az://{BUCKET}/", read_az, list_az, conn_id=AZURE_CONN_ID)
    if request.param == "s3":
        s3 = request.getfixturevalue("moto_s3").client

        def read_s3(key: str) -> Any:
            try:
                answer = s3.get_object(Bucket=BUCKET, Key=key)
            except s3.exceptions.NoSuchKey:
                return None
            return answer["Body"].read(), answer["ContentType"], answer["Metadata"]

        def list_s3() -> list[str]:
            return sorted(item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))

        return Store("s3", f"s3://{BUCKET}/", read_s3, list_s3)
    if request.param == "gs":
        bucket = request.getfixturevalue("bucket")

        def read_gs(key: str) -> Any:
            blob = bucket.get_blob(key)
            return None if blob is None else (blob.download_as_bytes(), blob.content_type, blob.metadata)

        return Store("gs", f"gs://{BUCKET}/", read_gs, lambda: sorted(b.name for b in bucket.client.list_blobs(BUCKET)))
    root = tmp_path / "videos"

    def read_file(key: str) -> Any:
        path = root / key
        if not path.is_file():
            return None
        metadata = json.loads((path.parent / f".{path.name}.wan-metadata.json").read_text())
        return path.read_bytes(), "video/mp4" if path.suffix == ".mp4" else "application/json", metadata

    def list_files() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []

    return Store("file", f"file://{root}/", read_file, list_files)


def _generate(store: Store) -> str:
    # a Chinese prompt goes into the metadata (percent-encoded on S3); the GCS emulator cannot serve a download of
    # an object with non-ASCII metadata, so GCS gets an English one
    prompt = "a red fox running through snow" if store.name == "gs" else "一只红狐狸在雪地里奔跑"
    hook = WanHook()
    body = {"model": MODEL, "input": {"prompt": prompt}, "parameters": {"size": "832*480", "seed": 7}}
    return hook.wait_for_task(hook.create_task(T2V_ENDPOINT, body).task_id, poll_interval=0.1, timeout=30).task_id


def _served(task_id: str) -> bytes:
    link = WanHook().get_task(task_id).video_url
    assert link
    response = requests.get(link, timeout=60)
    response.raise_for_status()
    return response.content


def _operator(store: Store, task_id: str, **kwargs: Any) -> WanVideoToStorageOperator:
    kwargs.setdefault("download_retry_delay", 0.01)
    kwargs.setdefault("destination", store.uri("wan/{wan_task_id}.mp4"))
    kwargs.setdefault("conn_id", store.conn_id)
    return WanVideoToStorageOperator(task_id="store", wan_task_id=task_id, model=MODEL, **kwargs)


def _videos(store: Store) -> list[str]:
    return [key for key in store.listing() if not Path(key).name.startswith(".")]


def test_text_to_video_then_store_through_airflow(store: Store, wan_connection: Any) -> None:
    dag_id = f"wan_to_storage_{store.name}"
    # date-partitioned by run_after, which manual runs have too on Airflow 3 ({{ ds }} needs a logical date);
    # Airflow 2.11 has no run_after, and every run there has a logical date
    run_date = "dag_run.run_after" if AIRFLOW_V_3_0_PLUS else "dag_run.logical_date"
    destination = store.uri(f"wan/{{{{ {run_date} | ds }}}}/{{wan_task_id}}.mp4")
    dag = write_dag(
        f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.operators.wan import WanTextToVideoOperator
        from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

        with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            generate = WanTextToVideoOperator(
                task_id="generate", model="{MODEL}", prompt="a lighthouse at dawn", size="832*480", duration=5,
                seed=42, wait_for_completion=True, poll_interval=0.1,
            )
            store = WanVideoToStorageOperator(
                task_id="store",
                # the generation's result: task id, model and prompt come from it
                wan_task_id=generate.output,
                destination="{destination}",
                conn_id={store.conn_id!r},
                seed=42,
                write_sidecar=True,
            )
            generate >> store
        """,
        dag_id,
    )
    result = run_dag(dag)
    assert result.state == "success", result.tasks
    wan_task_id = result.xcoms[("generate", "wan_task_id")]
    returned = result.xcoms[("store", "return_value")]
    uri = returned["uri"]
    assert uri.startswith(store.uri("wan/20"))
    assert uri.endswith(f"/{wan_task_id}.mp4")
    served = _served(wan_task_id)
    data, content_type, metadata = store.read(uri)
    assert data == served
    assert content_type == "video/mp4"
    assert metadata["wan_task_id"] == wan_task_id
    assert metadata["wan_model"] == MODEL
    assert metadata["wan_source_bytes"] == str(len(served))
    assert returned["md5_hex"] == hashlib.md5(served).hexdigest()
    assert returned["uploaded"] is True
    sidecar = json.loads(store.read(uri.removesuffix(".mp4") + ".json")[0])
    assert sidecar["wan_task_id"] == wan_task_id
    assert "Signature" not in json.dumps(list(result.xcoms.values()), default=str)
    assert returned["model"] == MODEL
    assert returned["wan_task_id"] == wan_task_id

    # one asset for the destination prefix (before the date partition), the video in the event's extra
    assert returned["asset_uri"] == store.uri("wan")
    extras, aliases = asset_events(store.uri("wan"), result.run_id)
    assert [(e["uri"], e["size"], e["md5_hex"], e["model"]) for e in extras] == [
        (uri, len(served), hashlib.md5(served).hexdigest(), MODEL)
    ]
    assert "wan_video_to_storage" in aliases

    # a rerun uploads nothing: the verified object is found before DashScope is asked anything
    downloads = wan_connection.stats()["requests"].get("download", 0)
    again = _operator(store, wan_task_id, destination=uri).execute({})
    assert again["uploaded"] is False
    assert again["md5_hex"] == returned["md5_hex"]
    assert wan_connection.stats()["requests"].get("download", 0) == downloads


def test_a_cut_multipart_download_resumes_and_lands_whole(store: Store, wan_connection: Any) -> None:
    # 12 MiB: three 5 MiB parts on S3 (the payload is a structurally complete MP4)
    wan_connection.configure(payload_bytes=12 * MiB)
    task_id = _generate(store)
    served = _served(task_id)
    wan_connection.inject_fault("truncate", after_bytes=7 * MiB)
    result = _operator(store, task_id, part_size=5 * MiB).execute({})
    assert store.read(result["uri"])[0] == served
    assert wan_connection.stats()["responses"]["download"].get("206", 0) >= 1


@pytest.mark.parametrize("size", [None, 12 * MiB])
def test_an_unprovable_download_leaves_nothing(store: Store, wan_connection: Any, size: int | None) -> None:
    if size:
        wan_connection.configure(payload_bytes=size)
    task_id = _generate(store)
    wan_connection.inject_fault("no_length", count=-1)
    with pytest.raises(WanTransferIntegrityError, match="Nothing was kept"):
        _operator(store, task_id, part_size=5 * MiB).execute({})
    assert _videos(store) == []
    if store.name == "s3":
        s3 = pytest.importorskip("boto3").client("s3")
        assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_changed_body_restarts_and_lands_the_file_it_started(store: Store, wan_connection: Any) -> None:
    task_id = _generate(store)
    served = _served(task_id)
    wan_connection.inject_fault("truncate", after_bytes=20_000)
    wan_connection.inject_fault("changing_body")
    result = _operator(store, task_id).execute({})
    assert store.read(result["uri"])[0] == served


def test_a_missing_bucket_is_final_before_any_download(store: Store, wan_connection: Any) -> None:
    if store.name == "file":
        pytest.skip("a folder is created, not looked up")
    task_id = _generate(store)
    before = wan_connection.stats()["requests"]
    destination = store.uri("x.mp4").replace(BUCKET, "no-such-bucket")
    with pytest.raises(WanFinalError, match="'no-such-bucket' does not exist"):
        _operator(store, task_id, destination=destination).execute({})
    after = wan_connection.stats()["requests"]
    assert after.get("get_task", 0) == before.get("get_task", 0)
    assert after.get("download", 0) == before.get("download", 0)


def test_a_metadata_name_the_store_refuses_is_caught_before_any_download(store: Store, wan_connection: Any) -> None:
    if store.name != "az":
        pytest.skip("only Azure restricts metadata names (to identifiers)")
    task_id = _generate(store)
    before = wan_connection.stats()["requests"]
    with pytest.raises(WanInvalidInputError, match=r"extra_metadata: .* refused: 'team-name'"):
        _operator(store, task_id, extra_metadata={"team-name": "a", "team_ok": "b"}).execute({})
    after = wan_connection.stats()["requests"]
    assert after.get("get_task", 0) == before.get("get_task", 0)
    assert after.get("download", 0) == before.get("download", 0)
    assert _videos(store) == []


@pytest.mark.parametrize(
    "name",
    [
        "wan/../../elsewhere/{wan_task_id}.mp4",
        "wan/./{wan_task_id}.mp4",
        "wan/..",
        f"wan/{'v' * 230}.mp4",
        "wan/a\x00{wan_task_id}.mp4",
    ],
    ids=["climbs-out", "dot", "dot-dot-name", "name-too-long-for-a-file", "nul-in-a-file-name"],
)
def test_a_destination_the_store_would_misplace_is_refused_by_name_before_any_download(
    store: Store, wan_connection: Any, name: str
) -> None:
    if name.startswith("wan/vvv") and store.name != "file":
        pytest.skip("object stores take 1,024-byte names; a file name (and its temporary twin) has 255 bytes")
    if "\x00" in name and store.name != "file":
        pytest.skip("a NUL is a file system's refusal (it failed with a raw ValueError after the download began)")
    task_id = _generate(store)
    before = wan_connection.stats()["requests"]
    with pytest.raises(WanInvalidInputError) as caught:
        _operator(store, task_id, destination=store.uri(name)).execute({})
    # the parameter the user wrote: WanVideoToStorageOperator has no object_name
    assert str(caught.value).startswith("destination: "), str(caught.value)
    after = wan_connection.stats()["requests"]
    assert after.get("get_task", 0) == before.get("get_task", 0)
    assert after.get("download", 0) == before.get("download", 0)
    assert store.listing() == []


def test_a_sidecar_name_the_store_refuses_is_caught_before_any_download(store: Store, wan_connection: Any) -> None:
    # the video's name is at the store's limit (1,024 bytes; a file's 209), so its sidecar's (.json for .mp4) is one
    # byte over: a folder failed after the video was copied, on every retry, with a raw OSError ('File name too
    # long'); GCS, S3 and Azure refuse such a name then too (the emulators here take it)
    name = f"wan/{'v' * 205}.mp4" if store.name == "file" else f"wan/{'v' * 1016}.mp4"
    task_id = _generate(store)
    before = wan_connection.stats()["requests"]
    with pytest.raises(WanInvalidInputError, match=r"^destination \(its JSON sidecar\): .*vvv\.json"):
        _operator(store, task_id, destination=store.uri(name), write_sidecar=True).execute({})
    after = wan_connection.stats()["requests"]
    assert after.get("download", 0) == before.get("download", 0)
    assert store.listing() == []


def test_prompts_at_the_models_limit_fit_every_stores_metadata(store: Store, wan_connection: Any) -> None:
    # S3 counts 2 KiB of percent-encoded metadata, Azure and GCS 8 KiB: a 1,500-character Chinese prompt is cut
    # to fit (the store refuses the object otherwise), whole in the sidecar
    prompt = (
        ("夜晚的城市街道,霓虹灯在雨中闪烁," * 100)[:1500] if store.name != "gs" else ("night city rain, " * 100)[:1500]
    )
    hook = WanHook()
    body = {"model": MODEL, "input": {"prompt": prompt}, "parameters": {"size": "832*480", "seed": 7}}
    task_id = hook.wait_for_task(hook.create_task(T2V_ENDPOINT, body).task_id, poll_interval=0.1, timeout=30).task_id
    result = _operator(store, task_id, write_sidecar=True).execute({})
    assert result["uploaded"] is True
    data, _, _ = store.read(result["uri"])
    assert data == _served(task_id)
