"""
Which result links a worker may fetch (:func:`~airflow_provider_wan.hooks.wan.video_url_problem`): a hostile or
mixed-up answer must not point the download at the worker itself, the cloud's metadata service or the private
network. Through real HTTP (the transfer refusing such a link): tests/transfer/test_hostile_links.py.
"""

from __future__ import annotations

import pytest

from airflow_provider_wan.hooks.wan import video_url_problem

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
    assert video_url_problem(link, DASHSCOPE) is None
    assert video_url_problem(link, SIMULATOR) is None


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
        ("http://[fe80::1]/a.mp4", "link-local"),
        ("http://10.0.0.7/a.mp4", "private"),
        ("http://192.168.1.1/a.mp4", "private"),
        ("file:///etc/passwd", "not an http"),
        ("https://user:secret@example.com/a.mp4", "user info"),
        ("http://[::1/a.mp4", "not a URL"),
    ],
)
def test_an_internal_or_odd_link_is_refused_with_dashscope(link, words):
    problem = video_url_problem(link, DASHSCOPE)
    assert problem is not None
    assert words in problem


def test_the_simulator_may_serve_its_videos_on_loopback_but_not_elsewhere_inside():
    assert video_url_problem("http://127.0.0.1:5000/v.mp4", SIMULATOR) is None
    assert video_url_problem("http://localhost:5000/v.mp4", SIMULATOR) is None
    assert "link-local" in (video_url_problem("http://169.254.169.254/", SIMULATOR) or "")
    assert "private" in (video_url_problem("http://10.0.0.7/", SIMULATOR) or "")
