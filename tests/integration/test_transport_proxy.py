"""
The worker's transport (``requests``) and the triggerer's (``aiohttp``) choose the same way between a proxy and a
direct connection for each setting of ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``, and send the login a
proxy's URL carries; through real HTTP to the simulator on 127.0.0.1 and a real proxy
(:class:`~tests.transfer.proxy.Gateway`) in front of it. A proxy's password never reaches an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_wan.exceptions import WanError
from airflow_provider_wan.hooks.wan import RetryPolicy, WanAsyncClient, WanHook
from tests.integration.conftest import BODY, ENDPOINT
from tests.transfer.proxy import Gateway, serving

pytestmark = pytest.mark.usefixtures("close_wan_sessions")

PROXY_PASSWORD = "pr0xy-s3cret-Qw"
PROXY_LOGIN = f"wan-user:{PROXY_PASSWORD}"
FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05)
VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

# (id, environment with {proxy} for the proxy's address, whether the API call goes through the proxy); the API is
# plain http on 127.0.0.1
PROXY = "http://{login}@{proxy}"
CASES: list[tuple[str, dict[str, str], bool]] = [
    ("HTTP_PROXY", {"HTTP_PROXY": PROXY}, True),
    ("http_proxy lowercase", {"http_proxy": PROXY}, True),
    ("ALL_PROXY", {"ALL_PROXY": PROXY}, True),
    ("NO_PROXY names another host", {"HTTP_PROXY": PROXY, "NO_PROXY": "example.com,10.0.0.0/8"}, True),
    ("NO_PROXY names the host", {"HTTP_PROXY": PROXY, "NO_PROXY": "example.com,127.0.0.1"}, False),
    ("NO_PROXY a range holding it", {"HTTP_PROXY": PROXY, "NO_PROXY": "127.0.0.0/8"}, False),
    ("NO_PROXY *", {"HTTP_PROXY": PROXY, "NO_PROXY": "*"}, False),
    ("HTTPS_PROXY only", {"HTTPS_PROXY": PROXY}, False),
]


@pytest.fixture
def gateway(wan_conn: str, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    """A proxy in front of the simulator that wants a login; no proxy variable set (each test sets its own)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with serving(Gateway(wan_simulator.url, credentials=PROXY_LOGIN)) as proxy:
        yield proxy


async def _read_twice(task_id: str) -> tuple[Any, Any]:
    """The task read by the worker's transport, then by the triggerer's: each the WanTask or the WanError."""
    results: list[Any] = []
    hook = WanHook(retry_policy=FAST)
    try:
        results.append(hook.get_task(task_id))
    except WanError as error:
        results.append(error)
    finally:
        hook.close()
    client = await WanAsyncClient.for_connection("wan_default", retry_policy=FAST)
    try:
        results.append(await client.get_task(task_id))
    except WanError as error:
        results.append(error)
    return results[0], results[1]


@pytest.mark.parametrize(("case", "environment", "proxied"), CASES, ids=[c[0] for c in CASES])
async def test_both_transports_take_the_proxy_alike(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, case: str, environment: dict[str, str], proxied: bool
):
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id
    hook.close()
    seen: list[list[str]] = []
    with monkeypatch.context() as env:
        for name, value in environment.items():
            env.setenv(name, value.format(login=PROXY_LOGIN, proxy=f"127.0.0.1:{gateway.server_address[1]}"))
        for transport in ("sync", "async"):
            gateway.hosts.clear()
            if transport == "sync":
                hook = WanHook(retry_policy=FAST)
                try:
                    task = hook.get_task(task_id)
                finally:
                    hook.close()
            else:
                client = await WanAsyncClient.for_connection("wan_default", retry_policy=FAST)
                task = await client.get_task(task_id)
            assert task.task_id == task_id
            seen.append(list(gateway.hosts))
    sync_seen, async_seen = seen
    assert sync_seen == async_seen, "the worker and the triggerer take different ways"
    assert sync_seen == (["127.0.0.1"] if proxied else [])
    assert gateway.refused == 0, "a transport did not send the proxy's login"


async def test_a_proxy_refusing_the_login_is_the_same_error_on_both_without_the_password(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
):
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id
    hook.close()
    wrong = "wr0ng-pr0xy-pa55"
    monkeypatch.setenv("HTTP_PROXY", f"http://wan-user:{wrong}@127.0.0.1:{gateway.server_address[1]}")
    sync_result, async_result = await _read_twice(task_id)
    assert isinstance(sync_result, WanError)
    assert isinstance(async_result, WanError)
    assert type(sync_result) is type(async_result)
    assert sync_result.http_status == async_result.http_status == 407
    for error in (sync_result, async_result):
        text = f"{error} {error!r} {error.to_dict()}"
        assert wrong not in text, "the proxy's password leaked"
    assert gateway.refused == 2  # once each: the login would be refused again, so no retry
