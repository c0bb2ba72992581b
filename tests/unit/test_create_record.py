"""The retry-safety record: the request fingerprint, the record's JSON form, Variable keys, the outcome-unknown text."""

from __future__ import annotations

import calendar
import re

import pytest

from airflow_provider_wan.create_record import (
    TASK_RETENTION_SECONDS,
    CreateRecord,
    TaskStateStoreRecords,
    outcome_unknown_error,
    request_fingerprint,
    unknown_task_error,
    variable_key,
)
from airflow_provider_wan.exceptions import WanCreateOutcomeUnknownError, WanFinalError

ENDPOINT = "services/aigc/video-generation/video-synthesis"
BODY = {"model": "wan2.5-t2v-preview", "input": {"prompt": "a fox"}, "parameters": {"size": "832*480", "seed": 7}}


def _fp(body=BODY, model="wan2.5-t2v-preview", endpoint=ENDPOINT, take=1):
    return request_fingerprint(model, endpoint, body, take)


def test_fingerprint_is_canonical_json():
    reordered = {"parameters": {"seed": 7, "size": "832*480"}, "input": {"prompt": "a fox"}, "model": BODY["model"]}
    assert _fp() == _fp(reordered)
    assert _fp(endpoint="/" + ENDPOINT + "/") == _fp()
    assert re.fullmatch(r"[0-9a-f]{64}", _fp())


@pytest.mark.parametrize(
    "change",
    [
        {"body": {**BODY, "input": {"prompt": "a fox "}}},
        {"body": {**BODY, "parameters": {"size": "832*480", "seed": 8}}},
        {"body": {**BODY, "parameters": {"size": "832*480", "seed": 7, "duration": 10}}},
        {"body": {**BODY, "input": {"prompt": "a fox", "img_url": "data:image/png;base64,AAAA"}}},
        {"model": "wan2.6-t2v"},
        {"endpoint": "services/aigc/image2video/video-synthesis"},
        {"take": 2},
    ],
)
def test_any_change_of_the_request_changes_the_fingerprint(change):
    assert _fp(**change) != _fp()


def test_non_ascii_text_is_fingerprinted_not_refused():
    assert _fp({**BODY, "input": {"prompt": "狐狸侦探 🦊"}}) != _fp()


def test_record_round_trips_and_junk_reads_as_none():
    record = CreateRecord("f" * 64, "wan2.5-t2v-preview", 1_700_000_000.5)
    assert record.in_flight
    done = record.with_task("task-1")
    assert not done.in_flight
    assert CreateRecord.from_json(done.to_json()) == done
    assert CreateRecord.from_json(record.to_json()) == record
    for junk in (
        None,
        "x",
        3,
        [],
        {},
        {"fingerprint": 1, "model": "m", "sent_at": 1.0},
        {**done.to_json(), "task_id": ""},
        {**done.to_json(), "sent_at": True},
        {**done.to_json(), "sent_at": "now"},
    ):
        assert CreateRecord.from_json(junk) is None, junk


def test_the_facts_of_the_create_round_trip_and_junk_ones_read_as_none_keeping_the_record():
    record = CreateRecord(
        "f" * 64,
        "wan2.5-t2v-preview",
        5.0,
        task_id="task-1",
        estimated_cost_usd=0.75,
        region="singapore",
        namespace="dashscope://dashscope-intl.aliyuncs.com",
    )
    assert CreateRecord.from_json(record.to_json()) == record
    # a record written before the facts were kept, or with a fact nobody can read: the record (and its re-attach)
    # stands, the fact is unknown
    bare = CreateRecord("f" * 64, "wan2.5-t2v-preview", 5.0, task_id="task-1")
    old = {k: v for k, v in record.to_json().items() if k not in ("estimated_cost_usd", "region", "namespace")}
    assert CreateRecord.from_json(old) == bare
    for cost in ("0.75", True, -1.0, float("nan"), float("inf"), [0.75]):
        assert CreateRecord.from_json({**record.to_json(), "estimated_cost_usd": cost}).estimated_cost_usd is None
    junk = CreateRecord.from_json({**record.to_json(), "region": 3, "namespace": ""})
    assert junk is not None
    assert (junk.task_id, junk.region, junk.namespace) == ("task-1", None, None)


def test_variable_key_names_the_task_instance_and_stays_within_airflows_limit():
    assert variable_key("d", "t", "manual__2026", 3) == "wan_create_record/d/t/manual__2026/3"
    long = variable_key("d" * 200, "t" * 100, "r", -1)
    assert long.startswith("wan_create_record/")
    assert len(long) <= 250
    assert long != variable_key("d" * 200, "t" * 100, "r", 0)


class _DictAccessor:
    """The task state store accessor's interface (get/set/delete) over a dict: what Airflow 3.3 gives."""

    def __init__(self):
        self.data = {}

    def get(self, key, default=None):
        return self.data.get(key, default)

    def set(self, key, value):
        self.data[key] = value

    def delete(self, key):
        self.data.pop(key, None)


def test_task_state_store_records_use_one_key():
    accessor = _DictAccessor()
    store = TaskStateStoreRecords(accessor)
    assert store.get() is None
    record = CreateRecord("a" * 64, "wan2.6-t2v", 5.0)
    store.put(record)
    assert list(accessor.data) == ["wan_create"]
    assert store.get() == record
    store.delete()
    assert store.get() is None


def test_outcome_unknown_names_model_window_and_the_way_out():
    sent = calendar.timegm((2026, 3, 1, 10, 0, 0, 0, 0, 0))
    error = outcome_unknown_error(CreateRecord("b" * 64, "wan2.6-t2v", sent), store="the task state store")
    assert isinstance(error, WanCreateOutcomeUnknownError)
    text = str(error)
    assert "wan2.6-t2v" in text
    assert "2026-03-01 10:00:00 UTC" in text  # when it was sent
    # DashScope's clock against the worker's: a worker 10 minutes fast or slow still finds its task in the window
    assert "between 2026-03-01 09:50:00 UTC and 2026-03-01 10:10:00 UTC" in text
    # list_tasks takes UTC+8
    assert "start_time='20260301175000'" in text
    assert "end_time='20260301181000'" in text
    assert "NOT sent again" in text
    assert "take" in text


def test_a_task_is_forgotten_only_once_its_24_hours_are_over():
    record = CreateRecord("c" * 64, "wan2.6-t2v", 1_000_000.0, task_id="t-1")
    assert TASK_RETENTION_SECONDS == 24 * 3600
    assert not record.forgotten(1_000_000.0 + TASK_RETENTION_SECONDS - 1)
    assert record.forgotten(1_000_000.0 + TASK_RETENTION_SECONDS)


def test_an_unknown_task_within_its_24_hours_names_where_it_was_made_and_the_way_out():
    sent = calendar.timegm((2026, 3, 1, 10, 0, 0, 0, 0, 0))
    record = CreateRecord(
        "d" * 64, "wan2.6-t2v", sent, task_id="t-1", region="singapore", namespace="dashscope://intl.example"
    )
    error = unknown_task_error(record, asked="region 'virginia' (https://us.example/api/v1)", now=sent + 1800)
    assert isinstance(error, WanFinalError)
    assert not isinstance(error, WanCreateOutcomeUnknownError)
    assert error.task_id == "t-1"
    text = str(error)
    assert "DashScope task t-1, made by an earlier try for this same request at 2026-03-01 10:00:00 UTC" in text
    assert "(30 minutes ago, within the 24 hours DashScope keeps a task)" in text
    assert "made at region 'singapore' (dashscope://intl.example) and this try asked region 'virginia'" in text
    assert "NOT created again" in text
    assert "take=2" in text
    # a record written before the region was kept still says what it can
    older = CreateRecord("d" * 64, "wan2.6-t2v", sent, task_id="t-1")
    assert "a place the record does not say" in str(unknown_task_error(older, asked="x", now=sent))
