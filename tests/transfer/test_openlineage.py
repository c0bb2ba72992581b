"""
OpenLineage, end to end: a real DAG run (``dag.test()``) with apache-airflow-providers-openlineage's listener and
its HTTP transport posting to a real server on 127.0.0.1; the test reads the COMPLETE events it received.

The run happens in a fresh process: the provider decides at import time (plugin loading, cached configuration)
whether OpenLineage is on, so it must see the transport configured from the start. ``execute_in_thread`` makes
the listener emit from a thread the task waits for, instead of a forked child. Destinations: a folder and GCS (the
emulator, in the test extra), so the test runs in the older-Airflow sets too (2.11: the Airflow 2 listener path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.airflow_run import write_dag
from tests.foundation.images import write_png
from tests.transfer.conftest import BUCKET

pytest.importorskip("airflow.providers.openlineage", reason="needs apache-airflow-providers-openlineage")

MODEL = "wan2.5-t2v-preview"
AUDIO = "https://media.example.com/in/voice.mp3?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=70a5712e5ecre7"


@pytest.fixture
def lineage_server() -> Iterator[list[dict[str, Any]]]:
    """An OpenLineage HTTP endpoint on 127.0.0.1: every event POSTed to it, parsed, in arrival order."""
    events: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            events.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    events.append({"url": f"http://127.0.0.1:{server.server_address[1]}"})
    try:
        yield events
    finally:
        server.shutdown()
        server.server_close()


def _complete(events: list[dict[str, Any]], job: str) -> dict[str, Any]:
    found = [e for e in events if e.get("eventType") == "COMPLETE" and e.get("job", {}).get("name") == job]
    assert len(found) == 1, [(e.get("eventType"), e.get("job", {}).get("name")) for e in events]
    return found[0]


def _run_dag_file(dag_file: Path, url: str, tmp_path: Path, **settings: str) -> tuple[str | None, str]:
    """``dag.test()`` of ``dag_file`` in a fresh process posting its OpenLineage events to ``url``: state, output."""
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "http", "url": url, "endpoint": "api/v1/lineage"}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "wan-tests",
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
        **settings,
    }
    script = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('ol_dag', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        # Airflow 2.11's dag.test() leaves the asset aliases to the scheduler's parsing (see tests/airflow_run.py)
        "import airflow\n"
        "if airflow.__version__.startswith('2.'):\n"
        "    module.dag.sync_to_db()\n"
        # the state goes to a file: on stdout the OpenLineage thread's log lines can land inside it
        "state = module.dag.test().state\n"
        "open(sys.argv[2], 'w').write(str(getattr(state, 'value', state)))\n"
    )
    state_file = tmp_path / "state"
    run = subprocess.run(
        [sys.executable, "-c", script, str(dag_file), str(state_file)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    state = state_file.read_text() if state_file.exists() else None
    return state, run.stdout[-3000:] + run.stderr[-3000:]


def test_a_run_emits_model_in_video_out_and_the_wan_run_facet(
    lineage_server: list[dict[str, Any]], wan_connection: Any, bucket: Any, tmp_path: Path
) -> None:
    url = lineage_server.pop(0)["url"]
    folder = tmp_path / "videos"
    dag_id = "wan_openlineage"
    dag_file = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    write_dag(
        f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.operators.wan import WanTextToVideoOperator
        from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

        with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            generate = WanTextToVideoOperator(
                task_id="generate", model="{MODEL}", prompt="a lighthouse at dawn", size="832*480", duration=5,
                wait_for_completion=True, poll_interval=0.1, parameters={{"audio_url": {AUDIO!r}}},
            )
            WanVideoToStorageOperator(task_id="to_file", wan_task_id=generate.output, destination="file://{folder}/")
            WanVideoToStorageOperator(
                task_id="to_gcs", wan_task_id=generate.output, destination="gs://{BUCKET}/lineage/{{wan_task_id}}.mp4"
            )
        """,
        dag_id,
    )
    state, output = _run_dag_file(dag_file, url, tmp_path)
    assert state == "success", output

    namespace = f"dashscope://{urlsplit(wan_connection.url).netloc}"
    model_dataset = {"namespace": namespace, "name": MODEL}

    generated = _complete(lineage_server, f"{dag_id}.generate")
    wan = generated["run"]["facets"]["wan"]
    task_id = wan["wanTaskId"]
    assert [{k: d[k] for k in ("namespace", "name")} for d in generated["outputs"]] == [model_dataset]
    assert generated["inputs"] == []
    assert wan["model"] == MODEL
    assert wan["estimatedCostUsd"] == pytest.approx(0.25)  # 480P at $0.05/s x 5 s, the catalogue's list price

    to_file = _complete(lineage_server, f"{dag_id}.to_file")
    assert [{k: d[k] for k in ("namespace", "name")} for d in to_file["inputs"]] == [model_dataset]
    assert [{k: d[k] for k in ("namespace", "name")} for d in to_file["outputs"]] == [
        {"namespace": "file", "name": f"{folder}/{task_id}.mp4"}
    ]
    to_gcs = _complete(lineage_server, f"{dag_id}.to_gcs")
    assert [{k: d[k] for k in ("namespace", "name")} for d in to_gcs["outputs"]] == [
        {"namespace": f"gs://{BUCKET}", "name": f"lineage/{task_id}.mp4"}
    ]
    for event in (to_file, to_gcs):
        facet = event["run"]["facets"]["wan"]
        assert facet["wanTaskId"] == task_id
        assert facet["model"] == MODEL  # from the upstream result: nothing re-passed
        assert facet["usage"] == {"video_count": 1, "video_duration": 5, "video_ratio": "832*480"}
        assert facet["videoDurationSeconds"] == 5
        assert facet["resolution"] == "832*480"
        assert facet["estimatedCostUsd"] == pytest.approx(0.25)
        assert facet["_schemaURL"].endswith("#WanRunFacet")
    # the events carry no signed link: neither the result's nor a presigned input's (the events' task info has the
    # operator's parameters even without include_full_task_info)
    assert "Signature" not in json.dumps(lineage_server)
    assert generated["run"]["facets"]["airflow"]["task"]["parameters"] == {
        "audio_url": AUDIO.partition("?")[0] + "?***"
    }
    assert [t["input"]["audio_url"] for t in wan_connection.tasks()] == [AUDIO]
    assert (folder / f"{task_id}.mp4").stat().st_size > 10_000


def test_a_refused_signed_destination_stays_masked_in_the_failure_event(
    lineage_server: list[dict[str, Any]], wan_connection: Any, tmp_path: Path
) -> None:
    # with full task info, the events carry every attribute of the operator, the rendered destination included:
    # the listener redacts them through Airflow's masker, where the transfer registered the link once rendered
    url = lineage_server.pop(0)["url"]
    signature = "T0xzaWduYXR1cmUtb2YtdGhpcy10ZXN0"
    link = f"https://account.blob.core.windows.net/{BUCKET}/wan/v.mp4?sv=2024-05-04&sp=cw&sr=c&sig={signature}"
    dag_id = "wan_openlineage_signed_destination"
    dag_file = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    write_dag(
        f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator

        with DAG("{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
            WanVideoToStorageOperator(
                task_id="store", wan_task_id="0385dc79-5ff8-4d82-bcb6-000000000001",
                destination="{{{{ params.destination }}}}", params={{"destination": {link!r}}},
            )
        """,
        dag_id,
    )
    state, output = _run_dag_file(dag_file, url, tmp_path, AIRFLOW__OPENLINEAGE__INCLUDE_FULL_TASK_INFO="True")
    assert state == "failed", output
    failed = [e for e in lineage_server if e.get("eventType") == "FAIL" and e["job"]["name"] == f"{dag_id}.store"]
    assert len(failed) == 1, [(e.get("eventType"), e.get("job", {}).get("name")) for e in lineage_server]
    facets = failed[0]["run"]["facets"]
    assert "is a signed web link" in facets["errorMessage"]["message"]
    # the field is there, without its query
    assert facets["airflow"]["task"]["destination_uri"] == link.partition("?")[0] + "?***"
    assert signature not in json.dumps(lineage_server)
    assert wan_connection.stats()["requests"].get("get_task", 0) == 0


def test_full_task_info_never_carries_a_presigned_media_link(
    lineage_server: list[dict[str, Any]], wan_connection: Any, tmp_path: Path
) -> None:
    # include_full_task_info puts every attribute of the operator into the events, redacted by a copy of Airflow's
    # masker taken when the listener started: blind to the links the operator masks once rendered. A presigned
    # media link (templated, literal, mapped, in a media list, in input_extra or parameters) must reach DashScope
    # whole and the events without its query
    url = lineage_server.pop(0)["url"]
    signatures = [f"{n}c0ffee5ecre7519a7ure0f7h15ca5e" for n in range(6)]
    links = [
        f"https://media.example.com/in/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE"
        f"&X-Amz-Signature={signature}"
        for name, signature in zip(["a.png", "voice.mp3", "b.png", "c.mp3", "d.png", "e.mp3"], signatures, strict=True)
    ]
    dag_id = "wan_openlineage_presigned_media"
    dag_file = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    # a local first frame beside a presigned audio: what the operator keeps of its uploads must not hold the link
    frame = write_png(tmp_path / "frame.png")
    write_dag(
        f"""
        from datetime import datetime

        from airflow.providers.common.compat.sdk import DAG

        from airflow_provider_wan.operators.wan import WanImageToVideoOperator, WanVideoOperator

        common = dict(prompt="the frame comes alive", wait_for_completion=True, poll_interval=0.1)
        with DAG(
            "{dag_id}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
            params={{"frame": {links[0]!r}, "item": {links[3]!r}}},
        ) as dag:
            WanImageToVideoOperator(
                task_id="frame", model="wan2.5-i2v-preview", img_url="{frame}",
                audio_url={links[1]!r}, duration=5,
                input_extra={{"note": [{links[4]!r}]}}, **common,
            )
            # parameters: an attribute the events carry even without full task info (a SQL operators' field)
            WanImageToVideoOperator.partial(
                task_id="mapped", model="wan2.5-i2v-preview", parameters={{"audio_url": {links[5]!r}}}, **common
            ).expand(img_url=[{links[2]!r}])
            WanVideoOperator(
                task_id="media", model="wan2.7-i2v",
                media=[
                    {{"type": "first_frame", "url": "{{{{ params.frame }}}}"}},
                    {{"type": "driving_audio", "url": "{{{{ params.item }}}}"}},
                ],
                **common,
            )
        """,
        dag_id,
    )
    state, output = _run_dag_file(dag_file, url, tmp_path, AIRFLOW__OPENLINEAGE__INCLUDE_FULL_TASK_INFO="True")
    assert state == "success", output

    # DashScope got every link whole, and made every video
    tasks = wan_connection.tasks()
    assert sorted(t["status"] for t in tasks) == ["SUCCEEDED"] * 3
    sent = json.dumps([t["input"] for t in tasks])
    for link in links:
        assert json.dumps(link)[1:-1] in sent, link
    # the events: the full task info is there (the operator's fields, without their queries), the secrets are not
    for job in ("frame", "mapped", "media"):
        assert _complete(lineage_server, f"{dag_id}.{job}")["run"]["facets"]["airflow"]["task"]
    task = _complete(lineage_server, f"{dag_id}.frame")["run"]["facets"]["airflow"]["task"]
    assert task["audio_url"] == links[1].partition("?")[0] + "?***"
    text = json.dumps(lineage_server)
    for signature in signatures:
        assert signature not in text
    assert "X-Amz-Credential" not in text
    # nor the result's signed link (the simulator's, as DashScope's: an OSS Signature), nor the API key (the hook,
    # an attribute too, is no JSON)
    assert "Signature=" not in text
    assert wan_connection.api_key not in text
