"""
Which links an API answer names (a result's video link, an upload policy's upload host) a worker may contact
(:func:`~airflow_provider_wan.hooks.wan.link_problem`) and which addresses their connections may reach
(:func:`~airflow_provider_wan.hooks.wan.link_address_problem`): a hostile or mixed-up answer must not point the
download or the upload at the worker itself, the cloud's metadata service or the private network. Through real HTTP
(the transfer refusing such a link): tests/transfer/test_hostile_links.py and, for host names,
tests/transfer/test_dns_links.py; the upload refusing such a host: tests/modes/test_upload_hosts.py.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from airflow_provider_wan.hooks.wan import link_address_problem, link_problem

DASHSCOPE = "https://dashscope-intl.aliyuncs.com/api/v1"
SIMULATOR = "http://127.0.0.1:4000/api/v1"


@pytest.mark.parametrize(
    "link",
    [
        "https://dashscope-result-sgp.oss-ap-southeast-1.aliyuncs.com/a.mp4?Expires=1&Signature=x",
        "http://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/a.mp4",
        "https://1.1.1.1/a.mp4",
    ],
)
def test_a_public_link_may_be_fetched(link):
    assert link_problem(link, DASHSCOPE) is None
    assert link_problem(link, SIMULATOR) is None


@pytest.mark.parametrize(
    ("link", "words"),
    [
        ("http://127.0.0.1:8080/a.mp4", "this machine"),
        ("http://localhost/a.mp4", "this machine"),
        ("http://2130706433/a.mp4", "this machine"),  # 127.0.0.1 as the resolver also reads it
        ("http://0x7f.1/a.mp4", "this machine"),
        ("http://[::1]/a.mp4", "this machine"),
        ("http://[::ffff:127.0.0.1]/a.mp4", "this machine"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://100.100.100.200/latest/meta-data/", "Alibaba Cloud's metadata"),  # ECS's metadata service
        ("http://[fe80::1]/a.mp4", "link-local"),
        ("http://10.0.0.7/a.mp4", "private"),
        ("http://192.168.1.1/a.mp4", "private"),
        ("file:///etc/passwd", "not an http"),
        ("https://user:secret@example.com/a.mp4", "user info"),
        ("http://[::1/a.mp4", "not a URL"),
    ],
)
def test_an_internal_or_odd_link_is_refused_with_dashscope(link, words):
    problem = link_problem(link, DASHSCOPE)
    assert problem is not None
    assert words in problem


def test_the_simulator_may_serve_its_videos_on_loopback_but_not_elsewhere_inside():
    assert link_problem("http://127.0.0.1:5000/v.mp4", SIMULATOR) is None
    assert link_problem("http://localhost:5000/v.mp4", SIMULATOR) is None
    assert "link-local" in (link_problem("http://169.254.169.254/", SIMULATOR) or "")
    assert "private" in (link_problem("http://10.0.0.7/", SIMULATOR) or "")


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("127.0.0.1", "this machine"),
        ("127.0.1.1", "this machine"),  # where Debian's /etc/hosts puts the machine's own name
        ("::1", "this machine"),
        ("::ffff:127.0.0.1", "this machine"),
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("100.100.100.200", "shared"),
        ("::ffff:100.100.100.200", "shared"),
        ("100.118.28.1", "shared"),  # where OSS's VPC-internal endpoints answer
        ("fe80::1%eth0", "link-local"),
        ("10.0.0.7", "private"),
        ("172.17.0.2", "private"),
        ("fd00::2", "private"),
        ("0.0.0.0", "private or reserved"),
    ],
)
def test_an_address_a_links_name_led_to_is_judged_by_the_same_rule(address, words):
    problem = link_address_problem(address, DASHSCOPE)
    assert problem is not None
    assert words in problem
    assert address in problem


@pytest.mark.parametrize("address", ["47.88.1.2", "2400:3200::1"])
def test_a_public_address_may_be_connected_to(address):
    assert link_address_problem(address, DASHSCOPE) is None
    assert link_address_problem(address, SIMULATOR) is None


def test_with_the_simulator_on_loopback_only_loopback_addresses_are_allowed():
    assert link_address_problem("127.0.0.1", SIMULATOR) is None
    assert link_address_problem("::1", "http://localhost:4000/api/v1") is None
    assert "link-local" in (link_address_problem("169.254.169.254", SIMULATOR) or "")
    assert "private" in (link_address_problem("10.0.0.7", SIMULATOR) or "")


def test_an_api_named_by_a_host_name_is_where_that_name_resolves(monkeypatch: pytest.MonkeyPatch):
    """
    The simulator in a container next to the worker (``http://wan-sim:4000``): its videos on the private network
    are where the API is. ``socket.getaddrinfo`` (the system's resolver, not our code) answers for that name.
    """
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "wan-sim":
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("172.18.0.5", 0))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    in_a_container = "http://wan-sim:4000/api/v1"
    assert link_address_problem("172.18.0.9", in_a_container) is None
    assert link_problem("http://172.18.0.9:4000/_files/v.mp4", in_a_container) is None
    # the API's kind of address only, not any internal one
    assert "this machine" in (link_address_problem("127.0.0.1", in_a_container) or "")
    assert "link-local" in (link_address_problem("169.254.169.254", in_a_container) or "")


def test_data_is_not_sent_over_plain_http_when_the_api_is_https():
    oss = "bucket.oss-cn-beijing.aliyuncs.com"
    problem = link_problem(f"http://{oss}", DASHSCOPE, sends_data=True)
    assert problem is not None
    assert "plain http while the API is https" in problem
    assert "plain http" in (link_problem(f"HTTP://{oss}", DASHSCOPE.upper(), sends_data=True) or "")
    assert link_problem(f"https://{oss}", DASHSCOPE, sends_data=True) is None
    # a plain-http API (the simulator, a proxy on a trusted network): a plain-http upload host is no downgrade
    assert link_problem("http://127.0.0.1:4000/_oss", SIMULATOR, sends_data=True) is None
    assert link_problem(f"http://{oss}", "http://gateway.internal/api/v1", sends_data=True) is None
    # a result link is fetched as DashScope names it, plain http included
    assert link_problem(f"http://{oss}/a.mp4", DASHSCOPE) is None
    # and the address rule still holds for data
    assert "link-local" in (link_problem("https://169.254.169.254/", DASHSCOPE, sends_data=True) or "")
