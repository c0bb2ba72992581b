"""
The worker's transport (``requests``) and the triggerer's (``aiohttp``) choose the same way between a proxy and a
direct connection for each setting of ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``, and send the login a
proxy's URL carries; through real HTTP to the simulator on 127.0.0.1 and a real proxy
(:class:`~tests.transfer.proxy.Gateway`) in front of it. A proxy's password never reaches an error.

An https API (as DashScope's are) is reached through the proxy's CONNECT tunnel, by both, trusting the same
authorities (``REQUESTS_CA_BUNDLE``); a certificate for another name is the same clear error on both.
"""

from __future__ import annotations

import contextlib
import inspect
from asyncio.sslproto import SSLProtocol
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_wan.exceptions import (
    WanCreateOutcomeUnknownError,
    WanError,
    WanFinalError,
    WanRetryableError,
)
from airflow_provider_wan.hooks.wan import RetryPolicy, WanAsyncClient, WanHook
from tests.certificates import self_signed_certificate
from tests.integration.conftest import BODY, ENDPOINT
from tests.names import DOMAIN, resolve_test_names
from tests.transfer.proxy import Gateway, TLSFront, assert_names_the_proxys_certificate, serving

pytestmark = pytest.mark.usefixtures("close_wan_sessions")

#: asyncio reports a certificate refused inside TLS in TLS (an https API through an https:// proxy) as such; before
#: CPython 3.11.8 and 3.12.2 (gh-113214) its SSLProtocol._abort took no exception, so the triggerer's read ended as a
#: broken connection instead
TLS_IN_TLS_REFUSAL_REPORTED = len(inspect.signature(SSLProtocol._abort).parameters) > 1

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


def _names_the_proxys_certificate(error: WanError, proxy: str) -> None:
    """The error says the https:// proxy's certificate was refused, and nothing reached DashScope; no login in it."""
    assert_names_the_proxys_certificate(error, proxy, PROXY_LOGIN)
    assert "Nothing reached DashScope" in str(error)
    assert "Refused DashScope" not in str(error)


def _names_dashscopes_certificate(error: WanError, api: str) -> None:
    """The error says DashScope's certificate was refused, and names no proxy."""
    text = str(error)
    assert f"Refused DashScope at a custom base URL (https://{api}" in text, text
    assert "its TLS certificate was not accepted" in text
    assert "proxy at" not in text
    assert PROXY_PASSWORD not in f"{error} {error!r} {error.to_dict()}"


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
    gateway: Gateway, wan_simulator: Any, monkeypatch: pytest.MonkeyPatch
):
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id
    hook.close()
    created = wan_simulator.stats()["tasks_created"]
    wrong = "wr0ng-pr0xy-pa55"
    proxy = f"127.0.0.1:{gateway.server_address[1]}"
    # a query on the proxy's URL is no one's business either
    monkeypatch.setenv("HTTP_PROXY", f"http://wan-user:{wrong}@{proxy}/?token=pr0xy-t0ken")
    sync_result, async_result = await _read_twice(task_id)
    hook = WanHook(retry_policy=FAST)
    try:
        with pytest.raises(WanFinalError) as refused_create:
            hook.create_task(ENDPOINT, BODY)
    finally:
        hook.close()
    assert type(sync_result) is type(async_result) is WanFinalError
    assert sync_result.http_status == async_result.http_status == 407
    assert str(sync_result) == str(async_result)
    create_error = refused_create.value
    # the proxy refused before DashScope saw anything: a create was not paid for, and may be sent again
    assert not isinstance(create_error, WanCreateOutcomeUnknownError)
    assert wan_simulator.stats()["tasks_created"] == created
    for error in (sync_result, async_result, create_error):
        text = f"{error} {error!r} {error.to_dict()}"
        assert f"proxy at http://{proxy} refused" in str(error), error
        assert "407" in str(error)
        assert "nothing reached DashScope" in str(error)
        assert "DashScope refused" not in str(error)
        assert wrong not in text, "the proxy's password leaked"
        assert "wan-user" not in text
        assert "pr0xy-t0ken" not in text
    assert "No task was created" in str(create_error)
    assert gateway.refused == 3  # once each: the login would be refused again, so no retry


@pytest.mark.parametrize("status", [403, 407, 502])
async def test_a_proxy_refusing_the_tunnel_is_said_so_and_a_create_was_not_sent(
    wan_simulator: Any, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: int
):
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id  # straight to the simulator, before any proxy is set
    hook.close()
    created = wan_simulator.stats()["tasks_created"]
    api = f"api.{DOMAIN}"
    resolve_test_names(monkeypatch, {})  # the API's name resolves nowhere here: only the proxy reaches it
    certificate = self_signed_certificate(tmp_path, dns_name=api)
    proxy = f"127.0.0.1:{gateway.server_address[1]}"
    with serving(TLSFront(wan_simulator.url, certificate)) as front:
        # 403: the proxy's rules forbid the host; 407: a wrong login; 502: it could not reach the host
        if status == 403:
            gateway.tunnel_refusals[f"{api}:443"] = 403
        if status != 502:
            gateway.tunnels[f"{api}:443"] = front.address
        login = "wan-user:wr0ng-pa55" if status == 407 else PROXY_LOGIN
        monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(base_url=f"https://{api}/api/v1"))
        monkeypatch.setenv("HTTPS_PROXY", f"http://{login}@{proxy}")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
        sync_result, async_result = await _read_twice(task_id)
        gateway.connects.clear()
        hook = WanHook(retry_policy=FAST)
        try:
            with pytest.raises(WanError) as refused_create:
                hook.create_task(ENDPOINT, BODY)
        finally:
            hook.close()
    create_error = refused_create.value
    # no tunnel, so not one byte of the request reached the API: the create was not sent, and saying so is true
    assert front.paths == []
    assert wan_simulator.stats()["tasks_created"] == created
    assert not isinstance(create_error, WanCreateOutcomeUnknownError)
    assert str(sync_result) == str(async_result)
    expected = WanRetryableError if status == 502 else WanFinalError
    for error in (sync_result, async_result, create_error):
        assert type(error) is expected, error
        assert error.http_status == status
        text = str(error)
        assert f"proxy at http://{proxy}" in text, text
        assert f"HTTP {status}" in text
        assert f"tunnel (CONNECT) to {api}:443" in text
        assert "nothing was sent to DashScope" in text
        assert "wr0ng-pa55" not in f"{error!r} {error.to_dict()}"
        assert PROXY_PASSWORD not in f"{error!r} {error.to_dict()}"
    assert "No task was created" in str(create_error)
    # a refusal the proxy would repeat is final; one it may not (it could not reach the host) is tried again, the
    # create too, since nothing was sent
    assert len(gateway.connects) == (FAST.max_attempts if status == 502 else 1)


@pytest.mark.parametrize("certificate_name", [f"api.{DOMAIN}", f"other.{DOMAIN}"], ids=["its-name", "another-name"])
async def test_an_https_api_behind_the_proxys_tunnel_is_reached_alike(
    wan_simulator: Any, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate_name: str
):
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id  # straight to the simulator, before any proxy is set
    hook.close()
    api = f"api.{DOMAIN}"
    resolve_test_names(monkeypatch, {})  # the API's name resolves nowhere here: only the proxy reaches it
    certificate = self_signed_certificate(tmp_path, dns_name=certificate_name)
    with serving(TLSFront(wan_simulator.url, certificate)) as front:
        gateway.tunnels[f"{api}:443"] = front.address
        monkeypatch.setenv("AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(base_url=f"https://{api}/api/v1"))
        monkeypatch.setenv("HTTPS_PROXY", f"http://{PROXY_LOGIN}@127.0.0.1:{gateway.server_address[1]}")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))  # the worker's way to trust a CA
        sync_result, async_result = await _read_twice(task_id)
    assert gateway.hosts == [], "a request went to the proxy as plain http"
    assert gateway.refused == 0
    if certificate_name == api:
        assert sync_result.task_id == async_result.task_id == task_id
        assert gateway.connects == [f"{api}:443"] * 2  # one tunnel each
        assert [path.split("?")[0] for path in front.paths] == [f"/api/v1/tasks/{task_id}"] * 2
        return
    for error in (sync_result, async_result):
        assert type(error) is WanFinalError, error
        assert "TLS certificate was not accepted" in str(error)
        assert api in str(error)
        assert PROXY_PASSWORD not in f"{error} {error!r} {error.to_dict()}"
    assert str(sync_result) == str(async_result)
    # refused at the handshake, once each: nothing was sent, and no retry would fare better
    assert gateway.connects == [f"{api}:443"] * 2
    assert front.paths == []


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted", "untrusted"])
@pytest.mark.parametrize("api_scheme", ["https", "http"])
async def test_an_https_proxy_url_is_reached_over_tls_its_certificate_checked_alike(
    wan_conn: str, wan_simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api_scheme: str, trusted: bool
):
    # HTTPS_PROXY=https://...: TLS to the proxy itself, its certificate checked against the authorities the API's is
    # (REQUESTS_CA_BUNDLE). An https API is then reached by TLS inside that TLS (the CONNECT tunnel runs in it), a
    # plain-http one is forwarded by the proxy: requests checked no proxy certificate for those, so the proxy's
    # login and the API key went to whoever answered at its address, and aiohttp checked it against another store
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id  # straight to the simulator, before any proxy is set
    hook.close()
    created = wan_simulator.stats()["tasks_created"]
    for folder in ("proxy", "impostor", "api"):
        (tmp_path / folder).mkdir()
    proxy_certificate = self_signed_certificate(tmp_path / "proxy", ip_address="127.0.0.1")
    # untrusted: the proxy's address answers with a certificate for that address no trusted authority signed
    served = proxy_certificate if trusted else self_signed_certificate(tmp_path / "impostor", ip_address="127.0.0.1")
    api = f"api.{DOMAIN}"
    api_certificate = self_signed_certificate(tmp_path / "api", dns_name=api)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(proxy_certificate[0].read_bytes() + api_certificate[0].read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    resolve_test_names(monkeypatch, {})  # the API's name resolves nowhere here: only the proxy reaches it
    with (
        serving(Gateway(wan_simulator.url, credentials=PROXY_LOGIN, certificate=served)) as gateway,
        serving(TLSFront(wan_simulator.url, api_certificate)) as front,
    ):
        assert isinstance(gateway, Gateway)
        proxy = f"https://{PROXY_LOGIN}@127.0.0.1:{gateway.server_address[1]}"
        gateway.tunnels[f"{api}:443"] = front.address
        monkeypatch.setenv("HTTPS_PROXY" if api_scheme == "https" else "HTTP_PROXY", proxy)
        monkeypatch.setenv(
            "AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(base_url=f"{api_scheme}://{api}/api/v1")
        )
        sync_result, async_result = await _read_twice(task_id)
        hook = WanHook(retry_policy=FAST)
        try:
            create: Any = hook.create_task(ENDPOINT, BODY)
        except WanError as error:
            create = error
        finally:
            hook.close()
    if not trusted:
        for error in (sync_result, async_result, create):
            # the proxy's certificate, named as the proxy's (it read as DashScope's), without its login
            assert type(error) is WanFinalError, error
            _names_the_proxys_certificate(error, f"https://127.0.0.1:{gateway.server_address[1]}")
            assert not isinstance(error, WanCreateOutcomeUnknownError)
        assert "No task was created" in str(create)
        assert str(sync_result) == str(async_result)
        # refused at the handshake with the proxy: it saw no request, no CONNECT, no login
        assert (gateway.hosts, gateway.connects, gateway.refused, front.paths) == ([], [], 0, [])
        assert wan_simulator.stats()["tasks_created"] == created
        return
    assert sync_result.task_id == async_result.task_id == task_id
    assert create.task_id
    assert wan_simulator.stats()["tasks_created"] == created + 1
    assert gateway.refused == 0, "a transport did not send the proxy's login"
    paths = [f"/api/v1/tasks/{task_id}"] * 2 + [f"/api/v1/{ENDPOINT}"]
    if api_scheme == "https":
        assert gateway.hosts == []
        assert gateway.connects == [f"{api}:443"] * 3  # one tunnel each (a hook's session per call here)
        assert [path.split("?")[0] for path in front.paths] == paths
    else:
        assert gateway.connects == []
        assert gateway.hosts == [api] * 3
        assert front.paths == []


async def test_a_refused_certificate_is_named_as_the_proxys_or_dashscopes_alike(
    wan_conn: str, wan_simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # whose certificate was refused, on both transports: DashScope's reached straight, DashScope's inside the tunnel
    # of a trusted https:// proxy (TLS in TLS), or the https:// proxy's own. The proxy's read as DashScope's
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id  # straight to the simulator, before any proxy is set
    hook.close()
    created = wan_simulator.stats()["tasks_created"]
    for folder in ("proxy", "impostor", "api"):
        (tmp_path / folder).mkdir()
    proxy_certificate = self_signed_certificate(tmp_path / "proxy", ip_address="127.0.0.1")
    impostor = self_signed_certificate(tmp_path / "impostor", ip_address="127.0.0.1")
    api = f"api.{DOMAIN}"
    # the API answers for its name with a certificate no trusted authority signed; only the proxy's is trusted
    api_certificate = self_signed_certificate(tmp_path / "api", dns_name=api)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(proxy_certificate[0]))
    resolve_test_names(monkeypatch, {api: "127.0.0.1"})
    with serving(TLSFront(wan_simulator.url, api_certificate)) as front:
        assert isinstance(front, TLSFront)
        target = f"{api}:{front.address[1]}"
        monkeypatch.setenv(
            "AIRFLOW_CONN_WAN_DEFAULT", wan_simulator.connection_json(base_url=f"https://{target}/api/v1")
        )
        for served in (None, proxy_certificate, impostor):
            with contextlib.ExitStack() as stack, monkeypatch.context() as env:
                proxy = None
                if served is not None:
                    gateway = stack.enter_context(
                        serving(Gateway(wan_simulator.url, credentials=PROXY_LOGIN, certificate=served))
                    )
                    assert isinstance(gateway, Gateway)
                    gateway.tunnels[target] = front.address
                    proxy = f"https://127.0.0.1:{gateway.server_address[1]}"
                    env.setenv("HTTPS_PROXY", f"https://{PROXY_LOGIN}@127.0.0.1:{gateway.server_address[1]}")
                sync_result, async_result = await _read_twice(task_id)
                hook = WanHook(retry_policy=FAST)
                try:
                    with pytest.raises(WanFinalError) as refused_create:
                        hook.create_task(ENDPOINT, BODY)
                finally:
                    hook.close()
            create = refused_create.value
            errors = [sync_result, async_result, create]
            if served is proxy_certificate and not TLS_IN_TLS_REFUSAL_REPORTED:
                errors.remove(async_result)
            else:
                assert str(sync_result) == str(async_result)
            for error in errors:
                # final, as the same certificate would be refused again; nothing was sent, so a create made no task
                assert type(error) is WanFinalError, error
                if served is impostor:
                    assert proxy is not None
                    _names_the_proxys_certificate(error, proxy)
                else:
                    _names_dashscopes_certificate(error, target)
            if served is impostor:
                assert "No task was created" in str(create)
                # refused at the handshake with the proxy: it saw no CONNECT, no login
                assert (gateway.connects, gateway.refused) == ([], 0)
            elif served is not None:
                # one tunnel each, the API refused inside it (a broken connection is read again)
                tunnels = 3 if TLS_IN_TLS_REFUSAL_REPORTED else 2 + FAST.max_attempts
                assert gateway.connects == [target] * tunnels
    assert front.paths == []
    assert wan_simulator.stats()["tasks_created"] == created


async def test_a_netrc_login_replaces_the_api_key_on_neither_transport(
    wan_conn: str, wan_simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # requests puts a ~/.netrc login for the host over the Authorization header: every call refused (401)
    netrc = tmp_path / "netrc"
    netrc.write_text("default login intruder password n3trc-pa55\n")
    monkeypatch.setenv("NETRC", str(netrc))
    hook = WanHook()
    task_id = hook.create_task(ENDPOINT, BODY).task_id
    hook.close()
    sync_result, async_result = await _read_twice(task_id)
    assert sync_result.task_id == async_result.task_id == task_id
