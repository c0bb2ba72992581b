"""
The cost estimate a transfer records (``wan_estimated_cost_usd`` in the object's metadata, the sidecar, the result)
follows the submit operators' one rule: the prices are the user's (``[wan] prices``, the connection extra ``prices``)
over the catalogue's. The estimate the create made, carried by the upstream result, is the one recorded; a bare task
id is priced from the finished task's usage with the same price lookup. A broken price table never fails the copy of
a paid video. Real Airflow (``dag.test()``), the DashScope simulator, a local folder destination.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.hooks.wan import WanHook
from airflow_provider_wan.transfers.wan_to_storage import WanVideoToStorageOperator
from tests.airflow_run import run_dag, write_dag

MODEL = "wan2.5-t2v-preview"  # catalogue: 480P at $0.05 per second
T2V_ENDPOINT = "services/aigc/video-generation/video-synthesis"
PRICES = "AIRFLOW__WAN__PRICES"


def _metadata(root: Path, uri: str) -> dict[str, str]:
    path = Path(uri.removeprefix("file://"))
    assert path.is_relative_to(root), uri
    return json.loads((path.parent / f".{path.name}.wan-metadata.json").read_text())


def _generate() -> str:
    """A finished 5 s 480P video, made without an operator (so without any estimate)."""
    hook = WanHook()
    body = {"model": MODEL, "input": {"prompt": "a red fox"}, "parameters": {"size": "832*480", "duration": 5}}
    return hook.wait_for_task(hook.create_task(T2V_ENDPOINT, body).task_id, poll_interval=0.1, timeout=30).task_id


def _store(root: Path, wan_task_id: Any) -> Any:
    operator = WanVideoToStorageOperator(
        task_id="store",
        wan_task_id=wan_task_id,
        model=MODEL,
        destination=f"file://{root}/wan/{{wan_task_id}}.mp4",
        write_sidecar=True,
        download_retry_delay=0.01,
    )
    return operator.execute({})


def _sidecar(root: Path, uri: str) -> dict[str, Any]:
    return json.loads(Path(uri.removeprefix("file://").removesuffix(".mp4") + ".json").read_text())


def test_a_bare_task_id_is_priced_with_the_configured_prices(
    tmp_path: Path, wan_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = _generate()
    monkeypatch.setenv(PRICES, json.dumps({MODEL: {"480P": 0.2}}))
    result = _store(tmp_path, task_id)
    assert _metadata(tmp_path, result["uri"])["wan_estimated_cost_usd"] == "1.0000"  # $0.2/s x 5 s, not $0.25
    assert result["estimated_cost_usd"] == 1.0
    assert _sidecar(tmp_path, result["uri"])["estimated_cost_usd"] == 1.0


def test_the_estimate_the_create_made_is_the_one_the_object_records(
    tmp_path: Path, wan_connection: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PRICES, json.dumps({MODEL: {"480P": 0.3}}))
    dag_id = "wan_transfer_prices"
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
                task_id="store", wan_task_id=generate.output, destination="file://{tmp_path}/wan/{{wan_task_id}}.mp4",
            )
            generate >> store
        """,
        dag_id,
    )
    result = run_dag(dag)
    assert result.state == "success", result.tasks
    generated = result.xcoms[("generate", "return_value")]
    stored = result.xcoms[("store", "return_value")]
    assert generated["estimated_cost_usd"] == 1.5  # $0.3/s x 5 s, the price when the create was sent
    assert stored["estimated_cost_usd"] == 1.5
    assert _metadata(tmp_path, stored["uri"])["wan_estimated_cost_usd"] == "1.5000"

    # prices changed (or broken) after the create: a transfer of the same result records the create's estimate
    for n, prices in enumerate((json.dumps({MODEL: {"480P": 9.0}}), "{not json")):
        monkeypatch.setenv(PRICES, prices)
        again = _store(tmp_path / f"again{n}", generated)
        assert again["estimated_cost_usd"] == 1.5
        assert _metadata(tmp_path, again["uri"])["wan_estimated_cost_usd"] == "1.5000"


def test_a_broken_price_table_leaves_the_estimate_out_and_stores_the_video(
    tmp_path: Path,
    wan_connection: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    task_id = _generate()
    monkeypatch.setenv(PRICES, "{not json")
    result = _store(tmp_path, task_id)
    assert result["uploaded"] is True
    assert result["estimated_cost_usd"] is None
    assert "wan_estimated_cost_usd" not in _metadata(tmp_path, result["uri"])
    assert _sidecar(tmp_path, result["uri"])["estimated_cost_usd"] is None
    out, err = capfd.readouterr()
    log = out + err + caplog.text
    assert "prices:" in log
    assert "no cost estimate" in log
