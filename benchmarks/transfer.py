"""
Benchmark: moving one big finished video from DashScope into GCS, three ways, each in a fresh process.

* ``streaming``: :class:`~airflow_provider_wan.transfers.wan_to_gcs.WanVideoToGCSOperator` (``execute()``): the
  download streamed into a GCS resumable upload, ``--chunk-mib`` at a time, MD5 + CRC32C computed on the way and
  compared with what GCS stored.
* ``http_to_gcs``: the way ``HttpToGCSOperator`` (apache-airflow-providers-google) does it: ``HttpHook.run()``
  (apache-airflow-providers-http) reads the whole body into memory, then ``GCSHook.upload(data=...)``, i.e.
  ``blob.upload_from_string(response.content)``. The Google provider is not installed here, so its two calls are
  made directly, with the same arguments.
* ``disk_copy``: a plain script: the body streamed to a temporary file (1 MiB reads), then
  ``blob.upload_from_filename()`` with the library's defaults.

* ``s3_streaming``: :class:`~airflow_provider_wan.transfers.wan_to_storage.WanVideoToStorageOperator` into S3
  (moto in server mode, its own process): multipart, ``--chunk-mib`` parts, verified before visible.
* ``s3_upload_fileobj``: boto3's managed ``upload_fileobj`` of the streamed body (s3transfer defaults), unverified.
* ``s3_osp_copy``: Airflow's own way: ``ObjectStoragePath(<signed link>).copy(ObjectStoragePath("s3://aws_bench@bench/
  <key>"))``: fsspec's HTTP filesystem (attached for ``http`` with ``airflow.sdk.io.attach``, as no provider registers
  one) read into s3fs's writer through ``shutil.copyfileobj``, unverified.
* ``s3_file_transfer``: ``FileTransferOperator`` (apache-airflow-providers-common-io) ``execute()`` from the signed
  link to the same ``s3://`` destination (``dest_conn_id="aws_bench"``): the same copy after its overwrite check.

The last two need s3fs (apache-airflow-providers-amazon[s3fs]) and common-io, whose aiobotocore pins clash with the
boto3 of constraints.txt: ``bash benchmarks/s3fs-venv.sh`` creates ``.venv-bench`` where they resolve; run the
benchmark with ``.venv-bench/bin/python`` (every S3 approach then uses the same boto3). Every S3 approach writes to the
same moto server (``python -m moto.server``, its own process, objects in RAM) from the same simulator link; the
objects of the unverified approaches are read back after the clock stops and their MD5 compared.

The DashScope simulator (``--payload-bytes``: N deterministic bytes at a signed link instead of an MP4) and the
gcp-storage-emulator (``--in-memory``: it keeps objects in RAM) run in their own processes, so neither pollutes the
measurement. Each approach runs in a fresh Python process that imports everything and builds its clients first, then
records its RSS ("before"), then transfers while a thread samples RSS every 5 ms. Reported: the peak RSS growth
above "before" (goal for ``streaming``: under 100 MiB), the growth of ``ru_maxrss`` (the kernel's own peak) as a
cross-check, and MB/s (10^6 bytes per second, whole transfer wall time, verification included). All three copy
the same DashScope task, and their objects' MD5s must match.

    python benchmarks/transfer.py [--size-mib 512] [--chunk-mib 8] [--approaches streaming,http_to_gcs,disk_copy]
                                  [--results benchmarks/RESULTS.md]

``--approaches streaming,streaming@32,http_to_gcs,disk_copy`` adds a streaming run with 32 MiB chunks.

``--size-mib 1024`` for issue 7's 1 GiB. ``--results`` rewrites this benchmark's section of RESULTS.md (the GCS
approaches and the S3 ones each have their own).

    bash benchmarks/s3fs-venv.sh
    .venv-bench/bin/python benchmarks/transfer.py --size-mib 1024 \
        --approaches s3_streaming,s3_upload_fileobj,s3_osp_copy,s3_file_transfer --results benchmarks/RESULTS.md

Runtime: about 1-2 minutes for 512 MiB on 2 cores (the emulator, which re-copies its buffer on every chunk, is the
slowest part).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import describe

MiB = 1024 * 1024
BUCKET = "bench"
MODEL = "wan2.5-t2v-preview"
APPROACHES = (
    "streaming",
    "http_to_gcs",
    "disk_copy",
    "s3_streaming",
    "s3_upload_fileobj",
    "s3_osp_copy",
    "s3_file_transfer",
)
#: the approaches that need s3fs and common-io (benchmarks/s3fs-venv.sh)
AIRFLOW_S3 = ("s3_osp_copy", "s3_file_transfer")
AWS_CONN_ID = "aws_bench"
GOAL_GROWTH_MIB = 100
SECTION_START = "<!-- benchmarks/transfer.py: start -->"
SECTION_END = "<!-- benchmarks/transfer.py: end -->"
S3_SECTION_START = "<!-- benchmarks/transfer.py s3: start -->"
S3_SECTION_END = "<!-- benchmarks/transfer.py s3: end -->"

GCS_INTRO = (
    "### Transfer: WanVideoToGCSOperator vs. HttpToGCSOperator vs. a plain copy (`benchmarks/transfer.py`)\n\n"
    "Peak RSS growth = highest RSS sampled every 5 ms during the transfer minus the RSS just before it (imports "
    "and clients already loaded), each approach in a fresh process; the simulator and the GCS emulator run in "
    "their own processes. MB/s = 10^6 bytes per second of wall time. Loopback only: the emulator (pure Python, "
    "re-copying its upload buffer on every chunk) bounds the throughput, not the network.\n"
)
S3_INTRO = (
    "### Transfer into S3: WanVideoToStorageOperator vs. boto3 vs. ObjectStoragePath.copy vs. FileTransferOperator "
    "(`benchmarks/transfer.py`)\n\n"
    "Peak RSS growth = highest RSS sampled every 5 ms during the transfer minus the RSS just before it (imports, "
    "clients and filesystems already loaded), each approach in a fresh process, all writing to the same moto server "
    "(its own process, objects in RAM) from the same simulator link. MB/s = 10^6 bytes per second of wall time, "
    "completion (and for the operator, verification and the metadata copy) included.\n"
)
EXTRA_PACKAGES = (
    "gcp-storage-emulator",
    "google-resumable-media",
    "urllib3",
    "apache-airflow-providers-http",
    "psutil",
    "boto3",
    "moto",
    "s3fs",
    "aiobotocore",
    "apache-airflow-providers-amazon",
    "apache-airflow-providers-common-io",
)


# --- the worker: one approach, one fresh process --------------------------------------------------------------------
class RssSampler(threading.Thread):
    """Peak RSS of this process, sampled every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.005) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = self.process.memory_info().rss
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join()
        self.peak = max(self.peak, self.process.memory_info().rss)
        return self.peak


class S3CallTimes:
    """Seconds spent in each S3 operation by boto3 clients of the default session (created after ``install``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.lock = threading.Lock()

    def install(self) -> None:
        import boto3

        boto3.setup_default_session()
        events = boto3.DEFAULT_SESSION.events
        events.register("before-call.s3", self._before)
        events.register("after-call.s3", self._after)

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()

    def _after(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        spent = time.perf_counter() - context.get("bench_started", time.perf_counter())
        with self.lock:
            self.seconds[model.name] = self.seconds.get(model.name, 0.0) + spent

    def summary(self) -> dict[str, float]:
        names = ("UploadPart", "CompleteMultipartUpload", "CopyObject")
        return {name: round(self.seconds[name], 1) for name in names if name in self.seconds}


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def worker(approach: str, wan_task_id: str, object_name: str, chunk_mib: int) -> dict[str, Any]:
    """Run one approach; every import and client is ready before the 'before' RSS is taken."""
    import psutil
    import requests  # noqa: F401 - imported before the baseline on purpose
    from airflow.providers.http.hooks.http import HttpHook
    from google.cloud import storage  # noqa: F401

    from airflow_provider_wan.gcs import storage_client
    from airflow_provider_wan.hooks.wan import WanHook
    from airflow_provider_wan.transfers.wan_to_gcs import WanVideoToGCSOperator

    client = storage_client()
    bucket = client.bucket(BUCKET)
    hook = WanHook()
    hook.credentials  # noqa: B018 - resolve the connection before the baseline
    operator = WanVideoToGCSOperator(
        task_id="bench",
        wan_task_id=wan_task_id,
        bucket_name=BUCKET,
        object_name=object_name,
        chunk_size=chunk_mib * MiB,
        asset_alias=None,
        progress_interval=10.0,
        # the synthetic videos measured may pass the default cap (1 GiB), which no real Wan video comes near
        max_video_bytes=1 << 40,
    )
    operator.__dict__["hook"] = hook
    s3_operator: Any = None
    s3_times = S3CallTimes()
    if approach.startswith("s3_"):
        import boto3

        s3_times.install()
        from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

        s3 = boto3.client("s3")
        s3_operator = WanVideoToStorageOperator(
            task_id="bench",
            wan_task_id=wan_task_id,
            destination=f"s3://{BUCKET}/{object_name}",
            part_size=chunk_mib * MiB,
            asset_alias=None,
            progress_interval=10.0,
            max_video_bytes=1 << 40,
        )
        s3_operator.__dict__["hook"] = hook
    osp_source: Any = None
    osp_destination: Any = None
    file_transfer: Any = None
    if approach in AIRFLOW_S3:
        from airflow.providers.common.compat.sdk import ObjectStoragePath
        from airflow.providers.common.io.operators.file_transfer import FileTransferOperator
        from airflow.sdk.io import attach
        from fsspec.implementations.http import HTTPFileSystem

        # no provider registers a filesystem for http(s): attach fsspec's own, the documented way to add one
        attach("http", fs=HTTPFileSystem())
        link = hook.get_task(wan_task_id).video_url or ""
        osp_source = ObjectStoragePath(link)
        osp_destination = ObjectStoragePath(f"s3://{AWS_CONN_ID}@{BUCKET}/{object_name}")
        osp_destination.fs  # noqa: B018 - the s3fs filesystem (connection, session) before the baseline
        osp_source.fs  # noqa: B018
        file_transfer = FileTransferOperator(
            task_id="bench", src=link, dst=f"s3://{BUCKET}/{object_name}", dest_conn_id=AWS_CONN_ID
        )
    http_hook = HttpHook(method="GET", http_conn_id="wan_sim_http")
    import google_crc32c  # noqa: F401

    before = psutil.Process().memory_info().rss
    maxrss_before = _maxrss_bytes()
    sampler = RssSampler()
    sampler.start()
    started = time.perf_counter()
    if approach == "streaming":
        result = operator.execute({})
        size = int(result["size"])
    elif approach == "http_to_gcs":
        # HttpToGCSOperator.execute(): response = http_hook.run(endpoint, ...); gcs_hook.upload(data=response.content)
        url = hook.get_task(wan_task_id).video_url or ""
        endpoint = url.split("/", 3)[3]
        response = http_hook.run(endpoint=endpoint)
        data = response.content
        # GCSHook.upload(data=...) -> blob.upload_from_string(data, content_type=mime_type, timeout=...)
        bucket.blob(object_name).upload_from_string(data, content_type="video/mp4", timeout=300)
        size = len(data)
        del data, response
    elif approach == "disk_copy":
        url = hook.get_task(wan_task_id).video_url or ""
        with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
            with hook.session.get(url, stream=True, timeout=(10, 60)) as response:
                response.raise_for_status()
                for piece in response.iter_content(chunk_size=MiB):
                    tmp.write(piece)
            tmp.flush()
            size = tmp.tell()
            bucket.blob(object_name).upload_from_filename(tmp.name, content_type="video/mp4", timeout=300)
    elif approach == "s3_streaming":
        result = s3_operator.execute({})
        size = int(result["size"])
    elif approach == "s3_upload_fileobj":
        # boto3's managed upload of the streamed body (s3transfer: 8 MiB parts, several threads), nothing verified
        url = hook.get_task(wan_task_id).video_url or ""
        with hook.session.get(url, stream=True, timeout=(10, 60)) as response:
            response.raise_for_status()
            s3.upload_fileobj(response.raw, BUCKET, object_name, ExtraArgs={"ContentType": "video/mp4"})
        size = int(s3.head_object(Bucket=BUCKET, Key=object_name)["ContentLength"])
    elif approach == "s3_osp_copy":
        osp_source.copy(osp_destination)
        size = int(s3.head_object(Bucket=BUCKET, Key=object_name)["ContentLength"])
    elif approach == "s3_file_transfer":
        file_transfer.execute({})
        size = int(s3.head_object(Bucket=BUCKET, Key=object_name)["ContentLength"])
    else:
        raise SystemExit(f"unknown approach {approach!r}")
    seconds = time.perf_counter() - started
    peak = sampler.stop()
    if approach.startswith("s3_"):
        head = s3.head_object(Bucket=BUCKET, Key=object_name)
        # the MD5 the streaming sink verified and recorded (a multipart ETag is no MD5)
        recorded = head.get("Metadata", {}).get("wan_source_md5")
        if recorded is None:
            # nothing verified nor recorded: read the object back (after the clock stopped) to compare its bytes
            digest = hashlib.md5()
            for piece in s3.get_object(Bucket=BUCKET, Key=object_name)["Body"].iter_chunks(MiB):
                digest.update(piece)
            recorded = base64.b64encode(digest.digest()).decode()
        return {
            "approach": approach,
            "bytes": size,
            "seconds": round(seconds, 2),
            "mb_per_s": round(size / seconds / 1e6, 1),
            "rss_before_mib": round(before / MiB, 1),
            "peak_growth_mib": round((peak - before) / MiB, 1),
            "maxrss_growth_mib": round(max(0, _maxrss_bytes() - max(before, maxrss_before)) / MiB, 1),
            "md5_hash": recorded,
            "stored_bytes": int(head["ContentLength"]),
            # seconds inside these S3 calls (summed over threads: parts overlap), boto3 clients only (not s3fs)
            "s3_call_seconds": s3_times.summary(),
        }
    blob = bucket.get_blob(object_name)
    return {
        "approach": approach,
        "bytes": size,
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / seconds / 1e6, 1),
        "rss_before_mib": round(before / MiB, 1),
        "peak_growth_mib": round((peak - before) / MiB, 1),
        "maxrss_growth_mib": round(max(0, _maxrss_bytes() - max(before, maxrss_before)) / MiB, 1),
        "md5_hash": blob.md5_hash if blob is not None else None,
        "stored_bytes": blob.size if blob is not None else None,
    }


# --- the parent: servers, one worker per approach, the table ------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, timeout: float = 30.0) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def _missing_airflow_s3() -> str | None:
    """What ObjectStoragePath on s3:// and FileTransferOperator need that is not installed, or None."""
    import importlib.util

    missing = [
        name
        for name, module in (
            ("s3fs", "s3fs"),
            ("apache-airflow-providers-amazon", "airflow.providers.amazon"),
            ("apache-airflow-providers-common-io", "airflow.providers.common.io"),
        )
        if importlib.util.find_spec(module) is None
    ]
    return ", ".join(missing) or None


def _versions() -> str:
    found = []
    for name in EXTRA_PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def _machine_text() -> str:
    import psutil

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total / 1024**3
    return f"{describe()}\nalso: {_versions()}\ncpu: {cpu}, {memory:.0f} GiB RAM"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512, help="video size in MiB (default 512; 1024 for 1 GiB)")
    parser.add_argument("--chunk-mib", type=int, default=8, help="streaming chunk size in MiB (default 8)")
    parser.add_argument(
        "--approaches",
        default=",".join(APPROACHES),
        help="comma-separated, in run order; streaming@N = streaming with N MiB chunks (default: %(default)s)",
    )
    parser.add_argument("--results", type=Path, help="rewrite this benchmark's section of that RESULTS.md")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--task-id", help=argparse.SUPPRESS)
    parser.add_argument("--object", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.task_id, args.object, args.chunk_mib)), flush=True)
        return 0

    from airflow_provider_wan.testing import start_simulator_process

    approaches = [a.strip() for a in args.approaches.split(",") if a.strip()]
    unknown = {a.split("@")[0] for a in approaches} - set(APPROACHES)
    if unknown:
        parser.error(f"unknown approach(es): {', '.join(sorted(unknown))}; known: {', '.join(APPROACHES)}")
    missing = _missing_airflow_s3() if any(a.split("@")[0] in AIRFLOW_S3 for a in approaches) else None
    if missing:
        print(
            f"{', '.join(AIRFLOW_S3)} need {missing}, which cannot share this venv's boto3 (see "
            "benchmarks/s3fs-constraints.txt). Create the benchmark venv and run with its python:\n\n"
            "    bash benchmarks/s3fs-venv.sh\n"
            f"    .venv-bench/bin/python benchmarks/transfer.py {' '.join(sys.argv[1:])}",
            file=sys.stderr,
        )
        return 2
    size = args.size_mib * MiB
    load_start = os.getloadavg()
    machine = _machine_text()
    print(machine, flush=True)
    print(f"video: {args.size_mib} MiB ({size} bytes), streaming chunk {args.chunk_mib} MiB", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="wan-transfer-bench-"))
    gcs_port = _free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gcp_storage_emulator",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(gcs_port),
            "--in-memory",
            "--default-bucket",
            BUCKET,
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    s3_port = _free_port()
    moto = None
    if any(a.startswith("s3_") for a in approaches):
        # moto in server mode: the S3 API over HTTP, in its own process (it keeps objects in RAM)
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    simulator = start_simulator_process(
        payload_bytes=size, pending_seconds=0.0, generation_seconds=0.0, log_requests=False
    )
    rows: list[dict[str, Any]] = []
    try:
        _wait_http(f"http://127.0.0.1:{gcs_port}/")
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(workdir),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs_port}",
            "GOOGLE_CLOUD_PROJECT": "bench",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            # the same moto server as an Airflow AWS connection: what ObjectStoragePath and FileTransferOperator use
            f"AIRFLOW_CONN_{AWS_CONN_ID.upper()}": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "bench",
                    "password": "bench",
                    "extra": {"endpoint_url": f"http://127.0.0.1:{s3_port}", "region_name": "us-east-1"},
                }
            ),
            "AIRFLOW_CONN_WAN_DEFAULT": simulator.connection_json(),
            "AIRFLOW_CONN_WAN_SIM_HTTP": json.dumps(
                {"conn_type": "http", "host": simulator.host, "port": simulator.port, "schema": "http"}
            ),
        }
        os.environ.update(env)
        if moto is not None:
            import boto3

            _wait_http(f"http://127.0.0.1:{s3_port}/moto-api/")
            boto3.client("s3").create_bucket(Bucket=BUCKET)
        from airflow_provider_wan.hooks.wan import WanHook

        hook = WanHook()
        task = hook.create_task(
            "services/aigc/video-generation/video-synthesis",
            {"model": MODEL, "input": {"prompt": "benchmark"}, "parameters": {"size": "832*480", "duration": 5}},
        )
        task = hook.wait_for_task(task.task_id, poll_interval=0.2, timeout=60)
        for approach in approaches:
            # "streaming@32": the streaming operator with 32 MiB chunks instead of --chunk-mib
            name, _, chunk = approach.partition("@")
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                name,
                "--task-id",
                task.task_id,
                "--object",
                f"bench/{approach}.bin",
                "--chunk-mib",
                chunk or str(args.chunk_mib),
            ]
            print(f"running {approach} ...", flush=True)
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{approach} failed (exit {done.returncode})")
            row = json.loads(lines[-1])
            row["chunk_mib"] = int(chunk or args.chunk_mib)
            rows.append(row)
            print(f"  {row}", flush=True)
            # free the server's copy before the next approach
            if name.startswith("s3_"):
                import boto3

                boto3.client("s3").delete_object(Bucket=BUCKET, Key=f"bench/{approach}.bin")
            else:
                from airflow_provider_wan.gcs import storage_client

                storage_client().bucket(BUCKET).delete_blob(f"bench/{approach}.bin")
    finally:
        simulator.stop()
        if moto is not None:
            moto.terminate()
            moto.wait(10)
        emulator.terminate()
        try:
            emulator.wait(10)
        except subprocess.TimeoutExpired:
            emulator.kill()
        shutil.rmtree(workdir, ignore_errors=True)

    # boto3's plain upload verifies nothing and records no MD5: only the sizes of its object are compared
    digests = {row["md5_hash"] for row in rows if row["md5_hash"] is not None}
    sizes = {row["stored_bytes"] for row in rows}
    if len(digests) != 1 or sizes != {size}:
        raise SystemExit(f"the approaches stored different objects: md5 {digests}, sizes {sizes}")
    command_line = "python benchmarks/transfer.py " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--results") and a != str(args.results)
    )
    load = f"load average (1/5/15 min) at start {_load(load_start)}, at end {_load(os.getloadavg())}"
    table = render(rows, args, f"{machine}\n{load}", command_line.strip(), next(iter(digests)))
    print()
    print(table)
    if args.results:
        s3_only = all(row["approach"].startswith("s3_") for row in rows)
        write_section(args.results, table, args.size_mib, s3=s3_only)
    return 0


def render(rows: list[dict[str, Any]], args: argparse.Namespace, machine: str, command: str, md5: str) -> str:
    labels = {
        "http_to_gcs": "HttpToGCSOperator way (whole body in memory, then upload_from_string)",
        "disk_copy": "plain copy (download to disk, then upload_from_filename, library defaults)",
        "s3_upload_fileobj": "S3: boto3 upload_fileobj of the streamed body (s3transfer defaults, nothing verified)",
        "s3_osp_copy": "S3: ObjectStoragePath(link).copy(s3://...) (fsspec http -> s3fs, nothing verified)",
        "s3_file_transfer": "S3: FileTransferOperator (common-io; the same copy, nothing verified)",
    }
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"#### {args.size_mib} MiB video, measured {date}",
        "",
        f"Command: `{command}`",
        "",
        "```",
        machine,
        "```",
        "",
        "| approach | peak RSS growth (MiB) | goal | ru_maxrss growth (MiB) | MB/s | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        label = labels.get(row["approach"], f"WanVideoToGCSOperator (streaming, {row['chunk_mib']} MiB chunks)")
        if row["approach"] == "s3_streaming":
            label = f"S3: WanVideoToStorageOperator (multipart, {row['chunk_mib']} MiB parts, 3 in flight, verified)"
        goal = f"< {GOAL_GROWTH_MIB} MiB" if row["approach"] in ("streaming", "s3_streaming") else "(reference)"
        met = ""
        if row["approach"] in ("streaming", "s3_streaming"):
            met = " (met)" if row["peak_growth_mib"] < GOAL_GROWTH_MIB else " (NOT met)"
        lines.append(
            f"| {label} | {row['peak_growth_mib']} | {goal}{met} | {row['maxrss_growth_mib']} "
            f"| {row['mb_per_s']} | {row['seconds']} |"
        )
    lines += ["", f"All approaches stored the same {args.size_mib} MiB object (md5 `{md5}`)."]
    timed = [row for row in rows if row.get("s3_call_seconds")]
    if timed:
        lines += ["", "Seconds inside S3 calls (boto3 clients only; UploadPart summed over the threads sending parts):"]
        lines += [
            f"- {row['approach']}: " + ", ".join(f"{k} {v}" for k, v in row["s3_call_seconds"].items()) for row in timed
        ]
    return "\n".join(lines)


def write_section(path: Path, table: str, size_mib: int, *, s3: bool = False) -> None:
    """Keep one table per video size inside this benchmark's marked section of RESULTS.md (GCS and S3 apart)."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = (S3_SECTION_START, S3_SECTION_END) if s3 else (SECTION_START, SECTION_END)
    intro = S3_INTRO if s3 else GCS_INTRO
    tables: dict[int, str] = {}
    if start in text and end in text:
        head, rest = text.split(start, 1)
        body, tail = rest.split(end, 1)
        for block in body.split("#### ")[1:]:
            key = block.split(" MiB", 1)[0]
            if key.isdigit():
                tables[int(key)] = "#### " + block.strip()
    else:
        head, tail = text.rstrip() + "\n\n", "\n"
    tables[size_mib] = table.strip()
    body = "\n\n".join(tables[k] for k in sorted(tables))
    path.write_text(f"{head}{start}\n{intro}\n{body}\n{end}{tail}")


if __name__ == "__main__":
    sys.exit(main())
