"""
Fixtures of the transfer tests: a real gcp-storage-emulator on 127.0.0.1 (in this process, in memory), its request
log, and a ``wan`` connection pointing at the package's DashScope simulator (``wan_simulator`` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.stack import free_port

BUCKET = "wan-videos"


@pytest.fixture(scope="session")
def wan_simulator_options() -> dict[str, Any]:
    # quick generations, quiet request log; the videos stay real H.264 MP4s (about 80 KB at 832*480, 5 s)
    return {"pending_seconds": 0.1, "generation_seconds": 0.3, "log_requests": False}


@dataclass
class GCSEmulator:
    """The emulator's URL and every request it answered, as ``(method, path with query, status)``."""

    url: str
    server: Any
    requests: list[tuple[str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def uploads(self) -> list[tuple[str, str, int]]:
        """Requests that create or feed an upload (media, multipart, resumable initiation and chunks)."""
        with self.lock:
            return [r for r in self.requests if r[1].startswith("/upload/")]

    def video_uploads(self) -> list[tuple[str, str, int]]:
        """Upload requests of .mp4 objects (resumable initiations name the object in the body, chunks in upload_id)."""
        return [r for r in self.uploads() if "uploadType=resumable" in r[1]]


@pytest.fixture(scope="session")
def _gcs_emulator_session() -> Iterator[GCSEmulator]:
    from gcp_storage_emulator import server as emulator_server

    port = free_port()
    server = emulator_server.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    emulator = GCSEmulator(url=f"http://127.0.0.1:{port}", server=server)
    original = emulator_server.RequestHandler.log_request

    # record each answered request (the emulator has no request counter of its own)
    def log_request(handler: Any, code: Any = "-", size: Any = "-") -> None:
        with emulator.lock:
            emulator.requests.append((handler.command, handler.path, int(code) if str(code).isdigit() else 0))

    emulator_server.RequestHandler.log_request = log_request  # type: ignore[method-assign]
    server.start()
    try:
        yield emulator
    finally:
        server.stop()
        emulator_server.RequestHandler.log_request = original  # type: ignore[method-assign]


@pytest.fixture
def gcs_emulator(_gcs_emulator_session: GCSEmulator, monkeypatch: pytest.MonkeyPatch) -> GCSEmulator:
    """The session's emulator, emptied (the bucket ``wan-videos`` kept), with ``STORAGE_EMULATOR_HOST`` set."""
    emulator = _gcs_emulator_session
    emulator.server.wipe(keep_buckets=True)
    with emulator.lock:
        emulator.requests.clear()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    return emulator


@pytest.fixture
def bucket(gcs_emulator: GCSEmulator) -> Any:
    """The test bucket, through google-cloud-storage against the emulator."""
    from airflow_provider_wan.gcs import storage_client

    return storage_client().bucket(BUCKET)


@pytest.fixture
def wan_connection(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``wan_default`` pointing at the simulator, the way users configure it (an AIRFLOW_CONN_ variable)."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_WAN_DEFAULT",
        wan_simulator.connection_json(),
    )
    return wan_simulator


@dataclass
class MotoS3:
    """A moto server (the S3 API over real HTTP on 127.0.0.1) and a boto3 client of it."""

    url: str
    client: Any


@pytest.fixture(scope="session")
def _moto_session() -> Iterator[str]:
    pytest.importorskip("boto3", reason="the S3 tests need the test extra (boto3, moto[server])")
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_s3(_moto_session: str, monkeypatch: pytest.MonkeyPatch) -> MotoS3:
    """The session's moto server with an empty bucket ``wan-videos``; boto3 pointed at it through the environment."""
    import boto3

    for name, value in {
        "AWS_ENDPOINT_URL": _moto_session,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    for bucket in client.list_buckets().get("Buckets", []):
        for item in client.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            client.delete_object(Bucket=bucket["Name"], Key=item["Key"])
        client.delete_bucket(Bucket=bucket["Name"])
    client.create_bucket(Bucket=BUCKET)
    return MotoS3(url=_moto_session, client=client)


# Azurite's well-known development account (public, documented by Microsoft; not a secret)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE_CONN_ID = "wan_azurite"


@dataclass
class Azurite:
    """An Azurite Blob service on 127.0.0.1 and a container client of ``wan-videos`` in it."""

    connection_string: str
    container: Any


@pytest.fixture(scope="session")
def _azurite_session() -> Iterator[str]:
    import shutil
    import subprocess
    import time
    from pathlib import Path

    pytest.importorskip("azure.storage.blob", reason="the Azure tests need the test-stores extra (azure-storage-blob)")
    # installed by scripts/venv.sh into the project's .tools; else one on the PATH
    local = Path(__file__).resolve().parents[2] / ".tools" / "node_modules" / ".bin" / "azurite-blob"
    binary = str(local) if local.exists() else shutil.which("azurite-blob")
    if not binary or not shutil.which("node"):
        pytest.skip("the Azure tests need node and azurite (scripts/venv.sh installs azurite into .tools)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
    try:
        import socket

        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("azurite did not start")
                time.sleep(0.1)
        yield connection_string
    finally:
        # in memory: nothing to flush, and a graceful stop waits for idle keep-alive connections
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def azurite(_azurite_session: str, monkeypatch: pytest.MonkeyPatch) -> Azurite:
    """The session's Azurite with an empty container ``wan-videos``, and the ``wan_azurite`` wasb connection."""
    import json

    from azure.storage.blob import BlobServiceClient

    monkeypatch.setenv(
        f"AIRFLOW_CONN_{AZURE_CONN_ID.upper()}",
        json.dumps({"conn_type": "wasb", "extra": {"connection_string": _azurite_session}}),
    )
    service = BlobServiceClient.from_connection_string(_azurite_session)
    container = service.get_container_client(BUCKET)
    if container.exists():
        for blob in container.list_blobs():
            container.delete_blob(blob.name)
    else:
        container.create_container()
    return Azurite(connection_string=_azurite_session, container=container)
