"""
The triggerer's proxy decision (hooks/proxies.proxy_for): requests' rule, remembered per origin and
settings, so a changed environment is a new decision; a login in the proxy's URL becomes a header, never part of the
URL handed to aiohttp. The transports taking it alike, through a real proxy: tests/integration/test_transport_proxy.py.
"""

from __future__ import annotations

import base64

import pytest

from airflow_provider_wan.hooks.proxies import proxy_for

API = "https://dashscope-intl.aliyuncs.com/api/v1/tasks/t-1"
NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_a_changed_environment_is_a_new_decision(monkeypatch: pytest.MonkeyPatch):
    assert proxy_for(API) == (None, None)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert proxy_for(API) == ("http://proxy.example:3128", None)
    monkeypatch.setenv("NO_PROXY", ".aliyuncs.com")
    assert proxy_for(API) == (None, None)
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8")
    assert proxy_for(API) == ("http://proxy.example:3128", None)
    assert proxy_for("http://10.1.2.3:8089/api/v1/tasks/t-1") == (None, None)  # a CIDR range, as requests reads it
    monkeypatch.delenv("HTTPS_PROXY")
    assert proxy_for(API) == (None, None)


def test_a_login_in_the_proxys_url_becomes_a_header_and_leaves_the_url(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("https_proxy", "http://us%40er:p%3Ass@proxy.example:3128")
    proxy, login = proxy_for(API)
    assert proxy == "http://proxy.example:3128"
    assert login == "Basic " + base64.b64encode(b"us@er:p:ss").decode()


def test_a_proxy_without_a_scheme_is_plain_http(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ALL_PROXY", "proxy.example:3128")
    assert proxy_for(API) == ("http://proxy.example:3128", None)
