"""
Attacks on "never pay twice for one video, never lose one" that the retry-safety record's own tests
(``test_retry_safety.py``) leave out, each through real Airflow (``dag.test()``) against the simulator:

* a retry whose connection now points somewhere that does not know the task (another region, workspace or key):
  DashScope answers UNKNOWN for a task that is alive where it was made. Not a new create (that pays twice), but a
  final error naming the task, where it was made, and how to re-attach;
* the record store refusing the task id right after the paid create: the task id is in the log, and the try still
  waits for the video it paid for instead of failing with a database error nobody can map to a task.
"""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from airflow_provider_wan.compat import HAS_TASK_STATE_STORE
from airflow_provider_wan.lineage import dashscope_namespace
from airflow_provider_wan.testing import WanSimulator
from tests.airflow_run import run_dag, write_dag
from tests.transfer.proxy import ForwardingProxy, forward, serving

DAG_SOURCE = """
import datetime
import os
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_wan.operators.wan import WanTextToVideoOperator


def prepare(context):
    if {without_task_state_store!r}:
        # what the operator sees on Airflow < 3.3: no task state store in the context
        context.pop("task_state_store", None)
    if context["ti"].try_number > 1 and {later_connection!r}:
        # the connection was edited between the tries (another region, workspace or key)
        os.environ["AIRFLOW_CONN_WAN_DEFAULT"] = {later_connection!r}
{extra}

with DAG("{dag_id}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
    WanTextToVideoOperator(
        task_id="generate",
        model="wan2.5-t2v-preview",
        prompt="a lantern on a pier",
        size="832*480",
        retries={retries},
        retry_delay=datetime.timedelta(seconds=0.2),
        poll_interval=0.2,
        pre_execute=prepare,
        {params}
    )
"""

BACKENDS = ["task_state_store", "variable"] if HAS_TASK_STATE_STORE else ["variable"]


def _dag(dag_id: str, backend: str, *, later_connection: str = "", extra: str = "", retries: int = 2, **params: object):
    source = DAG_SOURCE.format(
        dag_id=dag_id,
        retries=retries,
        without_task_state_store=backend == "variable",
        later_connection=later_connection,
        extra=extra,
        params="\n        ".join(f"{k}={v}," for k, v in params.items()),
    )
    return write_dag(source, dag_id)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_retry_whose_connection_does_not_know_the_task_does_not_create_again(
    monkeypatch, wan_simulator, capfd, backend
):
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    # the first try's wait times out while the task still runs (retryable: the retry should re-attach)
    wan_simulator.configure(generation_seconds=30)
    with WanSimulator() as elsewhere:
        dag = _dag(f"unknown_elsewhere_{backend}", backend, later_connection=elsewhere.connection_json(), timeout=0.5)
        result = run_dag(dag)
        output = "".join(capfd.readouterr())
        created_elsewhere, elsewhere_url = elsewhere.stats()["tasks_created"], elsewhere.base_url
    [task] = wan_simulator.tasks()
    # the task paid for is still alive where it was made; the retry made none where the connection now points
    assert wan_simulator.stats()["tasks_created"] == 1
    assert created_elsewhere == 0, "the retry paid for a second video"
    # try 1 timed out (retryable), try 2 stopped for good: no try 3
    assert result.tasks["generate"] == ("failed", 2)
    assert f"DashScope task {task['task_id']}, made by an earlier try for this same request" in output
    assert f"it was made at {dashscope_namespace(wan_simulator.base_url)} and this try asked" in output
    assert f"({elsewhere_url})" in output
    assert "NOT created again" in output
    assert "take=2" in output


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_task_forgotten_after_24_hours_is_created_again(monkeypatch, wan_simulator, capfd, backend):
    # DashScope forgets a task 24 hours after its submission: here the simulator forgets it after 3 s (past the
    # first try's wait), and the retry, once it has, finds a record written a day before
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    wan_simulator.configure(generation_seconds=30, task_ttl_seconds=3)
    extra = """
    if context["ti"].try_number == 2:
        import dataclasses, time
        from airflow_provider_wan.create_record import record_store
        from airflow_provider_wan.hooks.wan import TaskStatus, WanHook
        records = record_store(context)
        record = records.get()
        deadline = time.monotonic() + 15
        while WanHook().get_task(record.task_id).status is not TaskStatus.UNKNOWN and time.monotonic() < deadline:
            time.sleep(0.2)
        records.put(dataclasses.replace(record, sent_at=time.time() - 24 * 3600 - 60))
"""
    result = run_dag(_dag(f"forgotten_{backend}", backend, extra=extra, retries=1, timeout=0.5))
    output = "".join(capfd.readouterr())
    # the second try made a new task for the forgotten one (and timed out waiting for it)
    assert result.tasks["generate"] == ("failed", 2)
    assert wan_simulator.stats()["tasks_created"] == 2
    # (Airflow 2.11's dag.test() writes each log line twice)
    forgotten, new = dict.fromkeys(re.findall(r"Created DashScope task ([0-9a-f]{8}-[0-9a-f-]{27}) ", output))
    assert f"DashScope task {forgotten}, made by an earlier try for this same request, ended UNKNOWN" in output
    # it waited for the new one until the timeout: its last read answered RUNNING (PENDING behind a busy queue), or,
    # on a loaded machine, that read did not complete within the 0.5 s timeout
    assert re.search(rf"DashScope task {new} (is still (RUNNING|PENDING)|did not end within the timeout)", output)
    assert "is UNKNOWN to DashScope" not in output


def _refuse_task_ids(monkeypatch, times: int) -> list[str]:
    """
    The metadata database refuses the first ``times`` writes of a record holding a task id (both stores), as a
    locked or unreachable database does; every other write goes through. Returns the task ids refused.
    """
    from airflow.providers.common.compat.sdk import Variable
    from sqlalchemy.exc import OperationalError

    refused: list[str] = []

    def refusing(original):
        def write(*args, **kwargs):
            value = args[-1] if len(args) in (2, 3) and isinstance(args[-1], dict) else args[1]
            if isinstance(value, dict) and value.get("task_id") and len(refused) < times:
                refused.append(value["task_id"])
                raise OperationalError("UPDATE ...", {}, Exception("database is locked"))
            return original(*args, **kwargs)

        return write

    monkeypatch.setattr(Variable, "set", staticmethod(refusing(Variable.set)))
    if HAS_TASK_STATE_STORE:
        from airflow.sdk.execution_time.context import TaskStateStoreAccessor

        monkeypatch.setattr(TaskStateStoreAccessor, "set", refusing(TaskStateStoreAccessor.set))
    return refused


def _stored_task_id(dag_id: str, run_id: str, backend: str) -> str | None:
    """The task id the record holds, as the metadata database has it."""
    from airflow.models import Variable

    if backend == "variable":
        value = Variable.get(f"wan_create_record/{dag_id}/generate/{run_id}/-1", None, deserialize_json=True)
        return value.get("task_id") if value else None
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        row = session.execute(
            text("SELECT value FROM task_state_store WHERE dag_id = :d AND run_id = :r AND key = 'wan_create'"),
            {"d": dag_id, "r": run_id},
        ).fetchone()
    return json.loads(row[0]).get("task_id") if row else None


@pytest.mark.parametrize("deferrable", [False, True], ids=["worker", "deferred"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_record_store_refusing_the_paid_task_id_loses_no_video(
    monkeypatch, wan_simulator, capfd, backend, deferrable
):
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    # the create's write of the id is refused, and (deferred) so is the next, when the try hands over to the trigger
    refused = _refuse_task_ids(monkeypatch, times=2 if deferrable else 1)
    dag_id = f"store_refuses_{backend}_{'deferred' if deferrable else 'worker'}"
    result = run_dag(_dag(dag_id, backend, deferrable=deferrable))
    output = "".join(capfd.readouterr())
    [task] = wan_simulator.tasks()
    # refused when the create answered and (deferred) again as the try handed over to the trigger
    assert refused == [task["task_id"]] * (2 if deferrable else 1), "the fault did not fire"
    assert wan_simulator.stats()["tasks_created"] == 1
    # the try waited for the video it paid for, and the id is in its log from the moment it was known
    assert result.tasks["generate"] == ("success", 1)
    assert result.xcoms[("generate", "return_value")]["wan_task_id"] == task["task_id"]
    assert f"Could not store DashScope task {task['task_id']} in " in output
    assert "(OperationalError)" in output
    assert "database is locked" not in output.split("Could not store")[1].split("\n")[0]
    # stored once the store took it again: a clear re-attaches instead of calling the outcome unknown
    assert _stored_task_id(dag_id, result.run_id, backend) == task["task_id"]


PRESIGNED_DAG = """
import datetime
import hashlib
import time
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_wan.operators.wan import WanImageToVideoOperator


def presign(path):
    # what an object store's presigning does: a fresh expiry and signature every time the field is rendered
    now = time.time_ns()
    signature = hashlib.sha256(str(now).encode()).hexdigest()
    return (
        f"https://photos.example.com/{{path}}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date={{now}}"
        f"&X-Amz-Expires=3600&X-Amz-Signature={{signature}}"
    )


with DAG(
    "{dag_id}",
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    user_defined_macros={{"presign": presign}},
) as dag:
    WanImageToVideoOperator(
        task_id="generate",
        model="wan2.5-i2v-preview",
        img_url="{{{{ presign('cats/cat.png') }}}}",
        prompt="the cat yawns",
        {extra}
        retries=1,
        retry_delay=datetime.timedelta(seconds=0.2),
        poll_interval=0.2,
        timeout=0.5,
    )
"""


def test_a_retry_with_a_freshly_presigned_media_link_reattaches(monkeypatch, wan_simulator, capfd):
    # each try renders its own signature of the same image: the same request, so no second video
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    wan_simulator.configure(generation_seconds=30)
    result = run_dag(write_dag(PRESIGNED_DAG.format(dag_id="presigned_each_try", extra=""), "presigned_each_try"))
    output = "".join(capfd.readouterr())
    [task] = wan_simulator.tasks()
    assert wan_simulator.stats()["tasks_created"] == 1, "the retry paid for a second video"
    # both tries timed out waiting (the retry re-attached, and waited again)
    assert result.tasks["generate"] == ("failed", 2)
    assert f"Re-attaching to DashScope task {task['task_id']}" in output
    assert task["input"]["img_url"].startswith("https://photos.example.com/cats/cat.png?X-Amz-Algorithm=")


#: a presigned link in the extras, the fields a model takes that the catalogue does not model yet (sent as given)
PRESIGNED_EXTRAS = {
    "input_extra": ("input", "style_url", "input_extra={'style_url': \"{{ presign('styles/ink.png') }}\"},"),
    "parameters_extra": (
        "parameters",
        "watermark_url",
        "parameters_extra={'watermark_url': \"{{ presign('marks/logo.png') }}\"},",
    ),
}


@pytest.mark.parametrize("where", list(PRESIGNED_EXTRAS))
def test_a_retry_with_a_freshly_presigned_link_in_an_extra_reattaches(monkeypatch, wan_simulator, capfd, where):
    # the fingerprint counted a media field's link without its query, but an extra's with it: each try rendered
    # another signature there, took the request for a changed one and paid for a second video
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    wan_simulator.configure(generation_seconds=30)
    part, name, extra = PRESIGNED_EXTRAS[where]
    dag_id = f"presigned_{where}"
    run_dag(write_dag(PRESIGNED_DAG.format(dag_id=dag_id, extra=extra), dag_id))
    output = "".join(capfd.readouterr())
    assert wan_simulator.stats()["tasks_created"] == 1, "the retry paid for a second video"
    [task] = wan_simulator.tasks()
    assert f"Re-attaching to DashScope task {task['task_id']}" in output
    # sent whole: the signature is what lets DashScope read it
    assert "X-Amz-Signature=" in task[part][name]


# --- the time a create was sent -------------------------------------------------------------------------------------
class _SlowUploads(BaseHTTPRequestHandler):
    """In front of the simulator: every upload of a local file to the policy's host takes UPLOAD_SECONDS longer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.path.startswith("/_oss"):
            time.sleep(UPLOAD_SECONDS)
        forward(self, body)

    do_GET = do_POST = _any


UPLOAD_SECONDS = 2.0


class _TaskStateStore:
    """Airflow 3.3's task state store accessor (get/set/delete) over a dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def test_the_record_says_when_the_create_was_sent_not_when_its_uploads_began(monkeypatch, wan_simulator, tmp_path):
    # the record's sent_at is where an outcome-unknown error tells the user to look for the task (10 minutes either
    # side), and when DashScope forgets it: it was stamped before the local files were uploaded, so a create sent
    # after long uploads (a 200 MB motion video on a slow uplink) fell outside the window the user searched, who found
    # nothing, raised take as told, and paid twice
    from airflow_provider_wan.operators.wan import WanImageToVideoOperator
    from tests.foundation.images import write_png

    with serving(ForwardingProxy(wan_simulator.base_url, _SlowUploads)) as front:
        monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(base_url=f"{front.url}/api/v1"))
        operator = WanImageToVideoOperator(
            task_id="generate",
            model="wan2.5-i2v-preview",
            img_url=str(write_png(tmp_path / "frame.png")),
            prompt="the cat yawns",
            wait_for_completion=False,
        )
        store = _TaskStateStore()
        operator.execute(context={"task_state_store": store, "ti": _NoXCom()})
    [task] = wan_simulator.tasks()
    sent_at = store.data["wan_create"]["sent_at"]
    assert wan_simulator.stats()["uploads"]["files"] == 1
    # stamped as the create left, after the upload (not UPLOAD_SECONDS before it)
    assert 0 <= task["created"] - sent_at < UPLOAD_SECONDS / 2, (task["created"], sent_at)


class _NoXCom:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


# --- a price table with an odd number ---------------------------------------------------------------------------------
HUGE_PRICE_DAG = """
import datetime
from airflow.providers.common.compat.sdk import DAG
from airflow_provider_wan.operators.wan import WanTextToVideoOperator

with DAG("{dag_id}", schedule=None, start_date=datetime.datetime(2026, 1, 1), catchup=False) as dag:
    WanTextToVideoOperator(
        task_id="generate",
        model="wan2.5-t2v-preview",
        prompt="a lantern on a pier",
        size="832*480",
        retries=1,
        retry_delay=datetime.timedelta(seconds=0.2),
        poll_interval=0.2,
    )
"""


@pytest.mark.parametrize("price", ["1e999", "1e308"])
def test_a_price_too_big_for_a_number_never_fails_a_paid_video(monkeypatch, wan_simulator, capfd, price):
    # [wan] prices is JSON, where 1e999 reads as infinity and 1e308 per second overflows to it over a 5 s video: the
    # estimate was infinity, the try paid for its video, then failed pushing its result to XCom in Python's words
    # ("Out of range float values are not JSON compliant"); without retries the video was never handed on
    monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json())
    monkeypatch.setenv("AIRFLOW__WAN__PRICES", f'{{"wan2.5-t2v-preview": {{"480P": {price}}}}}')
    wan_simulator.configure(generation_seconds=0.3)
    dag_id = f"huge_price_{price.replace('e', '_')}"
    result = run_dag(write_dag(HUGE_PRICE_DAG.format(dag_id=dag_id), dag_id))
    output = "".join(capfd.readouterr())
    assert "not JSON compliant" not in output
    if price == "1e999":
        # no price at all: refused by name before anything is paid for, as any malformed price table
        assert result.tasks["generate"] == ("failed", 1)
        assert wan_simulator.stats()["tasks_created"] == 0
        assert "prices['wan2.5-t2v-preview'] must map tiers" in output
    else:
        # a price, but no estimate fits a number: the estimate is unknown and the video is handed on at once
        assert result.tasks["generate"] == ("success", 1)
        assert wan_simulator.stats()["tasks_created"] == 1
        assert result.xcoms[("generate", "return_value")]["estimated_cost_usd"] is None
