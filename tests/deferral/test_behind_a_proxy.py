"""
A deployment where only a proxy reaches DashScope: the connection's ``base_url`` names ``api.wan-dns.test``, which
does not resolve here (tests/names.py), and ``HTTP_PROXY`` (with a login) names a real proxy on 127.0.0.1 that
forwards to the simulator (:class:`~tests.transfer.proxy.Gateway`). A deferrable task runs through real Airflow
(``dag.test()`` runs the trigger inline): the worker creates the task through the proxy, and the triggerer must
wait for it through the same proxy (its ``aiohttp`` read no proxy variable: every read failed, after the video
was paid for).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.airflow_run import run_dag, write_dag
from tests.deferral.conftest import dag_source
from tests.names import DOMAIN, resolve_test_names
from tests.transfer.proxy import Gateway, only_way_to_the_api

GATEWAY = f"api.{DOMAIN}"
PROXY_LOGIN = "wan-user:pr0xy-s3cret-Df"


@pytest.fixture
def gateway(wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    resolve_test_names(monkeypatch, {})  # api.wan-dns.test resolves nowhere: only the proxy knows it
    with only_way_to_the_api(wan_simulator, monkeypatch, GATEWAY, PROXY_LOGIN) as proxy:
        yield proxy


def test_a_deferred_task_waits_through_the_proxy_the_worker_used(
    wan_simulator: Any, gateway: Gateway, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
):
    dag_id = "wan_defer_behind_a_proxy"
    body = (
        "WanTextToVideoOperator(task_id='generate', retries=0, model='wan2.5-t2v-preview', "
        "prompt='a paper boat on a rainy street', deferrable=True, poll_interval=0.2, timeout=60)"
    )
    imports = "from airflow_provider_wan.operators.wan import WanTextToVideoOperator"
    result = run_dag(write_dag(dag_source(dag_id, body, imports=imports), dag_id))
    assert result.state == "success"
    assert result.tasks["generate"] == ("success", 1)
    assert [classpath.rsplit(".", 1)[-1] for classpath, _ in result.triggers] == ["WanTaskTrigger"]
    stats = wan_simulator.stats()
    assert stats["tasks_created"] == 1
    # every API request the simulator answered came through the proxy (there is no other way), the trigger's too
    answered = stats["requests"].get("create", 0) + stats["requests"].get("get_task", 0)
    assert stats["requests"].get("get_task", 0) >= 1
    assert gateway.hosts == [GATEWAY] * answered
    assert gateway.refused == 0  # both transports sent the login in HTTP_PROXY
    out, err = capfd.readouterr()
    for text in (repr(result.triggers), repr(result.xcoms), out, err, caplog.text):
        assert "pr0xy-s3cret" not in text, "the proxy's password leaked"
