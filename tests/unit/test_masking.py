"""The one rule for "this value is a signed link" (``airflow_provider_wan.masking``), which masking follows."""

from __future__ import annotations

import pytest

from airflow_provider_wan.masking import is_signed_link, unsigned_link


@pytest.mark.parametrize(
    "value",
    [
        "https://b.s3.amazonaws.com/v.mp4?X-Amz-Credential=AKIAX&X-Amz-Signature=abc",
        "https://bucket.oss-cn-beijing.aliyuncs.com/v.mp4?Expires=1&OSSAccessKeyId=LTAI&Signature=abc",
        "https://storage.googleapis.com/b/v.mp4?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=abc",
        "https://account.blob.core.windows.net/videos/v.mp4?sv=2024-05-04&sp=cw&sig=abc",
        "HTTP://example.com/v.mp4#access_token=abc",
        # a store's own scheme with a SAS appended: as much a credential as the https:// form
        "abfs://videos@account.dfs.core.windows.net/v.mp4?sig=abc",
        "  s3://bucket/v.mp4?X-Amz-Signature=abc\n",
        # a password in the user info: a credential with or without a query
        "https://reader:s3cret@media.example.com/a.png",
        "ftp://:s3cret@files.example.com/a.png",
    ],
)
def test_urls_with_a_query_or_fragment_are_signed_links(value: str) -> None:
    assert is_signed_link(value)


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/v.mp4",
        "s3://bucket/wan/{wan_task_id}.mp4",
        "oss://dashscope-instant/abc/v.mp4",
        # a container named in the user info (Azure's abfs/wasbs URIs), a port, an IPv6 host, an @ in the path
        "abfs://videos@account.dfs.core.windows.net/wan/v.mp4",
        "https://media.example.com:8443/a.png",
        "http://[::1]:8080/a.png",
        "https://media.example.com/people/a:b@c.png",
        "/data/videos/take?2.mp4",  # a path, not a URL
        "a fox; see https://example.com/?q=1",  # a prompt mentioning a link is not a link
        "data:image/png;base64,iVBORw0KGgo=",
        None,
        42,
    ],
)
def test_other_values_are_not(value: object) -> None:
    assert not is_signed_link(value)


@pytest.mark.parametrize(
    ("url", "unsigned"),
    [
        ("https://b.s3.amazonaws.com/a.png?X-Amz-Date=1&X-Amz-Signature=ab", "https://b.s3.amazonaws.com/a.png"),
        (" https://b.oss.example.com/a.png?Expires=1&Signature=x#frag ", "https://b.oss.example.com/a.png"),
        ("https://acct.blob.core.windows.net/c/a.png#sig=x?y", "https://acct.blob.core.windows.net/c/a.png"),
        ("https://example.com/a.png", "https://example.com/a.png"),
        ("https://reader:pa55@example.com/a.png?x=1", "https://reader@example.com/a.png"),
        ("abfs://container@account.dfs.core.windows.net/a.png", "abfs://container@account.dfs.core.windows.net/a.png"),
    ],
)
def test_a_signed_link_unsigned_is_what_it_points_to(url: str, unsigned: str) -> None:
    assert unsigned_link(url) == unsigned


SIGNED = "https://b.s3.amazonaws.com/in/a.png?X-Amz-Credential=AKIAX&X-Amz-Signature=abc"


def test_unsigned_links_are_what_a_request_points_to_and_text_stays_whole() -> None:
    # what the retry-safety fingerprint counts of a request: every link anywhere without its signature, but a prompt
    # that merely starts with a link is text (cut at its '?', a changed prompt would read as the same request)
    from airflow_provider_wan.masking import unsigned_links

    prompt = "https://example.com/?q=1 then a fox runs"
    value = {"input": {"style_url": SIGNED, "prompt": prompt, "refs": [SIGNED, 3]}, "parameters": {"seed": 7}}
    assert unsigned_links(value) == {
        "input": {
            "style_url": "https://b.s3.amazonaws.com/in/a.png",
            "prompt": prompt,
            "refs": ["https://b.s3.amazonaws.com/in/a.png", 3],
        },
        "parameters": {"seed": 7},
    }


def test_without_signed_parts_cuts_every_link_in_a_structure_keys_included() -> None:
    from airflow_provider_wan.masking import without_signed_parts

    value = {
        "media": [{"type": "first_frame", "url": SIGNED}],
        "voices": {SIGNED: SIGNED.replace("a.png", "v.mp3")},
        "pair": (SIGNED, "https://example.com/plain.png"),
        "prompt": "a fox; see https://example.com/?q=1",
        "seed": 7,
        "login": "https://reader:p%40ss@word@media.example.com:8443/a.png?v=1",
        "container": "abfs://videos@account.dfs.core.windows.net/v.mp4",
    }
    assert without_signed_parts(value) == {
        "media": [{"type": "first_frame", "url": "https://b.s3.amazonaws.com/in/a.png?***"}],
        "voices": {"https://b.s3.amazonaws.com/in/a.png?***": "https://b.s3.amazonaws.com/in/v.mp3?***"},
        "pair": ("https://b.s3.amazonaws.com/in/a.png?***", "https://example.com/plain.png"),
        "prompt": "a fox; see https://example.com/?q=1",
        "seed": 7,
        "login": "https://reader:***@media.example.com:8443/a.png?***",
        "container": "abfs://videos@account.dfs.core.windows.net/v.mp4",
    }
    assert without_signed_parts(without_signed_parts(value)) == without_signed_parts(value)


def test_a_field_rendered_again_still_sends_its_link_whole() -> None:
    # Airflow 2.11's dag.test() resumes (and renders again) the object it rendered: its field then holds the link
    # without its query, and the request must still carry the one rendered first
    from airflow_provider_wan.operators.wan import WanImageToVideoOperator

    operator = WanImageToVideoOperator(
        task_id="frame", model="wan2.5-i2v-preview", prompt="p", img_url="{{ params.frame }}"
    )
    for _ in range(2):
        operator.render_template_fields({"params": {"frame": SIGNED}})
        assert operator.img_url == "https://b.s3.amazonaws.com/in/a.png?***"
        assert operator.build_request()[1]["input"]["img_url"] == SIGNED
    assert "X-Amz" not in repr(vars(operator))
